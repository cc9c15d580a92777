/**
 * Latency percentiles in bounded memory, for summaries of streams that may
 * never end (`layercache tail`). Values go into logarithmic buckets 1% wide,
 * so a reported percentile is within 1% of the exact nearest-rank one (and
 * never outside the observed minimum and maximum, which are exact). Values
 * at or below 0.01 ms share one bucket. Pure: no clock, no I/O.
 */

/** Relative width of a bucket: a percentile is off by at most this share. */
export const RELATIVE_ERROR = 0.01;
/** Values at or below this (ms) share the first bucket; negative readings (clock skew) land there. */
const FLOOR_MS = 0.01;
/** Values above this (ms, about 2.8 hours) share the last bucket. */
const CEILING_MS = 1e7;
const LOG_STEP = Math.log1p(RELATIVE_ERROR);
const BUCKETS = Math.ceil(Math.log(CEILING_MS / FLOOR_MS) / LOG_STEP) + 1;

export interface LatencyPercentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  private n = 0;
  private sum = 0;
  private min = Infinity;
  private max = -Infinity;

  get count(): number {
    return this.n;
  }

  add(ms: number): void {
    if (!Number.isFinite(ms)) return;
    this.counts[bucketOf(ms)]! += 1;
    this.n += 1;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  /**
   * The smallest value at least a share `q` (in (0, 1]) of the values are at
   * or below (nearest rank), to within RELATIVE_ERROR; undefined when empty.
   */
  quantile(q: number): number | undefined {
    if (this.n === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.n));
    if (rank === 1) return this.min;
    if (rank === this.n) return this.max;
    let seen = 0;
    // The last bucket is open-ended: only the maximum is known there.
    for (let b = 0; b < BUCKETS - 1; b++) {
      seen += this.counts[b]!;
      if (seen >= rank) return clamp(upperEdge(b), this.min, this.max);
    }
    return this.max;
  }

  percentiles(): LatencyPercentiles | undefined {
    if (this.n === 0) return undefined;
    return {
      p50: this.quantile(0.5)!,
      p90: this.quantile(0.9)!,
      p99: this.quantile(0.99)!,
      max: this.max,
      mean: this.sum / this.n,
    };
  }
}

function bucketOf(ms: number): number {
  if (ms <= FLOOR_MS) return 0;
  return Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / FLOOR_MS) / LOG_STEP));
}

/** Every value in bucket b is at most this (and above the previous bucket's edge). */
function upperEdge(b: number): number {
  return FLOOR_MS * Math.exp(b * LOG_STEP);
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
