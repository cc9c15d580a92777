/**
 * The cache bench's evidence curve (bench/cache/report.ts) on hand-made head
 * answers: it calibrates exit 0 on draws of the stream and applies each
 * proven threshold to the whole stream.
 */
import { describe, expect, it } from "vitest";
import type { HeadAnswers } from "../../bench/cache/report.ts";
import { evidenceCurve } from "../../bench/cache/report.ts";
import type { CalibrationTarget } from "../../src/cache/calibration.ts";

const target: CalibrationTarget = {
  targetAgreement: 0.99,
  confidenceLevel: 0.95,
  boundMethod: "clopper-pearson",
};

/**
 * `count` frames with exit-0 confidence falling with the frame index; the
 * frames in `wrong` get a label other than the backbone's.
 */
function stream(count: number, wrong: (f: number) => boolean) {
  const backbone = Array.from({ length: count }, (_, f) => f % 10);
  const answers: HeadAnswers = {
    labels: [Int32Array.from(backbone, (label, f) => (wrong(f) ? (label + 1) % 10 : label))],
    confidence: [Float32Array.from({ length: count }, (_, f) => 1 - f / (2 * count))],
  };
  return { answers, backbone };
}

describe("evidenceCurve", () => {
  it("proves more of a head that is always right as the held-out set grows, and never closes it", () => {
    const { answers, backbone } = stream(6000, () => false);
    const curve = evidenceCurve(answers, backbone, target, [500, 2000, 5000], 20, 1);
    expect(curve.map((p) => p.frames)).toEqual([500, 2000, 5000]);
    for (const p of curve) {
      expect(p.closed).toBe(0);
      expect(p.agreement).toBe(1);
    }
    // With no disagreement the scan reaches its last checkpoint: nearly the whole draw.
    expect(curve[0]!.coverage).toBeGreaterThan(0.5);
    expect(curve[2]!.coverage).toBeGreaterThan(curve[0]!.coverage);
    expect(curve[2]!.coverage).toBeGreaterThan(0.9);
  });

  it("closes exit 0 in every draw whose most confident frames hold a disagreement", () => {
    // Every draw is the whole stream, and its most confident frame disagrees.
    const { answers, backbone } = stream(1000, (f) => f === 0);
    const [point] = evidenceCurve(answers, backbone, target, [1000], 5, 1);
    expect(point).toEqual({ frames: 1000, coverage: 0, closed: 1, agreement: 1 });
  });

  it("applies the proven threshold to the whole stream, disagreements below it included", () => {
    // One frame in fifty disagrees, all in the less confident half.
    const { answers, backbone } = stream(4000, (f) => f >= 2000 && f % 50 === 0);
    const [point] = evidenceCurve(answers, backbone, target, [4000], 1, 1);
    expect(point!.closed).toBe(0);
    expect(point!.coverage).toBeGreaterThanOrEqual(0.5);
    expect(point!.coverage).toBeLessThan(1);
    // The agreement it reports is the stream's above that threshold.
    const above = Math.round(point!.coverage * 4000);
    const wrongAbove = Array.from({ length: above }, (_, f) => f >= 2000 && f % 50 === 0).filter(
      Boolean,
    ).length;
    expect(point!.agreement).toBeCloseTo(1 - wrongAbove / above, 9);
  });

  it("skips sizes larger than the stream and repeats for a seed", () => {
    const { answers, backbone } = stream(3000, (f) => f % 97 === 5);
    const a = evidenceCurve(answers, backbone, target, [1000, 5000], 10, 3);
    const b = evidenceCurve(answers, backbone, target, [1000, 5000], 10, 3);
    expect(a.map((p) => p.frames)).toEqual([1000]);
    expect(b).toEqual(a);
  });

  it("gives nothing without a head at exit 0", () => {
    const answers: HeadAnswers = { labels: [null], confidence: [null] };
    expect(evidenceCurve(answers, [1, 2, 3], target, [2], 3, 1)).toEqual([]);
  });
});
