/**
 * npm run bench:backbone -- [--frames N] [--repeats R] [--json]
 *
 * What cutting the network costs: per-frame latency of the whole model (one
 * ONNX session) against the eight chained segments, the segments fused into
 * one span with every exit's features (what the engine runs while no exit is
 * open) and two spans cut after segment 2 (one open exit), at batch 1, 8 and
 * 32 with 1 and 2 intra-op threads, measured side by side in one run (arms
 * alternate per repeat; the table gives medians over repeats). The last
 * column, one cut's extra time in MACs of the whole model, is what the
 * planner's `exitOverheadMacs` stands for.
 */
import { join } from "node:path";
import { Command } from "commander";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { loadIdxDataset } from "../../src/model/idx.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { median, table } from "../lib/stats.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const opt = new Command("bench-backbone")
  .option("--frames <n>", "frames per measurement", "512")
  .option("--repeats <n>", "measurements per arm (median reported)", "3")
  .option("--json", "print JSON")
  .parse()
  .opts<{ frames: string; repeats: string; json?: boolean }>();

interface Row {
  threads: number;
  batch: number;
  fullMsPerFrame: number;
  chainedMsPerFrame: number;
  overheadPct: number;
  spanMsPerFrame: number;
  oneCutMsPerFrame: number;
  /** One cut's extra time, converted to MACs at the whole model's MACs per ms. */
  cutMacs: number;
}

async function timePerFrame(
  run: (x: Float32Array, n: number) => Promise<unknown>,
  x: Float32Array,
  frames: number,
  batch: number,
  frameSize: number,
): Promise<number> {
  const t0 = performance.now();
  for (let s = 0; s < frames; s += batch) {
    const n = Math.min(batch, frames - s);
    await run(x.subarray(s * frameSize, (s + n) * frameSize), n);
  }
  return (performance.now() - t0) / frames;
}

async function main(): Promise<void> {
  const frames = Number(opt.frames);
  const repeats = Number(opt.repeats);
  const data = await loadIdxDataset(join(ROOT, "data", "fashion-mnist"), "t10k");
  const rows: Row[] = [];
  for (const threads of [1, 2]) {
    const model = await SegmentedBackbone.load(join(ROOT, "models", "fashion-resnet18"), {
      intraOpThreads: threads,
    });
    const pre = new Preprocessor(model.manifest.input);
    const x = pre.normalise(data.images.subarray(0, frames * pre.frameSize), frames);
    const full = (v: Float32Array, n: number) => model.runFull(v, n);
    const chained = (v: Float32Array, n: number) => model.runSegments(0, model.segmentCount, v, n);
    const last = model.segmentCount - 1;
    const span = (v: Float32Array, n: number) => model.runSpan({ first: 0, last }, v, n);
    const oneCut = async (v: Float32Array, n: number) => {
      const head = await model.runSpan({ first: 0, last: 2 }, v, n);
      return model.runSpan({ first: 3, last }, head.activation!, n);
    };
    const arms = [full, chained, span, oneCut];
    for (const batch of [1, 8, 32]) {
      // Warm-up: first runs allocate and pick kernels (and build the spans).
      for (const arm of arms) await timePerFrame(arm, x, Math.min(64, frames), batch, pre.frameSize);
      const times: number[][] = arms.map(() => []);
      for (let r = 0; r < repeats; r++) {
        for (const [i, arm] of arms.entries()) {
          times[i]!.push(await timePerFrame(arm, x, frames, batch, pre.frameSize));
        }
      }
      const [fullMs, chainedMs, spanMs, oneCutMs] = times.map(median) as [number, number, number, number];
      rows.push({
        threads,
        batch,
        fullMsPerFrame: fullMs,
        chainedMsPerFrame: chainedMs,
        overheadPct: 100 * (chainedMs / fullMs - 1),
        spanMsPerFrame: spanMs,
        oneCutMsPerFrame: oneCutMs,
        cutMacs: ((oneCutMs - spanMs) / fullMs) * model.manifest.full.macs,
      });
    }
    await model.close();
  }
  if (opt.json) {
    process.stdout.write(JSON.stringify({ frames, repeats, rows }, null, 2) + "\n");
    return;
  }
  process.stdout.write(
    table(
      [
        "threads",
        "batch",
        "full ms/frame",
        "8 segments ms/frame",
        "cost of cutting",
        "1 span ms/frame",
        "2 spans ms/frame",
        "one cut in MACs",
      ],
      rows.map((r) => [
        r.threads,
        r.batch,
        r.fullMsPerFrame.toFixed(3),
        r.chainedMsPerFrame.toFixed(3),
        `${r.overheadPct >= 0 ? "+" : ""}${r.overheadPct.toFixed(1)}%`,
        r.spanMsPerFrame.toFixed(3),
        r.oneCutMsPerFrame.toFixed(3),
        `${(r.cutMacs / 1e6).toFixed(1)}M`,
      ]),
    ) + "\n",
  );
}

await main();
