/**
 * Softmax and soft-target cross-entropy, shared by the exit heads. All of it
 * subtracts the row maximum first (log-sum-exp), so large logits neither
 * overflow exp nor turn the loss into Infinity - Infinity.
 */
import { LayercacheError } from "../errors/index.ts";

/** Index of the largest of `values[offset .. offset + length)`; the first one on ties. */
export function argmax(values: ArrayLike<number>, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i]! > values[offset + best]!) best = i;
  return best;
}

/**
 * Class probabilities softmax(logits / temperature) into `out`, for turning
 * backbone logits into soft distillation targets. Temperatures above 1 flatten
 * the distribution (more "dark knowledge" about runner-up classes); 1 is the
 * backbone's own softmax.
 */
export function softmaxWithTemperature(logits: Float32Array, temperature: number, out: Float32Array): void {
  if (!(temperature > 0 && Number.isFinite(temperature))) {
    throw new LayercacheError(
      "INTERNAL",
      `softmax temperature must be positive and finite (got ${temperature})`,
    );
  }
  if (out.length < logits.length) {
    throw new LayercacheError(
      "INTERNAL",
      `softmax output has ${out.length} slots for ${logits.length} logits`,
    );
  }
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i] as number);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(((logits[i] as number) - max) / temperature);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < logits.length; i++) out[i] = (out[i] as number) / sum;
}

/** log Σ exp(logits[0..classes)), stably. */
export function logSumExp(logits: Float64Array, classes: number): number {
  let max = -Infinity;
  for (let c = 0; c < classes; c++) max = Math.max(max, logits[c] as number);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp((logits[c] as number) - max);
  return max + Math.log(sum);
}

/** softmax(logits[0..classes)) into out[offset..offset+classes). */
export function softmaxInto(logits: Float64Array, classes: number, out: Float32Array, offset: number): void {
  const lse = logSumExp(logits, classes);
  for (let c = 0; c < classes; c++) out[offset + c] = Math.exp((logits[c] as number) - lse);
}

/**
 * Cross-entropy H(t, softmax(z)) = -Σ t_c (z_c - lse(z)) of one row of soft
 * targets t (targets[offset..offset+classes)). When `dLogits` is given it
 * receives scale · ∂H/∂z = scale · (softmax(z) · Σt - t); with Σt = 1 that is
 * the familiar p - t, and keeping Σt makes the gradient exact regardless.
 */
export function softTargetCrossEntropy(
  logits: Float64Array,
  classes: number,
  targets: Float32Array,
  offset: number,
  scale: number,
  dLogits: Float64Array | null,
): number {
  const lse = logSumExp(logits, classes);
  let loss = 0;
  let targetSum = 0;
  for (let c = 0; c < classes; c++) {
    const t = targets[offset + c] as number;
    // Skipping zero targets avoids 0 · (-Infinity) when a logit is -Infinity.
    if (t !== 0) loss -= t * ((logits[c] as number) - lse);
    targetSum += t;
  }
  if (dLogits !== null) {
    for (let c = 0; c < classes; c++) {
      const p = Math.exp((logits[c] as number) - lse);
      dLogits[c] = scale * (p * targetSum - (targets[offset + c] as number));
    }
  }
  return loss;
}
