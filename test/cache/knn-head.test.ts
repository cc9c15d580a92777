/**
 * The nearest-neighbour memory and the MLP + memory ensemble: they answer a
 * separable set, their confidence means what the vote says, memory stays
 * within its bound whatever arrives, the onnxruntime path computes what the
 * TypeScript one does, the codec round-trips them exactly and rejects
 * malformed bytes, and the trainer gives each new example to a memory once.
 * Everything is seeded: no test depends on timing or chance.
 */
import { afterAll, describe, expect, it } from "vitest";
import { ShadowAudit } from "../../src/cache/audit.ts";
import { KernelPool } from "../../src/cache/head-kernel.ts";
import { argmax } from "../../src/cache/head-math.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import {
  createHead,
  EnsembleHead,
  headFromBytes,
  MlpHead,
  NearestNeighbourHead,
  softmaxWithTemperature,
} from "../../src/cache/heads.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import { HeadTrainer } from "../../src/cache/trainer.ts";
import type { ErrorCode } from "../../src/errors/index.ts";
import { emptySnapshot } from "../../src/cache/state.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { decodeSnapshot, encodeSnapshot } from "../../src/state/snapshot-codec.ts";
import { thrownBy } from "../helpers/errors.ts";
import { MODEL_DIR } from "../helpers/model.ts";

const kernels = new KernelPool();
afterAll(() => kernels.release());

function codeOf(fn: () => unknown): ErrorCode {
  return thrownBy(fn).code;
}

interface Clusters {
  features: Float32Array;
  labels: Int32Array;
  /** One-hot targets. */
  targets: Float32Array;
}

/**
 * Separable synthetic features: class c is a random direction μ_c ~ N(0, I)
 * scaled by a random length in [1, 10], plus N(0, 0.3² I) noise.
 */
function clusters(seed: number, n: number, classes: number, size: number): Clusters {
  const centres = new SeededRandom(seed).fillGaussian(new Float64Array(classes * size));
  const rng = new SeededRandom(seed + 1);
  const features = new Float32Array(n * size);
  const labels = new Int32Array(n);
  const targets = new Float32Array(n * classes);
  for (let r = 0; r < n; r++) {
    const c = rng.integer(classes);
    const length = 1 + 9 * rng.uniform();
    labels[r] = c;
    targets[r * classes + c] = 1;
    for (let i = 0; i < size; i++) {
      features[r * size + i] = length * (centres[c * size + i]! + 0.3 * rng.gaussian());
    }
  }
  return { features, labels, targets };
}

function row(data: Float32Array, r: number, size: number): Float32Array {
  return data.subarray(r * size, (r + 1) * size);
}

function rememberAll(head: ExitHead, data: Clusters, n: number): void {
  for (let r = 0; r < n; r++)
    head.remember!(row(data.features, r, head.inputSize), row(data.targets, r, head.classes));
}

function oneHot(classes: number, c: number): Float32Array {
  const t = new Float32Array(classes);
  t[c] = 1;
  return t;
}

/** A unit vector along axis `axis`, plus `tilt` along axis `axis + 1`. */
function direction(size: number, axis: number, tilt = 0): Float32Array {
  const v = new Float32Array(size);
  v[axis] = 1;
  v[axis + 1] = tilt;
  return v;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe("NearestNeighbourHead", () => {
  it("answers a separable synthetic set correctly and confidently", () => {
    const head = new NearestNeighbourHead({ inputSize: 24, classes: 5, memoryPerClass: 32, neighbours: 10 });
    const train = clusters(3, 300, 5, 24);
    rememberAll(head, train, 300);
    const test = clusters(3, 1300, 5, 24);
    const probs = new Float32Array(1300 * 5);
    head.predictBatch(test.features, 1300, probs);
    let correct = 0;
    let confident = 0;
    // The first 300 rows of `test` are the training rows (same seed): judge the 1000 after them.
    for (let r = 300; r < 1300; r++) {
      const best = argmax(probs, r * 5, 5);
      if (best === test.labels[r]) correct++;
      if (probs[r * 5 + best]! >= 0.95) confident++;
    }
    expect(correct / 1000).toBeGreaterThanOrEqual(0.99);
    expect(confident / 1000).toBeGreaterThanOrEqual(0.9);
  });

  it("is confident about a unanimous vote with other classes far away, not about a 6/4 split", () => {
    const d = 8;
    const head = new NearestNeighbourHead({ inputSize: d, classes: 4, memoryPerClass: 10, neighbours: 10 });
    // Ten examples of class 0 along axis 0; class 1's nearest is three times as far from the query.
    for (let i = 0; i < 10; i++) head.remember(direction(d, 0), oneHot(4, 0));
    head.remember(direction(d, 2), oneHot(4, 1));
    const probs = new Float32Array(4);
    head.predict(direction(d, 0, 0.3), probs);
    expect(probs[0]).toBeGreaterThan(0.99);
    // A class remembered close by makes the same unanimous vote less sure.
    head.remember(direction(d, 0, 0.6), oneHot(4, 1));
    const near = new Float32Array(4);
    head.predict(direction(d, 0, 0.2), near);
    expect(argmax(near, 0, 4)).toBe(0);
    expect(near[0]).toBeLessThan(probs[0]!);

    // Six of class 2 and four of class 3 at one point, all ten equally near the query: 0.6 / 0.4.
    const split = new NearestNeighbourHead({ inputSize: d, classes: 4, memoryPerClass: 10, neighbours: 10 });
    for (let i = 0; i < 6; i++) split.remember(direction(d, 4), oneHot(4, 2));
    for (let i = 0; i < 4; i++) split.remember(direction(d, 4), oneHot(4, 3));
    split.predict(direction(d, 4, 0.5), probs);
    expect(probs[2]).toBeCloseTo(0.6, 6);
    expect(probs[3]).toBeCloseTo(0.4, 6);
    expect(probs[0]).toBe(0);
  });

  it("has no opinion while empty", () => {
    const head = new NearestNeighbourHead({ inputSize: 3, classes: 4, memoryPerClass: 2, neighbours: 3 });
    const probs = new Float32Array(4);
    head.predict(new Float32Array([1, 2, 3]), probs);
    expect(Array.from(probs)).toEqual([0.25, 0.25, 0.25, 0.25]);
    expect(head.macs()).toBe(0);
  });

  it("never holds more than classes × memoryPerClass examples, keeping the newest of each class", () => {
    const d = 6;
    const classes = 4;
    const perClass = 8;
    const head = new NearestNeighbourHead({ inputSize: d, classes, memoryPerClass: perClass, neighbours: 3 });
    const rng = new SeededRandom(9);
    const lastOfClass0: Float32Array[] = [];
    const maxBytes = 32 + 8 * classes + 4 * d * classes * perClass;
    for (let i = 0; i < 5000; i++) {
      // Nine in ten examples are class 0, and one class never comes: neither may crowd out the rest.
      const c = rng.uniform() < 0.9 ? 0 : 1 + rng.integer(classes - 2);
      const features = rng.fillGaussian(new Float32Array(d));
      head.remember(features, oneHot(classes, c));
      if (c === 0) lastOfClass0.push(features);
      expect(head.size).toBeLessThanOrEqual(head.capacity);
      if (i % 500 === 0) expect(head.toBytes().length).toBeLessThanOrEqual(maxBytes);
    }
    expect(head.capacity).toBe(classes * perClass);
    expect(head.heldFor(0)).toBe(perClass);
    expect(head.heldFor(1)).toBe(perClass);
    expect(head.heldFor(classes - 2)).toBe(perClass);
    expect(head.heldFor(classes - 1)).toBe(0);
    expect(head.remembered).toBe(5000);
    expect(head.macs()).toBe(head.size * (d + 1));
    expect(head.toBytes().length).toBe(maxBytes - 4 * d * perClass);

    // What class 0 holds is exactly its newest eight examples, as unit vectors.
    const unit = (v: Float32Array) => {
      const norm = Math.hypot(...v);
      return Array.from(v, (x) => Math.fround(x / norm));
    };
    const held = head.memoryState().classes[0]!;
    const stored = Array.from({ length: perClass }, (_, s) => Array.from(row(held.entries, s, d)));
    const newest = lastOfClass0.slice(-perClass).map(unit);
    const key = (v: number[]) => v.map((x) => x.toFixed(6)).join(",");
    expect(new Set(stored.map(key))).toEqual(new Set(newest.map(key)));

    head.keepNewest(3);
    expect(head.heldFor(0)).toBe(3);
    const kept = head.memoryState().classes[0]!;
    expect(Array.from({ length: 3 }, (_, s) => key(Array.from(row(kept.entries, s, d))))).toEqual(
      newest.slice(-3).map(key),
    );
  });

  it("rejects what it cannot remember, and checks its arguments", () => {
    const head = new NearestNeighbourHead({ inputSize: 3, classes: 2, memoryPerClass: 4, neighbours: 2 });
    expect(codeOf(() => head.remember(new Float32Array([1, Number.NaN, 2]), oneHot(2, 0)))).toBe(
      "FRAME_INVALID",
    );
    expect(codeOf(() => head.remember(new Float32Array(3), new Float32Array([0.5, 0.6])))).toBe("INTERNAL");
    expect(codeOf(() => head.predict(new Float32Array(4), new Float32Array(2)))).toBe("INTERNAL");
    expect(codeOf(() => head.predictBatch(new Float32Array(5), 2, new Float32Array(4)))).toBe("INTERNAL");
    expect(head.size).toBe(0);
    expect(codeOf(() => new NearestNeighbourHead({ inputSize: 3, classes: 2, memoryPerClass: 0 }))).toBe(
      "INTERNAL",
    );
    expect(codeOf(() => new NearestNeighbourHead({ inputSize: 3, classes: 2, neighbours: 0 }))).toBe(
      "INTERNAL",
    );
  });

  it("computes on onnxruntime what it computes in TypeScript", async () => {
    const head = new NearestNeighbourHead({ inputSize: 48, classes: 7, memoryPerClass: 12, neighbours: 10 });
    rememberAll(head, clusters(21, 200, 7, 48), 200);
    const probe = clusters(22, 40, 7, 48).features;
    const reference = new Float32Array(40 * 7);
    const fromKernel = new Float32Array(40 * 7);
    head.predictBatch(probe, 40, reference);
    await head.predictBatchWith(await kernels.get(head.shape), probe, 40, fromKernel);
    expect(maxAbsDiff(reference, fromKernel)).toBeLessThan(1e-4);
    for (let r = 0; r < 40; r++) expect(argmax(fromKernel, r * 7, 7)).toBe(argmax(reference, r * 7, 7));
  });

  it("learns from trainBatch by remembering every row, reporting the loss before", () => {
    const head = new NearestNeighbourHead({ inputSize: 10, classes: 3, memoryPerClass: 16, neighbours: 5 });
    const data = clusters(5, 20, 3, 10);
    const before = head.trainBatch(data.features, data.targets, 20);
    expect(before).toBeCloseTo(Math.log(3), 5);
    expect(head.size).toBe(20);
    expect(head.trainBatch(data.features, data.targets, 20)).toBeLessThan(0.1);
  });
});

describe("EnsembleHead", () => {
  function trained(seed: number): { head: EnsembleHead; data: Clusters } {
    const head = createHead(
      { headKind: "mlp+knn", mlpHidden: 6, knnPerClass: 10, knnK: 5 },
      12,
      4,
      new SeededRandom(seed),
    ) as EnsembleHead;
    const data = clusters(seed, 64, 4, 12);
    for (let step = 0; step < 5; step++) head.trainBatch(data.features, data.targets, 64);
    rememberAll(head, data, 30);
    return { head, data };
  }

  it("answers with the mean of its MLP's and its memory's distributions", async () => {
    const { head, data } = trained(31);
    expect(head.kind).toBe("mlp+knn");
    expect(head.macs()).toBe(head.mlp.macs() + head.memory.macs());
    const [mean, mlp, memory] = [0, 0, 0].map(() => new Float32Array(64 * 4)) as [
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    head.predictBatch(data.features, 64, mean);
    head.mlp.predictBatch(data.features, 64, mlp);
    head.memory.predictBatch(data.features, 64, memory);
    for (let i = 0; i < mean.length; i++) expect(mean[i]).toBeCloseTo((mlp[i]! + memory[i]!) / 2, 6);
    const fromKernel = new Float32Array(64 * 4);
    await head.predictBatchWith(await kernels.get(head.shape), data.features, 64, fromKernel);
    expect(maxAbsDiff(mean, fromKernel)).toBeLessThan(1e-4);
  });

  it("learns both ways: gradient steps move the MLP only, remember fills the memory only", () => {
    const { head, data } = trained(32);
    const weights = head.mlp.parameters().slice();
    const held = head.memory.size;
    head.remember(row(data.features, 40, 12), row(data.targets, 40, 4));
    expect(head.memory.size).toBe(held + 1);
    expect(head.mlp.parameters()).toEqual(weights);
    head.trainBatch(data.features, data.targets, 64);
    expect(head.memory.size).toBe(held + 1);
    expect(head.mlp.parameters()).not.toEqual(weights);
  });
});

describe("memory heads in the codec", () => {
  const memory = new NearestNeighbourHead({ inputSize: 5, classes: 3, memoryPerClass: 4, neighbours: 3 });
  rememberAll(memory, clusters(41, 9, 3, 5), 9);
  const knnBytes = memory.toBytes();
  const ensemble = createHead(
    { headKind: "mlp+knn", mlpHidden: 3, knnPerClass: 4, knnK: 3 },
    5,
    3,
    new SeededRandom(4),
  ) as EnsembleHead;
  rememberAll(ensemble, clusters(42, 6, 3, 5), 6);
  const ensembleBytes = ensemble.toBytes();
  const mlpBytes = new MlpHead({ inputSize: 5, hidden: 3, classes: 3 }, new SeededRandom(2)).toBytes();
  /** A class whose ring has not wrapped: its next slot must be the first free one. */
  const notFull = memory.memoryState().classes.findIndex((c) => c.filled < 4);
  const heldByNotFull = memory.heldFor(notFull);

  it.each([
    ["knn", () => new NearestNeighbourHead({ inputSize: 16, classes: 4, memoryPerClass: 6, neighbours: 5 })],
    ["mlp+knn", () => createHead({ headKind: "mlp+knn", mlpHidden: 5 }, 16, 4, new SeededRandom(8))],
  ])("%s: round-trips to identical predictions, and keeps learning identically", (_kind, make) => {
    const head = make();
    const data = clusters(51, 80, 4, 16);
    // More than the memory holds, so the rings have wrapped and the cursors matter.
    rememberAll(head, data, 50);
    head.trainBatch(data.features, data.targets, 80);
    const bytes = head.toBytes();
    const restored: ExitHead = headFromBytes(bytes);
    expect(restored.kind).toBe(head.kind);
    expect(restored.shape).toEqual(head.shape);
    expect(restored.toBytes()).toEqual(bytes);
    const [a, b] = [new Float32Array(80 * 4), new Float32Array(80 * 4)];
    head.predictBatch(data.features, 80, a);
    restored.predictBatch(data.features, 80, b);
    expect(Array.from(b)).toEqual(Array.from(a));
    for (let r = 50; r < 80; r++) {
      head.remember!(row(data.features, r, 16), row(data.targets, r, 4));
      restored.remember!(row(data.features, r, 16), row(data.targets, r, 4));
    }
    expect(restored.toBytes()).toEqual(head.toBytes());
  });

  it("accepts what toBytes wrote, including at a byte offset", () => {
    expect(headFromBytes(knnBytes).kind).toBe("knn");
    expect(headFromBytes(ensembleBytes).kind).toBe("mlp+knn");
    const padded = new Uint8Array(ensembleBytes.length + 3);
    padded.set(ensembleBytes, 3);
    expect(headFromBytes(padded.subarray(3)).toBytes()).toEqual(ensembleBytes);
  });

  function corrupt(source: Uint8Array, edit: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
    const bytes = source.slice();
    edit(new DataView(bytes.buffer), bytes);
    return bytes;
  }

  /** A memory record of class count 3 and input size 5: the ring table at 32, entries at 56. */
  const table = 32;
  const entries = table + 8 * 3;
  const mlpAt = 36;
  const memoryAt = mlpAt + mlpBytes.length + 4;

  const cases: [string, Uint8Array][] = [
    ["a truncated ring table", knnBytes.slice(0, table + 5)],
    ["a truncated memory", knnBytes.slice(0, knnBytes.length - 2)],
    ["a trailing byte", new Uint8Array([...knnBytes, 0])],
    ["zero examples per class", corrupt(knnBytes, (v) => v.setUint32(24, 0, true))],
    ["zero neighbours", corrupt(knnBytes, (v) => v.setUint32(28, 0, true))],
    ["absurd neighbours", corrupt(knnBytes, (v) => v.setUint32(28, 0xffffffff, true))],
    ["a hidden layer on a memory", corrupt(knnBytes, (v) => v.setUint32(12, 2, true))],
    ["parameters on a memory", corrupt(knnBytes, (v) => v.setUint32(20, 1, true))],
    [
      "a capacity beyond the memory limit",
      corrupt(knnBytes, (v) => {
        v.setUint32(8, 60_000, true);
        v.setUint32(24, 60_000, true);
      }),
    ],
    ["a class holding more than its capacity", corrupt(knnBytes, (v) => v.setUint32(table, 5, true))],
    ["a ring slot out of range", corrupt(knnBytes, (v) => v.setUint32(table + 4, 4, true))],
    [
      "a ring slot past the examples held",
      corrupt(knnBytes, (v) => v.setUint32(table + 8 * notFull + 4, (heldByNotFull + 1) % 4, true)),
    ],
    ["a NaN example", corrupt(knnBytes, (v) => v.setFloat32(entries, Number.NaN, true))],
    ["an example that is not a unit vector", corrupt(knnBytes, (v) => v.setFloat32(entries, 3, true))],
    ["an ensemble without its memory", ensembleBytes.slice(0, memoryAt - 4)],
    ["an ensemble part running past the end", corrupt(ensembleBytes, (v) => v.setUint32(32, 1 << 30, true))],
    ["an ensemble with a trailing byte", new Uint8Array([...ensembleBytes, 0])],
    ["an ensemble whose first part is not an MLP", corrupt(ensembleBytes, (_, b) => b.set([3], mlpAt + 6))],
    [
      "an ensemble whose second part is an ensemble",
      corrupt(ensembleBytes, (_, b) => b.set([4], memoryAt + 6)),
    ],
    [
      "an ensemble whose MLP has other sizes",
      corrupt(ensembleBytes, (v) => {
        v.setUint32(12, 4, true);
        v.setUint32(20, 4 * 5 + 3 * 4 + 4 + 3, true);
      }),
    ],
    ["an ensemble whose memory has other sizes", corrupt(ensembleBytes, (v) => v.setUint32(28, 2, true))],
    [
      "an ensemble whose parts are broken",
      corrupt(ensembleBytes, (v) => v.setUint32(memoryAt + 24, 0, true)),
    ],
  ];

  for (const [what, bytes] of cases) {
    it(`rejects ${what} with STATE_INVALID`, () => {
      expect(codeOf(() => headFromBytes(bytes))).toBe("STATE_INVALID");
    });
  }
});

describe("memory heads in a shared snapshot", () => {
  it("go through the Redis hash format bit for bit, checked against the model's layout", () => {
    const layout = { featureSizes: [6, 10, 14], classes: 4 };
    const knn = new NearestNeighbourHead({ inputSize: 6, classes: 4, memoryPerClass: 5, neighbours: 3 });
    rememberAll(knn, clusters(61, 30, 4, 6), 30);
    const ensemble = createHead({ headKind: "mlp+knn", mlpHidden: 4 }, 10, 4, new SeededRandom(6));
    rememberAll(ensemble, clusters(62, 12, 4, 10), 12);
    const snapshot = { ...emptySnapshot("m", 3), version: 2, heads: [knn, ensemble, null] };
    const provenance = { publishedAt: 1, publisher: "worker-a", fencingToken: 1, audit: null };
    const fields = encodeSnapshot(snapshot, provenance, layout);
    const hash: Record<string, Buffer> = {};
    for (let i = 0; i < fields.length; i += 2) hash[String(fields[i])] = Buffer.from(fields[i + 1]!);
    const back = decodeSnapshot(hash, "m", layout)!;
    expect(back.heads.map((h) => h?.kind ?? null)).toEqual(["knn", "mlp+knn", null]);
    expect(back.heads[0]!.toBytes()).toEqual(knn.toBytes());
    expect(back.heads[1]!.toBytes()).toEqual(ensemble.toBytes());
    // A memory of the wrong width for its exit is refused like any other head.
    const wrong = { ...snapshot, heads: [ensemble, knn, null] };
    expect(() => encodeSnapshot(wrong, provenance, layout)).toThrow(/takes 10 features/);
  });
});

describe("HeadTrainer with memory heads", () => {
  const manifest = loadManifest(MODEL_DIR);
  const sizes = manifest.exits.map((e) => e.size);
  const classes = manifest.classes.length;

  function frame(rng: SeededRandom): { features: Float32Array[]; logits: Float32Array } {
    return {
      features: sizes.map((d) => rng.fillGaussian(new Float32Array(d))),
      logits: rng.fillGaussian(new Float32Array(classes), 3),
    };
  }

  async function run(headKind: "knn" | "mlp+knn") {
    const options = cacheOptions({
      headKind,
      trainBatch: 8,
      publishEvery: 1,
      steadyPublishEvery: 1,
      seed: 3,
      knnPerClass: 64,
    });
    const audit = new ShadowAudit(sizes.length, 0, 50, options.targetAgreement, options.driftSignificance);
    const trainer = new HeadTrainer(manifest, options, audit, 0, kernels);
    const rng = new SeededRandom(17);
    const held = (snapshot: Awaited<ReturnType<HeadTrainer["maintain"]>>, e: number) => {
      const head = snapshot!.heads[e]!;
      return (head instanceof EnsembleHead ? head.memory : (head as NearestNeighbourHead)).size;
    };

    // The first example: memories exist and hold it before the replay window has a mini-batch.
    const first = frame(rng);
    trainer.onBackboneFrame(first.features, first.logits, false);
    let snapshot = await trainer.maintain(manifest.modelId);
    expect(snapshot!.heads.every((h) => h?.kind === headKind)).toBe(true);
    sizes.forEach((_, e) => expect(held(snapshot, e)).toBe(1));

    // Held-out frames are never remembered; early exits teach the exits before them.
    let examples = 1;
    let taught = 0;
    for (let i = 0; i < 40; i++) {
      const f = frame(rng);
      const heldOut = i % 5 === 0;
      trainer.onBackboneFrame(f.features, f.logits, heldOut);
      if (!heldOut) examples++;
      if (i % 4 === 0) {
        const probs = new Float32Array(classes);
        softmaxWithTemperature(f.logits, 1, probs);
        trainer.onEarlyExit(f.features.slice(0, 3), probs);
        taught++;
      }
      snapshot = (await trainer.maintain(manifest.modelId)) ?? snapshot;
    }
    // Replayed mini-batches stored nothing: each exit holds each of its examples once.
    sizes.forEach((_, e) => expect(held(snapshot, e)).toBe(examples + (e < 3 ? taught : 0)));
    expect(trainer.stats.remembered).toBe(examples * sizes.length + 3 * taught);
    return trainer;
  }

  it("knn: remembers each new example exactly once and takes no gradient steps", async () => {
    const trainer = await run("knn");
    expect(trainer.stats.steps).toBe(0);
  }, 60_000);

  it("mlp+knn: remembers each new example once and trains its MLPs from the replay window", async () => {
    const trainer = await run("mlp+knn");
    expect(trainer.stats.steps).toBeGreaterThan(0);
  }, 60_000);
});
