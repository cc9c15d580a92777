/**
 * Figures of `npm run bench:seeds`: one cache bench run per seed (and per
 * arm, with `--vs`), summarised across seeds. One seed's figures move by a
 * point or two with any change to the cache, because every decision feeds the
 * next; a change is worth keeping when it wins across seeds, which is what the
 * paired differences and their sign count say.
 */
import { median, table } from "../lib/stats.ts";
import type { TargetFigures } from "./targets.ts";

/** What bench:seeds keeps of one `npm run bench -- --json` result: the targets' figures and more. */
export interface SeedFigures extends TargetFigures {
  seed: number;
  /** The thresholds oracle on the held-out frames; absent when nothing was held out. */
  heldOutOracleMacsSavedPct?: number;
  /**
   * MACs saved by the final heads from the first frame, proven on the run's
   * held-out frames as they came (`finalHeadsFromTheStart`); absent when
   * nothing was held out, and in reports made before it was recorded.
   */
  fromTheStartMacsSavedPct?: number;
  /** The same if the held-out frames had cost nothing (absent as above). */
  freeEvidenceMacsSavedPct?: number;
  throughputRatio: number;
  /**
   * Drift alarms the shadow audit raised: each closes every exit and drops
   * the evidence. Absent in reports made before it was recorded.
   */
  driftAlarms?: number;
}

const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** The figures bench:seeds reads from one bench run's JSON, checked. */
export function seedFigures(seed: number, json: unknown): SeedFigures {
  const r = json as {
    macsSavedPct?: unknown;
    latencySavedPct?: unknown;
    agreement?: unknown;
    accuracy?: { backbone?: unknown; cached?: unknown };
    firstExitFrame?: unknown;
    thresholdOracle?: { heldOut?: { macsSavedPct?: unknown } };
    finalHeadsFromTheStart?: { macsSavedPct?: unknown; freeEvidenceMacsSavedPct?: unknown };
    throughput?: { ratio?: unknown };
    trainer?: { driftAlarms?: unknown };
  };
  const num = (v: unknown, name: string): number => {
    if (!isNumber(v)) throw new Error(`seed ${seed}: the bench's JSON has no number at ${name}`);
    return v;
  };
  const oracle = r.thresholdOracle?.heldOut?.macsSavedPct;
  const fromTheStart = r.finalHeadsFromTheStart?.macsSavedPct;
  const freeEvidence = r.finalHeadsFromTheStart?.freeEvidenceMacsSavedPct;
  return {
    seed,
    macsSavedPct: num(r.macsSavedPct, "macsSavedPct"),
    latencySavedPct: num(r.latencySavedPct, "latencySavedPct"),
    agreement: num(r.agreement, "agreement"),
    accuracyDropPts:
      100 * (num(r.accuracy?.backbone, "accuracy.backbone") - num(r.accuracy?.cached, "accuracy.cached")),
    firstExitFrame: num(r.firstExitFrame, "firstExitFrame"),
    heldOutOracleMacsSavedPct:
      oracle === undefined ? undefined : num(oracle, "thresholdOracle.heldOut.macsSavedPct"),
    fromTheStartMacsSavedPct:
      fromTheStart === undefined ? undefined : num(fromTheStart, "finalHeadsFromTheStart.macsSavedPct"),
    freeEvidenceMacsSavedPct:
      freeEvidence === undefined
        ? undefined
        : num(freeEvidence, "finalHeadsFromTheStart.freeEvidenceMacsSavedPct"),
    throughputRatio: num(r.throughput?.ratio, "throughput.ratio"),
    driftAlarms: num(r.trainer?.driftAlarms, "trainer.driftAlarms"),
  };
}

/** One seed's figures as an earlier `bench:seeds --json` report holds them, checked. */
export function checkedFigures(seed: number, json: unknown): SeedFigures {
  const r = json as Record<string, unknown>;
  const out: Record<string, number | undefined> = {};
  for (const { name } of FIGURES) {
    const v = r[name];
    const optional = OPTIONAL.has(name);
    if (v === undefined && optional) continue;
    if (!isNumber(v)) throw new Error(`seed ${seed}: no number at ${name}`);
    out[name] = v;
  }
  return { seed, ...out } as unknown as SeedFigures;
}

/**
 * The bench options that fix what is measured (frames, passes, batch, head
 * kind, threads...), without the `--set option=value` pairs that are what a
 * comparison changes; in order, as given.
 */
export function streamOptions(benchArgs: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < benchArgs.length; i++) {
    const arg = benchArgs[i]!;
    if (arg === "--set") {
      // Its values run up to the next option.
      while (i + 1 < benchArgs.length && !benchArgs[i + 1]!.startsWith("--")) i++;
      continue;
    }
    if (arg.startsWith("--set=")) continue;
    out.push(arg);
  }
  return out;
}

/** "1-5", "1,3,9" or "1-3,7": whole seeds, in order, each once. */
export function parseSeeds(spec: string): number[] {
  const seeds = new Set<number>();
  for (const part of spec.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new Error(`--seeds ${spec}: expected seeds such as 1-5 or 1,3,9`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new Error(`--seeds ${spec}: ${part.trim()} runs backwards`);
    for (let s = from; s <= to; s++) seeds.add(s);
  }
  return [...seeds].sort((a, b) => a - b);
}

export interface Spread {
  median: number;
  mean: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new Error("spread of no values");
  return {
    median: median(values),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

/** The figures summarised across seeds. */
export type FigureName = Exclude<keyof SeedFigures, "seed">;

export const FIGURES: readonly { name: FigureName; label: string; digits: number }[] = [
  { name: "macsSavedPct", label: "MACs saved %", digits: 2 },
  { name: "latencySavedPct", label: "mean latency saved %", digits: 2 },
  { name: "agreement", label: "agreement", digits: 4 },
  { name: "accuracyDropPts", label: "accuracy drop, points", digits: 2 },
  { name: "firstExitFrame", label: "first exit open at frame", digits: 0 },
  { name: "heldOutOracleMacsSavedPct", label: "held-out thresholds oracle %", digits: 2 },
  { name: "fromTheStartMacsSavedPct", label: "final heads from the start %", digits: 2 },
  { name: "freeEvidenceMacsSavedPct", label: "  the same, evidence free %", digits: 2 },
  { name: "throughputRatio", label: "throughput ratio", digits: 2 },
  { name: "driftAlarms", label: "drift alarms", digits: 0 },
];

/** Figures a bench run or an earlier report may lack. */
const OPTIONAL: ReadonlySet<FigureName> = new Set([
  "heldOutOracleMacsSavedPct",
  "fromTheStartMacsSavedPct",
  "freeEvidenceMacsSavedPct",
  "driftAlarms",
]);

export function summarise(runs: readonly SeedFigures[]): Partial<Record<FigureName, Spread>> {
  const out: Partial<Record<FigureName, Spread>> = {};
  for (const { name } of FIGURES) {
    const values = runs.flatMap((r) => (r[name] === undefined ? [] : [r[name]]));
    if (values.length > 0) out[name] = spread(values);
  }
  return out;
}

/** Arm B against arm A, seed by seed: B minus A, and on how many seeds B came out ahead and behind. */
export interface Paired {
  differences: number[];
  spread: Spread;
  ahead: number;
  behind: number;
}

export function paired(
  a: readonly SeedFigures[],
  b: readonly SeedFigures[],
  name: FigureName,
): Paired | undefined {
  const bySeed = new Map(a.map((r) => [r.seed, r[name]]));
  const differences = b.flatMap((r) => {
    const x = bySeed.get(r.seed);
    const y = r[name];
    return x === undefined || y === undefined ? [] : [y - x];
  });
  if (differences.length === 0) return undefined;
  return {
    differences,
    spread: spread(differences),
    ahead: differences.filter((d) => d > 0).length,
    behind: differences.filter((d) => d < 0).length,
  };
}

const fmt = (v: number | undefined, digits: number) => (v === undefined ? "-" : v.toFixed(digits));

/** One row per seed, then median, mean, min and max. */
export function seedsTable(runs: readonly SeedFigures[]): string {
  const s = summarise(runs);
  const rows = runs.map((r) => [String(r.seed), ...FIGURES.map((f) => fmt(r[f.name], f.digits))]);
  for (const stat of ["median", "mean", "min", "max"] as const) {
    rows.push([stat, ...FIGURES.map((f) => fmt(s[f.name]?.[stat], f.digits))]);
  }
  return table(["seed", ...FIGURES.map((f) => f.label)], rows);
}

/** Per figure: median of A and of B, and of B minus A seed by seed, with the sign count. */
export function pairedTable(a: readonly SeedFigures[], b: readonly SeedFigures[]): string {
  const sa = summarise(a);
  const sb = summarise(b);
  const rows = FIGURES.flatMap(({ name, label, digits }) => {
    const p = paired(a, b, name);
    if (!p) return [];
    return [
      [
        label,
        fmt(sa[name]?.median, digits),
        fmt(sb[name]?.median, digits),
        `${p.spread.median >= 0 ? "+" : ""}${p.spread.median.toFixed(digits)}`,
        `${fmt(p.spread.min, digits)} .. ${fmt(p.spread.max, digits)}`,
        `${p.ahead} / ${p.behind}`,
      ],
    ];
  });
  return table(["median over seeds", "A", "B", "B - A (median)", "B - A (range)", "B ahead / behind"], rows);
}
