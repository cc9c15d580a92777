/**
 * bench:seeds' figures (bench/cache/seeds-report.ts): the seed list, what it
 * reads from a bench run's JSON, the summary across seeds, and the paired
 * comparison of two arms.
 */
import { describe, expect, it } from "vitest";
import type { SeedFigures } from "../../bench/cache/seeds-report.ts";
import {
  checkedFigures,
  paired,
  pairedTable,
  parseSeeds,
  seedFigures,
  seedsTable,
  spread,
  streamOptions,
  summarise,
} from "../../bench/cache/seeds-report.ts";

function run(seed: number, macsSavedPct: number, extra: Partial<SeedFigures> = {}): SeedFigures {
  return {
    seed,
    macsSavedPct,
    latencySavedPct: macsSavedPct / 2,
    agreement: 0.997,
    accuracyDropPts: 0.1,
    firstExitFrame: 801,
    heldOutOracleMacsSavedPct: 75,
    throughputRatio: 0.8,
    driftAlarms: 0,
    ...extra,
  };
}

describe("parseSeeds", () => {
  it("reads ranges and lists, in order, each seed once", () => {
    expect(parseSeeds("1-3")).toEqual([1, 2, 3]);
    expect(parseSeeds("9,1-3,2")).toEqual([1, 2, 3, 9]);
    expect(parseSeeds(" 4 ")).toEqual([4]);
  });

  it("refuses what is not a seed list", () => {
    expect(() => parseSeeds("3-1")).toThrow(/runs backwards/);
    expect(() => parseSeeds("a")).toThrow(/expected seeds/);
    expect(() => parseSeeds("1,,2")).toThrow(/expected seeds/);
    expect(() => parseSeeds("-1")).toThrow(/expected seeds/);
  });
});

describe("streamOptions", () => {
  it("keeps what fixes the stream and drops the --set pairs a comparison changes", () => {
    expect(streamOptions(["--frames", "3000", "--set", "a=1", "b=2", "--batch", "32"])).toEqual([
      "--frames",
      "3000",
      "--batch",
      "32",
    ]);
    expect(streamOptions(["--set=a=1", "--passes", "4", "--set", "c=3"])).toEqual(["--passes", "4"]);
    expect(streamOptions([])).toEqual([]);
  });
});

describe("seedFigures", () => {
  const json = {
    macsSavedPct: 46.85,
    latencySavedPct: 25.08,
    agreement: 0.9974,
    accuracy: { backbone: 0.9413, cached: 0.9402 },
    firstExitFrame: 801,
    thresholdOracle: { heldOut: { macsSavedPct: 74.87 }, wholeStream: { macsSavedPct: 80.82 } },
    finalHeadsFromTheStart: { macsSavedPct: 49.55, freeEvidenceMacsSavedPct: 54.98, firstExitFrame: 801 },
    throughput: { ratio: 0.71 },
    trainer: { driftAlarms: 0, steps: 983 },
  };

  it("keeps the figures bench:seeds summarises, accuracy as a drop in points", () => {
    const f = seedFigures(1, json);
    expect(f).toMatchObject({ seed: 1, macsSavedPct: 46.85, agreement: 0.9974, firstExitFrame: 801 });
    expect(f.accuracyDropPts).toBeCloseTo(0.11, 10);
    expect(f.heldOutOracleMacsSavedPct).toBe(74.87);
    expect(f.fromTheStartMacsSavedPct).toBe(49.55);
    expect(f.freeEvidenceMacsSavedPct).toBe(54.98);
  });

  it("leaves the held-out figures out when the run held nothing out", () => {
    const { finalHeadsFromTheStart: _, ...none } = json;
    const f = seedFigures(2, { ...none, thresholdOracle: { wholeStream: { macsSavedPct: 80 } } });
    expect(f.heldOutOracleMacsSavedPct).toBeUndefined();
    expect(f.fromTheStartMacsSavedPct).toBeUndefined();
    expect(f.freeEvidenceMacsSavedPct).toBeUndefined();
  });

  it("names the figure a malformed result lacks", () => {
    expect(() => seedFigures(3, { ...json, agreement: null })).toThrow(/seed 3: .* agreement/);
    expect(() => seedFigures(3, { ...json, accuracy: {} })).toThrow(/accuracy\.backbone/);
    expect(() => seedFigures(3, { ...json, trainer: {} })).toThrow(/trainer\.driftAlarms/);
    expect(() => seedFigures(3, { ...json, finalHeadsFromTheStart: { macsSavedPct: "49" } })).toThrow(
      /finalHeadsFromTheStart\.macsSavedPct/,
    );
    expect(() => seedFigures(3, "not json")).toThrow(/macsSavedPct/);
  });
});

describe("checkedFigures", () => {
  it("reads back what a bench:seeds --json report holds, older reports without drift alarms included", () => {
    const r = run(4, 44);
    expect(checkedFigures(4, JSON.parse(JSON.stringify(r)))).toEqual(r);
    const { driftAlarms: _, ...older } = r;
    expect(checkedFigures(4, older)).toEqual(older);
  });

  it("refuses a run whose figures are missing or not numbers", () => {
    expect(() => checkedFigures(5, { ...run(5, 40), macsSavedPct: "40" })).toThrow(
      /seed 5: no number at macsSavedPct/,
    );
    const { agreement: _, ...partial } = run(5, 40);
    expect(() => checkedFigures(5, partial)).toThrow(/agreement/);
  });
});

describe("summaries across seeds", () => {
  it("gives median, mean, min and max", () => {
    expect(spread([3, 1, 2, 10])).toEqual({ median: 2.5, mean: 4, min: 1, max: 10 });
    expect(spread([3, 1, 2]).median).toBe(2);
    expect(() => spread([])).toThrow();
  });

  it("skips a figure a run lacks rather than counting it as zero", () => {
    const s = summarise([run(1, 40), run(2, 50, { heldOutOracleMacsSavedPct: undefined })]);
    expect(s.heldOutOracleMacsSavedPct).toEqual({ median: 75, mean: 75, min: 75, max: 75 });
    expect(s.macsSavedPct?.mean).toBe(45);
  });

  it("pairs the arms seed by seed and counts where B is ahead and behind", () => {
    const a = [run(1, 40), run(2, 50), run(3, 45)];
    const b = [run(1, 42), run(2, 49), run(3, 45), run(4, 60)];
    const p = paired(a, b, "macsSavedPct")!;
    expect(p.differences).toEqual([2, -1, 0]);
    expect(p.ahead).toBe(1);
    expect(p.behind).toBe(1);
    expect(p.spread.median).toBe(0);
    expect(paired([], b, "macsSavedPct")).toBeUndefined();
  });

  it("prints a row per seed and per statistic, and the paired medians", () => {
    const a = [run(1, 40), run(2, 50)];
    const rows = seedsTable(a).split("\n");
    expect(rows).toHaveLength(2 + 2 + 4);
    expect(rows[2]).toMatch(/^1 +40\.00 +20\.00 +0\.9970/);
    expect(rows.at(-1)).toMatch(/^max +50\.00/);
    const cmp = pairedTable(a, [run(1, 43), run(2, 51)]);
    expect(cmp).toMatch(/MACs saved % +45\.00 +47\.00 +\+2\.00 +1\.00 \.\. 3\.00 +2 \/ 0/);
  });
});
