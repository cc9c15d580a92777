/**
 * Threshold calibration on hand-made scores: the count-indexed checkpoints
 * of the fixed-sequence scan, where it starts and stops, and how ties are
 * counted.
 */
import { describe, expect, it } from "vitest";
import { lowerBound } from "../../src/cache/bounds.ts";
import type { CalibrationTarget } from "../../src/cache/calibration.ts";
import { calibrateExit, provingCounts } from "../../src/cache/calibration.ts";

const target: CalibrationTarget = {
  targetAgreement: 0.99,
  confidenceLevel: 0.95,
  boundMethod: "clopper-pearson",
};

/**
 * `n` frames whose confidence falls with rank (rank 0 the most confident);
 * the ranks in `wrong` disagree with the backbone.
 */
function ranked(n: number, wrong: readonly number[], confidenceAt = (rank: number) => 1 - rank / (2 * n)) {
  const confidence = Float32Array.from({ length: n }, (_, r) => confidenceAt(r));
  const labels = new Int32Array(n).fill(1);
  const label = Int32Array.from({ length: n }, (_, r) => (wrong.includes(r) ? 2 : 1));
  return { scores: { confidence, label }, labels, reaching: new Uint8Array(n).fill(1) };
}

describe("provingCounts", () => {
  it("gives, for each number of disagreements k, the fewest frames that still prove the target", () => {
    const counts = provingCounts(0.99, 0.95, "clopper-pearson", 800);
    expect(counts.slice(0, 4)).toEqual([299, 473, 628, 773]);
    counts.forEach((n, k) => {
      expect(lowerBound("clopper-pearson", n - k, n, 0.95)).toBeGreaterThanOrEqual(0.99);
      expect(lowerBound("clopper-pearson", n - 1 - k, n - 1, 0.95)).toBeLessThan(0.99);
    });
    expect(counts.every((n) => n <= 800)).toBe(true);
  });

  it("answers from its memo when asked again, for a smaller or a larger range", () => {
    expect(provingCounts(0.99, 0.95, "clopper-pearson", 300)).toEqual([299]);
    expect(provingCounts(0.99, 0.95, "clopper-pearson", 1000).length).toBeGreaterThan(4);
    expect(provingCounts(0.99, 0.95, "wilson", 300)).toEqual([268]);
  });
});

describe("calibrateExit", () => {
  it("keeps scanning past a lone disagreement that the next checkpoint can afford", () => {
    // One disagreement at rank 350: 0 of 299, then 1 of 473, 1 of 628 and 1 of 773.
    const { scores, labels, reaching } = ranked(1000, [350]);
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.accepted).toBeGreaterThanOrEqual(773);
    expect(out.agreed).toBe(out.accepted - 1);
    expect(out.threshold).toBeCloseTo(scores.confidence[out.accepted - 1]!, 6);
    expect(out.lowerBound).toBeGreaterThanOrEqual(0.99);
  });

  it("stays closed when the most confident frames already disagree too often", () => {
    const { scores, labels, reaching } = ranked(1000, [10, 20]);
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.threshold).toBeUndefined();
    expect(out.lowerBound).toBeLessThan(0.99);
    expect(out.reached).toBe(1000);
  });

  it("stops at the first checkpoint that fails, even if a later one would pass", () => {
    // Two disagreements by rank 473 fail there; none after would let 628 pass with 2.
    const { scores, labels, reaching } = ranked(1000, [300, 310]);
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.accepted).toBe(299);
    expect(out.agreed).toBe(299);
  });

  it("counts frames tied with a checkpoint's confidence with it", () => {
    // 400 frames share the top confidence and one of them disagrees: the first test sees all 400.
    const { scores, labels, reaching } = ranked(1000, [5], (r) => (r < 400 ? 0.999 : 0.9 - r / 1e4));
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.threshold).toBeUndefined();
    expect(out.lowerBound).toBeCloseTo(lowerBound("clopper-pearson", 399, 400, 0.95), 9);
  });

  it("only counts the frames that reach the exit", () => {
    const { scores, labels, reaching } = ranked(1000, [100, 200]);
    // The two disagreeing frames were taken by an earlier exit.
    reaching[100] = 0;
    reaching[200] = 0;
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.reached).toBe(998);
    expect(out.agreed).toBe(out.accepted);
    expect(out.threshold).toBeDefined();
  });

  it("cannot open an exit that fewer frames reach than the first checkpoint needs", () => {
    const { scores, labels, reaching } = ranked(298, []);
    const out = calibrateExit(scores, labels, reaching, target);
    expect(out.threshold).toBeUndefined();
    expect(out.minFrames).toBe(299);
  });

  describe("with scanStartShare", () => {
    const later: CalibrationTarget = { ...target, scanStartShare: 0.25 };

    it("starts at the largest checkpoint within the share, so a lone disagreement among the most confident does not close the exit", () => {
      // 3,000 frames: the share allows 750, so the scan starts at 628 (2 disagreements).
      const { scores, labels, reaching } = ranked(3000, [3]);
      expect(calibrateExit(scores, labels, reaching, target).threshold).toBeUndefined();
      const out = calibrateExit(scores, labels, reaching, later);
      expect(out.threshold).toBeDefined();
      expect(out.accepted).toBeGreaterThanOrEqual(628);
      expect(out.agreed).toBe(out.accepted - 1);
    });

    it("still fails where the first checkpoint it tests fails", () => {
      const { scores, labels, reaching } = ranked(3000, [3, 50, 100]);
      const out = calibrateExit(scores, labels, reaching, later);
      expect(out.threshold).toBeUndefined();
      expect(out.lowerBound).toBeCloseTo(lowerBound("clopper-pearson", 625, 628, 0.95), 9);
    });

    it("starts at the first checkpoint when the evidence is short, and gives what share 0 gives there", () => {
      // 1,800 frames allow 450 < 473: the same scan as without a share.
      for (const wrong of [[3], [350], [300, 310]]) {
        const { scores, labels, reaching } = ranked(1800, wrong);
        expect(calibrateExit(scores, labels, reaching, later)).toEqual(
          calibrateExit(scores, labels, reaching, target),
        );
      }
    });

    it("counts only the frames that reach the exit towards the share", () => {
      const { scores, labels, reaching } = ranked(3000, [3]);
      // 1,800 of them reach it: the scan starts at 299 again, and the disagreement closes it.
      reaching.fill(0, 1800);
      expect(calibrateExit(scores, labels, reaching, later).threshold).toBeUndefined();
    });
  });
});
