/**
 * Training examples for the exit heads, one ring per exit: pooled features at
 * that exit and a soft target. A frame that ran the whole backbone gives an
 * example to every exit (target: the backbone's soft output); a frame that left
 * early through an open exit gives one to each exit before it (target: the
 * answering head's output, whose agreement with the backbone was proven).
 * Rings of fixed capacity: the newest examples replace the oldest, so after a
 * drift each ring fills with the new distribution within `capacity` frames.
 */
import { CommitAhead } from "./resident.ts";
import type { SeededRandom } from "./random.ts";

class Ring {
  readonly features: Float32Array;
  readonly targets: Float32Array;
  next = 0;
  filled = 0;
  private readonly memory: CommitAhead;

  constructor(
    readonly capacity: number,
    readonly size: number,
    readonly classes: number,
  ) {
    this.features = new Float32Array(capacity * size);
    this.targets = new Float32Array(capacity * classes);
    this.memory = new CommitAhead(capacity, [
      [this.features, size],
      [this.targets, classes],
    ]);
  }

  reserve(slots: number): void {
    this.memory.ensure(this.next, this.filled, slots);
  }

  add(features: Float32Array, target: Float32Array): void {
    const slot = this.next;
    this.features.set(features.subarray(0, this.size), slot * this.size);
    this.targets.set(target.subarray(0, this.classes), slot * this.classes);
    this.next = (slot + 1) % this.capacity;
    this.filled = Math.min(this.filled + 1, this.capacity);
  }

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
    copy(this.features, this.size);
    copy(this.targets, this.classes);
    this.filled = keep;
    this.next = keep % this.capacity;
  }
}

export class ReplayBuffer {
  readonly capacity: number;
  private readonly rings: Ring[];
  /** Examples ever added, over all exits (so a consumer can tell new from seen). */
  added = 0;

  constructor(capacity: number, featureSizes: readonly number[], classes: number) {
    this.capacity = capacity;
    this.rings = featureSizes.map((d) => new Ring(capacity, d, classes));
  }

  /** Examples held for exit e. */
  size(exit: number): number {
    return this.rings[exit]?.filled ?? 0;
  }

  /** One example for exit e: its features there and a soft target. */
  add(exit: number, features: Float32Array, target: Float32Array): void {
    this.rings[exit]!.add(features, target);
    this.added++;
  }

  /** Commits the memory of the next `slots` examples of every exit now, off the frame path (resident.ts). */
  reserve(slots: number): void {
    for (const ring of this.rings) ring.reserve(slots);
  }

  /** Forgets everything but the newest `keep` examples of each exit (after a drift alarm). */
  keepNewest(keep: number): void {
    for (const ring of this.rings) ring.keepNewest(keep);
  }

  /** Fills `outFeatures` (n x D of exit e) and `outTargets` (n x C) with a uniform sample. */
  sample(
    exit: number,
    n: number,
    rng: SeededRandom,
    outFeatures: Float32Array,
    outTargets: Float32Array,
  ): void {
    const ring = this.rings[exit]!;
    const { size: d, classes: c } = ring;
    for (let i = 0; i < n; i++) {
      const s = rng.integer(ring.filled);
      outFeatures.set(ring.features.subarray(s * d, (s + 1) * d), i * d);
      outTargets.set(ring.targets.subarray(s * c, (s + 1) * c), i * c);
    }
  }
}
