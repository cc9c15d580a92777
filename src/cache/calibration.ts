/**
 * Threshold calibration. Held-out frames (a random share of the stream that
 * ran the whole backbone and was never trained on) are re-scored with the
 * current heads; each exit's threshold is the lowest confidence at which the
 * frames that actually reach that exit (those not taken by an earlier open
 * exit) agree with the backbone at least `target` often, proven by a one-sided
 * lower confidence bound.
 *
 * Thresholds are tested in a fixed order, from strict to lenient, stopping at
 * the first that fails (fixed-sequence testing), so picking the lowest passing
 * threshold needs no multiple-testing correction. The candidates are indexed
 * by count, not by confidence: the k-th candidate takes the n_k most confident
 * frames, where n_k is the fewest frames that can prove the target with k
 * disagreements (299, 473, 628, 773, ... for 0.99 at 95% with
 * Clopper-Pearson). Each test is thus the first at which one more
 * disagreement can be afforded: an isolated disagreement between two
 * candidates does not end the scan, and a cluster of near-equal confidences
 * (heads put hundreds of frames above 0.998) cannot make the first test jump
 * past the frames that would have passed it.
 *
 * Where the evidence is plentiful the scan starts at a later checkpoint: the
 * largest n_k within `scanStartShare` of the frames reaching the exit. The
 * start depends only on how many frames reach the exit, never on whether
 * they agree, so the sequence is still fixed in advance; and a threshold
 * that only the 299 most confident of thousands of frames could pass is
 * worth little, while one disagreement among them would otherwise close the
 * exit outright (at 0.2% disagreement among the most confident frames, it
 * happens in 45% of sets of 299).
 */
import { CommitAhead } from "./resident.ts";
import type { BoundMethod } from "./bounds.ts";
import { lowerBound, minTrialsToProve } from "./bounds.ts";

/**
 * n_0 < n_1 < ...: n_k is the fewest trials with k failures whose lower
 * bound reaches `target`, up to `max` trials. Memoised per setting: the
 * planner asks for the same list at every exit of every publish.
 */
export function provingCounts(
  target: number,
  confidence: number,
  method: BoundMethod,
  max: number,
): number[] {
  const key = `${target}/${confidence}/${method}`;
  let counts = countCache.get(key);
  if (!counts) {
    counts = [minTrialsToProve(target, confidence, method)];
    countCache.set(key, counts);
  }
  const proves = (n: number, k: number) => lowerBound(method, n - k, n, confidence) >= target;
  while (counts[counts.length - 1]! < max) {
    const k = counts.length;
    // With k failures the bound rises with n: double past n_{k-1}, then bisect.
    let lo = counts[k - 1]!;
    let hi = lo + 1;
    while (!proves(hi, k)) {
      lo = hi;
      hi = hi * 2;
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (proves(mid, k)) hi = mid;
      else lo = mid;
    }
    counts.push(hi);
  }
  return counts.filter((n) => n <= max);
}

const countCache = new Map<string, number[]>();

/** Held-out frames: features at every exit and the backbone's label. */
export class CalibrationSet {
  readonly capacity: number;
  readonly featureSizes: readonly number[];
  readonly features: Float32Array[];
  readonly labels: Int32Array;
  private next = 0;
  private filled = 0;
  private readonly memory: CommitAhead;

  constructor(capacity: number, featureSizes: readonly number[]) {
    this.capacity = capacity;
    this.featureSizes = featureSizes;
    this.features = featureSizes.map((d) => new Float32Array(capacity * d));
    this.labels = new Int32Array(capacity);
    this.memory = new CommitAhead(capacity, [
      ...this.features.map((f, e) => [f, featureSizes[e]!] as const),
      [this.labels, 1],
    ]);
  }

  get size(): number {
    return this.filled;
  }

  add(features: readonly Float32Array[], backboneLabel: number): void {
    const slot = this.next;
    this.featureSizes.forEach((d, e) => this.features[e]!.set(features[e]!.subarray(0, d), slot * d));
    this.labels[slot] = backboneLabel;
    this.next = (slot + 1) % this.capacity;
    this.filled = Math.min(this.filled + 1, this.capacity);
  }

  clear(): void {
    this.next = 0;
    this.filled = 0;
  }

  /** Commits the memory of the next `frames` slots now, off the frame path (resident.ts). */
  reserve(frames: number): void {
    this.memory.ensure(this.next, this.filled, frames);
  }
}

/** A head's answers on the calibration set: confidence and label per frame. */
export interface ExitScores {
  confidence: Float32Array;
  label: Int32Array;
}

export interface CalibrationOutcome {
  /** Lowest proven threshold, or undefined if none could be proven. */
  threshold: number | undefined;
  /** Calibration frames that reach this exit. */
  reached: number;
  /** Of those, frames at or above the threshold, and how many agree with the backbone. */
  accepted: number;
  agreed: number;
  /** Lower confidence bound on agreement of the accepted frames. */
  lowerBound: number;
  /** Frames needed above a threshold before anything can be proven. */
  minFrames: number;
}

export interface CalibrationTarget {
  targetAgreement: number;
  confidenceLevel: number;
  boundMethod: BoundMethod;
  /** The scan's first checkpoint is the largest n_k within this share of the frames reaching the exit (0: n_0). */
  scanStartShare?: number;
}

/**
 * Calibrates one exit on the frames marked in `reaching` (1 = reaches it).
 */
export function calibrateExit(
  scores: ExitScores,
  labels: Int32Array,
  reaching: Uint8Array,
  target: CalibrationTarget,
): CalibrationOutcome {
  const { targetAgreement, confidenceLevel, boundMethod } = target;
  const order: number[] = [];
  for (let f = 0; f < reaching.length; f++) if (reaching[f]) order.push(f);
  order.sort((a, b) => scores.confidence[b]! - scores.confidence[a]!);
  const minFrames = minTrialsToProve(targetAgreement, confidenceLevel, boundMethod);
  const outcome: CalibrationOutcome = {
    threshold: undefined,
    reached: order.length,
    accepted: 0,
    agreed: 0,
    lowerBound: 0,
    minFrames,
  };
  const confidence = (rank: number) => scores.confidence[order[rank]!]!;
  const counts = provingCounts(targetAgreement, confidenceLevel, boundMethod, order.length);
  const startLimit = (target.scanStartShare ?? 0) * order.length;
  let start = 0;
  while (start + 1 < counts.length && counts[start + 1]! <= startLimit) start++;
  let n = 0;
  let k = 0;
  for (const count of counts.slice(start)) {
    // The candidate threshold is the count-th confidence; frames tied with it come along.
    const t = confidence(count - 1);
    while (n < order.length && confidence(n) >= t) {
      const f = order[n]!;
      if (scores.label[f] === labels[f]) k++;
      n++;
    }
    const lb = lowerBound(boundMethod, k, n, confidenceLevel);
    if (lb < targetAgreement) {
      if (outcome.threshold === undefined) outcome.lowerBound = lb;
      break;
    }
    Object.assign(outcome, { threshold: t, accepted: n, agreed: k, lowerBound: lb });
  }
  return outcome;
}
