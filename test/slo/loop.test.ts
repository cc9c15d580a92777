/**
 * The worker's SLO loop without a worker: latencies are fed as the frame
 * stage would feed them, the lag comes from a variable, and periods are
 * ticked by hand (the test is about the loop's bookkeeping, not Kafka).
 */
import { describe, expect, it } from "vitest";
import { NO_EARLY_EXIT } from "../../src/cache/strictness.ts";
import { SloLoop } from "../../src/slo/loop.ts";
import { createLogger } from "../../src/telemetry/logger.ts";

const log = createLogger({ level: "silent", workerId: "test" });
const agreements = { target: 0.99, floor: 0.97 };

describe("SloLoop", () => {
  it("without an objective stays strict but still honours frame hints", () => {
    const loop = new SloLoop({ agreements, urgentMs: 50, lag: () => 1_000_000, log });
    expect(loop.enabled).toBe(false);
    expect(loop.tick()).toBeUndefined();
    expect(loop.strictness).toBe(1);
    expect(loop.forFrame({ deadlineMs: null, minAgreement: null }, 0)).toBe(1);
    expect(loop.forFrame({ deadlineMs: 10, minAgreement: null }, 0)).toBe(0);
    expect(loop.forFrame({ deadlineMs: null, minAgreement: 0.999 }, 0)).toBe(NO_EARLY_EXIT);
  });

  it("steps down when delivered latencies miss the objective, and reports each step", () => {
    let lag = 0;
    const steps: string[] = [];
    const loop = new SloLoop({
      controller: { objectiveMs: 500, periodMs: 1000 },
      agreements,
      urgentMs: 50,
      lag: () => lag,
      onStep: (s) => steps.push(s.action),
      log,
    });
    for (let i = 0; i < 100; i++) loop.delivered(100);
    loop.tick();
    expect(loop.strictness).toBe(1);
    for (let round = 1; round <= 3; round++) {
      lag += 2_000;
      for (let i = 0; i < 100; i++) loop.delivered(2_000);
      loop.tick();
    }
    expect(loop.strictness).toBeLessThan(1);
    expect(steps[0]).toBe("hold");
    expect(steps.slice(1)).toEqual(["down", "down", "down"]);
    // The level applies to frames without hints; a frame's minimum agreement still raises it.
    expect(loop.forFrame({ deadlineMs: null, minAgreement: null }, 0)).toBe(loop.strictness);
    expect(loop.forFrame({ deadlineMs: null, minAgreement: 0.99 }, 0)).toBe(1);
  });
});
