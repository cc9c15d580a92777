/**
 * The early-exit engine on the real backbone and real test images: frames
 * come back in order with their ids, closed exits never answer, and the
 * MACs a frame is charged match the segments it went through.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShadowAudit } from "../../src/cache/audit.ts";
import type { CacheObserver } from "../../src/cache/engine.ts";
import { BACKBONE_EXIT, CacheEngine } from "../../src/cache/engine.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import { createHead } from "../../src/cache/heads.ts";
import { KernelPool } from "../../src/cache/head-kernel.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import type { ExitDecision } from "../../src/cache/planner.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { MODEL_DIR, firstTestBatch } from "../helpers/model.ts";

/**
 * A stand-in head for exercising the engine's routing, not learning: it
 * answers a fixed label with a fixed confidence. (Real heads are tested in
 * heads.test.ts and end to end in online-cache.test.ts.)
 */
function fixedHead(label: number, confidence: number, classes: number, inputSize: number): ExitHead {
  const fill = (out: Float32Array, n: number) => {
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < classes; c++)
        out[i * classes + c] = c === label ? confidence : (1 - confidence) / (classes - 1);
    }
  };
  const head: ExitHead = {
    kind: "softmax",
    shape: { kind: "softmax", inputSize, hidden: 0, classes },
    inputSize,
    classes,
    predict: (_f: Float32Array, out: Float32Array) => fill(out, 1),
    predictBatch: (_f: Float32Array, n: number, out: Float32Array) => fill(out, n),
    predictBatchWith: async (_k, _f: Float32Array, n: number, out: Float32Array) => fill(out, n),
    macs: () => inputSize * classes,
    trainBatch: () => 0,
    trainBatchWith: async () => 0,
    toBytes: () => new Uint8Array(0),
  };
  return head;
}

const sink: CacheObserver & { seen: number; heldOut: number; taught: number } = {
  seen: 0,
  heldOut: 0,
  taught: 0,
  onBackboneFrame(_f, _l, heldOut) {
    this.seen++;
    if (heldOut) this.heldOut++;
  },
  onEarlyExit(features) {
    this.taught += features.length;
  },
};

describe("CacheEngine", () => {
  let model: SegmentedBackbone;
  let input: Float32Array;
  const n = 48;
  const ids = Array.from({ length: n }, (_, i) => `frame-${i}`);

  beforeAll(async () => {
    model = await SegmentedBackbone.load(MODEL_DIR, { intraOpThreads: 2 });
    input = await firstTestBatch(model, n);
  });
  afterAll(async () => model?.close());

  function snapshot(
    open: Record<number, { label: number; confidence: number; threshold: number }>,
  ): CacheSnapshot {
    const m = model.manifest;
    const decisions: ExitDecision[] = m.exits.map((e) => {
      const o = open[e.index];
      return {
        exit: e.index,
        open: o !== undefined,
        threshold: o ? o.threshold : null,
        reason: o ? "test" : "closed in test",
        coverage: 0,
        savedMacs: 0,
        costMacs: 0,
        calibration: null,
      };
    });
    // Every exit has a confident head; only the decisions say which may answer.
    const heads = m.exits.map((e) => fixedHead(open[e.index]?.label ?? 3, 0.99, m.classes.length, e.size));
    return { modelId: m.modelId, version: 7, heads, decisions };
  }

  const engine = (
    snap: CacheSnapshot,
    options: Partial<{ audit: number; heldOut: number; enabled: boolean }> = {},
  ) =>
    new CacheEngine(model, snap, new ShadowAudit(model.exitCount, options.audit ?? 0, 50, 0.99, 0.01), sink, {
      cacheEnabled: options.enabled ?? true,
      calibrationRate: options.heldOut ?? 0,
      warmupCalibrationRate: options.heldOut ?? 0,
      warmupCalibrationFrames: 0,
      seed: 3,
    });

  it("answers every frame through the backbone when no exit is open, charging full MACs", async () => {
    const out = await engine(snapshot({})).process(ids, input);
    expect(out.map((o) => o.id)).toEqual(ids);
    expect(out.every((o) => o.exit === BACKBONE_EXIT)).toBe(true);
    const total = model.manifest.segments.reduce((a, s) => a + s.macs, 0);
    expect(out.every((o) => o.macs === total)).toBe(true);
    const full = await model.runFull(input, n);
    out.forEach((o, i) => {
      const row = Array.from(full.subarray(i * 10, i * 10 + 10));
      expect(o.label).toBe(row.indexOf(Math.max(...row)));
    });
  });

  it("never lets a frame leave through a closed exit", async () => {
    // Exit 2 is open; 0, 1 and 3-6 hold confident heads but are closed.
    const out = await engine(snapshot({ 2: { label: 4, confidence: 0.99, threshold: 0.9 } })).process(
      ids,
      input,
    );
    expect(new Set(out.map((o) => o.exit))).toEqual(new Set([2]));
    expect(out.every((o) => o.label === 4 && o.headsVersion === 7)).toBe(true);
    const m = model.manifest;
    const upTo2 =
      m.segments.slice(0, 3).reduce((a, s) => a + s.macs, 0) + m.exits[2]!.size * m.classes.length;
    expect(out.every((o) => o.macs === upTo2)).toBe(true);
  });

  it("keeps frame ids and order when frames leave at different exits", async () => {
    // Head confidence 0.99 against thresholds: exit 1 answers nobody (threshold
    // above 0.99), so the split comes from held-out frames, which must run on.
    const snap = snapshot({
      1: { label: 1, confidence: 0.99, threshold: 0.995 },
      4: { label: 5, confidence: 0.99, threshold: 0.5 },
    });
    const out = await engine(snap, { heldOut: 0.3 }).process(ids, input);
    expect(out.map((o) => o.id)).toEqual(ids);
    const heldOut = out.filter((o) => o.heldOut);
    expect(heldOut.length).toBeGreaterThan(0);
    expect(heldOut.every((o) => o.exit === BACKBONE_EXIT)).toBe(true);
    expect(out.filter((o) => !o.heldOut).every((o) => o.exit === 4 && o.label === 5)).toBe(true);
    // Held-out frames got the backbone's own answer.
    const full = await model.runFull(input, n);
    out.forEach((o, i) => {
      if (!o.heldOut) return;
      const row = Array.from(full.subarray(i * 10, i * 10 + 10));
      expect(o.label).toBe(row.indexOf(Math.max(...row)));
    });
  });

  it("lets frames that leave early teach the heads before their exit, with the answering head's output", async () => {
    const taught: { exits: number; target: number[] }[] = [];
    const observer: CacheObserver = {
      onBackboneFrame: () => undefined,
      onEarlyExit: (features, probs) => taught.push({ exits: features.length, target: Array.from(probs) }),
    };
    const snap = snapshot({ 3: { label: 6, confidence: 0.99, threshold: 0.9 } });
    const audit = new ShadowAudit(model.exitCount, 0, 50, 0.99, 0.01);
    const e = new CacheEngine(model, snap, audit, observer, {
      cacheEnabled: true,
      calibrationRate: 0,
      warmupCalibrationRate: 0,
      warmupCalibrationFrames: 0,
      seed: 1,
    });
    await e.process(ids, input);
    // Every frame left at exit 3, so each taught exits 0, 1 and 2 with head 3's distribution.
    expect(taught).toHaveLength(n);
    expect(taught.every((t) => t.exits === 3)).toBe(true);
    expect(taught.every((t) => t.target.indexOf(Math.max(...t.target)) === 6)).toBe(true);
  });

  it("answers audited frames with the backbone's label and records the audit", async () => {
    const snap = snapshot({ 0: { label: 9, confidence: 0.99, threshold: 0.5 } });
    const audit = new ShadowAudit(model.exitCount, 1, 50, 0.99, 0.01);
    const e = new CacheEngine(model, snap, audit, sink, {
      cacheEnabled: true,
      calibrationRate: 0,
      warmupCalibrationRate: 0,
      warmupCalibrationFrames: 0,
      seed: 1,
    });
    const out = await e.process(ids, input);
    expect(out.every((o) => o.audited && o.exit === BACKBONE_EXIT)).toBe(true);
    const agreeing = out.filter((o) => o.label === 9).length;
    expect(audit.totals[0]).toEqual({ audited: n, agreed: agreeing });
  });

  it("holds out the warm-up share until the snapshot's calibration had enough frames, then the steady one", async () => {
    // Exit 4 is open; the snapshot says how many held-out frames its calibration saw.
    const withEvidence = (reached: number): CacheSnapshot => {
      const snap = snapshot({ 4: { label: 5, confidence: 0.99, threshold: 0.9 } });
      const calibration = { threshold: 0.9, reached, accepted: 0, agreed: 0, lowerBound: 0, minFrames: 299 };
      return { ...snap, decisions: snap.decisions.map((d) => ({ ...d, calibration })) };
    };
    const heldOutShare = async (reached: number) => {
      const e = new CacheEngine(
        model,
        withEvidence(reached),
        new ShadowAudit(model.exitCount, 0, 50, 0.99, 0.01),
        sink,
        {
          cacheEnabled: true,
          calibrationRate: 0,
          warmupCalibrationRate: 1,
          warmupCalibrationFrames: 1000,
          seed: 5,
        },
      );
      const out = await e.process(ids, input);
      return out.filter((o) => o.heldOut).length / n;
    };
    expect(await heldOutShare(999)).toBe(1);
    expect(await heldOutShare(1000)).toBe(0);
  });

  it("holds out no frame while yielding to load once an exit is open, and as usual while none is", async () => {
    const heldOut = async (snap: CacheSnapshot) => {
      const e = engine(snap, { heldOut: 1 });
      e.yielding = true;
      return (await e.process(ids, input)).filter((o) => o.heldOut).length;
    };
    expect(await heldOut(snapshot({ 4: { label: 5, confidence: 0.99, threshold: 0.9 } }))).toBe(0);
    // Every frame runs the backbone anyway: holding out costs nothing.
    expect(await heldOut(snapshot({}))).toBe(n);
  });

  it("ignores every exit when the cache is disabled", async () => {
    const out = await engine(snapshot({ 0: { label: 9, confidence: 0.99, threshold: 0.5 } }), {
      enabled: false,
    }).process(ids, input);
    expect(out.every((o) => o.exit === BACKBONE_EXIT && !o.audited)).toBe(true);
  });

  it("runs an MLP head inside the span that ends at its exit, answering as the head does on its own", async () => {
    const m = model.manifest;
    const rng = new SeededRandom(11);
    const heads = m.exits.map((e) =>
      createHead({ headKind: "mlp", mlpHidden: 16 }, e.size, m.classes.length, rng),
    );
    // A threshold in the widest gap between exit 0's confidences in the middle
    // half, so that about half the frames leave there and float rounding
    // cannot move any across it.
    const { features } = await model.runSpan({ first: 0, last: 0 }, input, n);
    const probs = new Float32Array(n * m.classes.length);
    heads[0]!.predictBatch(features.get(0)!, n, probs);
    const conf = Array.from({ length: n }, (_, i) => Math.max(...probs.subarray(i * 10, i * 10 + 10)));
    conf.sort((a, b) => a - b);
    let gap = n / 4;
    for (let i = n / 4; i < (3 * n) / 4; i++)
      if (conf[i + 1]! - conf[i]! > conf[gap + 1]! - conf[gap]!) gap = i;
    expect(conf[gap + 1]! - conf[gap]!).toBeGreaterThan(1e-4);
    const threshold = (conf[gap]! + conf[gap + 1]!) / 2;
    const snap = snapshot({
      0: { label: 0, confidence: 0, threshold },
      4: { label: 0, confidence: 0, threshold: 0 },
    });
    const withHeads = { ...snap, heads };
    const run = async (kernels?: KernelPool) => {
      const e = new CacheEngine(model, withHeads, new ShadowAudit(model.exitCount, 0, 50, 0.99, 0.01), sink, {
        cacheEnabled: true,
        calibrationRate: 0,
        warmupCalibrationRate: 0,
        warmupCalibrationFrames: 0,
        seed: 3,
        kernels,
      });
      return {
        out: await e.process(ids, input),
        spans: [...e.profile.spans.keys()],
        heads: [...e.profile.heads.keys()],
      };
    };
    const kernels = new KernelPool();
    try {
      const fused = await run(kernels);
      const apart = await run();
      // With kernels the heads run inside the spans: no head call of their own.
      expect(fused.spans).toEqual(["0-0+head", "1-4+head"]);
      expect(fused.heads).toEqual([]);
      expect(apart.spans).toEqual(["0-0", "1-4"]);
      expect(apart.heads).toEqual([0, 4]);
      expect(fused.out.map((o) => o.exit)).toEqual(apart.out.map((o) => o.exit));
      expect(new Set(fused.out.map((o) => o.exit))).toEqual(new Set([0, 4]));
      fused.out.forEach((o, i) => {
        expect(o.label).toBe(apart.out[i]!.label);
        expect(o.confidence).toBeCloseTo(apart.out[i]!.confidence, 4);
        expect(o.macs).toBe(apart.out[i]!.macs);
      });
    } finally {
      await kernels.release();
    }
  });
});
