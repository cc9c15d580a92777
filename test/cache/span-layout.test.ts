/**
 * Where the engine cuts the backbone for a snapshot (src/cache/span-layout.ts):
 * one span from each open exit to the next, the head at an open exit riding
 * at the end of its span when it has a predict graph, and one layout per
 * snapshot. Real manifest and real heads; no onnxruntime session is built.
 */
import { describe, expect, it } from "vitest";
import { createHead } from "../../src/cache/heads.ts";
import { KernelPool } from "../../src/cache/head-kernel.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import { SpanLayouts } from "../../src/cache/span-layout.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { MODEL_DIR } from "../helpers/model.ts";
import { decision } from "../helpers/decisions.ts";

const manifest = loadManifest(MODEL_DIR);
const last = manifest.segments.length - 1;

function heads(kind: "mlp" | "knn"): ExitHead[] {
  const random = new SeededRandom(7);
  return manifest.exits.map((e) =>
    createHead({ headKind: kind, mlpHidden: 8 }, e.size, manifest.classes.length, random),
  );
}

/** Exits 0 and 4 open for the target; exit 2 only for the floor (SLO mode). */
function snapshot(kind: "mlp" | "knn" = "mlp"): CacheSnapshot {
  const decisions = manifest.exits.map((e) =>
    e.index === 0 || e.index === 4
      ? decision(e.index, 0.95)
      : decision(e.index, null, e.index === 2 ? 0.9 : null),
  );
  return { modelId: manifest.modelId, version: 2, heads: heads(kind), decisions };
}

const after = (exit: number) => manifest.exits[exit]!.afterSegment;
const shape = (r: { first: number; last: number; tail?: unknown }) => [r.first, r.last, r.tail !== undefined];

describe("SpanLayouts", () => {
  const kernels = new KernelPool();

  it("cuts at the open exits only, with each open exit's head at the end of its span", () => {
    const layouts = new SpanLayouts(manifest, { cacheEnabled: true, kernels });
    expect(layouts.ranges(snapshot()).map(shape)).toEqual([
      [0, after(0), true],
      [after(0) + 1, after(4), true],
      [after(4) + 1, last, false],
    ]);
  });

  it("also cuts at the exits only the floor opens when some frame is lenient", () => {
    const layouts = new SpanLayouts(manifest, { cacheEnabled: true, kernels });
    expect(layouts.ranges(snapshot(), true).map(shape)).toEqual([
      [0, after(0), true],
      [after(0) + 1, after(2), true],
      [after(2) + 1, after(4), true],
      [after(4) + 1, last, false],
    ]);
  });

  it("runs the whole network as one span with the cache off, whatever the snapshot says", () => {
    const layouts = new SpanLayouts(manifest, { cacheEnabled: false, kernels });
    expect(layouts.ranges(snapshot()).map(shape)).toEqual([[0, last, false]]);
  });

  it("fuses no head without kernels, nor a memory, which has no predict graph", () => {
    const withoutKernels = new SpanLayouts(manifest, { cacheEnabled: true });
    expect(withoutKernels.ranges(snapshot()).map((r) => r.tail)).toEqual([undefined, undefined, undefined]);
    const memories = new SpanLayouts(manifest, { cacheEnabled: true, kernels });
    expect(memories.ranges(snapshot("knn")).map((r) => r.tail)).toEqual([undefined, undefined, undefined]);
  });

  it("skips an open exit that has no head yet", () => {
    const snap = snapshot();
    const layouts = new SpanLayouts(manifest, { cacheEnabled: true, kernels });
    const noHead: CacheSnapshot = { ...snap, heads: snap.heads.map((h, e) => (e === 4 ? null : h)) };
    expect(layouts.ranges(noHead).map(shape)).toEqual([
      [0, after(0), true],
      [after(0) + 1, last, false],
    ]);
  });

  it("works a snapshot's layout out once, and a head's feeds once, as copies of its parameters", () => {
    const snap = snapshot();
    const layouts = new SpanLayouts(manifest, { cacheEnabled: true, kernels });
    expect(layouts.ranges(snap)).toBe(layouts.ranges(snap));
    expect(layouts.ranges(snap, true)).not.toBe(layouts.ranges(snap));
    const head = snap.heads[0]!;
    const feeds = layouts.feedsOf(head);
    expect(layouts.feedsOf(head)).toBe(feeds);
    const before = Float32Array.from(feeds.w1!.data as Float32Array);
    // Scribbling on the head's own kernel scratch must not reach the fused span's inputs.
    const scratch = head.kernelInput!();
    scratch.params.fill(42);
    expect(Array.from(feeds.w1!.data as Float32Array)).toEqual(Array.from(before));
  });
});
