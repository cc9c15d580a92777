/**
 * Figures of the Kafka benchmark from its arms: per arm, throughput (distinct
 * predictions per second from the first prediction to the last, by the
 * workers' clocks), end-to-end latency percentiles (prediction time minus the
 * frame's producedAt, exact ranks), accuracy against the labels, MACs saved,
 * audited share, exit distribution and duplicates; per repeat, the cache-on
 * to cache-off throughput ratio and the agreement of their labels frame by
 * frame. Across repeats: medians, except duplicates (totals) and the exit
 * distribution (pooled).
 */
import type { LatencySummary } from "../lib/stats.ts";
import { median, summarize, table } from "../lib/stats.ts";
import type { ArmCpu, ArmName, ArmRun } from "./arm.ts";
import { agreement } from "./frame-log.ts";

/** What the issue asks of the cache over Kafka. */
export const TARGET = { throughputRatio: 1.8, agreement: 0.99 } as const;

export interface ArmFigures {
  /** Distinct frames answered. */
  frames: number;
  throughput: number;
  /** From the first prediction to the last, s. */
  spanS: number;
  latencyMs: LatencySummary;
  accuracyPct: number | null;
  macsSavedPct: number | null;
  auditedPct: number | null;
  computeMsMean: number | null;
  duplicates: number;
  /** Distinct frames answered per exit name ("exit 2", "backbone"). */
  exitFrames: Record<string, number>;
  /** Frames per second the producer achieved. */
  producedPerSecond: number;
  workersFailed: boolean;
  /** CPU ms per frame answered, by where it went (bench/lib/thread-cpu.ts); null without /proc. */
  cpuMsPerFrame: CpuPerFrame | null;
}

/** CPU ms per frame: the workers' threads, the project's broker (null if not ours), this benchmark; and cores busy. */
export interface CpuPerFrame {
  main: number;
  inference: number;
  learner: number;
  other: number;
  broker: number | null;
  bench: number;
  /** All of the above over the measured stretch's wall time. */
  cores: number;
}

export const CPU_ROWS: readonly [keyof CpuPerFrame, string][] = [
  ["main", "CPU ms per frame: worker main thread"],
  ["inference", "CPU ms per frame: inference thread"],
  ["learner", "CPU ms per frame: learner thread"],
  ["other", "CPU ms per frame: other worker threads (GC, I/O)"],
  ["broker", "CPU ms per frame: the broker"],
  ["bench", "CPU ms per frame: this bench (reading)"],
  ["cores", "cores busy, all of the above"],
];

export function cpuPerFrame(cpu: ArmCpu | null, frames: number): CpuPerFrame | null {
  if (!cpu || frames <= 0) return null;
  const ms = (seconds: number) => (1000 * seconds) / frames;
  const { workers } = cpu;
  const total =
    workers.main + workers.inference + workers.learner + workers.other + (cpu.broker ?? 0) + cpu.bench;
  return {
    main: ms(workers.main),
    inference: ms(workers.inference),
    learner: ms(workers.learner),
    other: ms(workers.other),
    broker: cpu.broker === null ? null : ms(cpu.broker),
    bench: ms(cpu.bench),
    cores: cpu.wallS > 0 ? total / cpu.wallS : 0,
  };
}

export interface RepeatFigures {
  repeat: number;
  /** Arm run first in this repeat (arms alternate). */
  first: ArmName;
  cacheOff: ArmFigures;
  cacheOn: ArmFigures;
  throughputRatio: number;
  agreement: number;
  /** Frames answered in both arms. */
  compared: number;
}

type PerArm<T> = Record<ArmName, T>;

export interface BenchSettings {
  frames: number;
  workers: number;
  threads: number;
  mode: "pre-produced" | "paced";
  rate: number | null;
  repeats: number;
  seed: number;
  /** Frames cache on learned from before being measured (0: a cold start). */
  warm: number;
  /** Times the test split is streamed; more than 1: every frame a flipped and shifted variant. */
  passes: number;
  /** Learned from variants of some images, measured on variants of the others. */
  unseen: boolean;
}

export interface BenchReport extends BenchSettings {
  throughputRatio: number;
  agreement: number;
  throughput: PerArm<number>;
  p50Ms: PerArm<number>;
  p95Ms: PerArm<number>;
  p99Ms: PerArm<number>;
  meanMs: PerArm<number>;
  accuracyPct: PerArm<number | null>;
  macsSavedPct: PerArm<number | null>;
  auditedPct: PerArm<number | null>;
  computeMsMean: PerArm<number | null>;
  /** Medians over repeats; a field is null where no repeat measured it. */
  cpuMsPerFrame: PerArm<Record<keyof CpuPerFrame, number | null>>;
  duplicates: PerArm<number>;
  exitSharePct: PerArm<Record<string, number>>;
  target: { throughputRatio: number; agreement: number; met: boolean };
  runs: RepeatFigures[];
}

export function armFigures(run: ArmRun): ArmFigures {
  const s = run.snapshot;
  return {
    frames: s.distinctFrames,
    throughput: s.throughput.perSecond ?? NaN,
    spanS: s.throughput.spanS,
    latencyMs: summarize(run.frames.endToEndMs),
    accuracyPct: s.accuracy.pct,
    macsSavedPct: s.macsSavedPct,
    auditedPct: s.audited.pct,
    computeMsMean: s.computeMsMean,
    duplicates: s.duplicates,
    exitFrames: Object.fromEntries(s.exits.map((e) => [e.name, e.frames])),
    producedPerSecond: run.produced.ratePerSecond,
    workersFailed: run.workersFailed,
    cpuMsPerFrame: cpuPerFrame(run.cpu, s.distinctFrames),
  };
}

export function repeatFigures(repeat: number, first: ArmName, off: ArmRun, on: ArmRun): RepeatFigures {
  const cacheOff = armFigures(off);
  const cacheOn = armFigures(on);
  const agreed = agreement(off.frames, on.frames);
  return {
    repeat,
    first,
    cacheOff,
    cacheOn,
    throughputRatio: cacheOn.throughput / cacheOff.throughput,
    agreement: agreed.agreement,
    compared: agreed.compared,
  };
}

export function buildReport(settings: BenchSettings, runs: RepeatFigures[]): BenchReport {
  const per = <T>(pick: (f: ArmFigures) => T, combine: (values: T[]) => T): PerArm<T> => ({
    cacheOff: combine(runs.map((r) => pick(r.cacheOff))),
    cacheOn: combine(runs.map((r) => pick(r.cacheOn))),
  });
  const med = (values: number[]) => median(values);
  const medOrNull = (values: (number | null)[]) => {
    const known = values.filter((v): v is number => v !== null);
    return known.length > 0 ? median(known) : null;
  };
  const throughputRatio = median(runs.map((r) => r.throughputRatio));
  const agreementMedian = median(runs.map((r) => r.agreement));
  return {
    ...settings,
    throughputRatio,
    agreement: agreementMedian,
    throughput: per((f) => f.throughput, med),
    p50Ms: per((f) => f.latencyMs.p50, med),
    p95Ms: per((f) => f.latencyMs.p95, med),
    p99Ms: per((f) => f.latencyMs.p99, med),
    meanMs: per((f) => f.latencyMs.mean, med),
    accuracyPct: per((f) => f.accuracyPct, medOrNull),
    macsSavedPct: per((f) => f.macsSavedPct, medOrNull),
    auditedPct: per((f) => f.auditedPct, medOrNull),
    computeMsMean: per((f) => f.computeMsMean, medOrNull),
    cpuMsPerFrame: {
      cacheOff: cpuMedians(runs.map((r) => r.cacheOff)),
      cacheOn: cpuMedians(runs.map((r) => r.cacheOn)),
    },
    duplicates: per(
      (f) => f.duplicates,
      (v) => v.reduce((a, b) => a + b, 0),
    ),
    exitSharePct: {
      cacheOff: pooledShares(runs.map((r) => r.cacheOff)),
      cacheOn: pooledShares(runs.map((r) => r.cacheOn)),
    },
    target: {
      ...TARGET,
      met: throughputRatio >= TARGET.throughputRatio && agreementMedian >= TARGET.agreement,
    },
    runs,
  };
}

/** Each CPU figure's median over the repeats that measured it. */
function cpuMedians(arms: ArmFigures[]): Record<keyof CpuPerFrame, number | null> {
  return Object.fromEntries(
    CPU_ROWS.map(([key]) => {
      const known = arms.map((a) => a.cpuMsPerFrame?.[key] ?? null).filter((v): v is number => v !== null);
      return [key, known.length > 0 ? median(known) : null];
    }),
  ) as Record<keyof CpuPerFrame, number | null>;
}

/** Share of frames per exit over all repeats, percent, in the order the summaries list exits. */
function pooledShares(arms: ArmFigures[]): Record<string, number> {
  const frames = new Map<string, number>();
  for (const a of arms)
    for (const [name, n] of Object.entries(a.exitFrames)) frames.set(name, (frames.get(name) ?? 0) + n);
  const total = arms.reduce((n, a) => n + a.frames, 0);
  const order = (name: string) => (name === "backbone" ? Infinity : Number(name.replace(/\D/g, "")));
  return Object.fromEntries(
    [...frames.entries()]
      .sort(([a], [b]) => order(a) - order(b))
      .map(([name, n]) => [name, (100 * n) / total]),
  );
}

const fixed = (x: number | null, digits: number) => (x === null || Number.isNaN(x) ? "-" : x.toFixed(digits));
const pct = (x: number | null) => (x === null ? "-" : `${x.toFixed(2)}%`);
const met = (ok: boolean) => (ok ? "met" : "not met");

/** The report as tables, for a terminal. */
export function formatReport(r: BenchReport): string {
  const row = <T>(name: string, v: PerArm<T>, show: (x: T) => string) => [
    name,
    show(v.cacheOff),
    show(v.cacheOn),
  ];
  const exitNames = [
    ...new Set([...Object.keys(r.exitSharePct.cacheOff), ...Object.keys(r.exitSharePct.cacheOn)]),
  ];
  const load =
    r.mode === "paced"
      ? `paced at ${r.rate} frames/s`
      : "all frames produced before the workers start (latency is mostly the wait in the topic)";
  const start =
    r.warm > 0
      ? `cache on warm: it starts from what a worker learned on the ${r.warm.toLocaleString("en")} frames before them` +
        (r.unseen
          ? ", variants of other images than those measured (all measured frames are variants too)"
          : "")
      : "cache on from a cold start";
  const lines = [
    `${r.frames.toLocaleString("en")} Fashion-MNIST test frames (seed ${r.seed}${r.passes > 1 ? `, ${r.passes} passes of flipped and shifted variants` : ""}), ${r.workers} worker(s), ` +
      `${r.threads} intra-op thread(s), ${r.repeats} repeat(s)${r.repeats > 1 ? " (medians)" : ""}; ${load}; ${start}`,
    "",
    table(
      ["", "cache off", "cache on"],
      [
        row("throughput, predictions/s", r.throughput, (x) => fixed(x, 1)),
        [
          "end-to-end ms p50 / p95 / p99",
          ...(["cacheOff", "cacheOn"] as const).map(
            (a) => `${fixed(r.p50Ms[a], 1)} / ${fixed(r.p95Ms[a], 1)} / ${fixed(r.p99Ms[a], 1)}`,
          ),
        ],
        row("end-to-end ms mean", r.meanMs, (x) => fixed(x, 1)),
        row("compute ms per frame, mean", r.computeMsMean, (x) => fixed(x, 3)),
        ...CPU_ROWS.map(([key, name]) => [
          name,
          fixed(r.cpuMsPerFrame.cacheOff[key], key === "cores" ? 2 : 3),
          fixed(r.cpuMsPerFrame.cacheOn[key], key === "cores" ? 2 : 3),
        ]),
        row("accuracy", r.accuracyPct, pct),
        row("MACs saved", r.macsSavedPct, pct),
        row("audited", r.auditedPct, pct),
        row("duplicates", r.duplicates, String),
        ...exitNames.map((name) => [
          `answered at ${name}`,
          pct(r.exitSharePct.cacheOff[name] ?? 0),
          pct(r.exitSharePct.cacheOn[name] ?? 0),
        ]),
      ],
    ),
    "",
    `throughput ratio, cache on / off: ${fixed(r.throughputRatio, 2)} ` +
      `(target >= ${TARGET.throughputRatio}: ${met(r.throughputRatio >= TARGET.throughputRatio)})`,
    `agreement of cache-on labels with cache-off labels: ${fixed(r.agreement, 4)} ` +
      `(target >= ${TARGET.agreement}: ${met(r.agreement >= TARGET.agreement)})`,
  ];
  if (r.runs.length > 1) {
    lines.push(
      "",
      table(
        ["repeat", "first", "off pred/s", "on pred/s", "ratio", "agreement", "p95 ms off / on"],
        r.runs.map((x) => [
          String(x.repeat + 1),
          x.first === "cacheOn" ? "cache on" : "cache off",
          fixed(x.cacheOff.throughput, 1),
          fixed(x.cacheOn.throughput, 1),
          fixed(x.throughputRatio, 2),
          fixed(x.agreement, 4),
          `${fixed(x.cacheOff.latencyMs.p95, 1)} / ${fixed(x.cacheOn.latencyMs.p95, 1)}`,
        ]),
      ),
    );
  }
  return lines.join("\n");
}
