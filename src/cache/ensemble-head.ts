/**
 * An MLP head and a nearest-neighbour memory at the same exit, answering
 * with the mean of their two distributions ("mlp+knn"). The two fail in
 * different ways: the memory is useful from its first examples and follows
 * the newest frames, the MLP generalizes between them once trained; where
 * they agree the mean is confident, where they do not it is not, and
 * calibration sees only the mean.
 *
 * To everything outside it is one head: one shape, one `macs()` (the sum),
 * one record in the codec (the two records inside one, head-codec.ts), one
 * threshold from calibration, one audit window. It learns both ways: the
 * trainer's gradient steps on replayed mini-batches go to the MLP
 * (`trainBatch`), each new example once to the memory (`remember`).
 */
import { checkSingleRow, misuse } from "./head-base.ts";
import { encodeEnsembleHead } from "./head-codec.ts";
import type { HeadKernel } from "./head-kernel.ts";
import type { ExitHead, HeadOptions, HeadShape } from "./head-types.ts";
import { DEFAULT_MEMORY_PER_CLASS, DEFAULT_NEIGHBOURS, shapeProblem } from "./head-types.ts";
import { NearestNeighbourHead } from "./knn-head.ts";
import { MlpHead } from "./mlp-head.ts";
import type { SeededRandom } from "./random.ts";

export interface EnsembleShape {
  inputSize: number;
  hidden: number;
  classes: number;
  memoryPerClass?: number;
  neighbours?: number;
}

export class EnsembleHead implements ExitHead {
  readonly kind = "mlp+knn" as const;
  readonly shape: HeadShape;
  readonly inputSize: number;
  readonly classes: number;
  readonly learnsByGradient = true;
  /** The memory's distribution for the rows being averaged. */
  private scratch = new Float32Array(0);

  /** Combines an existing MLP and memory of the same input size and classes. */
  constructor(
    readonly mlp: MlpHead,
    readonly memory: NearestNeighbourHead,
  ) {
    this.shape = {
      kind: "mlp+knn",
      inputSize: mlp.inputSize,
      hidden: mlp.hidden,
      classes: mlp.classes,
      memoryPerClass: memory.memoryPerClass,
      neighbours: memory.neighbours,
    };
    const problem = shapeProblem(this.shape);
    if (problem !== undefined) misuse(`invalid mlp+knn head shape: ${problem}`, { ...this.shape });
    if (memory.inputSize !== mlp.inputSize || memory.classes !== mlp.classes) {
      misuse("the MLP and the memory of an ensemble must share input size and classes");
    }
    this.inputSize = mlp.inputSize;
    this.classes = mlp.classes;
  }

  /** A fresh ensemble: the MLP's weights drawn from `random`, an empty memory. */
  static create(
    shape: EnsembleShape,
    random: SeededRandom,
    options: Partial<HeadOptions> = {},
  ): EnsembleHead {
    const { inputSize, hidden, classes } = shape;
    return new EnsembleHead(
      new MlpHead({ inputSize, hidden, classes }, random, options),
      new NearestNeighbourHead({
        inputSize,
        classes,
        memoryPerClass: shape.memoryPerClass ?? DEFAULT_MEMORY_PER_CLASS,
        neighbours: shape.neighbours ?? DEFAULT_NEIGHBOURS,
      }),
    );
  }

  macs(): number {
    return this.mlp.macs() + this.memory.macs();
  }

  predict(features: Float32Array, out: Float32Array): void {
    checkSingleRow(features, out, this.inputSize, this.classes);
    this.predictBatch(features, 1, out);
  }

  predictBatch(features: Float32Array, n: number, out: Float32Array): void {
    this.mlp.predictBatch(features, n, out);
    this.memory.predictBatch(features, n, this.memoryScratch(n));
    this.average(out, n);
  }

  /** Both halves on onnxruntime: the kernel of an mlp+knn shape has the MLP's graphs and the memory's. */
  async predictBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    n: number,
    out: Float32Array,
  ): Promise<void> {
    await this.mlp.predictBatchWith(kernel, features, n, out);
    await this.memory.predictBatchWith(kernel, features, n, this.memoryScratch(n));
    this.average(out, n);
  }

  /** A gradient step of the MLP (the memory learns by `remember`); returns the MLP's loss. */
  trainBatch(features: Float32Array, targets: Float32Array, n: number): number {
    return this.mlp.trainBatch(features, targets, n);
  }

  trainBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    targets: Float32Array,
    n: number,
  ): Promise<number> {
    return this.mlp.trainBatchWith(kernel, features, targets, n);
  }

  /** The MLP's parameters (the memory has none). */
  parameters(): Float32Array {
    return this.mlp.parameters();
  }

  remember(features: Float32Array, target: Float32Array): void {
    this.memory.remember(features, target);
  }

  keepNewest(keep: number): void {
    this.memory.keepNewest(keep);
  }

  toBytes(): Uint8Array {
    return encodeEnsembleHead(this.shape, this.mlp.toBytes(), this.memory.toBytes());
  }

  private memoryScratch(n: number): Float32Array {
    if (this.scratch.length < n * this.classes) this.scratch = new Float32Array(n * this.classes);
    return this.scratch;
  }

  /** out ← (out + memory's) / 2 over n rows. */
  private average(out: Float32Array, n: number): void {
    for (let i = 0; i < n * this.classes; i++) out[i] = (out[i]! + this.scratch[i]!) / 2;
  }
}
