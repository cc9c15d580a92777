/**
 * `--compare-heads`: the cache arm once per head kind (learned MLP heads,
 * nearest-neighbour memories, and both together) on the same stream, after
 * the one backbone arm, so the three are compared side by side in one run
 * and against one baseline. Each arm starts cold with the same options and
 * seed; only the head kind differs.
 */
import type { HeadKind } from "../../src/cache/head-types.ts";
import type { CacheOptionsInput } from "../../src/cache/options.ts";
import type { SegmentedBackbone } from "../../src/model/backbone.ts";
import type { LatencySummary } from "../lib/stats.ts";
import { table } from "../lib/stats.ts";
import type { Progress } from "../lib/progress.ts";
import type { ArmResult, Stream } from "./arms.ts";
import { backboneArm, cacheArm, runArms } from "./arms.ts";
import { armFigures, exitMacs, finalHeadAnswers, firstAgreeingOracle } from "./report.ts";

export const COMPARED_KINDS: readonly HeadKind[] = ["mlp", "knn", "mlp+knn"];

export interface HeadComparison {
  head: HeadKind;
  agreement: number;
  accuracy: number;
  macsSavedPct: number;
  oracleMacsSavedPct: number;
  /** Compute time only, per frame, against the backbone's. */
  latencySavedPct: number;
  latencyMs: LatencySummary;
  /** Frames per second with learning included, over the backbone's. */
  throughputRatio: number;
  /** First frame answered by an exit (-1: none). */
  firstExitFrame: number;
  /** Share of frames answered at each exit, and by the backbone. */
  exitShare: Record<string, number>;
  /** Exits open at the end of the stream. */
  openExits: number[];
  /** Training steps and publishing, off the frame path (what the cache's maintain() took). */
  learningMs: number;
  /** Remembering new examples, on the frame path (inside the cache's compute time). */
  rememberMs: number;
  steps: number;
  publishes: number;
  /** Bytes of the last snapshot's heads (what is shared through Redis). */
  snapshotBytes: number;
  /** Multiply-accumulates of the last exit's head per prediction. */
  lastHeadMacs: number;
}

/**
 * Runs the backbone arm and a cache arm for each kind side by side, batch by
 * batch (runArms), and measures each cache arm against the backbone's.
 */
export async function compareHeads(
  model: SegmentedBackbone,
  stream: Stream,
  batch: number,
  options: CacheOptionsInput,
  bar: Progress,
): Promise<{ base: ArmResult; rows: HeadComparison[] }> {
  const m = model.manifest;
  const arms = [backboneArm(model, stream)];
  for (const head of COMPARED_KINDS) arms.push(await cacheArm(model, stream, { ...options, headKind: head }));
  const results = await runArms(arms, stream, batch, bar);
  const base = results[0]!;
  const cached = results.slice(1);
  const baseLabels = base.frames.map((f) => f.label);
  const rows: HeadComparison[] = [];
  for (const [k, head] of COMPARED_KINDS.entries()) {
    const arm = cached[k]!;
    const cache = arm.cache!;
    const f = armFigures(base, arm, stream, m.full.macs, model.exitCount);
    const snapshot = cache.engine.current;
    const last = snapshot.heads.at(-1);
    rows.push({
      head,
      agreement: f.agreement,
      accuracy: f.accuracy.cached,
      macsSavedPct: f.macsSavedPct,
      oracleMacsSavedPct: firstAgreeingOracle(
        exitMacs(model, cache),
        await finalHeadAnswers(model, cache, stream),
        baseLabels,
      ),
      latencySavedPct: f.latencySavedPct,
      latencyMs: f.latencyMs.cached,
      throughputRatio: f.throughput.ratio,
      firstExitFrame: arm.frames.findIndex((r) => r.exit >= 0),
      exitShare: f.exitShare,
      openExits: snapshot.decisions.filter((d) => d.open).map((d) => d.exit),
      learningMs: arm.maintenanceMs,
      rememberMs: cache.trainer.stats.rememberMs,
      steps: cache.trainer.stats.steps,
      publishes: cache.trainer.stats.publishes,
      snapshotBytes: snapshot.heads.reduce((sum, h) => sum + (h ? h.toBytes().length : 0), 0),
      lastHeadMacs: last ? last.macs() : 0,
    });
    await cache.close();
  }
  return { base, rows };
}

const pct = (x: number) => `${x.toFixed(2)}%`;

/** One table, a column per head kind; `backbone` gives the baseline's accuracy and latency. */
export function comparisonTable(
  rows: readonly HeadComparison[],
  exits: number,
  backbone: { accuracy: number; latencyMs: LatencySummary },
): string {
  const line = (name: string, cell: (r: HeadComparison) => string) => [name, ...rows.map(cell)];
  const shares = Array.from({ length: exits }, (_, e) =>
    line(`answered at exit ${e}`, (r) => pct(100 * r.exitShare[`exit${e}`]!)),
  );
  return table(
    ["", ...rows.map((r) => r.head)],
    [
      line("agreement with the backbone", (r) => r.agreement.toFixed(4)),
      line(`accuracy (backbone ${pct(100 * backbone.accuracy)})`, (r) => pct(100 * r.accuracy)),
      line("MACs saved", (r) => pct(r.macsSavedPct)),
      line("oracle MACs saved (first agreeing head)", (r) => pct(r.oracleMacsSavedPct)),
      line("mean latency saved (compute)", (r) => pct(r.latencySavedPct)),
      line(`latency p50 ms (backbone ${backbone.latencyMs.p50.toFixed(2)})`, (r) =>
        r.latencyMs.p50.toFixed(2),
      ),
      line("throughput ratio (learning included)", (r) => r.throughputRatio.toFixed(2)),
      line("first exit open at frame", (r) => String(r.firstExitFrame)),
      ...shares,
      line("answered by the backbone", (r) => pct(100 * r.exitShare.backbone!)),
      line("exits open at the end", (r) => (r.openExits.length > 0 ? r.openExits.join(", ") : "none")),
      line("learning s (training, calibration)", (r) => (r.learningMs / 1000).toFixed(1)),
      line("remembering s (on the frame path)", (r) => (r.rememberMs / 1000).toFixed(1)),
      line("gradient steps / versions", (r) => `${r.steps} / ${r.publishes}`),
      line("last exit's head MACs", (r) => `${(r.lastHeadMacs / 1000).toFixed(0)}k`),
      line("snapshot heads MB", (r) => (r.snapshotBytes / 1e6).toFixed(2)),
    ],
  );
}
