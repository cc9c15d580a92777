/**
 * Per-frame strictness (SLO mode, docs/slo.md): 1 answers at the thresholds
 * proven for the target agreement, 0 at those proven for the floor, values
 * in between at thresholds in between. A frame that must not answer early at
 * all (its own minimum agreement is above what the thresholds prove) gets
 * NO_EARLY_EXIT.
 */
import type { ExitDecision } from "./planner.ts";

export const STRICT = 1;
export const NO_EARLY_EXIT = 2;

/**
 * The confidence a frame of strictness `s` needs at an exit: the target's
 * threshold at s = 1, the floor's at s = 0, linear in between. An exit the
 * floor opens but the target does not moves from 1 (no confidence is above
 * it in practice) down to the floor's threshold; one the target opens but the
 * floor does not keeps the target's threshold.
 */
export function exitThreshold(decision: ExitDecision, s: number): number | null {
  if (s > STRICT) return null;
  const strict = decision.open ? decision.threshold : null;
  const floor = decision.floorThreshold ?? null;
  if (floor === null || s >= STRICT) return strict;
  const upper = strict ?? 1;
  const lower = Math.min(floor, upper);
  return lower + s * (upper - lower);
}
