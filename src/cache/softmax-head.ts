/**
 * Multinomial logistic regression on standardized features: the cheapest
 * exit head, one C × D matrix-vector product per prediction. Convex, so it
 * starts from zero weights (uniform predictions) and needs no random init.
 *
 * Parameter layout: W (C × D, row-major, row c = class c) then b (C).
 */
import { HeadBase } from "./head-base.ts";
import type { HeadOptions } from "./head-types.ts";

export interface SoftmaxRegressionShape {
  inputSize: number;
  classes: number;
}

export class SoftmaxRegression extends HeadBase {
  declare readonly kind: "softmax";
  private readonly biasOffset: number;

  constructor(shape: SoftmaxRegressionShape, options: Partial<HeadOptions> = {}) {
    const { inputSize, classes } = shape;
    super({ kind: "softmax", inputSize, hidden: 0, classes }, options, classes * inputSize);
    this.biasOffset = classes * inputSize;
  }

  macs(): number {
    return this.inputSize * this.classes;
  }

  protected forward(): void {
    const { params, standardized: z, logits, inputSize: d } = this;
    for (let c = 0; c < this.classes; c++) {
      const row = c * d;
      let sum = params[this.biasOffset + c] as number;
      for (let i = 0; i < d; i++) sum += (params[row + i] as number) * (z[i] as number);
      logits[c] = sum;
    }
  }

  protected backpropagate(dLogits: Float64Array, gradient: Float64Array): void {
    const { standardized: z, inputSize: d } = this;
    for (let c = 0; c < this.classes; c++) {
      const g = dLogits[c] as number;
      const row = c * d;
      for (let i = 0; i < d; i++) gradient[row + i] = (gradient[row + i] as number) + g * (z[i] as number);
      gradient[this.biasOffset + c] = (gradient[this.biasOffset + c] as number) + g;
    }
  }
}
