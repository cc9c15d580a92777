/**
 * The planner's second cascade for SLO mode's agreement floor: from the same
 * scores, the floor proves a lower threshold than the target (or opens an
 * exit the target cannot), and without a floor nothing changes.
 */
import { describe, expect, it } from "vitest";
import { CalibrationSet } from "../../src/cache/calibration.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import { planExits } from "../../src/cache/planner.ts";

const CLASSES = 4;

/**
 * A stand-in head (the test is about the planner): its confidence is the
 * frame's first feature, its label the second.
 */
function featureHead(): ExitHead {
  const fill = (f: Float32Array, n: number, out: Float32Array) => {
    for (let i = 0; i < n; i++) {
      const conf = f[i * 2]!;
      const label = f[i * 2 + 1]!;
      for (let c = 0; c < CLASSES; c++)
        out[i * CLASSES + c] = c === label ? conf : (1 - conf) / (CLASSES - 1);
    }
  };
  return {
    kind: "softmax",
    shape: { kind: "softmax", inputSize: 2, hidden: 0, classes: CLASSES },
    inputSize: 2,
    classes: CLASSES,
    predict: (f, out) => fill(f, 1, out),
    predictBatch: fill,
    predictBatchWith: async (_k, f, n, out) => fill(f, n, out),
    macs: () => 8,
    trainBatch: () => 0,
    trainBatchWith: async () => 0,
    toBytes: () => new Uint8Array(0),
  };
}

/**
 * 4,000 held-out frames, confidence spread evenly over [0.5, 1). Above 0.95 the
 * head always agrees with the backbone; below, one frame in 25 disagrees.
 */
function calibrationSet(): CalibrationSet {
  const n = 4000;
  const set = new CalibrationSet(n, [2]);
  for (let i = 0; i < n; i++) {
    const conf = 0.5 + (0.5 * i) / n;
    const agrees = conf >= 0.95 || i % 25 !== 0;
    set.add([Float32Array.of(conf, 1)], agrees ? 1 : 2);
  }
  return set;
}

const target = { targetAgreement: 0.99, confidenceLevel: 0.95, boundMethod: "clopper-pearson" as const };
const costs = { remainingMacs: [1e9], overheadMacs: 0 };

describe("planExits with an agreement floor", () => {
  it("proves a lower threshold for the floor than for the target, from the same frames", async () => {
    const [d] = await planExits(
      [featureHead()],
      calibrationSet(),
      { ...target, floorAgreement: 0.97 },
      costs,
    );
    expect(d!.open).toBe(true);
    expect(d!.threshold).toBeGreaterThanOrEqual(0.95);
    expect(d!.floorThreshold).not.toBeNull();
    expect(d!.floorThreshold!).toBeLessThan(d!.threshold!);
    // One in 25 wrong below 0.95 is 96% agreement there: the floor cannot go far below it.
    expect(d!.floorThreshold!).toBeGreaterThan(0.6);
  });

  it("opens an exit for the floor that the target cannot", async () => {
    const set = new CalibrationSet(1000, [2]);
    // 98.5% agreement at every confidence: proves 0.97, never 0.99.
    for (let i = 0; i < 1000; i++) set.add([Float32Array.of(0.999, 1)], i % 200 < 3 ? 0 : 1);
    const [d] = await planExits([featureHead()], set, { ...target, floorAgreement: 0.97 }, costs);
    expect(d!.open).toBe(false);
    expect(d!.threshold).toBeNull();
    expect(d!.floorThreshold).not.toBeNull();
    // Every frame's confidence clears it (thresholds are confidences the frames had).
    expect(d!.floorThreshold!).toBeLessThanOrEqual(Math.fround(0.999));
  });

  it("plans no floor when none is asked for, or when it is not below the target", async () => {
    const [plain] = await planExits([featureHead()], calibrationSet(), target, costs);
    expect(plain!.floorThreshold).toBeUndefined();
    const [same] = await planExits(
      [featureHead()],
      calibrationSet(),
      { ...target, floorAgreement: 0.99 },
      costs,
    );
    expect(same!.floorThreshold).toBeUndefined();
    expect(same!.threshold).toBe(plain!.threshold);
  });
});
