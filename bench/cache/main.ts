/**
 * npm run bench -- [--frames N] [--passes P] [--batch B] [--head softmax|mlp|knn|mlp+knn]
 *                  [--set option=value ...] [--json] [--plot FILE] [--compare-heads]
 *
 * Replays the Fashion-MNIST test split as a stream (seeded shuffle, cold
 * start, labels never shown to the engine) through the backbone alone and
 * through the online cache, side by side batch by batch (arms.ts, runArms),
 * and prints what the cache saved and what it cost in agreement and accuracy,
 * and how the savings grow over the stream (MACs saved per 1,000-frame
 * window), and checks the targets set for the whole split from a cold start
 * (targets.ts). `--passes P` makes the stream P times longer, each pass a new
 * order of flipped and shifted variants of the split's images, for how a
 * long-running cache does. With --compare-heads a cache arm per head kind (mlp, knn, mlp+knn)
 * runs side by side with the backbone arm, and one table compares them
 * (compare.ts).
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import type { EngineProfile, StepTotals } from "../../src/cache/engine-profile.ts";
import type { HeadKind } from "../../src/cache/head-types.ts";
import { HEAD_KINDS } from "../../src/cache/head-types.ts";
import type { CacheOptions, CacheOptionsInput } from "../../src/cache/options.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { FASHION_MNIST, openFrameSource } from "../../src/tools/frame-source.ts";
import { withVariants } from "../../src/tools/frame-variants.ts";
import type { Progress } from "../lib/progress.ts";
import { progress } from "../lib/progress.ts";
import { shuffled, summarize, table } from "../lib/stats.ts";
import { lineChart } from "../lib/svg.ts";
import type { ArmResult, Stream } from "./arms.ts";
import { backboneArm, cacheArm, runArms, runCacheArm } from "./arms.ts";
import { compareHeads, comparisonTable, COMPARED_KINDS } from "./compare.ts";
import type { Disagreement, Figures, ThresholdsOracle } from "./report.ts";
import {
  armFigures,
  evidenceCurve,
  finalHeadAnswers,
  finalHeadFamiliarity,
  latencySavedByWindow,
  macsSavedByWindow,
  exitMacs,
  finalHeadsFromTheStart,
  firstAgreeingOracle,
  slice,
  thresholdsOracle,
} from "./report.ts";
import { checkTargets, notJudged, TARGET_RUN } from "./targets.ts";

const ROOT = join(import.meta.dirname, "..", "..");
/** Frames per window of the savings-over-time line. */
const MACS_WINDOW = 1000;
/**
 * Sizes and draws of each for the evidence curve (report.ts `evidenceCurve`),
 * drawn from the held-out frames (about 1,450 in the 10,000-frame stream).
 */
const EVIDENCE_SIZES = [250, 500, 750, 1000, 1250];
const EVIDENCE_DRAWS = 200;
/** The confidence above which the bench compares exit 0's final head on frames it learned from and new ones. */
const FAMILIARITY_CONFIDENCE = 0.9;

const cli = new Command("bench-cache")
  .option("--frames <n>", "frames to stream (default and most: 10000 a pass)")
  .option(
    "--passes <n>",
    "stream the test split this many times, each pass in a new order, every frame a flipped and shifted variant of its image (src/tools/frame-variants.ts; default 1: the split as it is)",
    "1",
  )
  .option("--batch <n>", "frames per engine call (1 = per-frame latency)", "1")
  .option("--head <kind>", `exit head: ${HEAD_KINDS.join(", ")}`, cacheOptions().headKind)
  .option("--target <p>", "target agreement", "0.99")
  .option("--threads <n>", "onnxruntime intra-op threads", "1")
  .option("--seed <n>", "stream order and engine seed", "1")
  .option(
    "--set <option=value...>",
    "override any cache option (src/cache/options.ts), e.g. --set auditRate=0.05",
  )
  .option("--json", "print one JSON object instead of tables")
  .option("--plot <file>", "also sweep the target 0.95..0.999 and draw agreement against MACs saved (SVG)")
  .option(
    "--compare-heads",
    `run the cache arm once per head kind (${COMPARED_KINDS.join(", ")}) on the same stream and compare them`,
  )
  .parse();
const opt = cli.opts<{
  frames?: string;
  passes: string;
  batch: string;
  head: string;
  target: string;
  threads: string;
  seed: string;
  set?: string[];
  json?: boolean;
  plot?: string;
  compareHeads?: boolean;
}>();

const log = (s: string) => (opt.json ? undefined : process.stdout.write(s + "\n"));
const pct = (x: number) => `${x.toFixed(2)}%`;

async function main(): Promise<void> {
  const split = await openFrameSource(FASHION_MNIST);
  const model = await SegmentedBackbone.load(join(ROOT, "models", "fashion-resnet18"), {
    intraOpThreads: Number(opt.threads),
  });
  const pre = new Preprocessor(model.manifest.input);
  const passes = Number(opt.passes);
  const seed = Number(opt.seed);
  const source = withVariants(split, passes, seed);
  const count = Math.min(Number(opt.frames ?? Infinity), source.size);
  const batch = Number(opt.batch);
  const rng = new SeededRandom(seed);
  // Pass by pass, each in its own seeded order of the split's images.
  const order = Array.from({ length: passes }, (_, pass) =>
    shuffled(split.size, () => rng.uniform()).map((image) => pass * split.size + image),
  )
    .flat()
    .slice(0, count);
  const pixels = new Uint8Array(count * pre.frameSize);
  const labels = new Uint8Array(count);
  order.forEach((index, i) => {
    const image = source.image(index);
    pixels.set(image.pixels, i * pre.frameSize);
    labels[i] = image.label!;
  });
  const stream: Stream = {
    inputs: pre.normalise(pixels, count),
    labels,
    frameSize: pre.frameSize,
    count,
  };
  if (!HEAD_KINDS.includes(opt.head as HeadKind)) throw new Error(`--head ${opt.head}: not a head kind`);
  const options: CacheOptions = cacheOptions({
    headKind: opt.head as HeadKind,
    targetAgreement: Number(opt.target),
    seed,
    ...overrides(opt.set ?? []),
  });

  const heads = opt.compareHeads ? COMPARED_KINDS.join(", ") : opt.head;
  log(
    `model ${model.manifest.modelId}, ${count} frames${passes > 1 ? ` (${passes} passes)` : ""}, batch ${batch}, ${opt.threads} thread(s), head ${heads}`,
  );
  const bar = (name: string) => progress(name, count, !opt.json && process.stderr.isTTY === true);
  if (opt.compareHeads) {
    await compare(model, stream, batch, options, bar(`backbone, ${heads}`));
    return;
  }
  // Side by side, batch by batch: both arms see the same stretch of the machine's speed.
  const [base, cached] = (await runArms(
    [backboneArm(model, stream), await cacheArm(model, stream, options)],
    stream,
    batch,
    bar("backbone and cache"),
  )) as [ArmResult, ArmResult];
  const baseLabels = base.frames.map((f) => f.label);
  const firstExit = cached.frames.findIndex((f) => f.exit >= 0);
  const whole = armFigures(base, cached, stream, model.manifest.full.macs, model.exitCount);
  const warm =
    firstExit >= 0
      ? armFigures(
          slice(base, firstExit),
          slice(cached, firstExit),
          { ...stream, labels: stream.labels.subarray(firstExit) },
          model.manifest.full.macs,
          model.exitCount,
        )
      : undefined;
  const profile = profileRows(cached.cache!.engine.profile);
  const answers = await finalHeadAnswers(model, cached.cache!, stream);
  const macs = exitMacs(model, cached.cache!);
  // The frames no head learned from: what the final heads would do on new frames.
  const heldOut = cached.frames.flatMap((f, i) => (f.heldOut ? [i] : []));
  const oracle = firstAgreeingOracle(macs, answers, baseLabels);
  // Absent when nothing was held out (calibrationRate and warmupCalibrationRate set to 0).
  const anyHeldOut = heldOut.length > 0;
  const oracleHeldOut = anyHeldOut ? firstAgreeingOracle(macs, answers, baseLabels, heldOut) : undefined;
  const thresholds = {
    heldOut: anyHeldOut ? thresholdsOracle(macs, answers, baseLabels, options, heldOut) : undefined,
    wholeStream: thresholdsOracle(macs, answers, baseLabels, options),
  };
  const fromTheStart = anyHeldOut
    ? finalHeadsFromTheStart(macs, answers, baseLabels, options, heldOut)
    : undefined;
  const familiarity = finalHeadFamiliarity(cached, answers, baseLabels, FAMILIARITY_CONFIDENCE, heldOut);
  const evidence = evidenceCurve(answers, baseLabels, options, EVIDENCE_SIZES, EVIDENCE_DRAWS, seed, heldOut);
  const windows = macsSavedByWindow(cached, model.manifest.full.macs, MACS_WINDOW);
  const latencyWindows = latencySavedByWindow(base, cached, MACS_WINDOW);
  const trainer = cached.cache!.trainer.stats;
  const decisions = cached.cache!.engine.current.decisions;

  let sweep: { target: number; agreement: number; macsSavedPct: number }[] | undefined;
  if (opt.plot) {
    sweep = [];
    for (const target of [0.95, 0.97, 0.98, 0.99, 0.995, 0.999]) {
      const arm = await runCacheArm(
        model,
        stream,
        batch,
        { ...options, targetAgreement: target },
        progress(`target ${target}`, count, !opt.json && process.stderr.isTTY === true),
      );
      const f = armFigures(base, arm, stream, model.manifest.full.macs, model.exitCount);
      await arm.cache?.close();
      sweep.push({ target, agreement: f.agreement, macsSavedPct: f.macsSavedPct });
    }
    writeFileSync(
      opt.plot,
      lineChart(
        [
          {
            name: `${opt.head} heads`,
            points: sweep.map((s) => ({ x: s.macsSavedPct, y: s.agreement, label: String(s.target) })),
          },
        ],
        {
          title: "Agreement with the backbone against MACs saved, as the target sweeps",
          xLabel: "MACs saved (%)",
          yLabel: "agreement",
        },
      ),
    );
  }
  await cached.cache!.close();
  await model.close();

  const targets = checkTargets(
    {
      agreement: whole.agreement,
      accuracyDropPts: 100 * (whole.accuracy.backbone - whole.accuracy.cached),
      macsSavedPct: whole.macsSavedPct,
      latencySavedPct: whole.latencySavedPct,
      firstExitFrame: firstExit,
    },
    options.targetAgreement,
  );
  const unjudged = notJudged({
    frames: count,
    passes,
    targetAgreement: options.targetAgreement,
    confidenceLevel: options.confidenceLevel,
  });
  const judged = unjudged === undefined;
  const result = {
    modelId: model.manifest.modelId,
    frames: count,
    passes,
    batch,
    head: opt.head,
    target: Number(opt.target),
    agreement: whole.agreement,
    accuracy: whole.accuracy,
    macsSavedPct: whole.macsSavedPct,
    latencySavedPct: whole.latencySavedPct,
    latencyMs: whole.latencyMs,
    throughput: whole.throughput,
    exitShare: whole.exitShare,
    firstExitFrame: firstExit,
    oracleMacsSavedPct: oracle,
    heldOutFrames: heldOut.length,
    oracleMacsSavedPctHeldOut: oracleHeldOut,
    thresholdOracle: thresholds,
    finalHeadsFromTheStart: fromTheStart,
    evidenceCurve: evidence,
    finalHeadFamiliarity: familiarity,
    macsWindow: MACS_WINDOW,
    macsSavedByWindowPct: windows,
    latencySavedByWindowPct: latencyWindows,
    afterWarmup: warm,
    trainer: { ...trainer, maintenanceMs: cached.maintenanceMs },
    profile,
    exits: decisions.map((d) => ({ exit: d.exit, open: d.open, threshold: d.threshold, reason: d.reason })),
    sweep,
    targets: { judged, ...(unjudged ? { notJudged: unjudged } : {}), checks: targets },
  };
  if (opt.json) {
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return;
  }
  const row = (name: string, f: (x: Figures) => string) => [name, f(whole), warm ? f(warm) : "-"];
  log("");
  log(
    table(
      ["", `whole stream (${count})`, `after warm-up (${count - Math.max(firstExit, 0)})`],
      [
        row("agreement with backbone", (x) => x.agreement.toFixed(4)),
        row("accuracy: backbone", (x) => pct(100 * x.accuracy.backbone)),
        row("accuracy: cached", (x) => pct(100 * x.accuracy.cached)),
        row("MACs saved", (x) => pct(x.macsSavedPct)),
        row("latency mean ms: backbone", (x) => x.latencyMs.backbone.mean.toFixed(3)),
        row("latency mean ms: cached", (x) => x.latencyMs.cached.mean.toFixed(3)),
        row(
          "latency p50 ms: backbone / cached",
          (x) => `${x.latencyMs.backbone.p50.toFixed(2)} / ${x.latencyMs.cached.p50.toFixed(2)}`,
        ),
        row(
          "latency p95 ms: backbone / cached",
          (x) => `${x.latencyMs.backbone.p95.toFixed(2)} / ${x.latencyMs.cached.p95.toFixed(2)}`,
        ),
        row(
          "latency p99 ms: backbone / cached",
          (x) => `${x.latencyMs.backbone.p99.toFixed(2)} / ${x.latencyMs.cached.p99.toFixed(2)}`,
        ),
        row("mean latency saved", (x) => pct(x.latencySavedPct)),
        row(
          "throughput fps: backbone / cached",
          (x) => `${x.throughput.backbone.toFixed(0)} / ${x.throughput.cached.toFixed(0)}`,
        ),
        row("throughput ratio", (x) => x.throughput.ratio.toFixed(2)),
      ],
    ),
  );
  log("");
  log(
    judged
      ? `targets (the ${TARGET_RUN.frames.toLocaleString("en")}-frame stream from a cold start):`
      : `targets, not judged (${unjudged}):`,
  );
  log(
    table(
      ["target", "measured", "met", "aim"],
      targets.map((t) => [t.target, t.value, judged ? (t.met ? "yes" : "no") : "-", t.aim ?? ""]),
    ),
  );
  log("");
  log(
    `first exit open at frame ${firstExit}; oracle MACs saved ${pct(oracle)} over the stream${oracleHeldOut === undefined ? "" : `, ${pct(oracleHeldOut)} over the ${heldOut.length} held-out frames (no head learned from them)`}`,
  );
  const oracleLine = (o: ThresholdsOracle) =>
    `MACs saved ${pct(o.macsSavedPct)}; ${o.exits
      .filter((x) => x.threshold !== null)
      .map((x) => `exit ${x.exit} at ${x.threshold!.toFixed(3)} answers ${pct(100 * x.share)}`)
      .join(", ")}`;
  if (thresholds.heldOut) {
    log(
      `final heads, thresholds set on the held-out frames themselves (agreement ${options.targetAgreement}, no bound): ${oracleLine(thresholds.heldOut)}`,
    );
  }
  log(
    `final heads, thresholds set on the whole stream, frames the heads learned from included (flattering): ${oracleLine(thresholds.wholeStream)}`,
  );
  if (fromTheStart) {
    log(
      `final heads from the first frame, proven as the run proved them on its held-out frames as they came (flattering the answers, not the proof): MACs saved ${pct(fromTheStart.macsSavedPct)} (${pct(fromTheStart.freeEvidenceMacsSavedPct)} if the held-out frames cost nothing), first exit at frame ${fromTheStart.firstExitFrame}; ${fromTheStart.exitShare
        .flatMap((share, e) => (share > 0 ? [`exit ${e} answers ${pct(100 * share)}`] : []))
        .join(", ")}`,
    );
  }
  log(
    `MACs saved by ${MACS_WINDOW.toLocaleString("en")}-frame window: ${windows.map((w) => w.toFixed(1)).join(", ")} (%)`,
  );
  if (evidence.length > 0) {
    log(
      `exit 0 calibrated by its final head on n held-out frames (${EVIDENCE_DRAWS} draws each), share of the other held-out frames answered: ${evidence
        .map(
          (p) =>
            `${p.frames}: ${pct(100 * p.coverage)}${p.closed > 0 ? ` (closed in ${pct(100 * p.closed)})` : ""}`,
        )
        .join(", ")}`,
    );
  }
  if (familiarity) {
    const side = (d: Disagreement) => `${pct(100 * d.disagreement)} of ${d.above} (of ${d.frames})`;
    log(
      `exit 0's final head at confidence >= ${familiarity.confidence} disagrees with the backbone on ${side(familiarity.learnedFrom)} frames it learned from, ${side(familiarity.heldOut)} held-out frames`,
    );
  }
  log(`mean latency saved by window: ${latencyWindows.map((w) => w.toFixed(1)).join(", ")} (%)`);
  log(
    `learning off the frame path: ${trainer.steps} steps, ${trainer.publishes} versions, ${(cached.maintenanceMs / 1000).toFixed(1)} s (in the cached throughput)`,
  );
  log("");
  log(
    table(
      ["exit", "share of frames", "open", "threshold", "why"],
      decisions.map((d) => [
        String(d.exit),
        pct(100 * whole.exitShare[`exit${d.exit}`]!),
        d.open ? "yes" : "no",
        d.threshold?.toFixed(4) ?? "-",
        d.reason,
      ]),
    ),
  );
  log(`backbone answered ${pct(100 * whole.exitShare.backbone!)} of frames`);
  log("");
  log(
    `where the cached arm's compute went (${count} frames; backbone alone ${(whole.latencyMs.backbone.mean / batch).toFixed(3)} ms a frame):`,
  );
  log(
    table(
      ["step", "calls", "frames a call", "µs a call", "ms a frame of the stream"],
      profile.map((p) => [
        p.step,
        String(p.calls),
        (p.frames / Math.max(p.calls, 1)).toFixed(1),
        ((1000 * p.ms) / Math.max(p.calls, 1)).toFixed(0),
        (p.ms / count).toFixed(3),
      ]),
    ),
  );
  if (opt.plot) log(`\nplot written to ${opt.plot}`);
}

/** The engine's profile as rows: spans in segment order, then heads in exit order, then compaction. */
function profileRows(profile: EngineProfile): ({ step: string } & StepTotals)[] {
  const first = (key: string) => Number(key.split("-")[0]);
  return [
    ...[...profile.spans]
      .sort(([a], [b]) => first(a) - first(b))
      .map(([key, t]) => ({ step: `span ${key}`, ...t })),
    ...[...profile.heads].sort(([a], [b]) => a - b).map(([exit, t]) => ({ step: `head ${exit}`, ...t })),
    { step: "compaction", ...profile.compaction },
  ];
}

/** `--set name=value` pairs as cache options (values parsed as JSON where they can be). */
function overrides(pairs: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf("=");
      if (at <= 0) throw new Error(`--set ${pair}: expected option=value`);
      const raw = pair.slice(at + 1);
      let value: unknown = raw;
      try {
        value = JSON.parse(raw);
      } catch {
        // Not JSON: keep the string (enum options such as boundMethod=wilson).
      }
      return [pair.slice(0, at), value];
    }),
  );
}

/** --compare-heads: every compared kind's cache arm against the one backbone arm, in one table. */
async function compare(
  model: SegmentedBackbone,
  stream: Stream,
  batch: number,
  options: CacheOptionsInput,
  bar: Progress,
): Promise<void> {
  const { base, rows } = await compareHeads(model, stream, batch, options, bar);
  const correct = base.frames.filter((f, i) => f.label === stream.labels[i]).length;
  const backbone = {
    accuracy: correct / stream.count,
    latencyMs: summarize(base.frames.map((f) => f.latencyMs)),
  };
  const exits = model.exitCount;
  await model.close();
  if (opt.json) {
    const result = {
      modelId: model.manifest.modelId,
      frames: stream.count,
      batch,
      target: Number(opt.target),
      backbone,
      compare: rows,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return;
  }
  log("");
  log(comparisonTable(rows, exits, backbone));
}

await main();
