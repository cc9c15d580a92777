/**
 * `layercache worker`: runs the pipeline worker until SIGTERM or SIGINT.
 * The first signal starts the ordered shutdown (src/pipeline/worker.ts);
 * later ones are logged and ignored, so an impatient second Ctrl-C or a
 * repeated SIGTERM cannot cut the drain and commit short. (SIGKILL still
 * can, and then the uncommitted frames are simply delivered again.)
 */
import type { Config } from "../config/index.ts";
import { redactConfig } from "../config/index.ts";
import type { RunningWorker } from "../pipeline/worker.ts";
import { startWorker } from "../pipeline/worker.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

/** Runs the worker; resolves with the process exit code. */
export async function runWorker(config: Config): Promise<number> {
  const root = createLogger({ level: config.logLevel, workerId: config.workerId });
  const log = componentLogger(root, "pipeline");
  let worker: RunningWorker | undefined;
  let signalled: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, `already stopping (on ${signalled}); signal ignored`);
      return;
    }
    signalled = signal;
    log.info({ signal }, "signal received: stopping");
    void worker?.stop();
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    // The node flags say whether garbage collection runs single-threaded (docs/worker.md).
    log.info({ config: redactConfig(config), nodeFlags: process.execArgv }, "starting worker");
    try {
      worker = await startWorker(config, { logger: root });
    } catch (err) {
      log.fatal({ err }, "worker failed to start");
      return 1;
    }
    // A signal that came while starting: stop now that there is something to stop.
    if (signalled) void worker.stop();
    try {
      await worker.done;
      return 0;
    } catch {
      // Already logged by the worker with its cause.
      return 1;
    }
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
    root.flush();
  }
}
