/**
 * Progress of a counted job (frames sent): a cli-progress bar on stderr when
 * it is a terminal, otherwise a plain log line every few seconds through the
 * tool's pino logger.
 */
import cliProgress from "cli-progress";
import type { Logger } from "../telemetry/logger.ts";

export interface Progress {
  update(done: number): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  /** What is counted, for the bar and the log lines ("frames"). */
  unit: string;
  log: Logger;
  tty?: boolean;
  /** Period of log lines when not on a terminal, ms. */
  logEveryMs?: number;
}

export function startProgress(options: ProgressOptions): Progress {
  const { label, total, unit, log } = options;
  const t0 = performance.now();
  const rate = (done: number) => done / Math.max(1e-3, (performance.now() - t0) / 1000);

  if (options.tty ?? process.stderr.isTTY === true) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {speed} ${unit}/s`,
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { speed: "0" });
    return {
      update: (done) => bar.update(done, { speed: rate(done).toFixed(0) }),
      stop: () => bar.stop(),
    };
  }

  let done = 0;
  const line = () =>
    log.info(
      { done, total, perSecond: Math.round(rate(done)) },
      `${label}: ${done}/${total} ${unit} (${rate(done).toFixed(0)} ${unit}/s)`,
    );
  const timer = setInterval(line, options.logEveryMs ?? 2_000);
  timer.unref();
  return {
    update: (n) => {
      done = n;
    },
    stop: () => clearInterval(timer),
  };
}
