/**
 * The summary arithmetic behind `layercache tail`, on hand-made predictions:
 * what is counted once per frame id, shares, accuracy, MACs, throughput,
 * latency percentiles and the rendered table.
 */
import { describe, expect, it } from "vitest";
import type { Prediction } from "../../src/codec/prediction.ts";
import { BACKBONE_EXIT } from "../../src/codec/prediction.ts";
import { LatencyHistogram, RELATIVE_ERROR } from "../../src/tools/latency-histogram.ts";
import { PredictionSummary } from "../../src/tools/prediction-summary.ts";
import { formatSummaryLine, formatSummaryTable } from "../../src/tools/summary-format.ts";

const FULL = 1_000;
const T0 = 1_700_000_000_000;

function prediction(over: Partial<Prediction> & { frameId: string }): Prediction {
  const exit = over.exit ?? BACKBONE_EXIT;
  const macs = over.macs ?? (exit === BACKBONE_EXIT ? FULL : 250 * (exit + 1));
  return {
    label: 3,
    labelName: "Dress",
    confidence: 0.9,
    exit,
    audited: false,
    macs,
    macsSaved: FULL - macs,
    modelId: "m",
    headsVersion: 1,
    queueMs: 1,
    computeMs: 2,
    endToEndMs: 10,
    workerId: "w1",
    producedAt: T0,
    truthLabel: 3,
    exactHit: false,
    ...over,
  };
}

describe("PredictionSummary", () => {
  it("counts each frame id once, and later predictions for it as duplicates", () => {
    const s = new PredictionSummary();
    expect(s.add(prediction({ frameId: "a", exit: 0 }), T0)).toBe(true);
    expect(s.add(prediction({ frameId: "b" }), T0)).toBe(true);
    // The duplicate says something else: it must not change any figure.
    expect(s.add(prediction({ frameId: "a", exit: 2, label: 1, workerId: "w2" }), T0)).toBe(false);
    expect(s.add(prediction({ frameId: "a" }), T0)).toBe(false);
    const snap = s.snapshot(T0);
    expect(snap).toMatchObject({ predictions: 4, distinctFrames: 2, duplicates: 2, duplicatedFrames: 1 });
    expect(snap.exits.map((e) => [e.exit, e.frames])).toEqual([
      [0, 1],
      [BACKBONE_EXIT, 1],
    ]);
    expect(snap.workers).toEqual({ w1: 2 });
    expect(snap.accuracy).toEqual({ labelled: 2, correct: 2, pct: 100 });
  });

  it("orders exits by index with the backbone last, and their shares sum to 100%", () => {
    const s = new PredictionSummary();
    const exits = [BACKBONE_EXIT, 4, 0, BACKBONE_EXIT, 4, 4, 1, BACKBONE_EXIT];
    exits.forEach((exit, i) => s.add(prediction({ frameId: `f${i}`, exit }), T0));
    const snap = s.snapshot(T0);
    expect(snap.exits.map((e) => e.name)).toEqual(["exit 0", "exit 1", "exit 4", "backbone"]);
    expect(snap.exits.map((e) => e.frames)).toEqual([1, 1, 3, 3]);
    expect(snap.exits.reduce((n, e) => n + e.frames, 0)).toBe(exits.length);
    expect(snap.exits.reduce((n, e) => n + e.pct, 0)).toBeCloseTo(100, 9);
  });

  it("computes accuracy over labelled frames only, overall and per exit", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "1", exit: 0, label: 3, truthLabel: 3 }), T0);
    s.add(prediction({ frameId: "2", exit: 0, label: 3, truthLabel: 5 }), T0);
    s.add(prediction({ frameId: "3", exit: 0, label: 3, truthLabel: null }), T0);
    s.add(prediction({ frameId: "4", label: 7, truthLabel: 7 }), T0);
    const snap = s.snapshot(T0);
    expect(snap.accuracy).toEqual({ labelled: 3, correct: 2, pct: (100 * 2) / 3 });
    const [exit0, backbone] = snap.exits;
    expect(exit0).toMatchObject({ frames: 3, labelled: 2, correct: 1, accuracyPct: 50 });
    expect(backbone).toMatchObject({ frames: 1, labelled: 1, correct: 1, accuracyPct: 100 });
  });

  it("reports no accuracy when no frame carried a label", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "x", truthLabel: null }), T0);
    const snap = s.snapshot(T0);
    expect(snap.accuracy).toEqual({ labelled: 0, correct: 0, pct: null });
    expect(formatSummaryTable(snap)).toContain("n/a (no frame carried a label)");
  });

  it("MACs saved is saved over executed plus saved, negative savings included", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "1", macs: 200, macsSaved: 800 }), T0);
    s.add(prediction({ frameId: "2", macs: 1_000, macsSaved: 0 }), T0);
    // Heads that cost more than they saved: macs above the full backbone's.
    s.add(prediction({ frameId: "3", macs: 1_100, macsSaved: -100 }), T0);
    expect(s.snapshot(T0).macsSavedPct).toBeCloseTo((100 * 700) / 3_000, 9);
  });

  it("audited share, compute mean and workers over distinct frames", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "1", audited: true, computeMs: 1, workerId: "b" }), T0);
    s.add(prediction({ frameId: "2", computeMs: 2, workerId: "a" }), T0);
    s.add(prediction({ frameId: "3", computeMs: 3, workerId: "b" }), T0);
    s.add(prediction({ frameId: "4", computeMs: 6, workerId: "b" }), T0);
    const snap = s.snapshot(T0);
    expect(snap.audited).toEqual({ frames: 1, pct: 25 });
    expect(snap.computeMsMean).toBe(3);
    expect(Object.entries(snap.workers)).toEqual([
      ["a", 1],
      ["b", 3],
    ]);
  });

  it("counts exact-cache hits once per frame, under the exit that answered first, at 0 MACs", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "1", exit: 1 }), T0);
    s.add(prediction({ frameId: "2", exit: 1, exactHit: true, macs: 0, macsSaved: FULL }), T0);
    s.add(prediction({ frameId: "3", exactHit: true, macs: 0, macsSaved: FULL }), T0);
    s.add(prediction({ frameId: "4" }), T0);
    // A duplicate delivery of a hit is not a second hit.
    s.add(prediction({ frameId: "3", exactHit: true, macs: 0, macsSaved: FULL }), T0);
    const snap = s.snapshot(T0);
    expect(snap.exactHits).toEqual({ frames: 2, pct: 50 });
    expect(snap.exits.map((e) => [e.exit, e.frames])).toEqual([
      [1, 2],
      [BACKBONE_EXIT, 2],
    ]);
    // Saved: 500 (exit 1) + 1000 + 1000 + 0, over 4 full backbones.
    expect(snap.macsSavedPct).toBeCloseTo((100 * 2_500) / 4_000, 9);
    expect(formatSummaryTable(snap)).toMatch(/^exact hits +50\.00% \(2 frames\)$/m);
    expect(formatSummaryLine(snap)).toContain("exact 50.00%");
    expect(new PredictionSummary().snapshot(T0).exactHits).toEqual({ frames: 0, pct: null });
  });

  it("throughput over the producedAt span, and the read rate over the recent window", () => {
    const s = new PredictionSummary(5_000);
    // 101 predictions produced over 10 s; read much later, 20 per second for the last 5 s.
    for (let i = 0; i <= 100; i++) {
      s.add(prediction({ frameId: `f${i}`, producedAt: T0 + i * 100 }), T0 + 60_000 + i * 50);
    }
    const readEnd = T0 + 60_000 + 100 * 50;
    const snap = s.snapshot(readEnd);
    expect(snap.throughput.spanS).toBe(10);
    expect(snap.throughput.perSecond).toBeCloseTo(10.1, 9);
    // Reads in (readEnd - 5 s, readEnd]: the last 100 (one every 50 ms).
    expect(snap.throughput.recentPerSecond).toBe(20);
    expect(s.snapshot(readEnd + 60_000).throughput.recentPerSecond).toBe(0);
  });

  it("throughput is n/a until two distinct producedAt stamps; an empty summary renders", () => {
    const s = new PredictionSummary();
    const empty = s.snapshot(T0);
    expect(empty).toMatchObject({ predictions: 0, distinctFrames: 0, macsSavedPct: null, latencyMs: null });
    expect(formatSummaryTable(empty, 10)).toContain("0 of 10");
    s.add(prediction({ frameId: "only" }), T0);
    expect(s.snapshot(T0).throughput.perSecond).toBeNull();
  });

  it("counts messages that were not predictions apart", () => {
    const s = new PredictionSummary();
    s.addInvalid(T0);
    s.add(prediction({ frameId: "a" }), T0);
    const snap = s.snapshot(T0);
    expect(snap).toMatchObject({ predictions: 1, invalid: 1, distinctFrames: 1 });
    expect(formatSummaryTable(snap)).toContain("1 messages skipped");
  });

  it("latency percentiles of endToEndMs match nearest rank within 1%", () => {
    const s = new PredictionSummary();
    const values = Array.from({ length: 1_000 }, (_, i) => 5 + ((i * 7919) % 1_000) * 0.37);
    values.forEach((v, i) => s.add(prediction({ frameId: `f${i}`, endToEndMs: v }), T0));
    const lat = s.snapshot(T0).latencyMs!;
    const sorted = [...values].sort((a, b) => a - b);
    const rank = (q: number) => sorted[Math.ceil(q * sorted.length) - 1]!;
    for (const [q, got] of [
      [0.5, lat.p50],
      [0.9, lat.p90],
      [0.99, lat.p99],
    ] as const) {
      expect(got).toBeGreaterThanOrEqual(rank(q));
      expect(got).toBeLessThanOrEqual(rank(q) * (1 + RELATIVE_ERROR));
    }
    expect(lat.max).toBe(sorted.at(-1));
    expect(lat.mean).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 9);
  });

  it("renders one table row per exit and a one-line status", () => {
    const s = new PredictionSummary();
    s.add(prediction({ frameId: "1", exit: 2, producedAt: T0 }), T0);
    s.add(prediction({ frameId: "2", producedAt: T0 + 1_000 }), T0);
    const snap = s.snapshot(T0);
    const table = formatSummaryTable(snap, 2);
    expect(table).toMatch(/^exit 2 +1 +50\.00% +100\.00%$/m);
    expect(table).toMatch(/^backbone +1 +50\.00% +100\.00%$/m);
    expect(table).toContain("2.0 predictions/s over 1.0 s");
    expect(formatSummaryLine(snap, 2)).toContain("2/2 frames");
  });
});

describe("LatencyHistogram", () => {
  it("is exact at the extremes, bounded in between, and empty when nothing was added", () => {
    const h = new LatencyHistogram();
    expect(h.percentiles()).toBeUndefined();
    for (const v of [0.5, 1, 2, 4, 8, 1_000_000, 5e7]) h.add(v);
    h.add(Number.NaN);
    expect(h.count).toBe(7);
    expect(h.quantile(1e-9)).toBe(0.5);
    expect(h.quantile(1)).toBe(5e7);
    const p50 = h.quantile(0.5)!;
    expect(p50).toBeGreaterThanOrEqual(4);
    expect(p50).toBeLessThanOrEqual(4 * (1 + RELATIVE_ERROR));
  });

  it("keeps negative readings (clock skew) at the bottom without failing", () => {
    const h = new LatencyHistogram();
    h.add(-3);
    h.add(10);
    const p50 = h.quantile(0.5)!;
    expect(p50).toBeGreaterThanOrEqual(-3);
    expect(p50).toBeLessThanOrEqual(0.01);
    expect(h.percentiles()!.mean).toBe(3.5);
  });
});
