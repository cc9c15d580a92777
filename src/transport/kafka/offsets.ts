/**
 * Which offsets may be committed. A partition's messages are answered out of
 * order (a dead letter can be acknowledged before the prediction of an
 * earlier frame), but a commit says "everything before this offset is done",
 * so it may only move past a message once it and every message handed out
 * before it are done: acknowledged by the broker (at least once), or staged
 * for the transaction that commits the offset (exactly once; such a
 * transaction carries the outputs of `pending()`'s entries).
 *
 * A ledger belongs to one group generation. After a rebalance the consumer
 * starts a new one, carrying over the trackers of the partitions it keeps;
 * the trackers of partitions it lost are dropped, uncommitted past what was
 * done (their new owner gets those frames again: at least once, never lost).
 */

/** One consumed message, from hand-out to acknowledgement. */
export interface OffsetEntry {
  readonly offset: bigint;
  done: boolean;
}

export class PartitionTracker {
  /** Entries from the oldest one not covered by a commit, or not done (whichever is older). */
  private readonly entries: OffsetEntry[] = [];
  /** Index of the first entry that is not done. */
  private head = 0;
  /** Index of the first entry at or past the committed offset. */
  private base = 0;
  /** Offset after the last message of the done prefix (what a commit would say). */
  private doneUpTo: bigint | undefined;
  private committedUpTo: bigint | undefined;
  private lastAdded: bigint | undefined;

  /** Whether `offset` comes after every message handed out so far. */
  isNew(offset: string): boolean {
    return this.lastAdded === undefined || BigInt(offset) > this.lastAdded;
  }

  /** Registers a message handed to the pipeline; offsets must arrive in increasing order. */
  add(offset: string): OffsetEntry {
    if (!this.isNew(offset)) throw new RangeError(`offset ${offset} handed out twice or out of order`);
    const entry: OffsetEntry = { offset: BigInt(offset), done: false };
    this.lastAdded = entry.offset;
    this.entries.push(entry);
    return entry;
  }

  /** The offset after the last message handed out, if any was. */
  nextOffset(): string | undefined {
    return this.lastAdded === undefined ? undefined : (this.lastAdded + 1n).toString();
  }

  /** The offset to commit, if the done prefix moved past the last commit. */
  committable(): string | undefined {
    this.advance();
    if (this.doneUpTo === undefined) return undefined;
    if (this.committedUpTo !== undefined && this.doneUpTo <= this.committedUpTo) return undefined;
    return this.doneUpTo.toString();
  }

  /** The entries a commit up to `offset` covers that no earlier commit did, oldest first. */
  pending(offset: string): OffsetEntry[] {
    const end = BigInt(offset);
    const out: OffsetEntry[] = [];
    for (let i = this.base; i < this.entries.length && this.entries[i]!.offset < end; i++)
      out.push(this.entries[i]!);
    return out;
  }

  /** Every entry no commit covers yet (done or not): what is given up when the partition goes. */
  uncommitted(): OffsetEntry[] {
    return this.entries.slice(this.base);
  }

  /**
   * Records a commit. It may pass entries that are not done (exactly once: another member's
   * transaction committed them first); the done prefix still has to pass them before the next one.
   */
  markCommitted(offset: string): void {
    const value = BigInt(offset);
    if (this.committedUpTo !== undefined && value <= this.committedUpTo) return;
    this.committedUpTo = value;
    while (this.base < this.entries.length && this.entries[this.base]!.offset < value) this.base++;
    this.trim();
  }

  private advance(): void {
    while (this.head < this.entries.length && this.entries[this.head]!.done) {
      this.doneUpTo = this.entries[this.head]!.offset + 1n;
      this.head++;
    }
    this.trim();
  }

  /** Drops what is both done and committed now and then, rather than shifting on every message. */
  private trim(): void {
    const drop = Math.min(this.head, this.base);
    if (drop > 1024 && drop * 2 > this.entries.length) {
      this.entries.splice(0, drop);
      this.head -= drop;
      this.base -= drop;
    }
  }
}

export interface CommitOffset {
  topic: string;
  partition: number;
  /** The next offset to read: one past the last message that is done. */
  offset: string;
}

/** The trackers of every partition this member consumes in one group generation. */
export class OffsetLedger {
  private readonly partitions = new Map<string, { topic: string; partition: number; t: PartitionTracker }>();

  /** The partition's tracker, created empty on first use. */
  tracker(topic: string, partition: number): PartitionTracker {
    const existing = this.get(topic, partition);
    if (existing) return existing;
    const t = new PartitionTracker();
    this.adopt(topic, partition, t);
    return t;
  }

  get(topic: string, partition: number): PartitionTracker | undefined {
    return this.partitions.get(key(topic, partition))?.t;
  }

  /** The partitions of `topic` this ledger has a tracker for. */
  partitionsOf(topic: string): number[] {
    return [...this.partitions.values()].filter((p) => p.topic === topic).map((p) => p.partition);
  }

  /** Takes over a tracker from the previous generation's ledger. */
  adopt(topic: string, partition: number, t: PartitionTracker): void {
    this.partitions.set(key(topic, partition), { topic, partition, t });
  }

  committable(): CommitOffset[] {
    const out: CommitOffset[] = [];
    for (const { topic, partition, t } of this.partitions.values()) {
      const offset = t.committable();
      if (offset !== undefined) out.push({ topic, partition, offset });
    }
    return out;
  }

  markCommitted(offsets: readonly CommitOffset[]): void {
    for (const o of offsets) this.tracker(o.topic, o.partition).markCommitted(o.offset);
  }
}

const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;
