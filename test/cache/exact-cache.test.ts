/**
 * The exact cache: on its own (keys, the LRU bound, which answers may answer
 * under which heads version), and in front of the engine in OnlineCache on
 * the real backbone and real test images, where a stream that repeats frames
 * gets the first answer back at 0 MACs and the engine never sees the repeats.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExactAnswer } from "../../src/cache/exact-cache.ts";
import { ExactCache, contentKey } from "../../src/cache/exact-cache.ts";
import { BACKBONE_EXIT } from "../../src/cache/engine.ts";
import type { FrameOutcome } from "../../src/cache/engine.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import { OnlineCache } from "../../src/cache/online-cache.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import type { CacheOptionsInput } from "../../src/cache/options.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import { MemoryStateStore, emptySnapshot } from "../../src/cache/state.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { MODEL_DIR, argmax, testSplit } from "../helpers/model.ts";

const answer = (label: number, exit = BACKBONE_EXIT, headsVersion = 0): ExactAnswer => ({
  label,
  confidence: 0.9,
  exit,
  headsVersion,
});

/** A 28x28 frame of floats, different for each seed. */
function frame(seed: number): Float32Array {
  return Float32Array.from({ length: 784 }, (_, i) => Math.sin(seed * 7919 + i * 0.37));
}

describe("contentKey", () => {
  it("is the same for the same content wherever it sits, and differs for a one-pixel change", () => {
    const a = frame(1);
    // The same floats inside a larger buffer, at an offset.
    const big = new Float32Array(784 * 3);
    big.set(a, 784);
    expect(contentKey(big.subarray(784, 2 * 784))).toBe(contentKey(a));
    expect(contentKey(a)).toHaveLength(44); // 32 bytes, base64
    const b = a.slice();
    b[400] = Math.fround(b[400]! + 1 / 255);
    expect(contentKey(b)).not.toBe(contentKey(a));
    // Even the smallest change of one float (one unit in the last place).
    const c = a.slice();
    new Uint32Array(c.buffer)[123]! += 1;
    expect(c[123]).not.toBe(a[123]);
    expect(contentKey(c)).not.toBe(contentKey(a));
    expect(contentKey(frame(2))).not.toBe(contentKey(a));
  });
});

describe("ExactCache", () => {
  it("answers a repeated key and misses a distinct one", () => {
    const cache = new ExactCache(10);
    const k1 = contentKey(frame(1));
    cache.store(k1, answer(4));
    expect(cache.lookup(contentKey(frame(1)), 0)).toEqual(answer(4));
    expect(cache.lookup(contentKey(frame(2)), 0)).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it("holds at most maxEntries, evicting the least recently used", () => {
    const cache = new ExactCache(3);
    const keys = [1, 2, 3, 4, 5].map((s) => contentKey(frame(s)));
    keys.slice(0, 3).forEach((k, i) => cache.store(k, answer(i)));
    // Using the oldest makes the second the least recently used.
    expect(cache.lookup(keys[0]!, 0)?.label).toBe(0);
    cache.store(keys[3]!, answer(3));
    expect(cache.size).toBe(3);
    expect(cache.has(keys[1]!)).toBe(false);
    expect([0, 2, 3].map((i) => cache.has(keys[i]!))).toEqual([true, true, true]);
    cache.store(keys[4]!, answer(4));
    expect(cache.size).toBe(3);
    expect(cache.has(keys[2]!)).toBe(false);
    expect(cache.lookup(keys[0]!, 0)?.label).toBe(0);
  });

  it("serves backbone answers under any heads version, early answers only under their own", () => {
    const cache = new ExactCache(10);
    const [bb, early] = [contentKey(frame(1)), contentKey(frame(2))];
    cache.store(bb, answer(1, BACKBONE_EXIT, 3));
    cache.store(early, answer(2, 0, 3));
    expect(cache.lookup(early, 3)).toEqual(answer(2, 0, 3));
    expect(cache.lookup(bb, 4)).toEqual(answer(1, BACKBONE_EXIT, 3));
    // Under another version the exit may have closed: the early answer is dropped.
    expect(cache.lookup(early, 4)).toBeUndefined();
    expect(cache.has(early)).toBe(false);
    expect(cache.size).toBe(1);
  });

  it("refuses a bound below one entry", () => {
    expect(() => new ExactCache(0)).toThrow(/exact cache of 0 entries/);
  });
});

/**
 * A stand-in head for routing, not learning: it answers with confidence 0.99
 * and a label that depends on the features it is given, so frames that exit
 * early get different labels, the same one for the same frame.
 */
function featureHead(classes: number, inputSize: number): ExitHead {
  const fill = (features: Float32Array, n: number, out: Float32Array) => {
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let k = 0; k < inputSize; k++) sum += features[i * inputSize + k]!;
      const label = Math.floor(Math.abs(sum) * 1000) % classes;
      for (let c = 0; c < classes; c++) out[i * classes + c] = c === label ? 0.99 : 0.01 / (classes - 1);
    }
  };
  return {
    kind: "softmax",
    shape: { kind: "softmax", inputSize, hidden: 0, classes },
    inputSize,
    classes,
    predict: (f, out) => fill(f, 1, out),
    predictBatch: (f, n, out) => fill(f, n, out),
    predictBatchWith: async (_k, f, n, out) => fill(f, n, out),
    macs: () => inputSize * classes,
    trainBatch: () => 0,
    trainBatchWith: async () => 0,
    toBytes: () => new Uint8Array(0),
  };
}

describe("OnlineCache with the exact cache", () => {
  let model: SegmentedBackbone;
  let pre: Preprocessor;
  let pixels: Uint8Array;
  let fullMacs: number;
  const N = 64;
  const BATCH = 32;

  beforeAll(async () => {
    model = await SegmentedBackbone.load(MODEL_DIR, { intraOpThreads: 2 });
    pre = new Preprocessor(model.manifest.input);
    // A copy: the split may be a Buffer, whose slice() shares memory with every other test's.
    pixels = new Uint8Array((await testSplit()).images.subarray(0, N * pre.frameSize));
    fullMacs = model.manifest.segments.reduce((a, s) => a + s.macs, 0);
  });
  afterAll(async () => model?.close());

  /** Version 7: exit 0 open at threshold 0.5 with a confident head, so most frames leave there. */
  function exitZeroOpen(): CacheSnapshot {
    const m = model.manifest;
    const empty = emptySnapshot(m.modelId, model.exitCount);
    return {
      modelId: m.modelId,
      version: 7,
      heads: m.exits.map((e) => featureHead(m.classes.length, e.size)),
      // Proven on plenty of held-out frames, so the steady held-out share applies.
      decisions: empty.decisions.map((d) =>
        d.exit === 0
          ? {
              ...d,
              open: true,
              threshold: 0.5,
              calibration: {
                threshold: 0.5,
                reached: 5000,
                accepted: 5000,
                agreed: 5000,
                lowerBound: 0.999,
                minFrames: 299,
              },
            }
          : d,
      ),
    };
  }

  async function cacheWith(snapshot: CacheSnapshot | undefined, options: CacheOptionsInput = {}) {
    const store = new MemoryStateStore();
    if (snapshot) await store.publish(snapshot);
    return OnlineCache.create(model, cacheOptions({ seed: 4, ...options }), store);
  }

  /** Runs frames `order` (indices into the first N test images) in batches; ids `<prefix>-<position>`. */
  async function run(cache: OnlineCache, order: number[], prefix: string): Promise<FrameOutcome[]> {
    const x = pre.normalise(pixels, N);
    const size = pre.frameSize;
    const out: FrameOutcome[] = [];
    for (let s = 0; s < order.length; s += BATCH) {
      const part = order.slice(s, s + BATCH);
      const input = new Float32Array(part.length * size);
      part.forEach((f, j) => input.set(x.subarray(f * size, (f + 1) * size), j * size));
      const ids = part.map((_, j) => `${prefix}-${s + j}`);
      const outcomes = await cache.process(ids, input);
      expect(outcomes.map((o) => o.id)).toEqual(ids);
      out.push(...outcomes);
    }
    return out;
  }

  const firstPass = Array.from({ length: N }, (_, i) => i);
  // Every frame again, in another order, so repeats land in other batches and positions.
  const repeatPass = Array.from({ length: N }, (_, i) => (i * 37 + 11) % N);

  it("answers repeats with the first answer at 0 MACs, and the engine never sees them", async () => {
    const cache = await cacheWith(exitZeroOpen(), { auditRate: 0.1, calibrationRate: 0.2 });
    const first = await run(cache, firstPass, "a");
    expect(first.some((o) => o.exactHit)).toBe(false);
    const early = first.filter((o) => o.exit === 0);
    const backbone = first.filter((o) => o.exit === BACKBONE_EXIT);
    // Both kinds of answer are stored: early exits, and backbone answers (held out or audited).
    expect(early.length).toBeGreaterThan(0);
    expect(backbone.length).toBeGreaterThan(0);
    expect(new Set(early.map((o) => o.label)).size).toBeGreaterThan(1);
    expect(cache.exact?.size).toBe(N);
    const seen = { ...cache.trainer.stats };

    const again = await run(cache, repeatPass, "b");
    again.forEach((o, i) => {
      const was = first[repeatPass[i]!]!;
      expect(o).toMatchObject({
        exactHit: true,
        macs: 0,
        label: was.label,
        confidence: was.confidence,
        exit: was.exit,
        headsVersion: was.headsVersion,
        audited: false,
        heldOut: false,
      });
      expect(o.computeMs).toBeGreaterThanOrEqual(0);
      expect(o.computeMs).toBeLessThan(Number.POSITIVE_INFINITY);
    });
    // Hits are not held out, audited or trained on: the trainer saw nothing new.
    expect(cache.trainer.stats).toEqual(seen);
    await cache.close();
  });

  it("repeats the backbone's own label, runs a frame repeated within a batch once, and misses a one-pixel change", async () => {
    const cache = await cacheWith(undefined);
    const size = pre.frameSize;
    const changed = new Uint8Array(pixels.subarray(2 * size, 3 * size));
    changed[14 * 28 + 14] = changed[14 * 28 + 14]! ^ 1;
    // Frames 0, 1, 0 again, 2, and 2 with one pixel changed.
    const batch = new Uint8Array(5 * size);
    [0, 1, 0, 2].forEach((f, j) => batch.set(pixels.subarray(f * size, (f + 1) * size), j * size));
    batch.set(changed, 4 * size);
    const x = pre.normalise(batch, 5);
    const ids = ["p0", "p1", "p2", "p3", "p4"];
    const out = await cache.process(ids, x);
    expect(out.map((o) => o.id)).toEqual(ids);
    expect(out.map((o) => o.exactHit === true)).toEqual([false, false, true, false, false]);
    expect(out.map((o) => o.macs)).toEqual([fullMacs, fullMacs, 0, fullMacs, fullMacs]);
    expect(out[2]!.label).toBe(out[0]!.label);
    expect(cache.exact?.size).toBe(4);

    const logits = await model.runFull(x, 5);
    const truth = Array.from({ length: 5 }, (_, i) => argmax(logits, i * 10, 10));
    expect(out.map((o) => o.label)).toEqual(truth);

    // The next batch: the changed frame and frame 1 hit, frame 3 is new.
    const next = new Uint8Array(3 * size);
    next.set(changed, 0);
    next.set(pixels.subarray(size, 2 * size), size);
    next.set(pixels.subarray(3 * size, 4 * size), 2 * size);
    const out2 = await cache.process(["q0", "q1", "q2"], pre.normalise(next, 3));
    expect(out2.map((o) => o.exactHit === true)).toEqual([true, true, false]);
    expect(out2.map((o) => o.label)).toEqual([out[4]!.label, out[1]!.label, out2[2]!.label]);
    expect(out2.map((o) => o.macs)).toEqual([0, 0, fullMacs]);
    await cache.close();
  });

  it("runs early-exit answers again under a new heads version, and keeps serving backbone answers", async () => {
    const snapshot = exitZeroOpen();
    const cache = await cacheWith(snapshot, { auditRate: 0.1, calibrationRate: 0.2 });
    const first = await run(cache, firstPass, "a");
    cache.engine.adopt({ ...snapshot, version: snapshot.version + 1 });
    const again = await run(cache, repeatPass, "b");
    let early = 0;
    again.forEach((o, i) => {
      const was = first[repeatPass[i]!]!;
      if (was.exit === BACKBONE_EXIT) {
        expect(o).toMatchObject({ exactHit: true, macs: 0, label: was.label, headsVersion: 7 });
      } else {
        early++;
        expect(o.exactHit).toBeFalsy();
        expect(o.macs).toBeGreaterThan(0);
        expect(o.headsVersion).toBe(8);
      }
    });
    expect(early).toBeGreaterThan(0);
    await cache.close();
  });

  it("answers a repeat early only at a strictness the first answer clears (SLO mode)", async () => {
    const cache = await cacheWith(exitZeroOpen(), { auditRate: 0, calibrationRate: 0 });
    const size = pre.frameSize;
    const x = pre.normalise(pixels.subarray(0, 8 * size), 8);
    const ids = (p: string) => Array.from({ length: 8 }, (_, i) => `${p}${i}`);
    const first = await cache.process(ids("a"), x);
    expect(first.every((o) => o.exit === 0 && !o.exactHit)).toBe(true);
    // Frames 0-3 may not answer early at all; 4-7 are lenient, so the strict answer serves them.
    const strictness = Float32Array.from([2, 2, 2, 2, 0, 0, 0, 0]);
    const second = await cache.process(ids("b"), x, strictness);
    expect(second.map((o) => [o.exit, o.exactHit === true])).toEqual([
      ...Array.from({ length: 4 }, () => [BACKBONE_EXIT, false]),
      ...Array.from({ length: 4 }, () => [0, true]),
    ]);
    // The backbone's answers replaced the early ones: a strict repeat now gets those.
    const third = await cache.process(ids("c"), x);
    expect(third.map((o) => [o.exit, o.exactHit === true, o.label])).toEqual(
      second.map((o, i) => [i < 4 ? BACKBONE_EXIT : 0, true, o.label]),
    );
    // Within a batch, a repeat held to another strictness runs on its own.
    const fresh = await cacheWith(exitZeroOpen(), { auditRate: 0, calibrationRate: 0 });
    const pair = new Float32Array(2 * size);
    pair.set(x.subarray(0, size), 0);
    pair.set(x.subarray(0, size), size);
    const both = await fresh.process(["s", "t"], pair, Float32Array.from([1, 2]));
    expect(both.map((o) => [o.exit, o.exactHit === true])).toEqual([
      [0, false],
      [BACKBONE_EXIT, false],
    ]);
    await cache.close();
    await fresh.close();
  });

  it("is off with the cache off, and with exactCacheEntries 0", async () => {
    const off = await OnlineCache.create(model, cacheOptions({ seed: 4 }), new MemoryStateStore(), false);
    const none = await cacheWith(undefined, { exactCacheEntries: 0 });
    for (const cache of [off, none]) {
      expect(cache.exact).toBeUndefined();
      const twice = [...firstPass.slice(0, 8), ...firstPass.slice(0, 8)];
      const out = await run(cache, twice, "c");
      expect(out.every((o) => !o.exactHit && o.macs > 0)).toBe(true);
      expect(out.slice(8).map((o) => o.label)).toEqual(out.slice(0, 8).map((o) => o.label));
      await cache.close();
    }
  });
});
