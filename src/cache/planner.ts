/**
 * Decides, for the current heads, which exits are open and at what
 * threshold: each exit is calibrated on the held-out frames that reach it
 * (see calibration.ts), then opened only if what it saves exceeds what it
 * costs, both in MACs per frame that reaches it.
 */
import type { CalibrationOutcome, CalibrationSet, CalibrationTarget, ExitScores } from "./calibration.ts";
import { calibrateExit } from "./calibration.ts";
import type { ExitHead } from "./heads.ts";
import type { KernelPool } from "./head-kernel.ts";
import { argmax } from "./head-math.ts";

export interface ExitDecision {
  exit: number;
  open: boolean;
  /** Confidence at or above which the head answers; null while closed. */
  threshold: number | null;
  /**
   * SLO mode (docs/slo.md): the threshold the same cascade proves for the
   * agreement floor instead of the target; null when the floor does not open
   * this exit, absent when no floor was planned.
   */
  floorThreshold?: number | null;
  /** Why the exit is open or closed, in words for operators. */
  reason: string;
  /** Share of reaching calibration frames this exit would answer. */
  coverage: number;
  /** Expected MACs saved and spent per frame reaching the exit. */
  savedMacs: number;
  costMacs: number;
  calibration: CalibrationOutcome | null;
}

export interface ExitCosts {
  /** MACs of the backbone after this exit (what an early answer skips). */
  remainingMacs: readonly number[];
  /** Fixed cost of stopping at an exit, in MACs (measured overhead). */
  overheadMacs: number;
}

/**
 * Scores the calibration frames marked in `reaching` (all of them if absent)
 * with one head, on onnxruntime when `kernels` is given; frames not scored
 * get confidence -1, below every threshold.
 */
export async function scoreHead(
  head: ExitHead,
  set: CalibrationSet,
  exit: number,
  reaching?: Uint8Array,
  kernels?: KernelPool,
): Promise<ExitScores> {
  const n = set.size;
  const d = head.inputSize;
  const rows: number[] = [];
  for (let f = 0; f < n; f++) if (!reaching || reaching[f]) rows.push(f);
  const confidence = new Float32Array(n).fill(-1);
  const label = new Int32Array(n).fill(-1);
  // After a drift alarm the set is empty: nothing to score.
  if (rows.length === 0) return { confidence, label };
  const all = set.features[exit]!;
  let features = all.subarray(0, n * d);
  if (rows.length < n) {
    features = new Float32Array(rows.length * d);
    rows.forEach((f, i) => features.set(all.subarray(f * d, (f + 1) * d), i * d));
  }
  const probs = new Float32Array(rows.length * head.classes);
  if (kernels) await head.predictBatchWith(await kernels.get(head.shape), features, rows.length, probs);
  else head.predictBatch(features, rows.length, probs);
  rows.forEach((f, i) => {
    const best = argmax(probs, i * head.classes, head.classes);
    label[f] = best;
    confidence[f] = probs[i * head.classes + best]!;
  });
  return { confidence, label };
}

/** What the planner proves: the target agreement, and optionally a lower floor (SLO mode). */
export interface PlanTarget extends CalibrationTarget {
  /**
   * Agreement floor of SLO mode (docs/slo.md): when below `targetAgreement`,
   * every exit also gets the threshold proven for the floor, by a second
   * cascade over the same scores, so that a worker under overload can move
   * its exits between the two.
   */
  floorAgreement?: number;
}

export async function planExits(
  heads: readonly (ExitHead | null)[],
  set: CalibrationSet,
  target: PlanTarget,
  costs: ExitCosts,
  kernels?: KernelPool,
): Promise<ExitDecision[]> {
  // Each head scores every held-out frame once; both cascades reuse the scores.
  const scores: (ExitScores | null)[] = [];
  for (const [exit, head] of heads.entries()) {
    scores.push(head ? await scoreHead(head, set, exit, undefined, kernels) : null);
  }
  const headMacs = heads.map((h) => (h ? h.macs() : null));
  const labels = set.labels.subarray(0, set.size);
  const decisions = cascade(headMacs, scores, labels, target, costs);
  const floor = target.floorAgreement;
  if (floor === undefined || floor >= target.targetAgreement) return decisions;
  const lenient = cascade(headMacs, scores, labels, { ...target, targetAgreement: floor }, costs);
  return decisions.map((d, e) => ({ ...d, floorThreshold: lenient[e]!.threshold }));
}

/**
 * Decides the exits in order for one target: each one only sees the held-out
 * frames the earlier open exits leave. `headMacs[e]` is the cost of exit e's
 * head per frame (null: no head yet); `scores[e]` its answers on the held-out
 * frames, whose backbone labels are `labels`.
 */
export function cascade(
  headMacs: readonly (number | null)[],
  scores: readonly (ExitScores | null)[],
  labels: Int32Array,
  target: CalibrationTarget,
  costs: ExitCosts,
): ExitDecision[] {
  const n = labels.length;
  const reaching = new Uint8Array(n).fill(1);
  return headMacs.map((macs, exit) => decide(exit, macs, scores[exit] ?? null));

  function decide(exit: number, macs: number | null, exitScores: ExitScores | null): ExitDecision {
    const closed = (reason: string, calibration: CalibrationOutcome | null = null): ExitDecision => ({
      exit,
      open: false,
      threshold: null,
      reason,
      coverage: 0,
      savedMacs: 0,
      costMacs: 0,
      calibration,
    });
    if (macs === null || !exitScores) return closed("no head trained yet");
    const cal = calibrateExit(exitScores, labels, reaching, target);
    if (cal.threshold === undefined) {
      const why =
        cal.reached < cal.minFrames
          ? `${cal.reached} calibration frames reach it; ${cal.minFrames} needed to prove agreement`
          : `cannot prove agreement >= ${target.targetAgreement} at any threshold (lower bound ${cal.lowerBound.toFixed(4)})`;
      return closed(why, cal);
    }
    const coverage = cal.reached > 0 ? cal.accepted / cal.reached : 0;
    const savedMacs = coverage * costs.remainingMacs[exit]!;
    const costMacs = macs + costs.overheadMacs;
    if (savedMacs <= costMacs) {
      return {
        ...closed(`not worth it: saves ${fmt(savedMacs)} MACs per frame, costs ${fmt(costMacs)}`, cal),
        coverage,
        savedMacs,
        costMacs,
      };
    }
    for (let f = 0; f < n; f++)
      if (reaching[f] && exitScores.confidence[f]! >= cal.threshold) reaching[f] = 0;
    return {
      exit,
      open: true,
      threshold: cal.threshold,
      reason: `agreement >= ${cal.lowerBound.toFixed(4)} proven on ${cal.accepted} of ${cal.reached} frames`,
      coverage,
      savedMacs,
      costMacs,
      calibration: cal,
    };
  }
}

function fmt(macs: number): string {
  return macs >= 1e6 ? `${(macs / 1e6).toFixed(2)}M` : `${Math.round(macs / 1e3)}k`;
}
