/**
 * The online cache's targets as the benchmark checks them (bench/cache/targets.ts):
 * one run's figures against each target, and the count of seeds that met each.
 */
import { describe, expect, it } from "vitest";
import type { TargetFigures } from "../../bench/cache/targets.ts";
import { checkTargets, notJudged, targetsMet } from "../../bench/cache/targets.ts";

function figures(extra: Partial<TargetFigures> = {}): TargetFigures {
  return {
    agreement: 0.9974,
    accuracyDropPts: 0.11,
    macsSavedPct: 46.85,
    latencySavedPct: 24.56,
    firstExitFrame: 801,
    ...extra,
  };
}

describe("the cache bench's targets", () => {
  it("checks one run's figures, printing each as measured, with the issue's aims", () => {
    expect(checkTargets(figures(), 0.99)).toEqual([
      { target: "agreement >= 0.99", value: "0.9974", met: true },
      { target: "accuracy drop <= 0.5 points", value: "0.11", met: true },
      { target: "MACs saved >= 55%", value: "46.85%", met: false, aim: "65%" },
      { target: "mean latency saved >= 40%", value: "24.56%", met: false, aim: "55%" },
      { target: "first exit open before frame 1,500", value: "801", met: true },
    ]);
  });

  it("counts a figure exactly at its target as met, and one just past it as missed", () => {
    const met = (f: TargetFigures, t = 0.99) => checkTargets(f, t).map((c) => c.met);
    expect(
      met(figures({ macsSavedPct: 55, latencySavedPct: 40, accuracyDropPts: 0.5, agreement: 0.99 })),
    ).toEqual([true, true, true, true, true]);
    expect(
      met(figures({ macsSavedPct: 54.99, latencySavedPct: 39.99, accuracyDropPts: 0.51, agreement: 0.9899 })),
    ).toEqual([false, false, false, false, true]);
    expect(met(figures({ firstExitFrame: 1500 }))[4]).toBe(false);
    // The run's own target agreement is the one checked.
    expect(met(figures({ agreement: 0.994 }), 0.995)[0]).toBe(false);
  });

  it("says when no exit ever opened", () => {
    const first = checkTargets(figures({ firstExitFrame: -1 }), 0.99)[4]!;
    expect(first).toEqual({ target: "first exit open before frame 1,500", value: "never", met: false });
  });

  it("counts the seeds that met each target", () => {
    const lines = targetsMet(
      [
        figures({ macsSavedPct: 56, latencySavedPct: 41 }),
        figures({ macsSavedPct: 50, agreement: 0.98, firstExitFrame: -1 }),
      ],
      0.99,
    );
    expect(lines).toEqual([
      "agreement >= 0.99: 1 of 2 seeds",
      "accuracy drop <= 0.5 points: 2 of 2 seeds",
      "MACs saved >= 55%: 1 of 2 seeds",
      "mean latency saved >= 40%: 1 of 2 seeds",
      "first exit open before frame 1,500: 1 of 2 seeds",
    ]);
  });
});

describe("which runs the targets judge", () => {
  const run = { frames: 10_000, passes: 1, targetAgreement: 0.99, confidenceLevel: 0.95 };

  it("judges the split streamed once, proven at 0.99 with 95% confidence or more", () => {
    expect(notJudged(run)).toBeUndefined();
    expect(notJudged({ ...run, confidenceLevel: 0.99 })).toBeUndefined();
  });

  it("says why another stream or a weaker proof is not judged", () => {
    expect(notJudged({ ...run, frames: 40_000, passes: 4 })).toBe(
      "it streamed 40,000 frames in 4 pass(es), not 10,000 in one",
    );
    expect(notJudged({ ...run, frames: 2_000 })).toBe(
      "it streamed 2,000 frames in 1 pass(es), not 10,000 in one",
    );
    expect(notJudged({ ...run, targetAgreement: 0.98, confidenceLevel: 0.9 })).toBe(
      "its target agreement is 0.98, not 0.99; its exits were proven at 0.9 confidence, below 0.95",
    );
  });
});
