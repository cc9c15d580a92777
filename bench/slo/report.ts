/**
 * Figures of one bench:slo arm from the first prediction of every frame:
 * per phase of the load profile and per bucket of produce time, p95
 * produce-to-prediction latency, backlog, agreement with the backbone and the
 * share of early answers; and when, in the overload, p95 came back within the
 * objective for good.
 */
import type { RatePhase } from "../../src/tools/frame-producer.ts";
import type { FrameLog } from "../kafka/frame-log.ts";
import { percentile, table } from "../lib/stats.ts";

export type SloMode = "fixed" | "slo";

const PHASE_NAMES = ["warm-up", "overload", "recovery"];

export interface PhaseFigures {
  phase: string;
  frames: number;
  rate: number;
  p95Ms: number;
  /** Most frames produced and not yet answered, at any prediction read in the phase. */
  maxBacklog: number;
  agreement: number;
  earlyShare: number;
}

export interface Bucket {
  /** Produce time of the bucket's start, seconds after the first frame. */
  startS: number;
  frames: number;
  p95Ms: number;
  agreement: number;
  earlyShare: number;
  /** Largest backlog (frames produced, not yet answered) seen while the bucket's time ran, by read time. */
  backlog: number;
}

export interface SloArm {
  mode: SloMode;
  agreement: number;
  phases: PhaseFigures[];
  /** p95 of the frames produced in the second half of the overload. */
  settledP95Ms: number;
  /**
   * Seconds into the overload after which every bucket's p95 stayed within the
   * objective; null if that never happened.
   */
  settledAfterS: number | null;
  series: Bucket[];
}

interface Answer {
  n: number;
  producedAt: number;
  readAt: number;
  e2e: number;
  agrees: boolean;
  early: boolean;
}

function p95(values: number[]): number {
  return values.length === 0
    ? 0
    : percentile(
        values.slice().sort((a, b) => a - b),
        95,
      );
}

function figures(answers: Answer[]): { p95Ms: number; agreement: number; earlyShare: number } {
  const n = Math.max(answers.length, 1);
  return {
    p95Ms: p95(answers.map((a) => a.e2e)),
    agreement: answers.filter((a) => a.agrees).length / n,
    earlyShare: answers.filter((a) => a.early).length / n,
  };
}

export function sloArm(
  mode: SloMode,
  log: FrameLog,
  reference: Int16Array,
  phases: readonly RatePhase[],
  objectiveMs: number,
  bucketMs: number,
): SloArm {
  const answers: Answer[] = log.frameIndex.map((n, i) => ({
    n,
    producedAt: log.readAtMs[i]! - log.endToEndMs[i]!,
    readAt: log.readAtMs[i]!,
    e2e: log.endToEndMs[i]!,
    agrees: log.labels[n] === reference[n],
    early: log.exits[i]! >= 0,
  }));
  const start = Math.min(...answers.map((a) => a.producedAt));
  const bounds: number[] = [];
  phases.reduce((first, p) => (bounds.push(first + p.frames), first + p.frames), 0);
  const phaseOf = (n: number) => bounds.findIndex((b) => n < b);

  // Backlog at each read: frames produced by then, less frames answered by then.
  const produced = answers.map((a) => a.producedAt).sort((a, b) => a - b);
  const byRead = answers.slice().sort((a, b) => a.readAt - b.readAt);
  const maxBacklog = new Array<number>(phases.length).fill(0);
  const backlogByBucket = new Map<number, number>();
  let p = 0;
  byRead.forEach((a, answered) => {
    while (p < produced.length && produced[p]! <= a.readAt) p++;
    const backlog = p - (answered + 1);
    const phase = phaseOf(a.n);
    maxBacklog[phase] = Math.max(maxBacklog[phase]!, backlog);
    const b = Math.floor((a.readAt - start) / bucketMs);
    backlogByBucket.set(b, Math.max(backlogByBucket.get(b) ?? 0, backlog));
  });

  const phaseFigures = phases.map((ph, i) => ({
    phase: PHASE_NAMES[i] ?? `phase ${i + 1}`,
    frames: ph.frames,
    rate: ph.rate,
    ...figures(answers.filter((a) => phaseOf(a.n) === i)),
    maxBacklog: maxBacklog[i]!,
  }));

  const buckets = new Map<number, Answer[]>();
  for (const a of answers) {
    const b = Math.floor((a.producedAt - start) / bucketMs);
    buckets.set(b, [...(buckets.get(b) ?? []), a]);
  }
  const series: Bucket[] = [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([b, as]) => ({
      startS: (b * bucketMs) / 1000,
      frames: as.length,
      ...figures(as),
      backlog: backlogByBucket.get(b) ?? 0,
    }));

  const overload = answers.filter((a) => phaseOf(a.n) === 1);
  const overloadStart = overload.length > 0 ? Math.min(...overload.map((a) => a.producedAt)) : start;
  const overloadEnd = overload.length > 0 ? Math.max(...overload.map((a) => a.producedAt)) : start;
  const middle = (overloadStart + overloadEnd) / 2;
  const inOverload = series.filter((s) => {
    const t = start + s.startS * 1000;
    return t >= overloadStart && t + bucketMs <= overloadEnd;
  });
  let settled: number | null = null;
  for (let i = inOverload.length - 1; i >= 0 && inOverload[i]!.p95Ms <= objectiveMs; i--) {
    settled = (start + inOverload[i]!.startS * 1000 - overloadStart) / 1000;
  }
  return {
    mode,
    agreement: figures(answers).agreement,
    phases: phaseFigures,
    settledP95Ms: p95(overload.filter((a) => a.producedAt >= middle).map((a) => a.e2e)),
    settledAfterS: settled,
    series,
  };
}

export interface SloReport {
  settings: { objective: number; floor: number; overload: number; capacity: number; frames: number };
  arms: SloArm[];
}

export function formatReport(report: SloReport): string {
  const s = report.settings;
  const rows = report.arms.flatMap((a) =>
    a.phases.map((ph) => [
      a.mode,
      ph.phase,
      `${ph.frames}`,
      ph.rate.toFixed(0),
      ph.p95Ms.toFixed(0),
      `${ph.maxBacklog}`,
      ph.agreement.toFixed(4),
      `${(100 * ph.earlyShare).toFixed(1)}%`,
    ]),
  );
  const summary = report.arms.map((a) => [
    a.mode,
    a.settledP95Ms.toFixed(0),
    a.settledAfterS === null ? "never" : `${a.settledAfterS.toFixed(0)} s`,
    a.agreement.toFixed(4),
  ]);
  return [
    `objective p95 ${s.objective} ms, floor ${s.floor}, cache-off capacity ${s.capacity.toFixed(1)} frames/s, ` +
      `overload ${s.overload}x, ${s.frames} frames per arm`,
    "",
    table(["arm", "phase", "frames", "rate/s", "p95 ms", "max backlog", "agreement", "early"], rows),
    "",
    table(["arm", "p95 ms, 2nd half of overload", "within objective after", "agreement, whole run"], summary),
  ].join("\n");
}
