/**
 * `layercache produce`: publishes frames to the frames topic, from the
 * bundled Fashion-MNIST test split (with labels) or a folder of PNG/JPEG
 * files, optionally shuffled and paced. Progress goes to stderr (a bar on a
 * terminal, log lines elsewhere); the last line, on stdout, says how many
 * frames went and at what rate.
 */
import type { Command } from "commander";
import { z } from "zod";
import type { Config } from "../config/index.ts";
import { createKafka } from "../transport/kafka/client.ts";
import { FASHION_MNIST, openFrameSource } from "../tools/frame-source.ts";
import { produceFrames } from "../tools/frame-producer.ts";
import type { ProduceResult } from "../tools/frame-producer.ts";
import { runName } from "../tools/names.ts";
import { startProgress } from "../tools/progress.ts";
import { catchInterrupts } from "./interrupt.ts";
import { parseOptions, positiveNumber, wholeNumber } from "./options.ts";
import { toolLogger } from "./tool-logger.ts";

const schema = z
  .object({
    source: z.string().min(1, "expected fashion-mnist or a folder").default(FASHION_MNIST),
    count: wholeNumber(1).optional(),
    rate: positiveNumber.optional(),
    shuffle: z.boolean().default(false),
    seed: wholeNumber(0, 2 ** 32 - 1).optional(),
    idPrefix: z
      .string()
      .regex(/^[A-Za-z0-9._:/-]{1,128}$/, "letters, digits and . _ : / - only, at most 128")
      .optional(),
  })
  .refine((o) => o.seed === undefined || o.shuffle, {
    path: ["seed"],
    message: "only used with --shuffle",
  });

export type ProduceOptions = z.output<typeof schema>;

export function parseProduceOptions(opts: Record<string, unknown>): ProduceOptions {
  return parseOptions("layercache produce", schema, opts);
}

export function addProduceOptions(cmd: Command): Command {
  return cmd
    .option("--source <source>", `"${FASHION_MNIST}" (the bundled test split) or a folder of PNG/JPEG files`)
    .option("--count <n>", "frames to send (default: every image of the source once; more cycles it)")
    .option("--rate <n>", "frames per second (default: as fast as the broker takes them)")
    .option("--shuffle", "send the source's images in a seeded random order")
    .option("--seed <n>", "seed of --shuffle (default 1)")
    .option("--id-prefix <text>", "frame ids are <prefix>-<n> (default: unique per run)");
}

/** Runs the command; resolves with the process exit code. */
export async function runProduce(config: Config, raw: Record<string, unknown>): Promise<number> {
  const options = parseProduceOptions(raw);
  const log = toolLogger(config, "produce");
  const source = await openFrameSource(options.source);
  const count = options.count ?? source.size;
  const interrupt = catchInterrupts(log);
  log.info(
    { topic: config.framesTopic, count, rate: options.rate ?? null, shuffle: options.shuffle },
    `producing ${count} frames from ${source.description} to ${config.framesTopic}`,
  );
  const progress = startProgress({ label: "produce", total: count, unit: "frames", log });
  let result: ProduceResult;
  try {
    result = await produceFrames(createKafka(config, log), source, {
      topic: config.framesTopic,
      count,
      rate: options.rate,
      shuffleSeed: options.shuffle ? (options.seed ?? 1) : undefined,
      idPrefix: options.idPrefix ?? runName("frame"),
      signal: interrupt.signal,
      onProgress: (sent) => progress.update(sent),
      log,
    });
  } finally {
    progress.stop();
    interrupt.dispose();
  }
  process.stdout.write(`${produceSummaryLine(result, config.framesTopic)}\n`);
  return result.aborted ? 130 : 0;
}

export function produceSummaryLine(r: ProduceResult, topic: string): string {
  const stopped = r.aborted ? " (interrupted)" : "";
  return (
    `sent ${r.sent.toLocaleString("en")} frames to ${topic} in ${(r.elapsedMs / 1000).toFixed(2)} s ` +
    `(${r.ratePerSecond.toFixed(0)} frames/s)${stopped}`
  );
}
