/**
 * The SLO controller against synthetic signals, and against a queue model of
 * a worker whose service rate grows as the strictness falls: it must move the
 * right way, never past the floor (strictness 0), and settle without
 * oscillating.
 */
import { describe, expect, it } from "vitest";
import type { LoadSignal } from "../../src/slo/controller.ts";
import { StrictnessController, frameStrictness } from "../../src/slo/controller.ts";

const OBJECTIVE = 1000;
const calm: LoadSignal = { p95Ms: 200, lagFrames: 0, deliveredPerSecond: 300 };
const overloaded = (lagFrames: number): LoadSignal => ({ p95Ms: 2500, lagFrames, deliveredPerSecond: 300 });

describe("StrictnessController", () => {
  it("starts strict and stays strict under light load", () => {
    const c = new StrictnessController({ objectiveMs: OBJECTIVE });
    for (let i = 0; i < 20; i++) expect(c.update(calm).strictness).toBe(1);
  });

  it("steps down while overloaded and the backlog grows, never below 0", () => {
    const c = new StrictnessController({ objectiveMs: OBJECTIVE });
    const levels: number[] = [];
    for (let i = 0; i < 30; i++) levels.push(c.update(overloaded(1000 + 500 * i)).strictness);
    for (let i = 1; i < levels.length; i++) expect(levels[i]!).toBeLessThanOrEqual(levels[i - 1]!);
    expect(levels[0]).toBeLessThan(1);
    expect(Math.min(...levels)).toBe(0);
    expect(levels.every((s) => s >= 0)).toBe(true);
  });

  it("holds while an overload drains, then returns to strict after the cool-down", () => {
    const c = new StrictnessController({ objectiveMs: OBJECTIVE, cooldownPeriods: 3 });
    c.update(overloaded(5000));
    c.update(overloaded(9000));
    const low = c.strictness;
    expect(low).toBeLessThan(1);
    const draining = c.update(overloaded(8000));
    expect(draining.action).toBe("draining");
    expect(draining.strictness).toBe(low);
    const after: string[] = [];
    for (let i = 0; i < 40; i++) after.push(c.update(calm).action);
    // No step up within the cool-down after the last step down.
    expect(after.slice(0, 2)).toEqual(["hold", "hold"]);
    expect(after).toContain("up");
    expect(c.strictness).toBe(1);
  });

  it("counts a backlog as pressure even when the delivered frames were quick", () => {
    const c = new StrictnessController({ objectiveMs: OBJECTIVE });
    c.update({ p95Ms: 100, lagFrames: 100, deliveredPerSecond: 300 });
    const step = c.update({ p95Ms: 100, lagFrames: 900, deliveredPerSecond: 300 });
    expect(step.queueDelayMs).toBeCloseTo(3000, 6);
    expect(step.action).toBe("down");
  });

  it("settles under a sustained overload in a queue model, without oscillating", () => {
    // Service rate at strictness s: 300 frames/s strict, 700 at the floor; arrivals 550/s.
    const service = (s: number) => 300 + 400 * (1 - s);
    const arrivals = 550;
    const c = new StrictnessController({ objectiveMs: OBJECTIVE });
    let backlog = 0;
    const trace: { s: number; delay: number }[] = [];
    for (let t = 0; t < 300; t++) {
      const mu = service(c.strictness);
      const served = Math.min(backlog + arrivals, mu);
      backlog = backlog + arrivals - served;
      // Queueing delay of what is delivered now, plus 100 ms of service.
      const delay = (backlog / mu) * 1000 + 100;
      c.update({ p95Ms: delay, lagFrames: Math.round(backlog), deliveredPerSecond: served });
      trace.push({ s: c.strictness, delay });
    }
    const late = trace.slice(100);
    // Back within the objective after settling, at a strictness that keeps up (service >= arrivals).
    expect(Math.max(...late.map((p) => p.delay))).toBeLessThanOrEqual(OBJECTIVE);
    expect(Math.max(...late.map((p) => p.s))).toBeLessThanOrEqual(0.375 + 0.05);
    expect(Math.min(...late.map((p) => service(p.s)))).toBeGreaterThan(arrivals - 60);
    // No swings once settled: the strictness wanders by at most one step up and back.
    const levels = late.map((p) => p.s);
    expect(Math.max(...levels) - Math.min(...levels)).toBeLessThanOrEqual(0.05 + 1e-9);
    // It took the overload seriously: the floor side of the range, not strict.
    expect(Math.min(...levels)).toBeGreaterThan(0);
    expect(trace.every((p) => p.s >= 0 && p.s <= 1)).toBe(true);
  });

  it("rejects nonsense options", () => {
    expect(() => new StrictnessController({ objectiveMs: -1 })).toThrow();
    expect(() => new StrictnessController({ objectiveMs: 100, relaxBelow: 1.5 })).toThrow();
  });
});

describe("frameStrictness", () => {
  const agreements = { target: 0.99, floor: 0.97 };
  const none = { deadlineMs: null, minAgreement: null };
  it("follows the controller without hints", () => {
    expect(frameStrictness(0.4, none, 0, agreements, 50, 2)).toBe(0.4);
  });
  it("sends a frame near its deadline to the floor", () => {
    expect(frameStrictness(1, { deadlineMs: 1030, minAgreement: null }, 1000, agreements, 50, 2)).toBe(0);
    expect(frameStrictness(1, { deadlineMs: 5000, minAgreement: null }, 1000, agreements, 50, 2)).toBe(1);
  });
  it("raises the strictness to a frame's own minimum agreement, and above the target forbids early answers", () => {
    expect(frameStrictness(0, { deadlineMs: null, minAgreement: 0.98 }, 0, agreements, 50, 2)).toBeCloseTo(
      0.5,
    );
    expect(frameStrictness(0.8, { deadlineMs: null, minAgreement: 0.98 }, 0, agreements, 50, 2)).toBe(0.8);
    expect(frameStrictness(0, { deadlineMs: null, minAgreement: 0.9 }, 0, agreements, 50, 2)).toBe(0);
    expect(frameStrictness(0, { deadlineMs: null, minAgreement: 0.995 }, 0, agreements, 50, 2)).toBe(2);
    // A minimum agreement wins over an urgent deadline.
    expect(frameStrictness(1, { deadlineMs: 0, minAgreement: 0.99 }, 1000, agreements, 50, 2)).toBe(1);
  });
});
