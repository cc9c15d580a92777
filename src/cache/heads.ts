/**
 * Exit heads: small classifiers at segment boundaries that predict the
 * backbone's final distribution from the pooled activations there, trained
 * online on the backbone's own soft outputs (self-distillation).
 *
 * This module is the public face of the heads; the pieces live in
 * softmax-head.ts, mlp-head.ts, head-base.ts, head-codec.ts and head-math.ts.
 */
import { decodeHead } from "./head-codec.ts";
import type { ExitHead, HeadKind, HeadOptions } from "./head-types.ts";
import { MlpHead } from "./mlp-head.ts";
import { SeededRandom } from "./random.ts";
import { SoftmaxRegression } from "./softmax-head.ts";

export type { ExitHead, HeadKind, HeadOptions, HeadShape, HeadState } from "./head-types.ts";
export {
  DEFAULT_MLP_OPTIONS,
  DEFAULT_SOFTMAX_OPTIONS,
  MAX_HEAD_DIMENSION,
  MAX_HEAD_PARAMETERS,
} from "./head-types.ts";
export type { HeadBase } from "./head-base.ts";
export { softmaxWithTemperature } from "./head-math.ts";
export { MlpHead, type MlpHeadShape } from "./mlp-head.ts";
export { SoftmaxRegression, type SoftmaxRegressionShape } from "./softmax-head.ts";

/** The two settings that choose a head's architecture (a subset of the cache options). */
export interface HeadChoice {
  headKind: HeadKind;
  /** Hidden units, used when headKind is "mlp". */
  mlpHidden: number;
}

/**
 * A fresh, untrained head for an exit with `inputSize` pooled features.
 * Softmax regression starts at zero; the MLP draws its weights from `random`.
 */
export function createHead(
  choice: HeadChoice,
  inputSize: number,
  classes: number,
  random: SeededRandom,
  options: Partial<HeadOptions> = {},
): ExitHead {
  return choice.headKind === "softmax"
    ? new SoftmaxRegression({ inputSize, classes }, options)
    : new MlpHead({ inputSize, hidden: choice.mlpHidden, classes }, random, options);
}

/**
 * Rebuilds a head from `toBytes()` output. Training options are not part of
 * the bytes: pass them again if the head will keep training (the optimizer
 * starts afresh). Throws LayercacheError("STATE_INVALID") on malformed bytes.
 */
export function headFromBytes(
  bytes: Uint8Array,
  options: Partial<HeadOptions> = {},
): SoftmaxRegression | MlpHead {
  const { shape, state } = decodeHead(bytes);
  const head =
    shape.kind === "softmax"
      ? new SoftmaxRegression(shape, options)
      : // The random initialisation is overwritten by the decoded weights at once.
        new MlpHead(shape, new SeededRandom(0), options);
  head.loadState(state);
  return head;
}
