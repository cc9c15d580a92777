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

export async function planExits(
  heads: readonly (ExitHead | null)[],
  set: CalibrationSet,
  target: CalibrationTarget,
  costs: ExitCosts,
  kernels?: KernelPool,
  forcedClosed: ReadonlySet<number> = new Set(),
): Promise<ExitDecision[]> {
  const n = set.size;
  const labels = set.labels.subarray(0, n);
  const reaching = new Uint8Array(n).fill(1);
  const decisions: ExitDecision[] = [];
  // Exits in order: each one only sees the frames the earlier open exits leave.
  for (const [exit, head] of heads.entries()) decisions.push(await decide(exit, head));
  return decisions;

  async function decide(exit: number, head: ExitHead | null): Promise<ExitDecision> {
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
    if (!head) return closed("no head trained yet");
    if (forcedClosed.has(exit))
      return closed("closed by the shadow audit (drift); waiting for fresh calibration");
    const scores = await scoreHead(head, set, exit, reaching, kernels);
    const cal = calibrateExit(scores, labels, reaching, target);
    if (cal.threshold === undefined) {
      const why =
        cal.reached < cal.minFrames
          ? `${cal.reached} calibration frames reach it; ${cal.minFrames} needed to prove agreement`
          : `cannot prove agreement >= ${target.targetAgreement} at any threshold (lower bound ${cal.lowerBound.toFixed(4)})`;
      return closed(why, cal);
    }
    const coverage = cal.reached > 0 ? cal.accepted / cal.reached : 0;
    const savedMacs = coverage * costs.remainingMacs[exit]!;
    const costMacs = head.macs() + costs.overheadMacs;
    if (savedMacs <= costMacs) {
      return {
        ...closed(`not worth it: saves ${fmt(savedMacs)} MACs per frame, costs ${fmt(costMacs)}`, cal),
        coverage,
        savedMacs,
        costMacs,
      };
    }
    for (let f = 0; f < n; f++) if (reaching[f] && scores.confidence[f]! >= cal.threshold) reaching[f] = 0;
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
