/** Turns the arms' per-frame records into the figures the benchmark reports. */
import { KernelPool } from "../../src/cache/head-kernel.ts";
import type { OnlineCache } from "../../src/cache/online-cache.ts";
import type { CacheOptions } from "../../src/cache/options.ts";
import type { CalibrationTarget, ExitScores } from "../../src/cache/calibration.ts";
import { calibrateExit } from "../../src/cache/calibration.ts";
import { cascade } from "../../src/cache/planner.ts";
import { remainingMacs } from "../../src/cache/trainer.ts";
import { SeededRandom } from "../../src/cache/random.ts";
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

/** Consecutive windows [from, to) of `size` frames over `count` frames (the last may be shorter). */
function windows(count: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let from = 0; from < count; from += size) out.push([from, Math.min(from + size, count)]);
  return out;
}

/**
 * MACs saved in consecutive windows of `size` frames (the last may be
 * shorter), percent: how savings grow as the cache learns and proves exits.
 */
export function macsSavedByWindow(cached: ArmResult, fullMacs: number, size: number): number[] {
  return windows(cached.frames.length, size).map(([from, to]) => {
    const spent = cached.frames.slice(from, to).reduce((sum, f) => sum + f.macs, 0);
    return 100 * (1 - spent / (fullMacs * (to - from)));
  });
}

/**
 * Mean per-frame latency saved in the same windows, percent: the cached
 * arm's frames against the backbone arm's same frames.
 */
export function latencySavedByWindow(base: ArmResult, cached: ArmResult, size: number): number[] {
  const total = (arm: ArmResult, from: number, to: number) =>
    arm.frames.slice(from, to).reduce((sum, f) => sum + f.latencyMs, 0);
  return windows(cached.frames.length, size).map(
    ([from, to]) => 100 * (1 - total(cached, from, to) / total(base, from, to)),
  );
}

/** Every final head's answer on every frame of the stream: label and confidence per exit. */
export interface HeadAnswers {
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
export async function finalHeadAnswers(
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

/** MACs of the backbone up to and including the segment before each exit. */
function macsThroughExit(model: SegmentedBackbone): number[] {
  const m = model.manifest;
  return m.exits.map((e) =>
    m.segments.filter((s) => s.index <= e.afterSegment).reduce((a, s) => a + s.macs, 0),
  );
}

/** Every frame of the stream, in order: the oracles' default set. */
function allFrames(backboneLabels: readonly number[]): number[] {
  return Array.from({ length: backboneLabels.length }, (_, f) => f);
}

/**
 * Oracle: every frame leaves at the first exit whose final head agrees with
 * the backbone, paying for every head on the way. The best any thresholding
 * of these heads could do; percent of the MACs saved over `frames` (default:
 * the whole stream; the held-out frames are those no head trained on).
 */
export function firstAgreeingOracle(
  macs: ExitMacs,
  answers: HeadAnswers,
  backboneLabels: number[],
  frames: readonly number[] = allFrames(backboneLabels),
): number {
  const { full, through, heads } = macs;
  const count = nonEmpty(frames, "firstAgreeingOracle");
  let spent = 0;
  for (const f of frames) {
    let cost = full;
    for (let e = 0; e < heads.length; e++) {
      const head = heads[e];
      if (head === null || head === undefined) continue;
      cost += head;
      if (answers.labels[e]![f] === backboneLabels[f]) {
        cost += through[e]! - full;
        break;
      }
    }
    spent += cost;
  }
  return 100 * (1 - spent / (count * full));
}

/** The thresholds oracle's figures (`thresholdsOracle`). */
export interface ThresholdsOracle {
  /** Frames the thresholds were set on and the figures are over. */
  frames: number;
  macsSavedPct: number;
  /** Per exit, the threshold (null: closed) and the share of those frames it answers. */
  exits: { exit: number; threshold: number | null; share: number }[];
}

/**
 * Oracle: each exit's threshold set on `frames` themselves (default: the
 * whole stream), in order, at the lowest confidence at which the frames still
 * there agree with the backbone at least `targetAgreement` often (measured,
 * no bound), the exit open where that saves more than its head and
 * `exitOverheadMacs` cost, as the planner decides. What calibration could
 * reach with these heads if it knew every frame's answer: above it, the gap is
 * evidence and warm-up; below it, the heads. On the whole stream it flatters
 * the heads, which learned from many of its frames and know them better than
 * new ones; on the held-out frames, which no head learned from, it does not.
 */
export function thresholdsOracle(
  macs: ExitMacs,
  answers: HeadAnswers,
  backboneLabels: number[],
  { targetAgreement, exitOverheadMacs }: Pick<CacheOptions, "targetAgreement" | "exitOverheadMacs">,
  frames: readonly number[] = allFrames(backboneLabels),
): ThresholdsOracle {
  const { full, through, heads } = macs;
  const count = nonEmpty(frames, "thresholdsOracle");
  let staying = [...frames];
  let spent = 0;
  let headsSoFar = 0;
  const exits: ThresholdsOracle["exits"] = [];
  for (let e = 0; e < heads.length; e++) {
    const confidence = answers.confidence[e];
    const headMacs = heads[e];
    if (headMacs === null || headMacs === undefined || !confidence || staying.length === 0) {
      exits.push({ exit: e, threshold: null, share: 0 });
      continue;
    }
    const order = [...staying].sort((a, b) => confidence[b]! - confidence[a]!);
    // The longest run of most confident frames that agrees often enough, ties kept together.
    let taken = 0;
    let agreed = 0;
    for (let n = 0; n < order.length;) {
      const t = confidence[order[n]!]!;
      while (n < order.length && confidence[order[n]!]! >= t) {
        const f = order[n++]!;
        if (answers.labels[e]![f] === backboneLabels[f]) agreed++;
      }
      if (agreed >= targetAgreement * n) taken = n;
    }
    const saves = taken * (full - through[e]!);
    if (taken === 0 || saves <= staying.length * (headMacs + exitOverheadMacs)) {
      exits.push({ exit: e, threshold: null, share: 0 });
      continue;
    }
    headsSoFar += headMacs;
    spent += taken * (through[e]! + headsSoFar);
    staying = order.slice(taken);
    exits.push({ exit: e, threshold: confidence[order[taken - 1]!]!, share: taken / count });
  }
  spent += staying.length * (full + headsSoFar);
  return { frames: count, macsSavedPct: 100 * (1 - spent / (count * full)), exits };
}

/** A model's MACs as the oracles charge them. */
export interface ExitMacs {
  /** The whole backbone. */
  full: number;
  /** Per exit, the backbone up to it. */
  through: readonly number[];
  /** Per exit, the backbone after it: what an early answer skips, as the trainer's exit selection counts it. */
  remaining: readonly number[];
  /** Per exit, its final head (null: none). */
  heads: readonly (number | null)[];
}

export function exitMacs(model: SegmentedBackbone, cache: OnlineCache): ExitMacs {
  return {
    full: model.manifest.full.macs,
    through: macsThroughExit(model),
    remaining: remainingMacs(model.manifest),
    heads: cache.engine.current.heads.map((h) => (h ? h.macs() : null)),
  };
}

/** What `finalHeadsFromTheStart` decides by: the trainer's calibration and exit selection, its cadence, the audit. */
export type FromTheStartOptions = CalibrationTarget &
  Pick<CacheOptions, "exitOverheadMacs" | "publishEvery" | "auditRate">;

/** The figures of `finalHeadsFromTheStart`. */
export interface FromTheStart {
  macsSavedPct: number;
  /**
   * The same if evidence cost nothing: held-out frames answered like the
   * others (they still prove the thresholds). What no schedule of this much
   * evidence can beat.
   */
  freeEvidenceMacsSavedPct: number;
  /** First frame an exit answered (-1: none). */
  firstExitFrame: number;
  /** Per exit, the share of the stream it answered. */
  exitShare: number[];
}

/**
 * What the proof allows with the run's own evidence if the heads had been
 * the final ones from the first frame. Every `publishEvery` frames (the run
 * itself waits `steadyPublishEvery` once its heads train at the steady rate)
 * the exits are decided as the trainer decides them (the planner's cascade: the bound,
 * the frames that reach each exit, the exit selection), on the held-out frames
 * of the run that had arrived by then (`heldOut`, in stream order), scored by
 * the final heads; until the next decision every other frame leaves at the
 * first open exit whose final head is sure enough, paying the heads on the
 * way. Held-out frames run the whole backbone, as in the run, and so does a
 * share `auditRate` of the early answers (charged on average); no drift alarm
 * drops the evidence, and `calibrationCapacity` does not cap it. Learning faster
 * cannot do better than this with the same evidence, at the final heads'
 * quality: above it the gap is the proof and the evidence schedule. It
 * flatters the heads on the frames they answer, most of which they learned
 * from; the evidence itself is honest (no head learned from a held-out frame).
 */
export function finalHeadsFromTheStart(
  macs: ExitMacs,
  answers: HeadAnswers,
  backboneLabels: readonly number[],
  options: FromTheStartOptions,
  heldOut: readonly number[],
): FromTheStart {
  const { full, through, heads: headMacs } = macs;
  const costs = { remainingMacs: macs.remaining, overheadMacs: options.exitOverheadMacs };
  const count = nonEmpty(backboneLabels, "finalHeadsFromTheStart");
  const isHeldOut = new Uint8Array(count);
  for (const f of heldOut) isHeldOut[f] = 1;
  const exitCount = headMacs.length;
  const answered = new Array<number>(exitCount).fill(0);
  let thresholds: (number | null)[] = new Array<number | null>(exitCount).fill(null);
  let evidence = 0;
  let firstExitFrame = -1;
  let spent = 0;
  let spentFree = 0;
  for (let f = 0; f < count; f++) {
    if (f > 0 && f % options.publishEvery === 0) {
      // Frames arrive in order: the held-out frames before f are the first `evidence` of them.
      while (evidence < heldOut.length && heldOut[evidence]! < f) evidence++;
      thresholds = decide(heldOut.slice(0, evidence));
    }
    // The heads a frame pays for on its way, and the exit that answers it (-1: none).
    let headsPaid = 0;
    let openHeads = 0;
    let exit = -1;
    for (let e = 0; e < exitCount; e++) {
      const t = thresholds[e];
      if (t === null || t === undefined) continue;
      openHeads += headMacs[e]!;
      if (exit >= 0) continue;
      headsPaid += headMacs[e]!;
      if (answers.confidence[e]![f]! >= t) exit = e;
    }
    // An audited answer runs the rest of the backbone too.
    const early =
      exit < 0 ? full + headsPaid : full + headsPaid - (1 - options.auditRate) * (full - through[exit]!);
    spentFree += early;
    if (isHeldOut[f]) {
      // A held-out frame runs the whole backbone whatever the exits say, past every open head.
      spent += full + openHeads;
      continue;
    }
    spent += early;
    if (exit < 0) continue;
    answered[exit]!++;
    if (firstExitFrame < 0) firstExitFrame = f;
  }
  return {
    macsSavedPct: 100 * (1 - spent / (count * full)),
    freeEvidenceMacsSavedPct: 100 * (1 - spentFree / (count * full)),
    firstExitFrame,
    exitShare: answered.map((a) => a / count),
  };

  function decide(frames: readonly number[]): (number | null)[] {
    if (frames.length === 0) return new Array<number | null>(exitCount).fill(null);
    const labels = Int32Array.from(frames, (f) => backboneLabels[f]!);
    const scores = headMacs.map((h, e): ExitScores | null =>
      h !== null
        ? {
            confidence: Float32Array.from(frames, (f) => answers.confidence[e]![f]!),
            label: Int32Array.from(frames, (f) => answers.labels[e]![f]!),
          }
        : null,
    );
    return cascade(headMacs, scores, labels, options, costs).map((d) => (d.open ? d.threshold : null));
  }
}

/** What exit 0's calibration proves from a given number of held-out frames (`evidenceCurve`). */
export interface EvidencePoint {
  /** Frames drawn to calibrate on. */
  frames: number;
  /** Frames of the pool not drawn, on which each proven threshold is judged. */
  judgedOn: number;
  /** Mean share of the frames judged on at or above the proven threshold (0 when nothing was proven). */
  coverage: number;
  /** Share of draws that proved no threshold. */
  closed: number;
  /** Agreement with the backbone of the judged frames at or above the threshold, averaged over the draws that opened. */
  agreement: number;
}

/**
 * How much more evidence would buy: exit 0's calibration (calibrateExit, as
 * the trainer runs it) on `draws` random sets of n frames of `pool`, scored by
 * its final head, for each n in `sizes` smaller than the pool; each proven
 * threshold is then judged on the pool's other frames. With the held-out
 * frames as the pool, no frame it calibrates on or judges on was learned from:
 * drawn from the whole stream, the head would know many of them better than
 * new ones (the bench, "final heads" line).
 */
export function evidenceCurve(
  answers: HeadAnswers,
  backboneLabels: number[],
  target: CalibrationTarget,
  sizes: readonly number[],
  draws: number,
  seed: number,
  pool: readonly number[] = allFrames(backboneLabels),
): EvidencePoint[] {
  const confidence = answers.confidence[0];
  const labels = answers.labels[0];
  if (!confidence || !labels) return [];
  const count = pool.length;
  const rng = new SeededRandom(seed);
  const order = [...pool];
  return sizes
    .filter((n) => n < count)
    .map((n) => {
      const scores: ExitScores = { confidence: new Float32Array(n), label: new Int32Array(n) };
      const truth = new Int32Array(n);
      const reaching = new Uint8Array(n).fill(1);
      let covered = 0;
      let closed = 0;
      let agreement = 0;
      for (let d = 0; d < draws; d++) {
        // A partial Fisher-Yates shuffle: the first n of the pool are the draw, the rest are judged.
        for (let i = 0; i < n; i++) {
          const j = i + Math.floor(rng.uniform() * (count - i));
          [order[i], order[j]] = [order[j]!, order[i]!];
          const f = order[i]!;
          scores.confidence[i] = confidence[f]!;
          scores.label[i] = labels[f]!;
          truth[i] = backboneLabels[f]!;
        }
        const { threshold } = calibrateExit(scores, truth, reaching, target);
        if (threshold === undefined) {
          closed++;
          continue;
        }
        let above = 0;
        let agreed = 0;
        for (let i = n; i < count; i++) {
          const f = order[i]!;
          if (confidence[f]! < threshold) continue;
          above++;
          if (labels[f] === backboneLabels[f]) agreed++;
        }
        covered += above / (count - n);
        agreement += above > 0 ? agreed / above : 1;
      }
      const opened = draws - closed;
      return {
        frames: n,
        judgedOn: count - n,
        coverage: covered / draws,
        closed: closed / draws,
        agreement: opened > 0 ? agreement / opened : 1,
      };
    });
}

/** How often exit 0's final head disagrees with the backbone above a confidence, on one set of frames. */
export interface Disagreement {
  frames: number;
  /** Of those, at or above the confidence. */
  above: number;
  /** Share of `above` whose label is not the backbone's. */
  disagreement: number;
}

/**
 * Exit 0's final head, at or above `confidence`, on the frames it learned
 * from and on the held-out frames `heldOut` (never learned from): how much better it
 * knows the first. It learned from every frame that ran the whole backbone
 * and was not held out (audited ones included), and from the frames a later
 * exit answered (`teachEarlierExits`); not from those exit 0 answered.
 */
export function finalHeadFamiliarity(
  cached: ArmResult,
  answers: HeadAnswers,
  backboneLabels: readonly number[],
  confidence: number,
  heldOut: readonly number[],
): { confidence: number; learnedFrom: Disagreement; heldOut: Disagreement } | undefined {
  const conf = answers.confidence[0];
  const labels = answers.labels[0];
  if (!conf || !labels) return undefined;
  const over = (frames: readonly number[]): Disagreement => {
    const above = frames.filter((f) => conf[f]! >= confidence);
    const wrong = above.filter((f) => labels[f] !== backboneLabels[f]).length;
    return {
      frames: frames.length,
      above: above.length,
      disagreement: above.length ? wrong / above.length : 0,
    };
  };
  return {
    confidence,
    learnedFrom: over(cached.frames.flatMap((f, i) => (!f.heldOut && f.exit !== 0 ? [i] : []))),
    heldOut: over(heldOut),
  };
}

/** The number of frames an oracle is over; none is a caller's mistake, not 0% or NaN. */
function nonEmpty(frames: readonly number[], oracle: string): number {
  if (frames.length === 0) throw new Error(`${oracle}: no frames to set thresholds on or judge`);
  return frames.length;
}
