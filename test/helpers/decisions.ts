/**
 * An exit decision made by hand, as the planner would publish it: open at
 * `threshold` (closed when null), with the floor's threshold for SLO mode.
 */
import type { ExitDecision } from "../../src/cache/planner.ts";

export function decision(
  exit: number,
  threshold: number | null,
  floorThreshold: number | null = null,
): ExitDecision {
  return {
    exit,
    open: threshold !== null,
    threshold,
    floorThreshold,
    reason: "test",
    coverage: 0,
    savedMacs: 0,
    costMacs: 0,
    calibration: null,
  };
}
