/**
 * Training examples for the exit heads: for a frame that ran the whole
 * backbone, its pooled features at every exit and the backbone's soft output.
 * A ring of fixed capacity: the newest examples replace the oldest, so after a
 * drift the buffer fills with the new distribution within `capacity` frames.
 */
import type { SeededRandom } from "./random.ts";

export class ReplayBuffer {
  readonly capacity: number;
  private readonly featureSizes: readonly number[];
  private readonly classes: number;
  private readonly features: Float32Array[];
  private readonly targets: Float32Array;
  private next = 0;
  private filled = 0;
  /** Examples ever added (so a consumer can tell new from seen). */
  added = 0;

  constructor(capacity: number, featureSizes: readonly number[], classes: number) {
    this.capacity = capacity;
    this.featureSizes = featureSizes;
    this.classes = classes;
    this.features = featureSizes.map((d) => new Float32Array(capacity * d));
    this.targets = new Float32Array(capacity * classes);
  }

  get size(): number {
    return this.filled;
  }

  /** `features[e]` holds the frame's features at exit e; `target` its soft label. */
  add(features: readonly Float32Array[], target: Float32Array): void {
    const slot = this.next;
    this.featureSizes.forEach((d, e) => this.features[e]!.set(features[e]!.subarray(0, d), slot * d));
    this.targets.set(target.subarray(0, this.classes), slot * this.classes);
    this.next = (slot + 1) % this.capacity;
    this.filled = Math.min(this.filled + 1, this.capacity);
    this.added++;
  }

  /** Forgets everything but the newest `keep` examples (after a drift alarm). */
  keepNewest(keep: number): void {
    if (keep >= this.filled) return;
    const newest = Array.from(
      { length: keep },
      (_, i) => (this.next - keep + i + this.capacity) % this.capacity,
    );
    const copy = (src: Float32Array, d: number) => {
      const rows = newest.map((s) => src.slice(s * d, (s + 1) * d));
      rows.forEach((row, i) => src.set(row, i * d));
    };
    this.featureSizes.forEach((d, e) => copy(this.features[e]!, d));
    copy(this.targets, this.classes);
    this.filled = keep;
    this.next = keep % this.capacity;
  }

  /** Fills `outFeatures` (n x D of exit e) and `outTargets` (n x C) with a uniform sample. */
  sample(
    exit: number,
    n: number,
    rng: SeededRandom,
    outFeatures: Float32Array,
    outTargets: Float32Array,
  ): void {
    const d = this.featureSizes[exit]!;
    const src = this.features[exit]!;
    for (let i = 0; i < n; i++) {
      const s = rng.integer(this.filled);
      outFeatures.set(src.subarray(s * d, (s + 1) * d), i * d);
      outTargets.set(this.targets.subarray(s * this.classes, (s + 1) * this.classes), i * this.classes);
    }
  }
}
