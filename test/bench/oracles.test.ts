/**
 * The cache bench's two oracles (bench/cache/report.ts) on hand-made head
 * answers: every frame leaving at the first head that agrees with the
 * backbone, and thresholds set on the frames themselves with no bound.
 */
import { describe, expect, it } from "vitest";
import type { ExitMacs, HeadAnswers } from "../../bench/cache/report.ts";
import { firstAgreeingOracle, thresholdsOracle } from "../../bench/cache/report.ts";

/** Exits after 13 and 50 of the backbone's 100 MACs, heads costing 1 and 2. */
const macs: ExitMacs = { full: 100, through: [13, 50], remaining: [87, 50], heads: [1, 2] };

/** Heads whose answers agree with the backbone (label f % 10) where `agrees(exit, f)`. */
function answersFor(
  count: number,
  agrees: (exit: number, f: number) => boolean,
  confidence: (exit: number, f: number) => number = () => 0.9,
) {
  const backbone = Array.from({ length: count }, (_, f) => f % 10);
  const answers: HeadAnswers = {
    labels: [0, 1].map((e) => Int32Array.from(backbone, (l, f) => (agrees(e, f) ? l : (l + 1) % 10))),
    confidence: [0, 1].map((e) => Float32Array.from({ length: count }, (_, f) => confidence(e, f))),
  };
  return { answers, backbone };
}

describe("firstAgreeingOracle", () => {
  it("lets every frame leave at the first head that agrees, paying the heads on the way", () => {
    // Frames 0-5 agree at exit 0, 6-7 only at exit 1, 8-9 nowhere.
    const { answers, backbone } = answersFor(10, (e, f) => f < 6 || (e === 1 && f < 8));
    const spent = 6 * (13 + 1) + 2 * (50 + 1 + 2) + 2 * (100 + 1 + 2);
    expect(firstAgreeingOracle(macs, answers, backbone)).toBeCloseTo(100 * (1 - spent / 1000), 10);
    // Over the frames given only.
    expect(firstAgreeingOracle(macs, answers, backbone, [0, 1])).toBeCloseTo(86, 10);
  });

  it("skips an exit without a head, and refuses an empty set of frames", () => {
    const { answers, backbone } = answersFor(4, () => true);
    const noFirst: ExitMacs = { ...macs, heads: [null, 2] };
    expect(firstAgreeingOracle(noFirst, answers, backbone)).toBeCloseTo(100 - (50 + 2), 10);
    expect(() => firstAgreeingOracle(macs, answers, backbone, [])).toThrow(/no frames/);
  });
});

describe("thresholdsOracle", () => {
  const options = { targetAgreement: 0.99, exitOverheadMacs: 0 };

  it("takes the longest run of most confident frames that agrees often enough", () => {
    // 100 frames, exit 0 less sure of each next one; frames 50 and 80 disagree there, and exit 1
    // disagrees everywhere.
    const { answers, backbone } = answersFor(
      100,
      (e, f) => e === 0 && f !== 50 && f !== 80,
      (_e, f) => 1 - f / 200,
    );
    const oracle = thresholdsOracle(macs, answers, backbone, options);
    // 50 of 51 is below 0.99: exit 0 stops before frame 50.
    expect(oracle.exits[0]).toEqual({ exit: 0, threshold: Math.fround(1 - 49 / 200), share: 0.5 });
    expect(oracle.exits[1]).toEqual({ exit: 1, threshold: null, share: 0 });
    const spent = 50 * (13 + 1) + 50 * (100 + 1);
    expect(oracle.macsSavedPct).toBeCloseTo(100 * (1 - spent / 10_000), 10);
    expect(oracle.frames).toBe(100);
  });

  it("keeps frames of equal confidence together, and closes an exit that costs more than it saves", () => {
    // Every frame at the same confidence; the last ten disagree at exit 0. Taken one by one, the
    // first 90 would pass, but a threshold cannot split frames of equal confidence: all or none.
    const { answers, backbone } = answersFor(100, (e, f) => e === 1 || f < 90);
    const oracle = thresholdsOracle(macs, answers, backbone, options);
    expect(oracle.exits[0]!.threshold).toBeNull();
    // Exit 1 agrees on all: it takes every frame, exit 0's head unpaid as it is closed.
    expect(oracle.exits[1]).toMatchObject({ share: 1 });
    expect(oracle.macsSavedPct).toBeCloseTo(100 - (50 + 2), 10);
    const costly = thresholdsOracle(macs, answers, backbone, { ...options, exitOverheadMacs: 60 });
    expect(costly.exits.every((e) => e.threshold === null)).toBe(true);
    expect(costly.macsSavedPct).toBe(0);
  });
});
