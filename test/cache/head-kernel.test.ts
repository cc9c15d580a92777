/**
 * The onnxruntime kernels must compute what the TypeScript reference heads
 * compute (those are checked against finite differences in heads.test.ts):
 * same probabilities, same loss, same gradient, and so the same training.
 */
import { afterAll, describe, expect, it } from "vitest";
import { KernelPool } from "../../src/cache/head-kernel.ts";
import type { ExitHead, HeadBase } from "../../src/cache/heads.ts";
import { MlpHead, SoftmaxRegression, headFromBytes } from "../../src/cache/heads.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import { softTargets } from "../helpers/random-data.ts";

const kernels = new KernelPool();
afterAll(() => kernels.release());

function batch(rng: SeededRandom, n: number, d: number, classes: number) {
  const features = new Float32Array(n * d);
  // Offsets and scales far from standard, so standardization matters.
  for (let i = 0; i < d; i++) {
    const scale = 10 ** (3 * rng.uniform() - 1.5);
    const offset = 50 * rng.uniform();
    for (let r = 0; r < n; r++) features[r * d + i] = offset + scale * rng.gaussian();
  }
  return { features, targets: softTargets(rng, n, classes) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const heads: [string, (rng: SeededRandom) => ExitHead][] = [
  ["softmax regression", () => new SoftmaxRegression({ inputSize: 48, classes: 7 })],
  ["MLP", (rng) => new MlpHead({ inputSize: 48, hidden: 16, classes: 7 }, rng)],
];

describe.each(heads)("onnxruntime kernel for %s", (_name, make) => {
  it("predicts the reference head's probabilities", async () => {
    const rng = new SeededRandom(11);
    const head = make(rng);
    const { features, targets } = batch(rng, 40, 48, 7);
    head.trainBatch(features, targets, 40); // non-trivial weights and statistics
    const reference = new Float32Array(40 * 7);
    const fromKernel = new Float32Array(40 * 7);
    head.predictBatch(features, 40, reference);
    await head.predictBatchWith(await kernels.get(head.shape), features, 40, fromKernel);
    expect(maxAbsDiff(reference, fromKernel)).toBeLessThan(1e-5);
  });

  it("takes the same training steps as the reference head", async () => {
    const rng = new SeededRandom(12);
    const reference = make(rng);
    const withKernel = headFromBytes(reference.toBytes());
    const kernel = await kernels.get(reference.shape);
    const losses: [number, number][] = [];
    for (let step = 0; step < 20; step++) {
      const { features, targets } = batch(rng, 32, 48, 7);
      losses.push([
        reference.trainBatch(features, targets, 32),
        await withKernel.trainBatchWith(kernel, features, targets, 32),
      ]);
    }
    for (const [a, b] of losses) expect(Math.abs(a - b)).toBeLessThan(1e-4);
    // Learning happened (the loss moved), and both heads moved the same way.
    expect(losses[0]![0]).not.toBeCloseTo(losses[19]![0], 2);
    const a = (headFromBytes(reference.toBytes()) as HeadBase).state().parameters;
    const b = (headFromBytes(withKernel.toBytes()) as HeadBase).state().parameters;
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-3);
  });
});

describe("kernel pool", () => {
  it("builds one kernel per head shape and shares it", async () => {
    const pool = new KernelPool();
    const shape = { kind: "mlp" as const, inputSize: 8, hidden: 4, classes: 3 };
    const [a, b] = await Promise.all([pool.get(shape), pool.get({ ...shape })]);
    const c = await pool.get({ ...shape, hidden: 5 });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    await pool.release();
  });
});
