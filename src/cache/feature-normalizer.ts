/**
 * Running per-feature mean and variance, used to standardize a head's input.
 * Pooled activations at different depths differ in scale by orders of
 * magnitude; standardizing lets one learning rate suit every exit.
 *
 * Welford's update, except that the sample count stops growing at `horizon`:
 * from then on each new frame has weight 1/horizon, an exponential moving
 * average, so the statistics still follow a slowly drifting input stream but
 * settle enough that the head's weights do not chase them.
 */

/** Keeps 1/sqrt(variance) finite for features that never change (dead channels). */
const VARIANCE_FLOOR = 1e-8;

export class FeatureNormalizer {
  readonly mean: Float64Array;
  /** Population variance of each feature. */
  readonly variance: Float64Array;
  /** 1 / sqrt(variance + floor), cached so standardizing is a multiply. */
  readonly scale: Float64Array;
  private observed = 0;

  constructor(
    readonly size: number,
    private readonly horizon: number,
  ) {
    this.mean = new Float64Array(size);
    // Identity until the first frame arrives: mean 0, variance 1.
    this.variance = new Float64Array(size).fill(1);
    this.scale = new Float64Array(size);
    this.refreshScale();
  }

  /** Effective number of frames behind the statistics (capped at the horizon). */
  get count(): number {
    return this.observed;
  }

  /** Folds n rows of `size` features (row-major) into the statistics. */
  observe(features: Float32Array, n: number): void {
    const { mean, variance, size } = this;
    for (let row = 0; row < n; row++) {
      this.observed = Math.min(this.observed + 1, this.horizon);
      const weight = 1 / this.observed;
      const offset = row * size;
      for (let i = 0; i < size; i++) {
        const x = features[offset + i] as number;
        const delta = x - (mean[i] as number);
        const m = (mean[i] as number) + delta * weight;
        mean[i] = m;
        // var_n = var_{n-1} + (delta · (x - mean_n) - var_{n-1}) / n, Welford in variance form.
        variance[i] = (variance[i] as number) + (delta * (x - m) - (variance[i] as number)) * weight;
      }
    }
    this.refreshScale();
  }

  /** (features[offset + i] - mean_i) / std_i into out[0..size). */
  standardize(features: Float32Array, offset: number, out: Float64Array): void {
    const { mean, scale, size } = this;
    for (let i = 0; i < size; i++) {
      out[i] = ((features[offset + i] as number) - (mean[i] as number)) * (scale[i] as number);
    }
  }

  /** Replaces the statistics (from a serialized head). */
  restore(count: number, mean: Float64Array, variance: Float64Array): void {
    this.observed = count;
    this.mean.set(mean);
    this.variance.set(variance);
    this.refreshScale();
  }

  private refreshScale(): void {
    for (let i = 0; i < this.size; i++) {
      this.scale[i] = 1 / Math.sqrt(Math.max(0, this.variance[i] as number) + VARIANCE_FLOOR);
    }
  }
}
