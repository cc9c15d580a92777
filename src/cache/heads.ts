/**
 * Exit heads: small classifiers at segment boundaries that predict the
 * backbone's final distribution from the pooled activations there, trained
 * online on the backbone's own soft outputs (self-distillation).
 *
 * This module is the public face of the heads; the pieces live in
 * softmax-head.ts, mlp-head.ts, knn-head.ts, ensemble-head.ts, head-base.ts,
 * head-codec.ts and head-math.ts.
 */
import { EnsembleHead } from "./ensemble-head.ts";
import { decodeHead } from "./head-codec.ts";
import type { ExitHead, HeadKind, HeadOptions, HeadShape } from "./head-types.ts";
import { DEFAULT_MEMORY_PER_CLASS, DEFAULT_NEIGHBOURS } from "./head-types.ts";
import { NearestNeighbourHead } from "./knn-head.ts";
import { MlpHead } from "./mlp-head.ts";
import type { SeededRandom } from "./random.ts";
import { SoftmaxRegression } from "./softmax-head.ts";

export type { ExitHead, HeadKind, HeadOptions, HeadShape, HeadState } from "./head-types.ts";
export {
  DEFAULT_MEMORY_PER_CLASS,
  DEFAULT_MLP_OPTIONS,
  DEFAULT_NEIGHBOURS,
  DEFAULT_SOFTMAX_OPTIONS,
  MAX_HEAD_DIMENSION,
  MAX_HEAD_PARAMETERS,
  remembers,
} from "./head-types.ts";
export type { HeadBase } from "./head-base.ts";
export { softmaxWithTemperature } from "./head-math.ts";
export { MlpHead, type MlpHeadShape } from "./mlp-head.ts";
export { SoftmaxRegression, type SoftmaxRegressionShape } from "./softmax-head.ts";
export { NearestNeighbourHead, type NearestNeighbourShape } from "./knn-head.ts";
export { EnsembleHead, type EnsembleShape } from "./ensemble-head.ts";

/** Every head class headFromBytes may return. */
export type AnyHead = SoftmaxRegression | MlpHead | NearestNeighbourHead | EnsembleHead;

/** The settings that choose a head's architecture (a subset of the cache options). */
export interface HeadChoice {
  headKind: HeadKind;
  /** Hidden units, used when headKind is "mlp" or "mlp+knn". */
  mlpHidden: number;
  /** Examples remembered per class, for "knn" and "mlp+knn" (DEFAULT_MEMORY_PER_CLASS if absent). */
  knnPerClass?: number;
  /** Nearest neighbours that vote, for "knn" and "mlp+knn" (DEFAULT_NEIGHBOURS if absent). */
  knnK?: number;
}

/** The shape of the head `createHead` makes for this choice (what its onnxruntime kernel is built for). */
export function headShape(choice: HeadChoice, inputSize: number, classes: number): HeadShape {
  const { headKind: kind } = choice;
  const hidden = kind === "mlp" || kind === "mlp+knn" ? choice.mlpHidden : 0;
  if (kind === "softmax" || kind === "mlp") return { kind, inputSize, hidden, classes };
  const memoryPerClass = choice.knnPerClass ?? DEFAULT_MEMORY_PER_CLASS;
  const neighbours = choice.knnK ?? DEFAULT_NEIGHBOURS;
  return { kind, inputSize, hidden, classes, memoryPerClass, neighbours };
}

/**
 * A fresh, untrained head for an exit with `inputSize` pooled features.
 * Softmax regression starts at zero; the MLP draws its weights from `random`;
 * a memory starts empty.
 */
export function createHead(
  choice: HeadChoice,
  inputSize: number,
  classes: number,
  random: SeededRandom,
  options: Partial<HeadOptions> = {},
): ExitHead {
  const memoryPerClass = choice.knnPerClass ?? DEFAULT_MEMORY_PER_CLASS;
  const neighbours = choice.knnK ?? DEFAULT_NEIGHBOURS;
  switch (choice.headKind) {
    case "softmax":
      return new SoftmaxRegression({ inputSize, classes }, options);
    case "mlp":
      return new MlpHead({ inputSize, hidden: choice.mlpHidden, classes }, random, options);
    case "knn":
      return new NearestNeighbourHead({ inputSize, classes, memoryPerClass, neighbours });
    case "mlp+knn":
      return EnsembleHead.create(
        { inputSize, hidden: choice.mlpHidden, classes, memoryPerClass, neighbours },
        random,
        options,
      );
  }
}

/**
 * Rebuilds a head from `toBytes()` output. Training options are not part of
 * the bytes: pass them again if the head will keep training (the optimizer
 * starts afresh). Throws LayercacheError("STATE_INVALID") on malformed bytes.
 */
export function headFromBytes(bytes: Uint8Array, options: Partial<HeadOptions> = {}): AnyHead {
  const decoded = decodeHead(bytes);
  switch (decoded.form) {
    case "memory":
      return NearestNeighbourHead.fromState(decoded.shape, decoded.memory);
    case "ensemble": {
      const mlp = new MlpHead(decoded.mlp.shape, null, options);
      mlp.loadState(decoded.mlp.state);
      const memory = NearestNeighbourHead.fromState(decoded.memory.shape, decoded.memory.memory);
      return new EnsembleHead(mlp, memory);
    }
    case "parametric": {
      const { shape, state } = decoded;
      const head =
        shape.kind === "softmax" ? new SoftmaxRegression(shape, options) : new MlpHead(shape, null, options);
      head.loadState(state);
      return head;
    }
  }
}
