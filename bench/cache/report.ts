/** Turns the arms' per-frame records into the figures the benchmark reports. */
import { KernelPool } from "../../src/cache/head-kernel.ts";
import type { OnlineCache } from "../../src/cache/online-cache.ts";
import type { CacheOptions } from "../../src/cache/options.ts";
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
 * Mean per-frame latency saved in the same windows, percent: the cached
 * arm's frames against the backbone arm's same frames.
 */
export function latencySavedByWindow(base: ArmResult, cached: ArmResult, size: number): number[] {
  const out: number[] = [];
  const total = (arm: ArmResult, from: number) =>
    arm.frames.slice(from, from + size).reduce((sum, f) => sum + f.latencyMs, 0);
  for (let from = 0; from < cached.frames.length; from += size) {
    out.push(100 * (1 - total(cached, from) / total(base, from)));
  }
  return out;
}

/** Every final head's answer on every frame of the stream: label and confidence per exit. */
interface HeadAnswers {
  /** Per exit (null without a head): the head's top class per frame. */
  labels: (Int32Array | null)[];
  /** Per exit: the head's probability of that class per frame. */
  confidence: (Float32Array | null)[];
}

/**
 * The stream through the whole backbone once more, each final head answering
 * at its exit. Heads answer on onnxruntime, as in the engine (a
 * nearest-neighbour memory in TypeScript would take minutes here).
 */
async function finalHeadAnswers(
  model: SegmentedBackbone,
  cache: OnlineCache,
  stream: Stream,
): Promise<HeadAnswers> {
  const heads = cache.engine.current.heads;
  const classes = model.manifest.classes.length;
  const labels = heads.map((h) => (h ? new Int32Array(stream.count) : null));
  const confidence = heads.map((h) => (h ? new Float32Array(stream.count) : null));
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
    for (const [e, h] of heads.entries()) {
      if (!h) continue;
      const probs = new Float32Array(n * classes);
      await h.predictBatchWith(await kernels.get(h.shape), features.get(e)!, n, probs);
      for (let i = 0; i < n; i++) {
        const best = argmax(probs, i * classes, classes);
        labels[e]![s + i] = best;
        confidence[e]![s + i] = probs[i * classes + best]!;
      }
    }
  }
  await kernels.release();
  return { labels, confidence };
}

/** What the final heads could save with knowledge no cache has: the backbone's answer for every frame. */
export interface Oracles {
  /**
   * Every frame leaves at the first exit whose head agrees with the backbone,
   * paying for every head on the way: the best any thresholding of these heads could do.
   */
  firstAgreeingPct: number;
  /**
   * Each exit's threshold set on the stream itself: in order, the lowest
   * confidence at which the frames still there agree with the backbone at
   * least `target` often (measured, no bound), the exit open where that saves
   * more than its head and `overheadMacs` cost. What calibration could reach
   * with these heads if it knew every frame's answer: above it, the gap is
   * evidence and warm-up; below it, the heads.
   */
  thresholdsPct: number;
  /** Per exit, the thresholds oracle's threshold (null: closed) and share of the stream it answers. */
  exits: { exit: number; threshold: number | null; share: number }[];
}

export async function oracles(
  model: SegmentedBackbone,
  cache: OnlineCache,
  stream: Stream,
  backboneLabels: number[],
  {
    targetAgreement: target,
    exitOverheadMacs: overheadMacs,
  }: Pick<CacheOptions, "targetAgreement" | "exitOverheadMacs">,
): Promise<Oracles> {
  const heads = cache.engine.current.heads;
  const m = model.manifest;
  const full = m.full.macs;
  const cumulative = m.exits.map((e) =>
    m.segments.filter((s) => s.index <= e.afterSegment).reduce((a, s) => a + s.macs, 0),
  );
  const answers = await finalHeadAnswers(model, cache, stream);
  const agrees = (e: number, f: number) => answers.labels[e]![f] === backboneLabels[f];

  let spent = 0;
  for (let f = 0; f < stream.count; f++) {
    let cost = full;
    for (let e = 0; e < heads.length; e++) {
      if (!heads[e]) continue;
      cost += heads[e]!.macs();
      if (agrees(e, f)) {
        cost += cumulative[e]! - full;
        break;
      }
    }
    spent += cost;
  }
  const firstAgreeingPct = 100 * (1 - spent / (stream.count * full));

  let staying = Array.from({ length: stream.count }, (_, f) => f);
  let thresholdSpent = 0;
  let headsSoFar = 0;
  const exits: Oracles["exits"] = [];
  for (let e = 0; e < heads.length; e++) {
    const confidence = answers.confidence[e];
    if (!heads[e] || !confidence || staying.length === 0) {
      exits.push({ exit: e, threshold: null, share: 0 });
      continue;
    }
    const order = [...staying].sort((a, b) => confidence[b]! - confidence[a]!);
    // The longest run of most confident frames that agrees often enough, ties kept together.
    let taken = 0;
    let agreed = 0;
    for (let n = 0; n < order.length;) {
      const t = confidence[order[n]!]!;
      while (n < order.length && confidence[order[n]!]! >= t) agreed += agrees(e, order[n++]!) ? 1 : 0;
      if (agreed >= target * n) taken = n;
    }
    const headMacs = heads[e]!.macs();
    const saves = taken * (full - cumulative[e]!);
    if (taken === 0 || saves <= staying.length * (headMacs + overheadMacs)) {
      exits.push({ exit: e, threshold: null, share: 0 });
      continue;
    }
    const threshold = confidence[order[taken - 1]!]!;
    headsSoFar += headMacs;
    thresholdSpent += taken * (cumulative[e]! + headsSoFar);
    staying = order.slice(taken);
    exits.push({ exit: e, threshold, share: taken / stream.count });
  }
  thresholdSpent += staying.length * (full + headsSoFar);
  return {
    firstAgreeingPct,
    thresholdsPct: 100 * (1 - thresholdSpent / (stream.count * full)),
    exits,
  };
}
