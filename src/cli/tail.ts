/**
 * `layercache tail`: reads the predictions topic and keeps a live summary
 * (throughput, where frames exited, MACs saved, accuracy against the labels
 * frames carried, audits, duplicates, end-to-end latency). A terminal gets
 * the summary redrawn in place, anything else a status line every few
 * seconds (both on stderr); the final summary goes to stdout, as a table or
 * with --json as one JSON object.
 */
import type { Command } from "commander";
import { z } from "zod";
import type { Config } from "../config/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { createKafka } from "../transport/kafka/client.ts";
import { startLiveStatus } from "../tools/live-status.ts";
import type { StatusView } from "../tools/live-status.ts";
import type { TailEnd } from "../tools/prediction-tail.ts";
import { PredictionTail } from "../tools/prediction-tail.ts";
import { PredictionSummary } from "../tools/prediction-summary.ts";
import type { SummarySnapshot } from "../tools/prediction-summary.ts";
import { formatSummaryLine, formatSummaryTable } from "../tools/summary-format.ts";
import { catchInterrupts } from "./interrupt.ts";
import { parseOptions, positiveNumber, wholeNumber } from "./options.ts";
import { toolLogger } from "./tool-logger.ts";

const schema = z.object({
  group: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,200}$/, "letters, digits and . _ - only")
    .optional(),
  fromBeginning: z.boolean().default(false),
  expect: wholeNumber(1).optional(),
  timeout: positiveNumber.optional(),
  json: z.boolean().default(false),
});

export type TailOptions = z.output<typeof schema>;

export function parseTailOptions(opts: Record<string, unknown>): TailOptions {
  return parseOptions("layercache tail", schema, opts);
}

export function addTailOptions(cmd: Command): Command {
  return cmd
    .option("--group <id>", "consumer group to read in (default: a throwaway group, deleted at the end)")
    .option("--from-beginning", "start from the beginning of the topic (default: only new predictions)")
    .option("--expect <n>", "stop after this many distinct frame ids")
    .option("--timeout <seconds>", "stop after this long")
    .option("--json", "print the final summary as one JSON object");
}

/** Runs the command; resolves with the process exit code (1 when --expect was not met). */
export async function runTail(config: Config, raw: Record<string, unknown>): Promise<number> {
  const options = parseTailOptions(raw);
  const log = toolLogger(config, "tail");
  const interrupt = catchInterrupts(log);
  const timeoutMs = options.timeout === undefined ? undefined : options.timeout * 1000;
  const deadline = Date.now() + (timeoutMs ?? 0);
  try {
    const waiting = timeoutMs === undefined ? [] : [AbortSignal.timeout(timeoutMs)];
    const tail = await PredictionTail.start(
      createKafka(config, log),
      {
        topic: config.predictionsTopic,
        groupId: options.group,
        fromBeginning: options.fromBeginning,
        expect: options.expect,
        maxMessageBytes: config.maxMessageBytes,
        log,
      },
      AbortSignal.any([interrupt.signal, ...waiting]),
    );
    const { end, snapshot } = tail
      ? await followTail(tail, log, {
          title: `predictions on ${config.predictionsTopic}`,
          expect: options.expect,
          timeoutMs: timeoutMs === undefined ? undefined : Math.max(0, deadline - Date.now()),
          signal: interrupt.signal,
        })
      : {
          end: interrupt.signal.aborted ? ("aborted" as const) : ("timeout" as const),
          snapshot: new PredictionSummary().snapshot(Date.now()),
        };
    if (options.json) {
      process.stdout.write(JSON.stringify({ ...snapshot, expect: options.expect ?? null, end }) + "\n");
    } else {
      process.stdout.write(formatSummaryTable(snapshot, options.expect) + endNote(end, options) + "\n");
    }
    return options.expect !== undefined && end !== "complete" ? 1 : 0;
  } finally {
    interrupt.dispose();
  }
}

export interface FollowOptions {
  title: string;
  expect?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Shows the tail's summary live until it ends, then stops the tail and
 * returns why it ended with the final summary. Shared with the demo.
 */
export async function followTail(
  tail: PredictionTail,
  log: Logger,
  options: FollowOptions,
): Promise<{ end: TailEnd; snapshot: SummarySnapshot }> {
  const t0 = Date.now();
  log.debug({ groupId: tail.groupId }, "reading predictions");
  const live = startLiveStatus({ log, render: () => statusView(tail, options, t0) });
  try {
    const end = await tail.run({ timeoutMs: options.timeoutMs, signal: options.signal });
    return { end, snapshot: tail.summary.snapshot(Date.now()) };
  } finally {
    live.stop();
    await tail.stop();
  }
}

function statusView(tail: PredictionTail, options: FollowOptions, t0: number): StatusView {
  const s = tail.summary.snapshot(Date.now());
  const elapsed = ((Date.now() - t0) / 1000).toFixed(0);
  const recent = `${s.throughput.recentPerSecond.toFixed(1)} predictions/s now`;
  return {
    block: `${options.title}: ${elapsed} s, ${recent}\n${formatSummaryTable(s, options.expect)}`,
    line: formatSummaryLine(s, options.expect),
    fields: {
      distinct: s.distinctFrames,
      predictions: s.predictions,
      duplicates: s.duplicates,
      perSecond: Math.round(s.throughput.recentPerSecond),
    },
  };
}

function endNote(end: TailEnd, options: TailOptions): string {
  if (end === "complete")
    return `\nstopped: all ${options.expect?.toLocaleString("en")} expected frame ids seen`;
  if (end === "timeout") return `\nstopped: timeout after ${options.timeout} s`;
  return "\nstopped: interrupted";
}
