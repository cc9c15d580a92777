/**
 * Polyak averaging of a head's parameters: the trainer steps the head's own
 * parameters, and publishes a copy that carries their exponential moving
 * average instead. Mini-batch steps sampled from a small replay window make
 * the live parameters jitter from step to step; the average smooths that
 * jitter out, and the served head ranks its confidences more reliably, which
 * is what a threshold proof feeds on (`npm run bench`, docs/cache.md).
 *
 * The decay ramps up with the updates taken, min(decay, (1 + t) / (10 + t)),
 * so that early on, when the parameters move fast, the average is nearly the
 * mean of the steps so far rather than the random initialisation.
 */
export class ParameterAverage {
  private average: Float32Array | null = null;
  private updates = 0;

  /** @param decay the weight of the old average at each update, in [0, 1); 0 turns averaging off. */
  constructor(private readonly decay: number) {}

  /** Steps taken into the average since it started or was last reset. */
  get count(): number {
    return this.updates;
  }

  /** Folds the parameters after one optimizer step into the average. */
  update(params: Float32Array): void {
    if (this.decay === 0) return;
    this.updates++;
    const average = this.average;
    if (!average || average.length !== params.length) {
      this.average = params.slice();
      return;
    }
    const keep = Math.min(this.decay, (1 + this.updates) / (10 + this.updates));
    const take = 1 - keep;
    for (let i = 0; i < params.length; i++) average[i] = average[i]! + take * (params[i]! - average[i]!);
  }

  /**
   * Starts from parameters that already are an average (a published
   * snapshot's, which a trainer taking over carries on from): later steps
   * move it at the full decay, not the ramp's, so that the first steps of a
   * fresh optimizer (each as large as the learning rate in every coordinate)
   * reach the published heads damped, as they would the trainer's before.
   */
  seed(params: Float32Array): void {
    if (this.decay === 0) return;
    this.average = params.slice();
    // The ramp (1 + t) / (10 + t) has reached the decay from here on.
    this.updates = Math.ceil((10 * this.decay - 1) / (1 - this.decay));
  }

  /** Starts again from the next update (after a drift alarm: old parameters must not linger). */
  reset(): void {
    this.average = null;
    this.updates = 0;
  }

  /** Writes the average into `params` (a published copy's); leaves them as they are before any update. */
  applyTo(params: Float32Array): void {
    if (this.average && this.average.length === params.length) params.set(this.average);
  }
}
