/**
 * Committing the memory of the training buffers ahead of their writes.
 *
 * A large typed array is zeroed memory the kernel maps lazily: the first write
 * to each page takes a page fault. The replay rings and the calibration set
 * take one frame's features (up to 20 KB for the bundled model) at a time, on
 * the frame path, so for their whole first pass every example paid for its
 * own pages inside the frame that brought it: 17 µs for exit 0's 6.4 KB on
 * our machines, against 1.2 µs for the same copy into memory already touched.
 *
 * Committing all of it when the trainer is made would stall that moment
 * instead (0.47 s for the 180 MB of the default capacities, which is also
 * when a replica takes the trainer lease over). So a buffer commits a window
 * of slots just ahead of its write position whenever the trainer maintains
 * itself, between batches: the frames then write into memory already there.
 */
type Rows = Float32Array | Int32Array;

export class CommitAhead {
  /** Slots [0, committed) have been written or committed. */
  private committed = 0;

  /**
   * `arrays` are the buffer's arrays with their elements per slot; each holds
   * `capacity` slots written in order from slot 0, as a ring.
   */
  constructor(
    private readonly capacity: number,
    private readonly arrays: readonly (readonly [Rows, number])[],
  ) {}

  /**
   * Commits the slots from `next` (the next one written) up to `slots` ahead.
   * Slots at or after `next` hold nothing live while the buffer has not
   * wrapped (`filled < capacity`); once it has, every page was written and
   * this does nothing.
   */
  ensure(next: number, filled: number, slots: number): void {
    if (filled >= this.capacity || this.committed >= this.capacity) return;
    const start = Math.max(this.committed, next);
    const end = Math.min(this.capacity, next + slots);
    if (end <= start) return;
    for (const [array, size] of this.arrays) array.fill(0, start * size, end * size);
    this.committed = end;
  }
}
