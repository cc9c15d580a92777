/** A progress bar on a terminal (cli-progress), silence elsewhere (CI, pipes, --json). */
import cliProgress from "cli-progress";

export interface Progress {
  update(done: number, note?: string): void;
  stop(): void;
}

export function progress(label: string, total: number, enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(14)} [{bar}] {percentage}% | {value}/{total} frames | {note}`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { note: "" });
  return {
    update: (done, note = "") => bar.update(done, { note }),
    stop: () => bar.stop(),
  };
}
