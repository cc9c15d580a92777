/**
 * A status that keeps itself current while a tool runs: on a terminal a
 * block of lines redrawn in place on stderr; elsewhere (CI, pipes, files) a
 * plain log line at a slower period, through the tool's pino logger.
 */
import type { Logger } from "../telemetry/logger.ts";

export interface StatusView {
  /** Lines redrawn on a terminal. */
  block: string;
  /** The same, as one log line. */
  line: string;
  /** Structured fields for the log line. */
  fields?: Record<string, unknown>;
}

export interface LiveStatusOptions {
  render: () => StatusView;
  log: Logger;
  /** Whether to redraw in place; defaults to whether stderr is a terminal. */
  tty?: boolean;
  /** Period of redraws on a terminal, ms. */
  redrawMs?: number;
  /** Period of log lines elsewhere, ms. */
  logEveryMs?: number;
}

export interface LiveStatus {
  /** Stops updating and erases the redrawn block, so a final report can follow. */
  stop(): void;
}

export function startLiveStatus(options: LiveStatusOptions): LiveStatus {
  const tty = options.tty ?? process.stderr.isTTY === true;
  const out = process.stderr;
  let drawn = 0;

  const erase = () => {
    // Back to the start of the first drawn line, then clear to the end of the screen.
    if (drawn > 0) out.write(`\x1b[${drawn}F\x1b[J`);
    drawn = 0;
  };
  const tick = () => {
    const view = options.render();
    if (!tty) {
      options.log.info(view.fields ?? {}, view.line);
      return;
    }
    // Lines longer than the terminal would wrap and break the count of lines to erase.
    const columns = Math.max(20, out.columns || 120);
    const lines = view.block.replace(/\n+$/, "").split("\n");
    erase();
    out.write(lines.map((l) => (l.length >= columns ? l.slice(0, columns - 1) : l)).join("\n") + "\n");
    drawn = lines.length;
  };

  const timer = setInterval(tick, tty ? (options.redrawMs ?? 500) : (options.logEveryMs ?? 5_000));
  timer.unref();
  if (tty) tick();
  return {
    stop: () => {
      clearInterval(timer);
      if (tty) erase();
    },
  };
}
