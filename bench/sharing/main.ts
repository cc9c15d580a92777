/**
 * npm run bench:sharing -- [--frames N] [--repeats R] [--warm-up N] [--joined N] [--window N]
 *                          [--reach P] [--seed N] [--timeout S] [--json]
 *
 * Sharing the cache through Redis, end to end through the real broker:
 *
 * 1. Throughput, one replica against two on this machine: for each arm fresh
 *    topics, group and Redis key prefix (a cold shared cache), `layercache
 *    worker` replicas as child processes with the cache on and sharing on, the
 *    frames in the topic before they start, every prediction read back
 *    (bench/kafka/arm.ts does all of that). Arms alternate across repeats.
 * 2. A new replica (join.ts): frames until it exits early as often as the
 *    fleet, joining a warm fleet against starting cold.
 *
 * Uses the configured broker and Redis, starting the project's own when they
 * do not answer, and removes what it created at the end and on Ctrl-C.
 */
import { Command } from "commander";
import { z } from "zod";
import { parseOptions, positiveNumber, wholeNumber } from "../../src/cli/options.ts";
import { loadConfig } from "../../src/config/index.ts";
import type { ArmRun, BenchContext } from "../kafka/arm.ts";
import { runArm } from "../kafka/arm.ts";
import { armFigures } from "../kafka/report.ts";
import { runKafkaBench } from "../lib/kafka-bench.ts";
import { runJoin } from "./join.ts";
import type { SharingSettings, ThroughputRepeat } from "./report.ts";
import { buildReport, earlyPct, formatReport } from "./report.ts";

const schema = z.object({
  frames: wholeNumber(1).default(10_000),
  repeats: wholeNumber(1, 20).default(1),
  warmUp: wholeNumber(1).default(4_000),
  joined: wholeNumber(1).default(3_000),
  window: wholeNumber(10).default(100),
  reach: positiveNumber.pipe(z.number().max(1)).default(0.9),
  seed: wholeNumber(0, 2 ** 32 - 1).default(1),
  timeout: positiveNumber.default(600),
  json: z.boolean().default(false),
});

const cli = new Command("bench-sharing")
  .option("--frames <n>", "frames per throughput arm (default 10000, the test split)")
  .option("--repeats <n>", "pairs of throughput arms, alternating which goes first (default 1)")
  .option("--warm-up <n>", "frames the fleet answers before a replica joins (default 4000)")
  .option("--joined <n>", "frames after the joiner is up (default 3000)")
  .option("--window <n>", "consecutive answers that must reach the fleet's early-exit share (default 100)")
  .option("--reach <share>", "share of the fleet's early-exit rate that counts as reached (default 0.9)")
  .option("--seed <n>", "seeded order of the test split (default 1)")
  .option("--timeout <seconds>", "longest wait for a run's predictions (default 600)")
  .option("--json", "print one JSON object instead of tables")
  .parse();
const options = parseOptions("npm run bench:sharing", schema, cli.opts());

const say = (line: string) => process.stderr.write(`[bench:sharing] ${line}\n`);

async function throughputArm(ctx: BenchContext, workers: number, repeat: number): Promise<ArmRun> {
  return runArm(ctx, {
    arm: "cacheOn",
    repeat,
    frames: options.frames,
    workers,
    threads: 1,
    shuffleSeed: options.seed,
    timeoutMs: options.timeout * 1000,
  });
}

async function main(): Promise<number> {
  if (!loadConfig(process.env).sharing) say("LAYERCACHE_SHARING=false is ignored here: every replica shares");
  return runKafkaBench({ say, json: options.json, config: (c) => ({ ...c, sharing: true }) }, async (ctx) => {
    const runs: ThroughputRepeat[] = [];
    let failed = false;
    for (let repeat = 0; repeat < options.repeats; repeat++) {
      const order = repeat % 2 === 0 ? [1, 2] : [2, 1];
      const done = new Map<number, ArmRun>();
      for (const workers of order) {
        const run = await throughputArm(ctx, workers, repeat);
        const f = armFigures(run);
        say(
          `${workers} replica(s) #${repeat + 1}: ${f.throughput.toFixed(1)} frames/s over ${f.spanS.toFixed(1)} s, ` +
            `${earlyPct(f).toFixed(1)}% early, ${f.duplicates} duplicates`,
        );
        failed ||= run.workersFailed;
        done.set(workers, run);
      }
      const one = armFigures(done.get(1)!);
      const two = armFigures(done.get(2)!);
      runs.push({ repeat, first: order[0]!, one, two, ratio: two.throughput / one.throughput });
    }
    const join = await runJoin(ctx, {
      warmUp: options.warmUp,
      joined: options.joined,
      window: options.window,
      reachShare: options.reach,
      seed: options.seed,
      timeoutMs: options.timeout * 1000,
    });
    failed ||= join.workersFailed;
    const settings: SharingSettings = {
      frames: options.frames,
      repeats: options.repeats,
      warmUp: options.warmUp,
      joined: options.joined,
      window: options.window,
      reachShare: options.reach,
      seed: options.seed,
    };
    const report = buildReport(settings, runs, join);
    process.stdout.write(options.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report) + "\n");
    if (failed)
      say("a replica did not stop cleanly (see the lines above); the figures stand, the exit code is 1");
    return failed ? 1 : 0;
  });
}

process.exitCode = await main();
