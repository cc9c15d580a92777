/** Turns the arms' per-frame records into the figures the benchmark reports. */
import { KernelPool } from "../../src/cache/head-kernel.ts";
import type { OnlineCache } from "../../src/cache/online-cache.ts";
import type { SegmentedBackbone } from "../../src/model/backbone.ts";
import type { LatencySummary } from "../lib/stats.ts";
import { summarize } from "../lib/stats.ts";
import type { ArmResult, FrameRecord, Stream } from "./arms.ts";
import { argmax } from "../../src/cache/head-math.ts";

export interface Figures {
  frames: number;
  agreement: number;
  accuracy: { backbone: number; cached: number };
  macsSavedPct: number;
  latencySavedPct: number;
  latencyMs: { backbone: LatencySummary; cached: LatencySummary };
  throughput: { backbone: number; cached: number; ratio: number };
  exitShare: Record<string, number>;
}

const share = (xs: FrameRecord[], pred: (f: FrameRecord, i: number) => boolean) =>
  xs.filter(pred).length / Math.max(xs.length, 1);

export function figures(
  base: FrameRecord[],
  cached: FrameRecord[],
  labels: ArrayLike<number>,
  fullMacs: number,
  timeMs: { backbone: number; cached: number },
  exits: number,
): Figures {
  const n = cached.length;
  const lb = summarize(base.map((f) => f.latencyMs));
  const lc = summarize(cached.map((f) => f.latencyMs));
  const exitShare: Record<string, number> = {};
  for (let e = 0; e < exits; e++) exitShare[`exit${e}`] = share(cached, (f) => f.exit === e);
  exitShare.backbone = share(cached, (f) => f.exit === -1);
  const thrB = (base.length / timeMs.backbone) * 1000;
  const thrC = (n / timeMs.cached) * 1000;
  return {
    frames: n,
    agreement: share(cached, (f, i) => f.label === base[i]!.label),
    accuracy: {
      backbone: share(base, (f, i) => f.label === labels[i]),
      cached: share(cached, (f, i) => f.label === labels[i]),
    },
    macsSavedPct: 100 * (1 - cached.reduce((a, f) => a + f.macs, 0) / (n * fullMacs)),
    latencySavedPct: 100 * (1 - lc.mean / lb.mean),
    latencyMs: { backbone: lb, cached: lc },
    throughput: { backbone: thrB, cached: thrC, ratio: thrC / thrB },
    exitShare,
  };
}

/**
 * The figures of a cache arm against the backbone arm on the same stream;
 * the cache's time includes its learning (maintenance between calls).
 */
export function armFigures(
  base: ArmResult,
  cached: ArmResult,
  stream: Stream,
  fullMacs: number,
  exits: number,
): Figures {
  return figures(
    base.frames,
    cached.frames,
    stream.labels,
    fullMacs,
    { backbone: base.computeMs, cached: cached.computeMs + cached.maintenanceMs },
    exits,
  );
}

/** Per-frame figures restricted to frames [from, to). */
export function slice(arm: ArmResult, from: number, to = arm.frames.length): ArmResult {
  const frames = arm.frames.slice(from, to);
  const part = frames.length / Math.max(arm.frames.length, 1);
  return { ...arm, frames, computeMs: arm.computeMs * part, maintenanceMs: arm.maintenanceMs * part };
}

/**
 * MACs saved in consecutive windows of `size` frames (the last may be
 * shorter), percent: how savings grow as the cache learns and proves exits.
 */
export function macsSavedByWindow(cached: ArmResult, fullMacs: number, size: number): number[] {
  const out: number[] = [];
  for (let from = 0; from < cached.frames.length; from += size) {
    const part = cached.frames.slice(from, from + size);
    const spent = part.reduce((sum, f) => sum + f.macs, 0);
    out.push(100 * (1 - spent / (fullMacs * part.length)));
  }
  return out;
}

/**
 * Oracle: every frame leaves at the first exit whose (final) head agrees with
 * the backbone, paying for every head on the way. The best any thresholding
 * of these heads could do. Heads answer on onnxruntime, as in the engine (a
 * nearest-neighbour memory in TypeScript would take minutes here).
 */
export async function oracleMacsSavedPct(
  model: SegmentedBackbone,
  cache: OnlineCache,
  stream: Stream,
  backboneLabels: number[],
): Promise<number> {
  const heads = cache.engine.current.heads;
  const m = model.manifest;
  const classes = m.classes.length;
  const cumulative = m.exits.map((e) =>
    m.segments.filter((s) => s.index <= e.afterSegment).reduce((a, s) => a + s.macs, 0),
  );
  let spent = 0;
  const batch = 250;
  const kernels = new KernelPool();
  for (let s = 0; s < stream.count; s += batch) {
    const n = Math.min(batch, stream.count - s);
    const { features } = await model.runSegments(
      0,
      model.segmentCount,
      stream.inputs.subarray(s * stream.frameSize, (s + n) * stream.frameSize),
      n,
    );
    const probs: (Float32Array | null)[] = [];
    for (const [e, h] of heads.entries()) {
      const out = h ? new Float32Array(n * classes) : null;
      if (h && out) await h.predictBatchWith(await kernels.get(h.shape), features.get(e)!, n, out);
      probs.push(out);
    }
    for (let i = 0; i < n; i++) {
      let cost = m.full.macs;
      let headCost = 0;
      for (let e = 0; e < heads.length; e++) {
        const p = probs[e];
        if (!p) continue;
        headCost += heads[e]!.macs();
        const best = argmax(p, i * classes, classes);
        if (best === backboneLabels[s + i]) {
          cost = cumulative[e]!;
          break;
        }
      }
      spent += cost + headCost;
    }
  }
  await kernels.release();
  return 100 * (1 - spent / (stream.count * m.full.macs));
}
