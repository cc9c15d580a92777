/**
 * The arithmetic behind `layercache tail`: a running summary of the
 * predictions read from the predictions topic. Pure: callers pass each
 * prediction with the time it was read, and the time of the snapshot.
 *
 * Delivery is at least once, so a frame may be answered more than once. The
 * first prediction read for a frame id is the one counted in every figure
 * (exits, MACs, accuracy, audits, latency, workers); later ones only count as
 * duplicates. Figures:
 *
 * - throughput: distinct predictions over the span of their `producedAt`
 *   stamps (what the workers achieved, however late the tail reads), and the
 *   read rate over the last few seconds (what is happening now);
 * - MACs saved: sum of `macsSaved` over sum of `macs + macsSaved` (the
 *   full-backbone cost of each frame, by the schema's definition of
 *   `macsSaved`);
 * - accuracy: predicted label against `truthLabel`, over the frames that
 *   carried a label (the worker copies `Frame.label` into it);
 * - latency: `endToEndMs`, from the frame's `producedAt` to its prediction
 *   (time waiting in the topic included), and the mean of `computeMs`;
 * - exact-cache hits: frames answered from the exact cache (`exactHit`, a
 *   repeat of an earlier frame's model input). They are also counted under
 *   the exit that gave the answer first, with their 0 MACs.
 */
import type { Prediction } from "../codec/prediction.ts";
import { BACKBONE_EXIT } from "../codec/prediction.ts";
import type { LatencyPercentiles } from "./latency-histogram.ts";
import { LatencyHistogram } from "./latency-histogram.ts";

/** How far back the "recent" read rate looks. */
export const RECENT_WINDOW_MS = 5_000;

export interface ExitRow {
  /** Exit index, or BACKBONE_EXIT (-1) for the full backbone. */
  exit: number;
  name: string;
  frames: number;
  /** Share of distinct frames answered here, percent. */
  pct: number;
  /** Frames answered here that carried a label, and how many of those were right. */
  labelled: number;
  correct: number;
  /** Percent of labelled frames answered right here; null without labelled frames. */
  accuracyPct: number | null;
}

export interface SummarySnapshot {
  /** Every prediction decoded, duplicates included. */
  predictions: number;
  distinctFrames: number;
  /** Predictions for a frame id already seen. */
  duplicates: number;
  /** Frame ids answered more than once. */
  duplicatedFrames: number;
  /** Messages on the topic that did not decode as predictions (skipped). */
  invalid: number;
  throughput: {
    /** Distinct predictions per second of worker time (producedAt span); null before two distinct stamps. */
    perSecond: number | null;
    /** Seconds between the first and last `producedAt` counted. */
    spanS: number;
    /** Predictions read per second over the last RECENT_WINDOW_MS. */
    recentPerSecond: number;
  };
  /** Exits in index order, the backbone last; only those that answered something. */
  exits: ExitRow[];
  macsSavedPct: number | null;
  accuracy: { labelled: number; correct: number; pct: number | null };
  audited: { frames: number; pct: number | null };
  /** Frames answered from the exact cache, and their share of distinct frames. */
  exactHits: { frames: number; pct: number | null };
  latencyMs: LatencyPercentiles | null;
  /** Mean of `computeMs`, the model time per frame (the rest of the latency is waiting); null when empty. */
  computeMsMean: number | null;
  /** Distinct frames answered per worker id. */
  workers: Record<string, number>;
}

interface ExitTally {
  frames: number;
  labelled: number;
  correct: number;
}

export class PredictionSummary {
  private readonly seen = new Map<string, number>();
  private predictions = 0;
  private invalidCount = 0;
  private readonly exits = new Map<number, ExitTally>();
  private macs = 0;
  private macsSaved = 0;
  private audited = 0;
  private exactHits = 0;
  private computeMs = 0;
  private readonly latency = new LatencyHistogram();
  private readonly workers = new Map<string, number>();
  private firstProducedAt = Infinity;
  private lastProducedAt = -Infinity;
  /** Read times within the recent window, oldest first, from `recentHead` on. */
  private recent: number[] = [];
  private recentHead = 0;

  constructor(private readonly recentWindowMs = RECENT_WINDOW_MS) {}

  /** Frame ids seen so far. */
  get distinct(): number {
    return this.seen.size;
  }

  /** Counts one prediction read at `readAt` (epoch ms); returns whether its frame id is new. */
  add(p: Prediction, readAt: number): boolean {
    this.predictions += 1;
    this.noteRead(readAt);
    const times = this.seen.get(p.frameId) ?? 0;
    this.seen.set(p.frameId, times + 1);
    if (times > 0) return false;

    const tally = this.exits.get(p.exit) ?? { frames: 0, labelled: 0, correct: 0 };
    tally.frames += 1;
    if (p.truthLabel !== null) {
      tally.labelled += 1;
      if (p.truthLabel === p.label) tally.correct += 1;
    }
    this.exits.set(p.exit, tally);
    this.macs += p.macs;
    this.macsSaved += p.macsSaved;
    if (p.audited) this.audited += 1;
    if (p.exactHit) this.exactHits += 1;
    this.latency.add(p.endToEndMs);
    this.computeMs += p.computeMs;
    this.workers.set(p.workerId, (this.workers.get(p.workerId) ?? 0) + 1);
    this.firstProducedAt = Math.min(this.firstProducedAt, p.producedAt);
    this.lastProducedAt = Math.max(this.lastProducedAt, p.producedAt);
    return true;
  }

  /** Counts a message that was not a valid prediction. */
  addInvalid(readAt: number): void {
    this.invalidCount += 1;
    this.noteRead(readAt);
  }

  snapshot(now: number): SummarySnapshot {
    this.pruneRecent(now);
    const distinct = this.seen.size;
    const share = (part: number, whole: number) => (whole > 0 ? (100 * part) / whole : null);
    const exits = [...this.exits.entries()]
      .sort(([a], [b]) => exitOrder(a) - exitOrder(b))
      .map(([exit, t]) => ({
        exit,
        name: exitName(exit),
        frames: t.frames,
        pct: share(t.frames, distinct) ?? 0,
        labelled: t.labelled,
        correct: t.correct,
        accuracyPct: share(t.correct, t.labelled),
      }));
    const labelled = exits.reduce((n, e) => n + e.labelled, 0);
    const correct = exits.reduce((n, e) => n + e.correct, 0);
    const spanMs = distinct > 0 ? this.lastProducedAt - this.firstProducedAt : 0;
    const inWindow = this.recent.length - this.recentHead;
    return {
      predictions: this.predictions,
      distinctFrames: distinct,
      duplicates: this.predictions - distinct,
      duplicatedFrames: [...this.seen.values()].filter((n) => n > 1).length,
      invalid: this.invalidCount,
      throughput: {
        perSecond: spanMs > 0 ? distinct / (spanMs / 1000) : null,
        spanS: spanMs / 1000,
        recentPerSecond: inWindow / (this.recentWindowMs / 1000),
      },
      exits,
      macsSavedPct: share(this.macsSaved, this.macs + this.macsSaved),
      accuracy: { labelled, correct, pct: share(correct, labelled) },
      audited: { frames: this.audited, pct: share(this.audited, distinct) },
      exactHits: { frames: this.exactHits, pct: share(this.exactHits, distinct) },
      latencyMs: this.latency.percentiles() ?? null,
      computeMsMean: distinct > 0 ? this.computeMs / distinct : null,
      workers: Object.fromEntries([...this.workers.entries()].sort(([a], [b]) => a.localeCompare(b))),
    };
  }

  private noteRead(at: number): void {
    this.recent.push(at);
    // Pruning on every read keeps the window's memory bounded by the read rate.
    this.pruneRecent(at);
  }

  private pruneRecent(now: number): void {
    const from = now - this.recentWindowMs;
    while (this.recentHead < this.recent.length && this.recent[this.recentHead]! <= from) this.recentHead++;
    if (this.recentHead > 1024 && this.recentHead * 2 > this.recent.length) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }
}

/** "exit 2", or "backbone" for BACKBONE_EXIT. */
export function exitName(exit: number): string {
  return exit === BACKBONE_EXIT ? "backbone" : `exit ${exit}`;
}

/** Exits in index order, the backbone after all of them. */
const exitOrder = (exit: number) => (exit === BACKBONE_EXIT ? Number.MAX_SAFE_INTEGER : exit);
