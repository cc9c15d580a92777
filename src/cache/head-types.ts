/**
 * The contract of an exit head, its shapes, and its training options with
 * their defaults. Kept apart from the implementations so that the codec and
 * both head classes can share it without import cycles.
 */
import { LayercacheError } from "../errors/index.ts";
import type { AdamOptions } from "./adam.ts";
import type { HeadKernel } from "./head-kernel.ts";

export type HeadKind = "softmax" | "mlp";

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
  /** Weights and input statistics (not the optimizer state) in the head codec format. */
  toBytes(): Uint8Array;
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
  /** Hidden units; 0 for softmax regression. */
  hidden: number;
  classes: number;
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
/** Largest parameter count a head accepts (256 MiB of float32). */
export const MAX_HEAD_PARAMETERS = 1 << 26;

/** Number of float32 parameters of a head of this shape. */
export function parameterCount(shape: HeadShape): number {
  const { inputSize: d, hidden: h, classes: c } = shape;
  return shape.kind === "softmax" ? c * d + c : h * d + c * h + h + c;
}

function isDimension(value: number, min: number): boolean {
  return Number.isInteger(value) && value >= min && value <= MAX_HEAD_DIMENSION;
}

/** Why a shape is unusable, or undefined when it is fine. */
export function shapeProblem(shape: HeadShape): string | undefined {
  if (shape.kind !== "softmax" && shape.kind !== "mlp") return `unknown head kind ${String(shape.kind)}`;
  if (!isDimension(shape.inputSize, 1)) return `input size must be in [1, ${MAX_HEAD_DIMENSION}]`;
  if (!isDimension(shape.classes, 2)) return `class count must be in [2, ${MAX_HEAD_DIMENSION}]`;
  if (shape.kind === "softmax" && shape.hidden !== 0) return "softmax regression has no hidden layer";
  if (shape.kind === "mlp" && !isDimension(shape.hidden, 1)) {
    return `hidden size must be in [1, ${MAX_HEAD_DIMENSION}]`;
  }
  if (parameterCount(shape) > MAX_HEAD_PARAMETERS) return `more than ${MAX_HEAD_PARAMETERS} parameters`;
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
