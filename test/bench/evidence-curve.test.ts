/**
 * The cache bench's evidence curve (bench/cache/report.ts) on hand-made head
 * answers: it calibrates exit 0 on draws from a pool of frames and judges
 * each proven threshold on the pool's frames it did not draw.
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
  it("proves more of a head that is always right as the draw grows, and never closes it", () => {
    const { answers, backbone } = stream(6000, () => false);
    const curve = evidenceCurve(answers, backbone, target, [500, 2000, 5000], 20, 1);
    expect(curve.map((p) => [p.frames, p.judgedOn])).toEqual([
      [500, 5500],
      [2000, 4000],
      [5000, 1000],
    ]);
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
    // The 100 most confident frames all disagree: any draw of 900 of 1,000 holds some of them.
    const { answers, backbone } = stream(1000, (f) => f < 100);
    const [point] = evidenceCurve(answers, backbone, target, [900], 5, 1);
    expect(point).toEqual({ frames: 900, judgedOn: 100, coverage: 0, closed: 1, agreement: 1 });
  });

  it("judges the proven threshold on the frames it did not draw, disagreements below it included", () => {
    // One frame in fifty disagrees, all in the less confident half.
    const wrong = (f: number) => f >= 2000 && f % 50 === 0;
    const { answers, backbone } = stream(4000, wrong);
    const [point] = evidenceCurve(answers, backbone, target, [3000], 50, 1);
    expect(point!.closed).toBe(0);
    expect(point!.judgedOn).toBe(1000);
    expect(point!.coverage).toBeGreaterThanOrEqual(0.5);
    expect(point!.coverage).toBeLessThan(1);
    // Above a threshold in the less confident half some judged frames disagree, never more than 1 in 50.
    expect(point!.agreement).toBeLessThan(1);
    expect(point!.agreement).toBeGreaterThanOrEqual(0.98);
  });

  it("draws only from the pool it is given", () => {
    // Outside the pool every answer disagrees; inside, none does.
    const pool = Array.from({ length: 2000 }, (_, i) => 2 * i);
    const { answers, backbone } = stream(4000, (f) => f % 2 === 1);
    const [point] = evidenceCurve(answers, backbone, target, [1000], 20, 1, pool);
    expect(point!.judgedOn).toBe(1000);
    expect(point!.closed).toBe(0);
    expect(point!.agreement).toBe(1);
  });

  it("skips sizes that leave no frame to judge on and repeats for a seed", () => {
    const { answers, backbone } = stream(3000, (f) => f % 97 === 5);
    const a = evidenceCurve(answers, backbone, target, [1000, 3000, 5000], 10, 3);
    const b = evidenceCurve(answers, backbone, target, [1000, 3000, 5000], 10, 3);
    expect(a.map((p) => p.frames)).toEqual([1000]);
    expect(b).toEqual(a);
  });

  it("gives nothing without a head at exit 0", () => {
    const answers: HeadAnswers = { labels: [null], confidence: [null] };
    expect(evidenceCurve(answers, [1, 2, 3], target, [2], 3, 1)).toEqual([]);
  });
});
