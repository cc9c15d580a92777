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
 * threshold needs no multiple-testing correction.
 */
import type { BoundMethod } from "./bounds.ts";
import { lowerBound, minTrialsToProve } from "./bounds.ts";

/** Candidate thresholds, strictest first. */
export const THRESHOLD_GRID: readonly number[] = (() => {
  const grid = [0.99999, 0.9999, 0.9995];
  for (let t = 0.999; t > 0.9895; t -= 0.001) grid.push(t);
  for (let t = 0.988; t > 0.9495; t -= 0.002) grid.push(t);
  for (let t = 0.94; t >= 0.295; t -= 0.01) grid.push(t);
  return grid.map((t) => Math.round(t * 1e5) / 1e5);
})();

/** Held-out frames: features at every exit and the backbone's label. */
export class CalibrationSet {
  readonly capacity: number;
  readonly featureSizes: readonly number[];
  readonly features: Float32Array[];
  readonly labels: Int32Array;
  private next = 0;
  private filled = 0;

  constructor(capacity: number, featureSizes: readonly number[]) {
    this.capacity = capacity;
    this.featureSizes = featureSizes;
    this.features = featureSizes.map((d) => new Float32Array(capacity * d));
    this.labels = new Int32Array(capacity);
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
}

/**
 * Calibrates one exit on the frames marked in `reaching` (1 = reaches it).
 */
export function calibrateExit(
  scores: ExitScores,
  labels: Int32Array,
  reaching: Uint8Array,
  target: CalibrationTarget,
  grid: readonly number[] = THRESHOLD_GRID,
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
  let n = 0;
  let k = 0;
  for (const t of grid) {
    while (n < order.length && scores.confidence[order[n]!]! >= t) {
      const f = order[n]!;
      if (scores.label[f] === labels[f]) k++;
      n++;
    }
    // Too few frames above t to prove anything yet: not a test, move on.
    if (n < minFrames) continue;
    const lb = lowerBound(boundMethod, k, n, confidenceLevel);
    if (lb < targetAgreement) {
      if (outcome.threshold === undefined) outcome.lowerBound = lb;
      break;
    }
    Object.assign(outcome, { threshold: t, accepted: n, agreed: k, lowerBound: lb });
  }
  return outcome;
}
