/**
 * SIGINT and SIGTERM for the client-side commands, as an AbortSignal: the
 * first one aborts (the command then winds down and cleans up), later ones
 * are logged and ignored so cleanup is not cut short.
 */
import type { Logger } from "../telemetry/logger.ts";

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

export interface Interrupt {
  readonly signal: AbortSignal;
  /** The signal received, if any. */
  readonly received: NodeJS.Signals | undefined;
  /** Removes the handlers. */
  dispose(): void;
}

export function catchInterrupts(log: Logger): Interrupt {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, `already stopping (on ${received}); signal ignored`);
      return;
    }
    received = signal;
    log.info({ signal }, "signal received: stopping");
    controller.abort();
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  return {
    signal: controller.signal,
    get received() {
      return received;
    },
    dispose: () => {
      for (const s of SIGNALS) process.off(s, onSignal);
    },
  };
}
