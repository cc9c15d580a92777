/**
 * What both gradient-trained exit heads share: input standardization, the
 * predict and train loops, argument checks, the Adam step and serialization.
 * A subclass only says how standardized features become logits and how the
 * logit gradient flows back into its parameters.
 *
 * Parameters are float32 (what the codec stores, so a round trip is exact);
 * every sum is accumulated in float64 and the gradient is float64, which is
 * what makes the finite-difference check in the tests meaningful.
 */
import { LayercacheError } from "../errors/index.ts";
import { Adam } from "./adam.ts";
import { FeatureNormalizer } from "./feature-normalizer.ts";
import { encodeHead } from "./head-codec.ts";
import { softmaxInto, softTargetCrossEntropy } from "./head-math.ts";
import type { HeadKernel, KernelHead } from "./head-kernel.ts";
import type { ExitHead, HeadKind, HeadOptions, HeadShape, HeadState } from "./head-types.ts";
import { parameterCount, resolveHeadOptions, shapeProblem } from "./head-types.ts";

/** How far a soft-target row may sum away from 1 (float32 softmax rounding is ~1e-6). */
const TARGET_SUM_TOLERANCE = 1e-3;

/** A caller broke a head's contract: a bug, not bad input. */
export function misuse(message: string, details: Record<string, number | string> = {}): never {
  throw new LayercacheError("INTERNAL", message, { details });
}

export abstract class HeadBase implements ExitHead {
  readonly kind: HeadKind;
  readonly inputSize: number;
  readonly classes: number;
  readonly options: Readonly<HeadOptions>;
  /** Flat parameters, weights first then biases (layout in each subclass). */
  protected readonly params: Float32Array;
  protected readonly normalizer: FeatureNormalizer;
  private readonly optimizer: Adam;
  private readonly gradient: Float64Array;
  /** Scratch for one row: standardized input, logits, ∂loss/∂logits. */
  protected readonly standardized: Float64Array;
  protected readonly logits: Float64Array;
  private readonly dLogits: Float64Array;
  /** What the onnxruntime kernel reads: float32 statistics and gradient (head-kernel.ts). */
  private kernelScratch: { mean: Float32Array; scale: Float32Array; gradient: Float32Array } | undefined;

  protected constructor(
    readonly shape: HeadShape,
    options: Partial<HeadOptions>,
    decayedCount: number,
  ) {
    const problem = shapeProblem(shape);
    if (problem !== undefined) misuse(`invalid ${shape.kind} head shape: ${problem}`, { ...shape });
    this.kind = shape.kind;
    this.inputSize = shape.inputSize;
    this.classes = shape.classes;
    this.options = Object.freeze(resolveHeadOptions(shape.kind, options));
    const count = parameterCount(shape);
    this.params = new Float32Array(count);
    this.gradient = new Float64Array(count);
    this.optimizer = new Adam(count, this.options, decayedCount);
    this.normalizer = new FeatureNormalizer(shape.inputSize, this.options.normalizerHorizon);
    this.standardized = new Float64Array(shape.inputSize);
    this.logits = new Float64Array(shape.classes);
    this.dLogits = new Float64Array(shape.classes);
  }

  abstract macs(): number;

  /** logits ← f(standardized); may cache activations for the following backpropagate. */
  protected abstract forward(): void;

  /** Adds ∂loss/∂params to `gradient`, given ∂loss/∂logits of the row just forwarded. */
  protected abstract backpropagate(dLogits: Float64Array, gradient: Float64Array): void;

  predict(features: Float32Array, out: Float32Array): void {
    checkSingleRow(features, out, this.inputSize, this.classes);
    this.predictRow(features, 0, out, 0);
  }

  predictBatch(features: Float32Array, n: number, out: Float32Array): void {
    this.checkPredictionBatch(features, n, out);
    for (let row = 0; row < n; row++) {
      this.predictRow(features, row * this.inputSize, out, row * this.classes);
    }
  }

  trainBatch(features: Float32Array, targets: Float32Array, n: number): number {
    this.checkTrainingBatch(features, targets, n);
    this.normalizer.observe(features, n);
    const loss = this.accumulate(features, targets, n, this.gradient);
    this.optimizer.step(this.params, this.gradient);
    return loss;
  }

  /**
   * `predictBatch` on onnxruntime: the same maths in float32, for batches
   * large enough that matrix kernels beat the per-row loops.
   */
  async predictBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    n: number,
    out: Float32Array,
  ): Promise<void> {
    this.checkPredictionBatch(features, n, out);
    await kernel.predict(this.kernelInput(), features, n, out);
  }

  /**
   * `trainBatch` with the gradient computed by onnxruntime; the statistics and
   * Adam step are the same. Only the sizes are checked here: the rows come
   * from the trainer's replay window, which takes an example only once
   * the trainer checked it, and each is sampled into dozens of batches.
   */
  async trainBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    targets: Float32Array,
    n: number,
  ): Promise<number> {
    checkTrainingShape(features, targets, n, this.inputSize, this.classes);
    this.normalizer.observe(features, n);
    const input = this.kernelInput();
    const gradient = this.kernelScratch!.gradient;
    const loss = await kernel.gradient(input, features, targets, n, gradient);
    this.optimizer.step(this.params, gradient);
    return loss;
  }

  /** The head as the kernel reads it, with the statistics copied to float32. */
  kernelInput(): KernelHead {
    this.kernelScratch ??= {
      mean: new Float32Array(this.inputSize),
      scale: new Float32Array(this.inputSize),
      gradient: new Float32Array(this.params.length),
    };
    const { mean, scale } = this.kernelScratch;
    mean.set(this.normalizer.mean);
    scale.set(this.normalizer.scale);
    return { shape: this.shape, params: this.params, mean, scale };
  }

  /** Mean cross-entropy of n rows at the current parameters and statistics (no update). */
  loss(features: Float32Array, targets: Float32Array, n: number): number {
    this.checkTrainingBatch(features, targets, n);
    return this.accumulate(features, targets, n, null);
  }

  /**
   * Mean loss and its exact gradient with respect to `parameters()`, at the
   * current statistics, without changing anything. For gradient checks.
   */
  gradients(
    features: Float32Array,
    targets: Float32Array,
    n: number,
  ): { loss: number; gradient: Float64Array } {
    this.checkTrainingBatch(features, targets, n);
    const gradient = new Float64Array(this.params.length);
    const loss = this.accumulate(features, targets, n, gradient);
    return { loss, gradient };
  }

  /** The live flat parameter vector (writes take effect; for tests and tooling). */
  parameters(): Float32Array {
    return this.params;
  }

  /** A copy of everything predictions depend on. */
  state(): HeadState {
    return {
      normalizerCount: this.normalizer.count,
      normalizerMean: this.normalizer.mean.slice(),
      normalizerVariance: this.normalizer.variance.slice(),
      parameters: this.params.slice(),
    };
  }

  /** Replaces parameters and input statistics; the optimizer carries on from its moments. */
  loadState(state: HeadState): void {
    if (
      state.parameters.length !== this.params.length ||
      state.normalizerMean.length !== this.inputSize ||
      state.normalizerVariance.length !== this.inputSize
    ) {
      misuse("head state does not match the head's shape");
    }
    this.params.set(state.parameters);
    this.normalizer.restore(state.normalizerCount, state.normalizerMean, state.normalizerVariance);
  }

  toBytes(): Uint8Array {
    return encodeHead(this.shape, this.state());
  }

  private predictRow(features: Float32Array, inOffset: number, out: Float32Array, outOffset: number): void {
    this.normalizer.standardize(features, inOffset, this.standardized);
    this.forward();
    softmaxInto(this.logits, this.classes, out, outOffset);
  }

  /** Mean loss over n rows; adds the mean gradient to `gradient` (zeroed first) when given. */
  private accumulate(
    features: Float32Array,
    targets: Float32Array,
    n: number,
    gradient: Float64Array | null,
  ): number {
    if (gradient !== null) gradient.fill(0);
    const dLogits = gradient === null ? null : this.dLogits;
    let total = 0;
    for (let row = 0; row < n; row++) {
      this.normalizer.standardize(features, row * this.inputSize, this.standardized);
      this.forward();
      total += softTargetCrossEntropy(this.logits, this.classes, targets, row * this.classes, 1 / n, dLogits);
      if (gradient !== null && dLogits !== null) this.backpropagate(dLogits, gradient);
    }
    return total / n;
  }

  private checkPredictionBatch(features: Float32Array, n: number, out: Float32Array): void {
    checkPredictionBatch(features, n, out, this.inputSize, this.classes);
  }

  private checkTrainingBatch(features: Float32Array, targets: Float32Array, n: number): void {
    checkTrainingBatch(features, targets, n, this.inputSize, this.classes);
  }
}

/** The argument checks of `predict` (one row), shared by every head kind. */
export function checkSingleRow(
  features: Float32Array,
  out: Float32Array,
  inputSize: number,
  classes: number,
): void {
  if (features.length !== inputSize || out.length !== classes) {
    misuse(`predict needs ${inputSize} features and ${classes} outputs`, {
      features: features.length,
      out: out.length,
    });
  }
}

/** The argument checks of a prediction batch, shared by every head kind and both arithmetic paths. */
export function checkPredictionBatch(
  features: Float32Array,
  n: number,
  out: Float32Array,
  inputSize: number,
  classes: number,
): void {
  checkRows(features, n, inputSize);
  if (out.length < n * classes) misuse(`predictBatch output too short for ${n} rows`, { n });
}

/** A batch of n rows of inputSize features: n a positive whole number, the features long enough. */
function checkRows(features: Float32Array, n: number, inputSize: number): void {
  if (!Number.isInteger(n) || n < 1) misuse(`batch size must be a positive integer (got ${n})`, { n });
  if (features.length < n * inputSize) misuse(`features too short for ${n} rows`, { n });
}

/** The sizes of a training batch: n rows of inputSize features and of classes targets. */
function checkTrainingShape(
  features: Float32Array,
  targets: Float32Array,
  n: number,
  inputSize: number,
  classes: number,
): void {
  checkRows(features, n, inputSize);
  if (targets.length < n * classes) misuse(`targets too short for ${n} rows`, { n });
}

/** The index of the first value of values[0..n) that is not finite, or -1. */
function firstNonFinite(values: Float32Array, n: number): number {
  for (let i = 0; i < n; i++) if (!Number.isFinite(values[i]!)) return i;
  return -1;
}

/** Every value finite (a plain loop: `every(Number.isFinite)` costs six times as much per frame). */
export function allFinite(values: Float32Array): boolean {
  return firstNonFinite(values, values.length) < 0;
}

/**
 * What keeps row `row` of `targets` (classes values) from being a
 * distribution: a value outside [0, 1] (NaN included), or a sum away from 1.
 */
function notDistribution(targets: Float32Array, row: number, classes: number): string | undefined {
  let sum = 0;
  for (let c = row * classes; c < (row + 1) * classes; c++) {
    const t = targets[c]!;
    if (!(t >= 0 && t <= 1)) return `target ${t} at index ${c} is not a probability`;
    sum += t;
  }
  return Math.abs(sum - 1) > TARGET_SUM_TOLERANCE ? `target row ${row} sums to ${sum}` : undefined;
}

/** Whether `target` is a distribution over `classes`, as `checkTrainingBatch` demands of every row. */
export function isDistribution(target: Float32Array, classes: number): boolean {
  return notDistribution(target, 0, classes) === undefined;
}

/**
 * Training data is checked in full (O(n·(D+C)), small next to the O(n·C·D)
 * step) because a single NaN would poison the statistics and every weight, or
 * a memory's distances: features must be finite (FRAME_INVALID), targets
 * distributions (INTERNAL: a bug of the caller).
 */
export function checkTrainingBatch(
  features: Float32Array,
  targets: Float32Array,
  n: number,
  inputSize: number,
  classes: number,
): void {
  checkTrainingShape(features, targets, n, inputSize, classes);
  const bad = firstNonFinite(features, n * inputSize);
  if (bad >= 0) {
    throw new LayercacheError("FRAME_INVALID", `non-finite feature at index ${bad}`, {
      details: { index: bad },
    });
  }
  for (let row = 0; row < n; row++) {
    const problem = notDistribution(targets, row, classes);
    if (problem) misuse(problem, { row });
  }
}
