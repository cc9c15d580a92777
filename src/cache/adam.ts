/**
 * Adam with decoupled weight decay (AdamW), updating a flat Float32Array of
 * parameters in place from a float64 (reference heads) or float32
 * (onnxruntime kernel) gradient. The moments live only in
 * memory: a head restored from bytes starts them afresh, which costs a few
 * steps of bias-corrected warm-up and nothing else.
 */
export interface AdamOptions {
  /** Step size. */
  learningRate: number;
  /** Decay of the first-moment (mean gradient) estimate. */
  beta1: number;
  /** Decay of the second-moment (squared gradient) estimate. */
  beta2: number;
  /** Added to the root second moment so flat directions do not get huge steps. */
  epsilon: number;
  /**
   * Decoupled L2 shrinkage per step, as a fraction of the learning rate
   * (w -= learningRate · weightDecay · w). Applies to weights, never biases.
   */
  weightDecay: number;
}

export class Adam {
  private readonly firstMoment: Float32Array;
  private readonly secondMoment: Float32Array;
  private steps = 0;

  /**
   * @param decayedCount the first `decayedCount` parameters are weights and
   *   receive weight decay; the rest are biases.
   */
  constructor(
    size: number,
    private readonly options: AdamOptions,
    private readonly decayedCount: number,
  ) {
    this.firstMoment = new Float32Array(size);
    this.secondMoment = new Float32Array(size);
  }

  /** One update of `params` along `gradient` (same length and layout). */
  step(params: Float32Array, gradient: Float32Array | Float64Array): void {
    const { learningRate, weightDecay } = this.options;
    this.steps++;
    // Weights shrink, biases do not: two passes, so the hot loop has no branch.
    this.update(params, gradient, 0, this.decayedCount, 1 - learningRate * weightDecay);
    this.update(params, gradient, this.decayedCount, params.length, 1);
  }

  private update(
    params: Float32Array,
    gradient: Float32Array | Float64Array,
    from: number,
    to: number,
    shrink: number,
  ): void {
    const { learningRate, beta1, beta2, epsilon } = this.options;
    const stepSize = learningRate / (1 - Math.pow(beta1, this.steps));
    const secondCorrection = 1 / Math.sqrt(1 - Math.pow(beta2, this.steps));
    const keep1 = 1 - beta1;
    const keep2 = 1 - beta2;
    const m = this.firstMoment;
    const v = this.secondMoment;
    for (let i = from; i < to; i++) {
      const g = gradient[i]!;
      const mi = beta1 * m[i]! + keep1 * g;
      const vi = beta2 * v[i]! + keep2 * g * g;
      m[i] = mi;
      v[i] = vi;
      params[i] = params[i]! * shrink - (stepSize * mi) / (Math.sqrt(vi) * secondCorrection + epsilon);
    }
  }
}
