/**
 * The contract of an exit head, its shapes, and its training options with
 * their defaults. Kept apart from the implementations so that the codec and
 * every head class can share it without import cycles.
 */
import { LayercacheError } from "../errors/index.ts";
import type { AdamOptions } from "./adam.ts";
import type { HeadKernel, KernelHead } from "./head-kernel.ts";

/**
 * softmax and mlp learn by gradient steps (softmax-head.ts, mlp-head.ts);
 * knn remembers examples and answers by its nearest neighbours (knn-head.ts);
 * mlp+knn is both at one exit, answering with the mean (ensemble-head.ts).
 */
export const HEAD_KINDS = ["softmax", "mlp", "knn", "mlp+knn"] as const;

export type HeadKind = (typeof HEAD_KINDS)[number];

/** Whether heads of this kind keep a nearest-neighbour memory. */
export function remembers(kind: HeadKind): boolean {
  return kind === "knn" || kind === "mlp+knn";
}

/**
 * A small classifier at a segment boundary: from the pooled activations there
 * (a Float32Array of `inputSize` features) to a distribution over the
 * backbone's `classes`. Inputs are standardized by running statistics the
 * head keeps itself, updated by `trainBatch`.
 */
export interface ExitHead {
  readonly kind: HeadKind;
  readonly shape: HeadShape;
  readonly inputSize: number;
  readonly classes: number;
  /** Class probabilities for one feature vector (exactly inputSize long) into `out` (classes long). */
  predict(features: Float32Array, out: Float32Array): void;
  /** Probabilities for n row-major feature vectors into `out` (n · classes, row-major). */
  predictBatch(features: Float32Array, n: number, out: Float32Array): void;
  /** Multiply-accumulates per prediction (standardization and softmax not counted). */
  macs(): number;
  /**
   * One optimizer step towards n rows of soft targets (n · classes, each row a
   * distribution). Returns the mean cross-entropy before the step.
   */
  trainBatch(features: Float32Array, targets: Float32Array, n: number): number;
  /** `predictBatch` and `trainBatch` with the matrix arithmetic on onnxruntime (head-kernel.ts). */
  predictBatchWith(kernel: HeadKernel, features: Float32Array, n: number, out: Float32Array): Promise<void>;
  trainBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    targets: Float32Array,
    n: number,
  ): Promise<number>;
  /**
   * The head as its onnxruntime predict graph reads it (head-kernel.ts);
   * absent for heads whose answer is not that one graph (a memory, the
   * ensemble). The engine runs that graph inside the span that ends at the
   * head's exit.
   */
  kernelInput?(): KernelHead;
  /** Weights and input statistics (not the optimizer state) in the head codec format. */
  toBytes(): Uint8Array;
  /**
   * The live flat parameters a gradient step changes (writes take effect);
   * absent for a head that learns only by remembering.
   */
  parameters?(): Float32Array;
  /**
   * False for heads that learn only by remembering (the nearest-neighbour
   * memory): the trainer takes no gradient steps on them, since replayed
   * mini-batches would store the same example many times. Absent means true.
   */
  readonly learnsByGradient?: boolean;
  /**
   * Heads with a memory: takes one new example (features, and its soft target
   * whose top class is the label remembered). The trainer calls it exactly
   * once per example, as the example arrives.
   */
  remember?(features: Float32Array, target: Float32Array): void;
  /** Heads with a memory: forgets all but the newest `keep` examples of each class (after a drift alarm). */
  keepNewest?(keep: number): void;
}

export interface HeadOptions extends AdamOptions {
  /**
   * Frames after which the input statistics turn from a cumulative average
   * into a moving average with weight 1/horizon.
   */
  normalizerHorizon: number;
}

const COMMON_DEFAULTS: Omit<HeadOptions, "learningRate"> = {
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
  weightDecay: 0,
  normalizerHorizon: 10_000,
};

/** Softmax regression is convex and has few steps to take: a larger step size is safe. */
export const DEFAULT_SOFTMAX_OPTIONS: Readonly<HeadOptions> = Object.freeze({
  ...COMMON_DEFAULTS,
  learningRate: 5e-3,
});

/** The usual Adam step size for a small ReLU network. */
export const DEFAULT_MLP_OPTIONS: Readonly<HeadOptions> = Object.freeze({
  ...COMMON_DEFAULTS,
  learningRate: 1e-3,
});

export interface HeadShape {
  kind: HeadKind;
  inputSize: number;
  /** Hidden units; 0 for softmax regression and the nearest-neighbour memory. */
  hidden: number;
  classes: number;
  /** Examples remembered per class ("knn" and "mlp+knn"); absent or 0 for the others. */
  memoryPerClass?: number;
  /** Nearest neighbours that vote ("knn" and "mlp+knn"); absent or 0 for the others. */
  neighbours?: number;
}

/** Everything a head's predictions depend on: what the codec stores. */
export interface HeadState {
  /** Frames behind the input statistics. */
  normalizerCount: number;
  normalizerMean: Float64Array;
  normalizerVariance: Float64Array;
  /** Flat parameters in the head's layout (see each head class). */
  parameters: Float32Array;
}

/** Largest input, hidden or class dimension a head accepts. */
export const MAX_HEAD_DIMENSION = 1 << 16;
/** Largest parameter count a head accepts (256 MiB of float32); also the bound on a memory's floats. */
export const MAX_HEAD_PARAMETERS = 1 << 26;
/** Most examples a memory keeps per class. */
export const MAX_MEMORY_PER_CLASS = 1 << 16;
/** Most neighbours a memory lets vote. */
export const MAX_NEIGHBOURS = 1024;
/** Defaults of a nearest-neighbour memory (knnPerClass and knnK in options.ts; docs/cache.md says why). */
export const DEFAULT_MEMORY_PER_CLASS = 64;
export const DEFAULT_NEIGHBOURS = 10;

/** Number of float32 parameters of a head of this shape (a memory has none; see memoryFloats). */
export function parameterCount(shape: HeadShape): number {
  const { inputSize: d, hidden: h, classes: c } = shape;
  switch (shape.kind) {
    case "softmax":
      return c * d + c;
    case "knn":
      return 0;
    default:
      return h * d + c * h + h + c;
  }
}

/** Most float32 values a head's memory holds when full: classes × memoryPerClass × inputSize. */
export function memoryFloats(shape: HeadShape): number {
  return remembers(shape.kind) ? shape.classes * (shape.memoryPerClass ?? 0) * shape.inputSize : 0;
}

function isDimension(value: number, min: number): boolean {
  return Number.isInteger(value) && value >= min && value <= MAX_HEAD_DIMENSION;
}

/** Why a shape is unusable, or undefined when it is fine. */
export function shapeProblem(shape: HeadShape): string | undefined {
  if (!HEAD_KINDS.includes(shape.kind)) return `unknown head kind ${String(shape.kind)}`;
  if (!isDimension(shape.inputSize, 1)) return `input size must be in [1, ${MAX_HEAD_DIMENSION}]`;
  if (!isDimension(shape.classes, 2)) return `class count must be in [2, ${MAX_HEAD_DIMENSION}]`;
  if (shape.kind === "softmax" && shape.hidden !== 0) return "softmax regression has no hidden layer";
  if (shape.kind === "knn" && shape.hidden !== 0) return "a nearest-neighbour memory has no hidden layer";
  if ((shape.kind === "mlp" || shape.kind === "mlp+knn") && !isDimension(shape.hidden, 1)) {
    return `hidden size must be in [1, ${MAX_HEAD_DIMENSION}]`;
  }
  if (parameterCount(shape) > MAX_HEAD_PARAMETERS) return `more than ${MAX_HEAD_PARAMETERS} parameters`;
  return memoryProblem(shape);
}

function memoryProblem(shape: HeadShape): string | undefined {
  const perClass = shape.memoryPerClass ?? 0;
  const neighbours = shape.neighbours ?? 0;
  if (!remembers(shape.kind)) {
    return perClass === 0 && neighbours === 0 ? undefined : `a ${shape.kind} head has no memory`;
  }
  if (!(Number.isInteger(perClass) && perClass >= 1 && perClass <= MAX_MEMORY_PER_CLASS)) {
    return `examples per class must be in [1, ${MAX_MEMORY_PER_CLASS}]`;
  }
  if (!(Number.isInteger(neighbours) && neighbours >= 1 && neighbours <= MAX_NEIGHBOURS)) {
    return `neighbours must be in [1, ${MAX_NEIGHBOURS}]`;
  }
  if (memoryFloats(shape) > MAX_HEAD_PARAMETERS) return `a memory of more than ${MAX_HEAD_PARAMETERS} floats`;
  return undefined;
}

const OPTION_RULES: Record<keyof HeadOptions, [(value: number) => boolean, string]> = {
  learningRate: [(v) => v > 0 && Number.isFinite(v), "a positive number"],
  beta1: [(v) => v >= 0 && v < 1, "in [0, 1)"],
  beta2: [(v) => v >= 0 && v < 1, "in [0, 1)"],
  epsilon: [(v) => v > 0 && Number.isFinite(v), "a positive number"],
  weightDecay: [(v) => v >= 0 && Number.isFinite(v), "a non-negative number"],
  normalizerHorizon: [(v) => Number.isInteger(v) && v >= 1, "a positive integer"],
};

/** The options a head trains with: the kind's defaults overridden by `options`, validated. */
export function resolveHeadOptions(kind: HeadKind, options: Partial<HeadOptions> = {}): HeadOptions {
  const resolved: HeadOptions = { ...(kind === "softmax" ? DEFAULT_SOFTMAX_OPTIONS : DEFAULT_MLP_OPTIONS) };
  for (const [key, [isValid, expected]] of Object.entries(OPTION_RULES) as [
    keyof HeadOptions,
    [(value: number) => boolean, string],
  ][]) {
    const value = options[key] ?? resolved[key];
    if (!isValid(value)) {
      throw new LayercacheError("CONFIG_INVALID", `head option ${key} must be ${expected} (got ${value})`, {
        details: { option: key, value },
      });
    }
    resolved[key] = value;
  }
  return resolved;
}
