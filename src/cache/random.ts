/**
 * A small seeded pseudo-random generator, so head initialisation, tests and
 * the benchmark are reproducible. Not for anything security-related.
 *
 * Uniforms come from mulberry32 (Tommy Ettinger's 32-bit generator: one word
 * of state, period 2^32, passes gjrand/PractRand up to its period), which is
 * plenty for initialising weights and sampling synthetic data. Gaussians use
 * the Box-Muller transform and keep the second value of each pair.
 */
export class SeededRandom {
  private state: number;
  private spareGaussian: number | undefined;

  constructor(seed: number) {
    // Any number is accepted; only its low 32 bits matter.
    this.state = seed >>> 0;
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1), with 32 bits of resolution. */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, bound), for bound in [1, 2^32]. */
  integer(bound: number): number {
    return Math.floor(this.uniform() * bound);
  }

  /** Standard normal N(0, 1). */
  gaussian(): number {
    if (this.spareGaussian !== undefined) {
      const spare = this.spareGaussian;
      this.spareGaussian = undefined;
      return spare;
    }
    // 1 - uniform() lies in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.uniform()));
    const angle = 2 * Math.PI * this.uniform();
    this.spareGaussian = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Fills `out` with N(0, std^2) samples and returns it. */
  fillGaussian<T extends Float32Array | Float64Array>(out: T, std = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = std * this.gaussian();
    return out;
  }
}
