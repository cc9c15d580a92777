/**
 * SLO mode in a running worker (docs/slo.md): collects the produce-to-
 * prediction latency of every delivered prediction, reads the consumer lag,
 * and once per period lets the controller move the strictness. The frame
 * stage asks it, per frame, at what strictness to answer (`forFrame`), which
 * also honours the frame's own hints (deadline, minimum agreement).
 *
 * Without an objective the controller stays out and every frame is strict,
 * but the hints are still honoured.
 */
import { NO_EARLY_EXIT } from "../cache/strictness.ts";
import type { Logger } from "../telemetry/logger.ts";
import { LatencyHistogram } from "../tools/latency-histogram.ts";
import type { Agreements, ControlStep, FrameHints, SloControllerInput } from "./controller.ts";
import { StrictnessController, frameStrictness } from "./controller.ts";

export interface SloLoopOptions {
  /** The controller's settings; absent: no objective, always strict. */
  controller?: SloControllerInput;
  agreements: Agreements;
  /** A frame whose deadline is closer than this goes at the floor. */
  urgentMs: number;
  /** Frames waiting in the assigned partitions now. */
  lag: () => number;
  /** Each period's decision (metrics). */
  onStep?: (step: ControlStep) => void;
  log: Logger;
}

export class SloLoop {
  private readonly controller: StrictnessController | undefined;
  /** This period's delivered latencies: bounded memory, p95 within 1%. */
  private latencies = new LatencyHistogram();
  private periodStart = performance.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SloLoopOptions) {
    this.controller = options.controller ? new StrictnessController(options.controller) : undefined;
  }

  get enabled(): boolean {
    return this.controller !== undefined;
  }

  /** The controller's level: 1 strict (target), 0 at the floor. */
  get strictness(): number {
    return this.controller?.strictness ?? 1;
  }

  start(): void {
    if (!this.controller || this.timer) return;
    this.timer = setInterval(() => this.tick(), this.controller.options.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A prediction was delivered, `endToEndMs` after its frame was produced. */
  delivered(endToEndMs: number): void {
    if (this.controller) this.latencies.add(endToEndMs);
  }

  forFrame(hints: FrameHints, nowMs: number): number {
    const { agreements, urgentMs } = this.options;
    return frameStrictness(this.strictness, hints, nowMs, agreements, urgentMs, NO_EARLY_EXIT);
  }

  /** One control period; public so tests can drive it without a timer. */
  tick(): ControlStep | undefined {
    if (!this.controller) return undefined;
    const now = performance.now();
    const seconds = Math.max((now - this.periodStart) / 1000, 1e-3);
    const before = this.controller.strictness;
    const step = this.controller.update({
      p95Ms: this.latencies.quantile(0.95) ?? null,
      lagFrames: this.options.lag(),
      deliveredPerSecond: this.latencies.count / seconds,
    });
    this.latencies = new LatencyHistogram();
    this.periodStart = now;
    if (step.strictness !== before) {
      this.options.log.info(
        {
          strictness: Number(step.strictness.toFixed(3)),
          pressure: Number(step.pressure.toFixed(2)),
          queueDelayMs: Math.round(step.queueDelayMs),
        },
        step.action === "down" ? "SLO: answering earlier (overloaded)" : "SLO: back towards strict",
      );
    }
    this.options.onStep?.(step);
    return step;
  }
}
