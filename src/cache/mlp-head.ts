/**
 * One-hidden-layer ReLU network on standardized features: more capacity than
 * softmax regression for exits whose features are not linearly separable yet,
 * at H·(D + C) multiply-accumulates instead of D·C.
 *
 * Parameter layout: W1 (H × D), W2 (C × H), b1 (H), b2 (C), all row-major;
 * weights first so that weight decay covers one contiguous prefix.
 */
import { HeadBase } from "./head-base.ts";
import type { HeadOptions } from "./head-types.ts";
import type { SeededRandom } from "./random.ts";

export interface MlpHeadShape {
  inputSize: number;
  hidden: number;
  classes: number;
}

export class MlpHead extends HeadBase {
  declare readonly kind: "mlp";
  readonly hidden: number;
  private readonly w2Offset: number;
  private readonly b1Offset: number;
  private readonly b2Offset: number;
  /** Scratch for one row: hidden pre-activations, activations, ∂loss/∂activations. */
  private readonly preActivation: Float64Array;
  private readonly activation: Float64Array;
  private readonly dActivation: Float64Array;

  /**
   * Weights are drawn from `random`: W1 with He initialisation N(0, 2/D)
   * because a ReLU follows it, W2 with N(0, 1/H) because a softmax does
   * (initial logits of unit scale). Biases start at zero. Without `random`
   * every parameter starts at zero, for a head whose weights are loaded at
   * once (headFromBytes): drawing 100k Gaussians for nothing cost more than
   * the decoding itself.
   */
  constructor(shape: MlpHeadShape, random: SeededRandom | null, options: Partial<HeadOptions> = {}) {
    const { inputSize: d, hidden: h, classes: c } = shape;
    super({ kind: "mlp", inputSize: d, hidden: h, classes: c }, options, h * d + c * h);
    this.hidden = h;
    this.w2Offset = h * d;
    this.b1Offset = h * d + c * h;
    this.b2Offset = this.b1Offset + h;
    this.preActivation = new Float64Array(h);
    this.activation = new Float64Array(h);
    this.dActivation = new Float64Array(h);
    random?.fillGaussian(this.params.subarray(0, this.w2Offset), Math.sqrt(2 / d));
    random?.fillGaussian(this.params.subarray(this.w2Offset, this.b1Offset), Math.sqrt(1 / h));
  }

  macs(): number {
    return this.hidden * this.inputSize + this.classes * this.hidden;
  }

  protected forward(): void {
    const { params, standardized: z, inputSize: d, hidden: h, preActivation, activation, logits } = this;
    for (let j = 0; j < h; j++) {
      const row = j * d;
      let sum = params[this.b1Offset + j] as number;
      for (let i = 0; i < d; i++) sum += (params[row + i] as number) * (z[i] as number);
      preActivation[j] = sum;
      activation[j] = sum > 0 ? sum : 0;
    }
    for (let c = 0; c < this.classes; c++) {
      const row = this.w2Offset + c * h;
      let sum = params[this.b2Offset + c] as number;
      for (let j = 0; j < h; j++) sum += (params[row + j] as number) * (activation[j] as number);
      logits[c] = sum;
    }
  }

  protected backpropagate(dLogits: Float64Array, gradient: Float64Array): void {
    const { params, standardized: z, inputSize: d, hidden: h, activation, dActivation } = this;
    dActivation.fill(0);
    for (let c = 0; c < this.classes; c++) {
      const g = dLogits[c] as number;
      const row = this.w2Offset + c * h;
      for (let j = 0; j < h; j++) {
        gradient[row + j] = (gradient[row + j] as number) + g * (activation[j] as number);
        dActivation[j] = (dActivation[j] as number) + g * (params[row + j] as number);
      }
      gradient[this.b2Offset + c] = (gradient[this.b2Offset + c] as number) + g;
    }
    for (let j = 0; j < h; j++) {
      // ReLU passes the gradient only where the unit was active.
      if ((this.preActivation[j] as number) <= 0) continue;
      const g = dActivation[j] as number;
      const row = j * d;
      for (let i = 0; i < d; i++) gradient[row + i] = (gradient[row + i] as number) + g * (z[i] as number);
      gradient[this.b1Offset + j] = (gradient[this.b1Offset + j] as number) + g;
    }
  }
}
