/**
 * SLO mode's controller (docs/slo.md): one number, the strictness, between 1
 * (every exit at the threshold proven for the target agreement) and 0 (at the
 * threshold proven for the agreement floor). Under overload frames exit
 * earlier, so the worker serves more frames per second; when load falls it
 * returns to strict. The floor is never crossed: strictness 0 is the floor.
 *
 * The control law, once per period:
 *
 * - pressure = max(p95 / objective, queue delay / objective), where p95 is
 *   the produce-to-prediction latency of the predictions delivered in the
 *   period and queue delay = consumer lag / delivery rate, the time a frame
 *   arriving now will wait;
 * - overloaded (pressure above `actAbove`, 0.9: act before the objective is
 *   missed) and the backlog not shrinking: step down by
 *   `stepDown` x min(pressure - actAbove, 1), at least `minStep`;
 * - overloaded but the backlog shrinking fast enough to be back within the
 *   objective in `drainPeriods`: hold, the last step is working;
 * - light (pressure < `relaxBelow` and no backlog to speak of): step up by
 *   `stepUp`, but not within `cooldownPeriods` of the last step down;
 * - otherwise hold (the dead band).
 *
 * Steps down are large and steps up small and delayed, and the dead band
 * between `relaxBelow` and 1 is wide: the strictness settles where the worker
 * keeps up, wandering by at most one step around the level that balances
 * arrivals and service, slowly (tens of periods), with latency inside the
 * objective. The test drives the law with a queue model
 * (test/slo/controller.test.ts).
 */
import { z } from "zod";

export const sloControllerSchema = z.strictObject({
  /** Objective on the p95 produce-to-prediction latency, milliseconds. */
  objectiveMs: z.number().positive(),
  /** Control period, milliseconds. */
  periodMs: z.number().int().min(50).default(1000),
  /** Above this share of the objective the worker is overloaded: act before the objective is missed. */
  actAbove: z.number().gt(0).max(1).default(0.9),
  /** Below this share of the objective the load is light and the strictness may rise. */
  relaxBelow: z.number().gt(0).lt(1).default(0.5),
  /** Largest step down per period (at pressure 2 and above). */
  stepDown: z.number().gt(0).max(1).default(0.3),
  /** Smallest step down when overloaded. */
  minStep: z.number().gt(0).max(1).default(0.05),
  /** Step up per light period. */
  stepUp: z.number().gt(0).max(1).default(0.05),
  /** An overload whose backlog drains within this many periods is left to drain. */
  drainPeriods: z.number().int().min(1).default(10),
  /** Periods after a step down before the strictness may rise again. */
  cooldownPeriods: z.number().int().min(0).default(5),
});

export type SloControllerOptions = z.output<typeof sloControllerSchema>;
export type SloControllerInput = z.input<typeof sloControllerSchema>;

/** What the worker measured over one period. */
export interface LoadSignal {
  /** p95 produce-to-prediction latency of the period's predictions; null when none were delivered. */
  p95Ms: number | null;
  /** Frames waiting in the consumed partitions (sum of consumer lag) at the end of the period. */
  lagFrames: number;
  /** Predictions delivered per second over the period. */
  deliveredPerSecond: number;
}

export type ControlAction = "down" | "up" | "hold" | "draining";

export interface ControlStep {
  strictness: number;
  action: ControlAction;
  /** The pressure the step was decided on (1 = at the objective). */
  pressure: number;
  /** Estimated wait of a frame arriving now, milliseconds. */
  queueDelayMs: number;
}

export class StrictnessController {
  readonly options: SloControllerOptions;
  private level = 1;
  private lastLag: number | undefined;
  private sinceDown = Infinity;

  constructor(options: SloControllerInput) {
    this.options = sloControllerSchema.parse(options);
  }

  get strictness(): number {
    return this.level;
  }

  /** One period: reads the signal, moves the strictness, says why. */
  update(signal: LoadSignal): ControlStep {
    const { objectiveMs, actAbove, relaxBelow, stepDown, minStep, stepUp, cooldownPeriods, drainPeriods } =
      this.options;
    const rate = Math.max(signal.deliveredPerSecond, 1e-9);
    // No deliveries and frames waiting: the wait is unbounded for all we know.
    const queueDelayMs = signal.lagFrames === 0 ? 0 : (signal.lagFrames / rate) * 1000;
    const latency = signal.p95Ms ?? 0;
    const pressure = Math.max(latency, queueDelayMs) / objectiveMs;
    // Frames a backlog may hold and still be waited out within the objective.
    const allowed = (rate * objectiveMs) / 1000;
    const drained = this.lastLag === undefined ? 0 : this.lastLag - signal.lagFrames;
    const excess = signal.lagFrames - allowed;
    const shrinking = drained > 0 && (excess <= 0 || excess / drained <= drainPeriods);
    this.lastLag = signal.lagFrames;
    this.sinceDown++;

    let action: ControlAction = "hold";
    if (pressure > actAbove) {
      if (shrinking) action = "draining";
      else if (this.level > 0) {
        action = "down";
        this.level = Math.max(0, this.level - Math.max(minStep, stepDown * Math.min(pressure - actAbove, 1)));
        this.sinceDown = 0;
      }
    } else if (pressure < relaxBelow && this.level < 1 && this.sinceDown > cooldownPeriods) {
      action = "up";
      this.level = Math.min(1, this.level + stepUp);
    }
    return { strictness: this.level, action, pressure, queueDelayMs };
  }
}

/** A frame's own hints (Frame schema): both optional. */
export interface FrameHints {
  /** Absolute deadline, epoch milliseconds. */
  deadlineMs: number | null;
  /** Minimum agreement with the backbone this frame's answer must have. */
  minAgreement: number | null;
}

export interface Agreements {
  /** What the thresholds at strictness 1 prove. */
  target: number;
  /** What the thresholds at strictness 0 prove. */
  floor: number;
}

/**
 * The strictness one frame is answered at, from the controller's level and
 * the frame's hints:
 *
 * - a frame whose deadline has passed, or is closer than `urgentMs`, goes at
 *   the floor (0): an early answer is worth more to it than a strict one;
 * - a frame's minimum agreement then raises its strictness to the level
 *   whose thresholds lie at or above what it asks for (linear between floor
 *   and target, as the thresholds are); above the target, no early answer
 *   proves enough, so it gets `noEarlyExit` and runs the whole backbone.
 */
export function frameStrictness(
  level: number,
  hints: FrameHints,
  nowMs: number,
  agreements: Agreements,
  urgentMs: number,
  noEarlyExit: number,
): number {
  let s = level;
  if (hints.deadlineMs !== null && hints.deadlineMs - nowMs < urgentMs) s = 0;
  const wanted = hints.minAgreement;
  if (wanted !== null && wanted > agreements.floor) {
    if (wanted > agreements.target) return noEarlyExit;
    const span = agreements.target - agreements.floor;
    s = Math.max(s, span > 0 ? (wanted - agreements.floor) / span : 1);
  }
  return s;
}
