/**
 * Figures and tables of the sharing benchmark: throughput of one replica
 * against two (medians over repeats, and the ratio per repeat), and what a
 * new replica needs to exit as often as the fleet (join.ts).
 */
import type { ArmFigures } from "../kafka/report.ts";
import { median, table } from "../lib/stats.ts";
import type { JoinFigures, NewReplicaFigures } from "./join.ts";

export interface ThroughputRepeat {
  repeat: number;
  /** Replica count of the arm run first (arms alternate). */
  first: number;
  one: ArmFigures;
  two: ArmFigures;
  ratio: number;
}

export interface SharingSettings {
  frames: number;
  repeats: number;
  warmUp: number;
  joined: number;
  window: number;
  reachShare: number;
  seed: number;
}

export interface SharingReport extends SharingSettings {
  throughput: { one: number; two: number; ratio: number };
  earlySharePct: { one: number; two: number };
  macsSavedPct: { one: number | null; two: number | null };
  duplicates: { one: number; two: number };
  join: JoinFigures;
  runs: ThroughputRepeat[];
}

/** Share of distinct frames answered by an exit rather than the backbone, percent. */
export function earlyPct(f: ArmFigures): number {
  const backbone = f.exitFrames["backbone"] ?? 0;
  return f.frames > 0 ? (100 * (f.frames - backbone)) / f.frames : NaN;
}

export function buildReport(
  settings: SharingSettings,
  runs: ThroughputRepeat[],
  join: JoinFigures,
): SharingReport {
  const med = (pick: (r: ThroughputRepeat) => number) => median(runs.map(pick));
  const medOrNull = (values: (number | null)[]) => {
    const known = values.filter((v): v is number => v !== null);
    return known.length > 0 ? median(known) : null;
  };
  return {
    ...settings,
    throughput: {
      one: med((r) => r.one.throughput),
      two: med((r) => r.two.throughput),
      ratio: med((r) => r.ratio),
    },
    earlySharePct: { one: med((r) => earlyPct(r.one)), two: med((r) => earlyPct(r.two)) },
    macsSavedPct: {
      one: medOrNull(runs.map((r) => r.one.macsSavedPct)),
      two: medOrNull(runs.map((r) => r.two.macsSavedPct)),
    },
    duplicates: {
      one: runs.reduce((a, r) => a + r.one.duplicates, 0),
      two: runs.reduce((a, r) => a + r.two.duplicates, 0),
    },
    join,
    runs,
  };
}

const pct = (v: number | null) => (v === null || Number.isNaN(v) ? "-" : `${v.toFixed(1)}%`);
const num = (v: number | null) => (v === null ? "never" : v.toLocaleString("en"));

function replicaRow(label: string, f: NewReplicaFigures): (string | number)[] {
  return [
    label,
    f.frames.toLocaleString("en"),
    f.firstVersion,
    num(f.firstEarly),
    pct(100 * f.first500Share),
    num(f.framesToReach),
  ];
}

export function formatReport(r: SharingReport): string {
  const throughput = table(
    ["replicas", "frames/s", "early exits", "MACs saved", "duplicates"],
    [
      ["1", r.throughput.one.toFixed(1), pct(r.earlySharePct.one), pct(r.macsSavedPct.one), r.duplicates.one],
      ["2", r.throughput.two.toFixed(1), pct(r.earlySharePct.two), pct(r.macsSavedPct.two), r.duplicates.two],
    ],
  );
  const j = r.join;
  const newcomer = table(
    [
      "new replica",
      "frames",
      "first version",
      "first early answer",
      "early exits, first 500",
      "frames to reach",
    ],
    [replicaRow("joins the warm fleet", j.joiner), replicaRow("cold, alone", j.cold)],
  );
  const perRepeat =
    r.runs.length > 1
      ? "\n" + r.runs.map((run) => `  repeat ${run.repeat + 1}: ratio ${run.ratio.toFixed(2)}`).join("\n")
      : "";
  return [
    `Sharing the cache: ${r.frames.toLocaleString("en")} frames per arm, pre-produced over 4 partitions, ` +
      `cache on, 1 onnxruntime thread per replica, ${r.repeats} repeat(s) (medians)`,
    "",
    throughput,
    "",
    `throughput ratio, two replicas to one: ${r.throughput.ratio.toFixed(2)}${perRepeat}`,
    "",
    `A new replica: the fleet (two replicas) warmed up on ${r.warmUp.toLocaleString("en")} frames, then ` +
      `${r.joined.toLocaleString("en")} more with the joiner; the cold replica answers all ` +
      `${(r.warmUp + r.joined).toLocaleString("en")} alone.`,
    `Fleet's early-exit share after the join: ${pct(100 * j.fleetShare)}; "reached" = ${r.window} ` +
      `consecutive answers with at least ${pct(100 * j.target)} early (${Math.round(100 * r.reachShare)}% of the fleet's).`,
    "",
    newcomer,
  ].join("\n");
}
