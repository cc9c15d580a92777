/**
 * How a prediction summary (prediction-summary.ts) reads on a terminal: the
 * table printed at the end of `layercache tail` and `npm run demo`, and the
 * one-line form of the periodic status lines. Pure string building.
 */
import type { SummarySnapshot } from "./prediction-summary.ts";

const int = (n: number) => n.toLocaleString("en");
const pct = (x: number | null, digits = 2) => (x === null ? "n/a" : `${x.toFixed(digits)}%`);
const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
const rate = (x: number | null) => (x === null ? "n/a" : x.toFixed(1));

/** The final summary, as a table of labelled rows and then one row per exit. */
export function formatSummaryTable(s: SummarySnapshot, expect?: number): string {
  const seen = expect === undefined ? int(s.distinctFrames) : `${int(s.distinctFrames)} of ${int(expect)}`;
  const lat = s.latencyMs;
  const rows: [string, string][] = [
    ["predictions", `${int(s.predictions)} read`],
    ["distinct frames", seen],
    ["duplicates", `${int(s.duplicates)} (${int(s.duplicatedFrames)} frames answered more than once)`],
    [
      "throughput",
      s.throughput.perSecond === null
        ? "n/a"
        : `${rate(s.throughput.perSecond)} predictions/s over ${s.throughput.spanS.toFixed(1)} s`,
    ],
    ["MACs saved", pct(s.macsSavedPct, 1)],
    [
      "accuracy",
      s.accuracy.labelled === 0
        ? "n/a (no frame carried a label)"
        : `${pct(s.accuracy.pct)} (${int(s.accuracy.correct)} of ${int(s.accuracy.labelled)} labelled)`,
    ],
    ["audited", `${pct(s.audited.pct)} (${int(s.audited.frames)} frames)`],
    ["exact hits", `${pct(s.exactHits.pct)} (${int(s.exactHits.frames)} frames)`],
    [
      "latency (e2e)",
      lat === null
        ? "n/a"
        : `p50 ${ms(lat.p50)} ms, p90 ${ms(lat.p90)} ms, p99 ${ms(lat.p99)} ms, max ${ms(lat.max)} ms`,
    ],
    ["compute", s.computeMsMean === null ? "n/a" : `${s.computeMsMean.toFixed(2)} ms/frame (mean)`],
    [
      "workers",
      Object.entries(s.workers)
        .map(([id, n]) => `${id} ${int(n)}`)
        .join(", ") || "none",
    ],
  ];
  if (s.invalid > 0) rows.push(["invalid", `${int(s.invalid)} messages skipped (not predictions)`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  const head = rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);

  const exitRows = [
    ["answered by", "frames", "share", "accuracy"],
    ...s.exits.map((e) => [e.name, int(e.frames), pct(e.pct), pct(e.accuracyPct)]),
  ];
  const widths = exitRows[0]!.map((_, c) => Math.max(...exitRows.map((r) => r[c]!.length)));
  const exitTable = exitRows.map((r) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "),
  );
  return [...head, "", ...exitTable].join("\n") + "\n";
}

/** One status line: counts, rates, where frames left, savings, accuracy, latency. */
export function formatSummaryLine(s: SummarySnapshot, expect?: number): string {
  const seen = expect === undefined ? int(s.distinctFrames) : `${int(s.distinctFrames)}/${int(expect)}`;
  const exits = s.exits.map((e) => `${e.exit < 0 ? "bb" : e.exit}:${e.pct.toFixed(0)}%`).join(" ");
  const parts = [
    `${seen} frames`,
    `${int(s.duplicates)} dup`,
    `${rate(s.throughput.recentPerSecond)}/s`,
    `exits ${exits || "-"}`,
    `MACs saved ${pct(s.macsSavedPct, 1)}`,
    `acc ${pct(s.accuracy.pct)}`,
    `audited ${pct(s.audited.pct)}`,
    `exact ${pct(s.exactHits.pct)}`,
    s.latencyMs ? `p50 ${ms(s.latencyMs.p50)} ms p99 ${ms(s.latencyMs.p99)} ms` : "",
  ];
  return parts.filter(Boolean).join(" | ");
}
