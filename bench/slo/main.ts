/**
 * npm run bench:slo -- [--objective MS] [--floor P] [--overload X] [--capacity N] [--capacity-probes N] [--warmup N]
 *                      [--overload-s S] [--recovery-s S] [--bucket-s S] [--seed N] [--json] [--plot FILE]
 *
 * SLO mode against fixed thresholds through the real broker (docs/slo.md).
 * The cache-off worker's capacity is measured first (the median of a few
 * runs, or given); then each arm, one cached `layercache worker`, gets the
 * same load profile: a warm-up at
 * 60% of that capacity (the heads learn and exits open), an overload at
 * `--overload` times it, and a recovery at 50%. The "fixed" arm keeps the
 * thresholds proven for the target agreement; the "slo" arm has an objective
 * on p95 produce-to-prediction latency and an agreement floor. Over time, per
 * bucket of produce time: p95 latency, backlog and agreement with the
 * backbone (computed in-process over the same images).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import { z } from "zod";
import { parseOptions, positiveNumber, wholeNumber } from "../../src/cli/options.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { frameOrder } from "../../src/tools/frame-producer.ts";
import type { RatePhase } from "../../src/tools/frame-producer.ts";
import type { FrameSource } from "../../src/tools/frame-source.ts";
import { ROOT } from "../../src/tools/local-services.ts";
import { runArm } from "../kafka/arm.ts";
import { armFigures } from "../kafka/report.ts";
import { runKafkaBench } from "../lib/kafka-bench.ts";
import { median } from "../lib/stats.ts";
import { lineChart, stackCharts } from "../lib/svg.ts";
import type { Bucket, SloArm } from "./report.ts";
import { formatReport, sloArm } from "./report.ts";

const schema = z.object({
  objective: positiveNumber.default(1000),
  floor: z.coerce.number().min(0.5).max(0.9999).default(0.97),
  overload: positiveNumber.default(2),
  capacity: positiveNumber.optional(),
  capacityProbes: wholeNumber(1, 9).default(3),
  warmup: wholeNumber(0).default(4000),
  overloadS: positiveNumber.default(40),
  recoveryS: positiveNumber.default(20),
  bucketS: positiveNumber.default(2),
  seed: wholeNumber(0, 2 ** 32 - 1).default(1),
  timeout: positiveNumber.default(900),
  json: z.boolean().default(false),
  plot: z.string().optional(),
});

const cli = new Command("bench-slo")
  .option("--objective <ms>", "SLO: p95 produce-to-prediction objective, ms (default 1000)")
  .option("--floor <p>", "SLO: agreement floor (default 0.97)")
  .option("--overload <x>", "overload rate as a multiple of the cache-off capacity (default 2)")
  .option("--capacity <n>", "cache-off capacity in frames/s (default: measured first)")
  .option("--capacity-probes <n>", "cache-off runs of 5,000 frames whose median is the capacity (default 3)")
  .option("--warmup <n>", "frames of the warm-up phase, at 60% of capacity (default 4000)")
  .option("--overload-s <s>", "seconds of overload (default 40)")
  .option("--recovery-s <s>", "seconds of recovery at 50% of capacity (default 20)")
  .option("--bucket-s <s>", "time bucket of the series, seconds (default 2)")
  .option("--seed <n>", "seeded order of the test split (default 1)")
  .option("--timeout <seconds>", "longest wait for an arm's predictions (default 900)")
  .option("--json", "print one JSON object instead of tables")
  .option("--plot <file>", "draw p95 latency, backlog and agreement over time for both arms (SVG)")
  .parse();
const options = parseOptions("npm run bench:slo", schema, cli.opts());

const say = (line: string) => process.stderr.write(`[bench:slo] ${line}\n`);

/** The backbone's label for frame n of the stream (the same shuffled order as the producer's). */
async function backboneLabels(source: FrameSource, frames: number, seed: number): Promise<Int16Array> {
  const model = await SegmentedBackbone.load(join(ROOT, "models", "fashion-resnet18"), {
    intraOpThreads: 2,
  });
  try {
    const pre = new Preprocessor(model.manifest.input);
    const order = frameOrder(source.size, seed);
    const byImage = new Int16Array(source.size);
    const classes = model.manifest.classes.length;
    const batch = 250;
    for (let first = 0; first < source.size; first += batch) {
      const n = Math.min(batch, source.size - first);
      const pixels = new Uint8Array(n * pre.frameSize);
      for (let i = 0; i < n; i++) pixels.set(source.image(first + i).pixels, i * pre.frameSize);
      const logits = await model.runFull(pre.normalise(pixels, n), n);
      for (let i = 0; i < n; i++) {
        let best = 0;
        for (let c = 1; c < classes; c++)
          if (logits[i * classes + c]! > logits[i * classes + best]!) best = c;
        byImage[first + i] = best;
      }
    }
    return Int16Array.from({ length: frames }, (_, n) => byImage[order[n % source.size]!]!);
  } finally {
    await model.close();
  }
}

async function main(): Promise<number> {
  return runKafkaBench({ say, json: options.json }, async (ctx) => {
    const base = {
      repeat: 0,
      workers: 1,
      threads: 1,
      shuffleSeed: options.seed,
      timeoutMs: options.timeout * 1000,
    };

    let capacity = options.capacity;
    if (capacity === undefined) {
      // One short run moves with whatever else the 2 cores do: take the median of a few.
      const probes: number[] = [];
      for (let repeat = 0; repeat < options.capacityProbes; repeat++) {
        const probe = await runArm(ctx, {
          ...base,
          repeat,
          arm: "cacheOff",
          frames: 5000,
          label: "capacity",
        });
        probes.push(armFigures(probe).throughput);
      }
      capacity = median(probes);
      say(
        `cache-off capacity: ${capacity.toFixed(1)} frames/s (median of ${probes.map((p) => p.toFixed(1)).join(", ")})`,
      );
    }
    const phases: RatePhase[] = [
      { frames: options.warmup, rate: 0.6 * capacity },
      {
        frames: Math.round(options.overloadS * options.overload * capacity),
        rate: options.overload * capacity,
      },
      { frames: Math.round(options.recoveryS * 0.5 * capacity), rate: 0.5 * capacity },
    ].filter((p) => p.frames > 0);
    const frames = phases.reduce((a, p) => a + p.frames, 0);
    say(`backbone labels for ${frames} frames, in-process`);
    const reference = await backboneLabels(ctx.source, frames, options.seed);

    const arms: SloArm[] = [];
    for (const mode of ["fixed", "slo"] as const) {
      const run = await runArm(ctx, {
        ...base,
        arm: "cacheOn",
        label: mode,
        frames,
        rate: phases,
        overrides: {
          // Each arm learns from a cold start: no heads shared between them.
          sharing: "false",
          floorAgreement: String(options.floor),
          ...(mode === "slo" ? { sloP95Ms: String(Math.round(options.objective)) } : {}),
        },
      });
      const arm = sloArm(mode, run.frames, reference, phases, options.objective, options.bucketS * 1000);
      arms.push(arm);
      say(
        `${mode}: overload p95 ${arm.phases[1]?.p95Ms.toFixed(0) ?? "-"} ms, ` +
          `settled p95 ${arm.settledP95Ms.toFixed(0)} ms, agreement ${arm.agreement.toFixed(4)}`,
      );
    }
    const report = {
      settings: { ...options, capacity, frames, phases },
      arms,
    };
    if (options.plot) {
      const perArm = (what: string, y: (b: Bucket) => number) =>
        arms.map((a) => ({
          name: `${a.mode} ${what}`,
          points: a.series.map((b) => ({ x: b.startS, y: y(b) })),
        }));
      // A horizontal line across the whole run: the objective, the floor.
      const times = arms.flatMap((a) => a.series.map((b) => b.startS));
      const level = (name: string, y: number) => ({
        name,
        points: [Math.min(...times), Math.max(...times)].map((x) => ({ x, y })),
      });
      const time = "time since the first frame was produced, s";
      const svg = stackCharts([
        lineChart([...perArm("p95 ms", (b) => b.p95Ms), level("objective", options.objective)], {
          title: `p95 produce-to-prediction latency (objective ${options.objective} ms)`,
          xLabel: time,
          yLabel: "p95 latency, ms",
          height: 320,
        }),
        lineChart(
          perArm("backlog", (b) => b.backlog),
          {
            title: "backlog: frames produced and not yet answered (consumer lag)",
            xLabel: time,
            yLabel: "frames",
            height: 320,
          },
        ),
        lineChart(
          [...perArm("agreement", (b) => b.agreement), level(`floor ${options.floor}`, options.floor)],
          {
            title: "agreement with the backbone's label",
            xLabel: time,
            yLabel: "agreement",
            height: 320,
          },
        ),
      ]);
      writeFileSync(options.plot, svg);
      say(`plot written to ${options.plot}`);
    }
    process.stdout.write(options.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report) + "\n");
    return 0;
  });
}

process.exitCode = await main();
