/**
 * npm run bench:kafka -- [--frames N] [--workers N] [--threads N] [--rate N] [--repeats R] [--seed N]
 *                        [--timeout S] [--json]
 *
 * The worker end to end through the real broker, cache off against cache on,
 * in one run: for each arm, fresh topics and group, `layercache worker`
 * replicas as child processes (LAYERCACHE_CACHE=false for cache off), the
 * Fashion-MNIST test stream in a seeded order (the same in every arm), and
 * every prediction read back. By default all frames are in the topic before
 * the workers start, so throughput (first to last prediction) is the
 * workers', not the producer's; `--rate` paces the frames after the workers
 * are ready instead, for latency at a fixed load. Arms alternate across
 * repeats; figures are medians (see report.ts). Uses the configured broker
 * and Redis, starting the project's own when they do not answer, and removes
 * what it created at the end and on Ctrl-C.
 *
 * `--warm N` measures a cache that has already learned: before each cache-on
 * arm, a cached worker learns from the first N frames of the order (not
 * measured), and the measured worker starts from the state it left in Redis,
 * as a replica joining a fleet does (docs/sharing.md). Both arms are then
 * measured on the frames after those N, so no measured frame was learned from.
 * `--passes P` makes the stream P times the test split, every frame a flipped
 * and shifted variant of its image (src/tools/frame-variants.ts), so that a
 * worker can learn from more frames than the split has; the measured frames
 * are then variants of images it learned from, as a long-running camera's are.
 * `--unseen` (with `--warm`) keeps them apart instead: the worker learns from
 * variants of some images, and both arms are measured on variants of the
 * others.
 */
import { Command } from "commander";
import { z } from "zod";
import { parseOptions, positiveNumber, wholeNumber } from "../../src/cli/options.ts";
import type { ArmName, ArmRun } from "./arm.ts";
import { runArm } from "./arm.ts";
import type { BenchSettings, RepeatFigures } from "./report.ts";
import { armFigures, buildReport, formatReport, repeatFigures } from "./report.ts";
import { runKafkaBench } from "../lib/kafka-bench.ts";
import { learnThenUnseen, MAX_PASSES, withVariants } from "../../src/tools/frame-variants.ts";
import { runName } from "../../src/tools/names.ts";
import { deleteKeysUnder } from "../../src/tools/redis-keys.ts";

const schema = z.object({
  frames: wholeNumber(1).default(10_000),
  workers: wholeNumber(1, 8).default(1),
  threads: wholeNumber(1, 64).default(1),
  rate: positiveNumber.optional(),
  repeats: wholeNumber(1, 50).default(1),
  seed: wholeNumber(0, 2 ** 32 - 1).default(1),
  warm: wholeNumber(0).default(0),
  passes: wholeNumber(1, MAX_PASSES).default(1),
  unseen: z.boolean().default(false),
  timeout: positiveNumber.default(600),
  json: z.boolean().default(false),
});

const cli = new Command("bench-kafka")
  .option("--frames <n>", "frames per arm (default 10000, the test split; more repeats its images)")
  .option("--workers <n>", "worker replicas per arm (default 1)")
  .option("--threads <n>", "onnxruntime intra-op threads per worker session (default 1)")
  .option(
    "--rate <n>",
    "frames per second after the workers are ready (default: all produced before they start)",
  )
  .option("--repeats <n>", "pairs of arms, alternating which goes first (default 1)")
  .option("--seed <n>", "seeded order of the test split, the same in both arms (default 1)")
  .option(
    "--warm <n>",
    "cache on starts from what a worker learned on the first n frames; both arms measure the frames after (default 0: cold)",
  )
  .option(
    "--passes <n>",
    "the test split this many times over, every frame a flipped and shifted variant, for a --warm longer than the split (default 1: the split as it is)",
  )
  .option(
    "--unseen",
    "with --warm: learn from variants of some images, measure on variants of the others (at most 9999 frames), so no measured image was learned from in any form",
  )
  .option("--timeout <seconds>", "longest wait for an arm's predictions (default 600)")
  .option("--json", "print one JSON object instead of tables")
  .parse();
const options = parseOptions("npm run bench:kafka", schema, cli.opts());

const say = (line: string) => process.stderr.write(`[bench:kafka] ${line}\n`);
const ARM_LABEL: Record<ArmName, string> = { cacheOff: "cache off", cacheOn: "cache on" };

async function main(): Promise<number> {
  return runKafkaBench({ say, json: options.json }, async (split) => {
    if (options.unseen && (options.warm === 0 || options.passes > 1))
      throw new Error("--unseen needs --warm and makes its own passes: leave --passes out");
    const source = options.unseen
      ? learnThenUnseen(split.source, options.warm, options.frames, options.seed)
      : withVariants(split.source, options.passes, options.seed);
    const ctx = { ...split, source };
    // An unseen stream is sent in its own order: what is learned from, then what is measured.
    const shuffleSeed = options.unseen ? undefined : options.seed;
    const images = ctx.source.size;
    if (options.warm > 0 && options.warm + options.frames > images) {
      throw new Error(
        `--warm ${options.warm} with --frames ${options.frames} would measure frames learned from ` +
          `(the stream has ${images}); use --frames ${Math.max(images - options.warm, 0)} or fewer, or more --passes`,
      );
    }
    const settings: BenchSettings = {
      frames: options.frames,
      workers: options.workers,
      threads: options.threads,
      mode: options.rate === undefined ? "pre-produced" : "paced",
      rate: options.rate ?? null,
      repeats: options.repeats,
      seed: options.seed,
      warm: options.warm,
      passes: options.passes,
      unseen: options.unseen,
    };
    const runs: RepeatFigures[] = [];
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      const order: ArmName[] = repeat % 2 === 0 ? ["cacheOff", "cacheOn"] : ["cacheOn", "cacheOff"];
      const done: Partial<Record<ArmName, ArmRun>> = {};
      for (const arm of order) {
        const plan = {
          arm,
          repeat,
          frames: options.frames,
          workers: options.workers,
          threads: options.threads,
          rate: options.rate,
          shuffleSeed,
          firstFrame: options.warm,
          timeoutMs: options.timeout * 1000,
        };
        const statePrefix = arm === "cacheOn" && options.warm > 0 ? runName("lcbench-warm") : undefined;
        if (statePrefix) {
          ctx.cleanup(`delete the warm cache state ${statePrefix}`, async () => {
            await deleteKeysUnder(ctx.redisUrl, statePrefix);
          });
          // Learning, not measured: all of it produced first, as fast as the worker goes.
          await runArm(ctx, {
            ...plan,
            label: "learn",
            frames: options.warm,
            rate: undefined,
            firstFrame: 0,
            statePrefix,
          });
        }
        const run = await runArm(ctx, { ...plan, statePrefix });
        const f = armFigures(run);
        say(
          `${ARM_LABEL[arm]} #${repeat + 1}: ${f.throughput.toFixed(1)} predictions/s over ${f.spanS.toFixed(1)} s, ` +
            `end-to-end p95 ${f.latencyMs.p95.toFixed(1)} ms, ${f.duplicates} duplicates`,
        );
        done[arm] = run;
      }
      runs.push(repeatFigures(repeat, order[0]!, done.cacheOff!, done.cacheOn!));
    }
    const report = buildReport(settings, runs);
    process.stdout.write(options.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report) + "\n");
    const failed = runs.some((r) => r.cacheOff.workersFailed || r.cacheOn.workersFailed);
    if (failed)
      say("a worker did not stop cleanly (see the lines above); the figures stand, the exit code is 1");
    return failed ? 1 : 0;
  });
}

process.exitCode = await main();
