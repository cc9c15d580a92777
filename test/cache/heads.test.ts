import { describe, expect, it } from "vitest";
import { FeatureNormalizer } from "../../src/cache/feature-normalizer.ts";
import type { ExitHead, HeadBase } from "../../src/cache/heads.ts";
import {
  createHead,
  DEFAULT_MLP_OPTIONS,
  DEFAULT_SOFTMAX_OPTIONS,
  headFromBytes,
  headShape,
  MlpHead,
  SoftmaxRegression,
  softmaxWithTemperature,
} from "../../src/cache/heads.ts";
import { argmax } from "../../src/cache/head-math.ts";
import { HEAD_KINDS } from "../../src/cache/head-types.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import type { ErrorCode } from "../../src/errors/index.ts";
import { thrownBy } from "../helpers/errors.ts";
import { softTargets } from "../helpers/random-data.ts";

function codeOf(fn: () => unknown): ErrorCode {
  return thrownBy(fn).code;
}

/** n rows of `size` features whose scales and offsets differ wildly, as pooled activations do. */
function badlyScaledFeatures(rng: SeededRandom, n: number, size: number): Float32Array {
  const out = new Float32Array(n * size);
  for (let i = 0; i < size; i++) {
    const scale = 10 ** (4 * rng.uniform() - 2);
    const offset = 100 * rng.uniform();
    for (let r = 0; r < n; r++) out[r * size + i] = offset + scale * rng.gaussian();
  }
  return out;
}

/** Largest relative error between the analytic gradient and central differences. */
function worstGradientError(
  head: HeadBase,
  features: Float32Array,
  targets: Float32Array,
  n: number,
): number {
  const { gradient } = head.gradients(features, targets, n);
  const params = head.parameters();
  let worst = 0;
  for (let i = 0; i < params.length; i++) {
    const original = params[i] as number;
    params[i] = original + 1e-3;
    const up = params[i] as number; // float32-rounded: divide by the step actually taken
    const lossUp = head.loss(features, targets, n);
    params[i] = original - 1e-3;
    const down = params[i] as number;
    const lossDown = head.loss(features, targets, n);
    params[i] = original;
    const numeric = (lossUp - lossDown) / (up - down);
    const analytic = gradient[i] as number;
    worst = Math.max(
      worst,
      Math.abs(analytic - numeric) / Math.max(Math.abs(analytic), Math.abs(numeric), 1e-6),
    );
  }
  return worst;
}

interface Blobs {
  features: Float32Array;
  labels: Int32Array;
  targets: Float32Array;
}

/** Gaussian blobs: class c at centre μ_c ~ N(0, I), points μ_c + N(0, I), then badly rescaled. */
function gaussianBlobs(seed: number, n: number, classes: number, size: number): Blobs {
  const rng = new SeededRandom(seed);
  const centres = rng.fillGaussian(new Float64Array(classes * size));
  const scales = Array.from({ length: size }, () => 10 ** (3 * rng.uniform() - 1));
  const offsets = Array.from({ length: size }, () => 50 * rng.gaussian());
  const features = new Float32Array(n * size);
  const labels = new Int32Array(n);
  const targets = new Float32Array(n * classes);
  const data = new SeededRandom(seed + 1);
  for (let r = 0; r < n; r++) {
    const c = data.integer(classes);
    labels[r] = c;
    targets[r * classes + c] = 1;
    for (let i = 0; i < size; i++) {
      const x = (centres[c * size + i] as number) + data.gaussian();
      features[r * size + i] = (offsets[i] as number) + (scales[i] as number) * x;
    }
  }
  return { features, labels, targets };
}

function trainEpochs(head: ExitHead, data: Blobs, n: number, epochs: number, batch: number): number {
  const d = head.inputSize;
  const c = head.classes;
  let loss = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let start = 0; start + batch <= n; start += batch) {
      const features = data.features.subarray(start * d, (start + batch) * d);
      loss = head.trainBatch(features, data.targets.subarray(start * c, (start + batch) * c), batch);
    }
  }
  return loss;
}

function accuracy(head: ExitHead, features: Float32Array, labels: Int32Array): number {
  const n = labels.length;
  const probs = new Float32Array(n * head.classes);
  head.predictBatch(features, n, probs);
  let correct = 0;
  for (let r = 0; r < n; r++) {
    if (argmax(probs, r * head.classes, head.classes) === labels[r]) correct++;
  }
  return correct / n;
}

const makeHeads = (d: number, h: number, c: number): [string, () => HeadBase][] => [
  ["softmax regression", () => new SoftmaxRegression({ inputSize: d, classes: c })],
  ["MLP", () => new MlpHead({ inputSize: d, hidden: h, classes: c }, new SeededRandom(7))],
];

describe("softmaxWithTemperature", () => {
  it("is a stable softmax that flattens as the temperature rises", () => {
    const logits = new Float32Array([1000, 999, 990]);
    const sharp = new Float32Array(3);
    const soft = new Float32Array(3);
    softmaxWithTemperature(logits, 1, sharp);
    softmaxWithTemperature(logits, 10, soft);
    // e^0 : e^-1 : e^-10 normalised.
    const z = 1 + Math.exp(-1) + Math.exp(-10);
    expect(sharp[0]).toBeCloseTo(1 / z, 6);
    expect(sharp[1]).toBeCloseTo(Math.exp(-1) / z, 6);
    expect((sharp[0] as number) + (sharp[1] as number) + (sharp[2] as number)).toBeCloseTo(1, 6);
    expect(soft[2] as number).toBeGreaterThan(sharp[2] as number);
    expect(soft[0] as number).toBeLessThan(sharp[0] as number);
  });

  it("rejects a non-positive temperature and a short output", () => {
    expect(codeOf(() => softmaxWithTemperature(new Float32Array(2), 0, new Float32Array(2)))).toBe(
      "INTERNAL",
    );
    expect(codeOf(() => softmaxWithTemperature(new Float32Array(3), 1, new Float32Array(2)))).toBe(
      "INTERNAL",
    );
  });
});

describe("FeatureNormalizer", () => {
  it("tracks the mean and population variance exactly until its horizon", () => {
    const rng = new SeededRandom(3);
    const data = badlyScaledFeatures(rng, 500, 4);
    const normalizer = new FeatureNormalizer(4, 10_000);
    normalizer.observe(data.subarray(0, 200 * 4), 200);
    normalizer.observe(data.subarray(200 * 4), 300);
    for (let i = 0; i < 4; i++) {
      let mean = 0;
      for (let r = 0; r < 500; r++) mean += (data[r * 4 + i] as number) / 500;
      let variance = 0;
      for (let r = 0; r < 500; r++) variance += ((data[r * 4 + i] as number) - mean) ** 2 / 500;
      expect(normalizer.mean[i]).toBeCloseTo(mean, 9);
      expect(Math.abs((normalizer.variance[i] as number) / variance - 1)).toBeLessThan(1e-9);
    }
    expect(normalizer.count).toBe(500);
  });

  it("becomes a moving average past its horizon, so it follows a shifted stream", () => {
    const normalizer = new FeatureNormalizer(1, 100);
    normalizer.observe(new Float32Array(1000).fill(5), 1000);
    normalizer.observe(new Float32Array(1000).fill(-5), 1000);
    expect(normalizer.count).toBe(100);
    expect(normalizer.mean[0]).toBeCloseTo(-5, 3);
  });
});

describe("exit heads", () => {
  for (const [name, make] of makeHeads(5, 6, 4)) {
    it(`${name}: analytic gradients match central differences`, () => {
      const head = make();
      const rng = new SeededRandom(11);
      const n = 3;
      const features = badlyScaledFeatures(rng, n, 5);
      const targets = softTargets(rng, n, 4);
      // A few steps first, so the statistics and the weights are far from their initial values.
      for (let i = 0; i < 20; i++) head.trainBatch(features, softTargets(rng, n, 4), n);
      expect(worstGradientError(head, features, targets, n)).toBeLessThan(1e-3);
    });
  }

  for (const [name, make] of makeHeads(20, 32, 5)) {
    it(`${name}: learns five Gaussian blobs in 20 badly scaled dimensions`, () => {
      const train = gaussianBlobs(100, 1000, 5, 20);
      const test = gaussianBlobs(100, 1500, 5, 20); // same centres, fresh points after the first 1000
      const heldOut = { features: test.features.subarray(1000 * 20), labels: test.labels.subarray(1000) };
      const head = make();
      const finalLoss = trainEpochs(head, train, 1000, 10, 32);
      expect(finalLoss).toBeLessThan(0.35);
      expect(accuracy(head, heldOut.features, heldOut.labels)).toBeGreaterThan(0.95);
    });

    it(`${name}: converges to the soft target of a single repeated example`, () => {
      const head = make();
      const target = new Float32Array(5);
      target.set([0.5, 0.25, 0.15, 0.07, 0.03]);
      const n = 8;
      const features = new Float32Array(n * 20);
      const x = new SeededRandom(5).fillGaussian(new Float32Array(20), 3);
      for (let r = 0; r < n; r++) features.set(x, r * 20);
      const targets = new Float32Array(n * 5);
      for (let r = 0; r < n; r++) targets.set(target, r * 5);
      let loss = Infinity;
      for (let step = 0; step < 3000; step++) loss = head.trainBatch(features, targets, n);
      const probs = new Float32Array(5);
      head.predict(x, probs);
      for (let c = 0; c < 5; c++)
        expect(Math.abs((probs[c] as number) - (target[c] as number))).toBeLessThan(0.01);
      // The cross-entropy bottoms out at the target's entropy.
      const entropy = -target.reduce((s, t) => s + t * Math.log(t), 0);
      expect(loss - entropy).toBeLessThan(1e-3);
    });
  }

  for (const [name, make] of makeHeads(7, 5, 3)) {
    it(`${name}: serialization round-trips exactly`, () => {
      const head = make();
      const rng = new SeededRandom(21);
      for (let i = 0; i < 5; i++) head.trainBatch(badlyScaledFeatures(rng, 4, 7), softTargets(rng, 4, 3), 4);
      const bytes = head.toBytes();
      const restored = headFromBytes(bytes);
      expect(restored.kind).toBe(head.kind);
      expect(restored.inputSize).toBe(7);
      expect(restored.classes).toBe(3);
      expect(restored.toBytes()).toEqual(bytes);
      const probe = badlyScaledFeatures(rng, 6, 7);
      const [a, b] = [new Float32Array(18), new Float32Array(18)];
      head.predictBatch(probe, 6, a);
      restored.predictBatch(probe, 6, b);
      expect(Array.from(b)).toEqual(Array.from(a));
    });

    it(`${name}: predictBatch agrees with predict row by row`, () => {
      const head = make();
      const rng = new SeededRandom(22);
      head.trainBatch(badlyScaledFeatures(rng, 4, 7), softTargets(rng, 4, 3), 4);
      const probe = badlyScaledFeatures(rng, 3, 7);
      const batch = new Float32Array(9);
      head.predictBatch(probe, 3, batch);
      const row = new Float32Array(3);
      for (let r = 0; r < 3; r++) {
        head.predict(probe.slice(r * 7, r * 7 + 7), row);
        expect(Array.from(row)).toEqual(Array.from(batch.subarray(r * 3, r * 3 + 3)));
      }
    });
  }

  it("counts multiply-accumulates per prediction", () => {
    expect(new SoftmaxRegression({ inputSize: 64, classes: 10 }).macs()).toBe(64 * 10);
    const mlp = new MlpHead({ inputSize: 64, hidden: 32, classes: 10 }, new SeededRandom(1));
    expect(mlp.macs()).toBe(32 * 64 + 10 * 32);
  });

  it("creates the configured kind, deterministically from the seed", () => {
    const softmax = createHead({ headKind: "softmax", mlpHidden: 8 }, 6, 3, new SeededRandom(1));
    expect(softmax.kind).toBe("softmax");
    const a = createHead({ headKind: "mlp", mlpHidden: 8 }, 6, 3, new SeededRandom(1));
    const b = createHead({ headKind: "mlp", mlpHidden: 8 }, 6, 3, new SeededRandom(1));
    expect(a.kind).toBe("mlp");
    expect(a.macs()).toBe(8 * 6 + 3 * 8);
    expect(a.toBytes()).toEqual(b.toBytes());
  });

  it("documents its defaults and validates options", () => {
    expect(DEFAULT_SOFTMAX_OPTIONS.learningRate).toBe(5e-3);
    expect(DEFAULT_MLP_OPTIONS.learningRate).toBe(1e-3);
    const head = new SoftmaxRegression({ inputSize: 2, classes: 2 }, { weightDecay: 0.01 });
    expect(head.options).toMatchObject({ learningRate: 5e-3, weightDecay: 0.01, beta2: 0.999 });
    expect(codeOf(() => new SoftmaxRegression({ inputSize: 2, classes: 2 }, { learningRate: -1 }))).toBe(
      "CONFIG_INVALID",
    );
    expect(codeOf(() => new SoftmaxRegression({ inputSize: 0, classes: 2 }))).toBe("INTERNAL");
    expect(codeOf(() => new MlpHead({ inputSize: 2, hidden: 0, classes: 2 }, new SeededRandom(1)))).toBe(
      "INTERNAL",
    );
  });

  it("checks its inputs: sizes, non-finite features, targets that are not distributions", () => {
    const head = new SoftmaxRegression({ inputSize: 3, classes: 2 });
    expect(codeOf(() => head.predict(new Float32Array(4), new Float32Array(2)))).toBe("INTERNAL");
    expect(codeOf(() => head.predictBatch(new Float32Array(5), 2, new Float32Array(4)))).toBe("INTERNAL");
    const nan = new Float32Array([1, Number.NaN, 2]);
    expect(codeOf(() => head.trainBatch(nan, new Float32Array([0.5, 0.5]), 1))).toBe("FRAME_INVALID");
    expect(codeOf(() => head.trainBatch(new Float32Array(3), new Float32Array([0.5, 0.6]), 1))).toBe(
      "INTERNAL",
    );
    expect(codeOf(() => head.trainBatch(new Float32Array(3), new Float32Array([1.5, -0.5]), 1))).toBe(
      "INTERNAL",
    );
    // Nothing was learned from the rejected batches.
    expect(head.parameters().every((p) => p === 0)).toBe(true);
  });
});

describe("headFromBytes", () => {
  const softmax = new SoftmaxRegression({ inputSize: 4, classes: 3 });
  softmax.trainBatch(new Float32Array([1, 2, 3, 4, 2, 3, 4, 9]), new Float32Array([1, 0, 0, 0, 0.5, 0.5]), 2);
  const good = softmax.toBytes();
  const mlp = new MlpHead({ inputSize: 4, hidden: 3, classes: 3 }, new SeededRandom(2)).toBytes();

  function corrupt(source: Uint8Array, edit: (view: DataView, bytes: Uint8Array) => void): Uint8Array {
    const bytes = source.slice();
    edit(new DataView(bytes.buffer), bytes);
    return bytes;
  }

  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["a truncated header", good.slice(0, 10)],
    ["a truncated body", good.slice(0, good.length - 1)],
    ["a trailing byte", new Uint8Array([...good, 0])],
    ["wrong magic", corrupt(good, (_, b) => b.set([0x50, 0x4b, 3, 4]))],
    ["a future version", corrupt(good, (v) => v.setUint16(4, 2, true))],
    ["an unknown kind", corrupt(good, (v) => v.setUint8(6, 9))],
    ["a nonzero reserved byte", corrupt(good, (v) => v.setUint8(7, 1))],
    ["an absurd input size", corrupt(good, (v) => v.setUint32(8, 0xffffffff, true))],
    ["a zero input size", corrupt(good, (v) => v.setUint32(8, 0, true))],
    ["a single class", corrupt(good, (v) => v.setUint32(16, 1, true))],
    ["a hidden layer on softmax regression", corrupt(good, (v) => v.setUint32(12, 3, true))],
    ["an MLP without hidden units", corrupt(mlp, (v) => v.setUint32(12, 0, true))],
    [
      "sizes beyond the parameter limit",
      corrupt(mlp, (v) => [8, 12, 16].forEach((o) => v.setUint32(o, 60_000, true))),
    ],
    ["a parameter count that disagrees", corrupt(good, (v) => v.setUint32(20, 16, true))],
    ["a fractional statistics count", corrupt(good, (v) => v.setFloat64(24, 2.5, true))],
    ["an infinite mean", corrupt(good, (v) => v.setFloat64(32, Infinity, true))],
    ["a negative variance", corrupt(good, (v) => v.setFloat64(32 + 8 * 4, -1, true))],
    ["a NaN weight", corrupt(good, (v) => v.setFloat32(good.length - 4, Number.NaN, true))],
    ["an infinite weight", corrupt(mlp, (v) => v.setFloat32(32 + 16 * 4, -Infinity, true))],
  ];

  it("accepts what toBytes wrote, including at a byte offset", () => {
    expect(headFromBytes(good).kind).toBe("softmax");
    expect(headFromBytes(mlp).kind).toBe("mlp");
    const padded = new Uint8Array(good.length + 3);
    padded.set(good, 3);
    expect(headFromBytes(padded.subarray(3)).toBytes()).toEqual(good);
  });

  for (const [what, bytes] of cases) {
    it(`rejects ${what} with STATE_INVALID`, () => {
      expect(codeOf(() => headFromBytes(bytes))).toBe("STATE_INVALID");
    });
  }
});

describe("headShape", () => {
  it("is the shape of the head createHead makes, for every kind (what its kernel is built for)", () => {
    for (const headKind of HEAD_KINDS) {
      const choice = { headKind, mlpHidden: 16, knnPerClass: 8, knnK: 3 };
      const head = createHead(choice, 12, 4, new SeededRandom(1));
      expect(headShape(choice, 12, 4)).toEqual(head.shape);
    }
  });
});
