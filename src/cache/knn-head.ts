/**
 * A nearest-neighbour memory as an exit head: instead of learning weights by
 * gradient steps, it remembers recent frames (their pooled activations at
 * this exit, with the backbone's label) and answers a new frame by a vote of
 * the remembered frames nearest to it. It is useful from its first examples,
 * before a gradient head has converged, and it follows a changing stream by
 * forgetting its oldest examples.
 *
 * What is stored, in bounded memory whatever arrives: per class, a ring of
 * the newest `memoryPerClass` examples, each as its feature vector scaled to
 * unit length (float32). At most classes × memoryPerClass × inputSize floats,
 * allocated as the rings fill. A class that dominates the stream cannot push
 * the others out.
 *
 * Why unit vectors and cosine distance rather than running standardization:
 * on the Fashion-MNIST exits both rank neighbours alike (coverage at 99%
 * agreement within 3 points either way, docs/cache.md), but a unit vector
 * never changes once stored, while a standardized one goes stale as the
 * statistics move, and the distance is then a single matrix product.
 *
 * Prediction, for a query q: distances to every remembered example,
 * |q - e| = sqrt(2 - 2 q·e) on the unit sphere; the k nearest (`neighbours`)
 * vote, each with weight 1/distance, the weights scaled to sum to k. Every
 * class missing from the vote gets a pseudo-vote (d1 / dc)^8, where d1 is
 * the nearest distance and dc that of the class's own nearest example; the
 * votes, normalized, are the distribution. So a unanimous vote of 10 with
 * the other classes far away is confident (p ≈ 0.99), a unanimous vote next
 * to another class's example less so, and a 6/4 split about 0.6. Without the
 * pseudo-votes every unanimous vote would tie at one confidence, and
 * calibration could not tell the safe ones from the rest.
 *
 * The distance computation (remembered entries × inputSize multiply-adds per
 * query) is the bulk: `predictBatchWith` runs it on onnxruntime
 * (head-kernel.ts's similarity graph). With 640 examples of 1280 features it
 * took 0.19 ms for 1 query and 2.0 ms for 64, against 1.6 ms and 101 ms for
 * the TypeScript loop (9-50x); the vote is O(entries) per query and stays
 * here, shared by both paths.
 */
import { checkPredictionBatch, checkSingleRow, checkTrainingBatch, misuse } from "./head-base.ts";
import type { MemoryState } from "./head-codec.ts";
import { encodeMemoryHead } from "./head-codec.ts";
import type { HeadKernel } from "./head-kernel.ts";
import { argmax } from "./head-math.ts";
import type { ExitHead, HeadShape } from "./head-types.ts";
import { DEFAULT_MEMORY_PER_CLASS, DEFAULT_NEIGHBOURS, shapeProblem } from "./head-types.ts";

/** Exponent of the pseudo-votes of classes missing from the vote (docs/cache.md: 4, 8 and 16 measured alike). */
const ABSENT_CLASS_EXPONENT = 8;
/** Keeps 1/distance finite when a query is a remembered example. */
const DISTANCE_EPSILON = 1e-9;
/** Floor of a probability inside the cross-entropy `trainBatch` reports. */
const PROBABILITY_FLOOR = 1e-12;

export interface NearestNeighbourShape {
  inputSize: number;
  classes: number;
  /** Newest examples kept per class. */
  memoryPerClass?: number;
  /** Nearest examples that vote. */
  neighbours?: number;
}

/** One class's examples: a ring of `capacity` unit vectors, its storage grown as it fills. */
class ClassRing {
  entries = new Float32Array(0);
  filled = 0;
  next = 0;

  constructor(
    readonly capacity: number,
    readonly size: number,
  ) {}

  add(unit: Float32Array): void {
    // Until the ring is full the next slot is the first free one; then the oldest.
    const slot = this.filled < this.capacity ? this.filled : this.next;
    this.reserve(slot + 1);
    this.entries.set(unit, slot * this.size);
    this.filled = Math.min(this.filled + 1, this.capacity);
    this.next = (slot + 1) % this.capacity;
  }

  /** Storage for at least `slots` vectors, doubling (never beyond the capacity). */
  private reserve(slots: number): void {
    if (this.entries.length >= slots * this.size) return;
    const grown = Math.min(this.capacity, Math.max(slots, 2 * (this.entries.length / this.size), 4));
    const entries = new Float32Array(grown * this.size);
    entries.set(this.entries);
    this.entries = entries;
  }

  keepNewest(keep: number): void {
    if (keep >= this.filled) return;
    const d = this.size;
    const newest = new Float32Array(keep * d);
    for (let i = 0; i < keep; i++) {
      const slot = (this.next - keep + i + this.capacity) % this.capacity;
      newest.set(this.entries.subarray(slot * d, (slot + 1) * d), i * d);
    }
    this.entries.set(newest);
    this.filled = keep;
    this.next = keep % this.capacity;
  }

  restore(filled: number, next: number, entries: Float32Array): void {
    this.entries = entries.slice(0, filled * this.size);
    this.filled = filled;
    this.next = next;
  }
}

/** Every remembered example in one matrix, as the distance computation reads it. */
interface Packed {
  count: number;
  /** count × D unit vectors, class 0's first. */
  entries: Float32Array;
  labels: Int32Array;
}

export class NearestNeighbourHead implements ExitHead {
  readonly kind = "knn" as const;
  readonly shape: HeadShape;
  readonly inputSize: number;
  readonly classes: number;
  readonly memoryPerClass: number;
  readonly neighbours: number;
  readonly learnsByGradient = false;
  /** Examples remembered since this head was made (not part of its bytes). */
  remembered = 0;
  private readonly rings: ClassRing[];
  private packed: Packed | undefined;
  /** Scratch: a query as a unit vector, the k nearest (distance, label), each class's nearest, the votes. */
  private readonly query: Float64Array;
  private readonly unit: Float32Array;
  private readonly nearestDistance: Float64Array;
  private readonly nearestLabel: Int32Array;
  private readonly classNearest: Float64Array;
  private readonly votes: Float64Array;
  private similarityScratch = new Float64Array(0);
  private queryScratch = new Float32Array(0);

  constructor(shape: NearestNeighbourShape) {
    this.shape = {
      kind: "knn",
      inputSize: shape.inputSize,
      hidden: 0,
      classes: shape.classes,
      memoryPerClass: shape.memoryPerClass ?? DEFAULT_MEMORY_PER_CLASS,
      neighbours: shape.neighbours ?? DEFAULT_NEIGHBOURS,
    };
    const problem = shapeProblem(this.shape);
    if (problem !== undefined) misuse(`invalid knn head shape: ${problem}`, { ...this.shape });
    this.inputSize = shape.inputSize;
    this.classes = shape.classes;
    this.memoryPerClass = this.shape.memoryPerClass!;
    this.neighbours = this.shape.neighbours!;
    this.rings = Array.from(
      { length: this.classes },
      () => new ClassRing(this.memoryPerClass, this.inputSize),
    );
    this.query = new Float64Array(this.inputSize);
    this.unit = new Float32Array(this.inputSize);
    this.nearestDistance = new Float64Array(this.neighbours);
    this.nearestLabel = new Int32Array(this.neighbours);
    this.classNearest = new Float64Array(this.classes);
    this.votes = new Float64Array(this.classes);
  }

  /** A head with the memory of a decoded record (head-codec.ts). */
  static fromState(shape: HeadShape, memory: MemoryState): NearestNeighbourHead {
    const head = new NearestNeighbourHead(shape);
    head.loadMemory(memory);
    return head;
  }

  /** Examples held now, over all classes. */
  get size(): number {
    return this.rings.reduce((sum, r) => sum + r.filled, 0);
  }

  /** Most examples it can hold: classes × memoryPerClass. */
  get capacity(): number {
    return this.classes * this.memoryPerClass;
  }

  /** Examples held for one class. */
  heldFor(label: number): number {
    return this.rings[label]?.filled ?? 0;
  }

  /** The distances (one dot product per example held) and the class scan. */
  macs(): number {
    return this.size * (this.inputSize + 1);
  }

  remember(features: Float32Array, target: Float32Array): void {
    checkTrainingBatch(features, target, 1, this.inputSize, this.classes);
    this.store(features, 0, argmax(target, 0, this.classes));
  }

  keepNewest(keep: number): void {
    if (!Number.isInteger(keep) || keep < 0) misuse(`keepNewest needs a non-negative integer (got ${keep})`);
    for (const ring of this.rings) ring.keepNewest(keep);
    this.packed = undefined;
  }

  predict(features: Float32Array, out: Float32Array): void {
    checkSingleRow(features, out, this.inputSize, this.classes);
    this.predictBatch(features, 1, out);
  }

  predictBatch(features: Float32Array, n: number, out: Float32Array): void {
    checkPredictionBatch(features, n, out, this.inputSize, this.classes);
    const packed = this.pack();
    const d = this.inputSize;
    if (this.similarityScratch.length < packed.count) this.similarityScratch = new Float64Array(packed.count);
    const similarity = this.similarityScratch;
    const q = this.query;
    for (let row = 0; row < n; row++) {
      unitInto(features, row * d, d, q);
      for (let j = 0; j < packed.count; j++) {
        const base = j * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += (q[i] as number) * (packed.entries[base + i] as number);
        similarity[j] = dot;
      }
      this.vote(similarity, 0, packed, out, row * this.classes);
    }
  }

  /** `predictBatch` with the distances on onnxruntime (head-kernel.ts); the vote is the same code. */
  async predictBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    n: number,
    out: Float32Array,
  ): Promise<void> {
    checkPredictionBatch(features, n, out, this.inputSize, this.classes);
    const packed = this.pack();
    if (packed.count === 0) {
      // Nothing remembered yet: no opinion, and no onnxruntime call with an empty matrix.
      out.fill(1 / this.classes, 0, n * this.classes);
      return;
    }
    const d = this.inputSize;
    if (this.queryScratch.length < n * d) this.queryScratch = new Float32Array(n * d);
    const queries = this.queryScratch;
    for (let row = 0; row < n; row++) {
      unitInto(features, row * d, d, this.query);
      queries.set(this.query, row * d);
    }
    const similarity = await kernel.similarities(queries, n, packed.entries, packed.count);
    for (let row = 0; row < n; row++)
      this.vote(similarity, row * packed.count, packed, out, row * this.classes);
  }

  /**
   * A memory takes no gradient steps: "training" on a batch remembers every
   * row. Returns the mean cross-entropy of its predictions before. The
   * trainer does not call it (learnsByGradient is false: replayed batches
   * would store duplicates); it calls `remember` once per new example.
   */
  trainBatch(features: Float32Array, targets: Float32Array, n: number): number {
    checkTrainingBatch(features, targets, n, this.inputSize, this.classes);
    const probs = new Float32Array(n * this.classes);
    this.predictBatch(features, n, probs);
    return this.rememberAll(features, targets, probs, n);
  }

  async trainBatchWith(
    kernel: HeadKernel,
    features: Float32Array,
    targets: Float32Array,
    n: number,
  ): Promise<number> {
    checkTrainingBatch(features, targets, n, this.inputSize, this.classes);
    const probs = new Float32Array(n * this.classes);
    await this.predictBatchWith(kernel, features, n, probs);
    return this.rememberAll(features, targets, probs, n);
  }

  /** A copy of the memory: per class the filled slots in slot order and the ring's next slot. */
  memoryState(): MemoryState {
    return {
      classes: this.rings.map((r) => ({
        filled: r.filled,
        next: r.next,
        entries: r.entries.slice(0, r.filled * this.inputSize),
      })),
    };
  }

  /** Replaces the memory (sizes must match the shape). */
  loadMemory(memory: MemoryState): void {
    if (memory.classes.length !== this.classes) misuse("memory state does not match the head's classes");
    memory.classes.forEach((c, label) => {
      const valid =
        Number.isInteger(c.filled) &&
        c.filled >= 0 &&
        c.filled <= this.memoryPerClass &&
        Number.isInteger(c.next) &&
        c.next >= 0 &&
        c.next < this.memoryPerClass &&
        c.entries.length >= c.filled * this.inputSize;
      if (!valid) misuse(`memory state of class ${label} does not fit the head's shape`, { label });
      this.rings[label]!.restore(c.filled, c.next, c.entries);
    });
    this.packed = undefined;
  }

  toBytes(): Uint8Array {
    return encodeMemoryHead(this.shape, this.memoryState());
  }

  private rememberAll(features: Float32Array, targets: Float32Array, probs: Float32Array, n: number): number {
    const c = this.classes;
    let loss = 0;
    for (let row = 0; row < n; row++) {
      for (let k = 0; k < c; k++) {
        const t = targets[row * c + k]!;
        if (t !== 0) loss -= t * Math.log(Math.max(probs[row * c + k]!, PROBABILITY_FLOOR));
      }
      this.store(features, row * this.inputSize, argmax(targets, row * c, c));
    }
    return loss / n;
  }

  private store(features: Float32Array, offset: number, label: number): void {
    unitInto(features, offset, this.inputSize, this.query);
    this.unit.set(this.query);
    this.rings[label]!.add(this.unit);
    this.remembered++;
    this.packed = undefined;
  }

  /** The memory as one matrix, rebuilt only after it changed. */
  private pack(): Packed {
    if (this.packed) return this.packed;
    const d = this.inputSize;
    const count = this.size;
    const entries = new Float32Array(count * d);
    const labels = new Int32Array(count);
    let at = 0;
    this.rings.forEach((ring, label) => {
      entries.set(ring.entries.subarray(0, ring.filled * d), at * d);
      labels.fill(label, at, at + ring.filled);
      at += ring.filled;
    });
    this.packed = { count, entries, labels };
    return this.packed;
  }

  /**
   * The distribution for one query from its cosine similarities to every
   * remembered example (`similarity[offset ..]`), into out[outOffset ..].
   */
  private vote(
    similarity: ArrayLike<number>,
    offset: number,
    packed: Packed,
    out: Float32Array,
    outOffset: number,
  ): void {
    const c = this.classes;
    const k = Math.min(this.neighbours, packed.count);
    const { nearestDistance, nearestLabel, classNearest, votes } = this;
    nearestDistance.fill(Infinity);
    classNearest.fill(Infinity);
    for (let j = 0; j < packed.count; j++) {
      const distance = Math.sqrt(Math.max(0, 2 - 2 * (similarity[offset + j] as number)));
      const label = packed.labels[j]!;
      if (distance < classNearest[label]!) classNearest[label] = distance;
      if (!(distance < nearestDistance[k - 1]!)) continue;
      // Insertion into the sorted k nearest; on equal distances the earlier example stays ahead.
      let i = k - 1;
      while (i > 0 && nearestDistance[i - 1]! > distance) {
        nearestDistance[i] = nearestDistance[i - 1]!;
        nearestLabel[i] = nearestLabel[i - 1]!;
        i--;
      }
      nearestDistance[i] = distance;
      nearestLabel[i] = label;
    }
    votes.fill(0);
    let weights = 0;
    for (let i = 0; i < k; i++) {
      const w = 1 / (nearestDistance[i]! + DISTANCE_EPSILON);
      const label = nearestLabel[i]!;
      votes[label] = votes[label]! + w;
      weights += w;
    }
    let total = 0;
    if (k > 0) {
      const scale = k / weights;
      const nearest = nearestDistance[0]! + DISTANCE_EPSILON;
      for (let label = 0; label < c; label++) {
        const v = votes[label]!;
        const dc = classNearest[label]!;
        votes[label] =
          v > 0
            ? v * scale
            : Number.isFinite(dc)
              ? (nearest / (dc + DISTANCE_EPSILON)) ** ABSENT_CLASS_EXPONENT
              : 0;
        total += votes[label]!;
      }
    }
    // An empty memory (or a non-finite query) has no opinion: uniform.
    const uniform = !(total > 0 && Number.isFinite(total));
    for (let label = 0; label < c; label++) out[outOffset + label] = uniform ? 1 / c : votes[label]! / total;
  }
}

/** features[offset .. offset + d) scaled to unit length into `out` (zeros stay zeros). */
function unitInto(features: Float32Array, offset: number, d: number, out: Float64Array): void {
  let squared = 0;
  for (let i = 0; i < d; i++) squared += (features[offset + i] as number) * (features[offset + i] as number);
  const scale = squared > 0 ? 1 / Math.sqrt(squared) : 0;
  for (let i = 0; i < d; i++) out[i] = (features[offset + i] as number) * scale;
}
