/**
 * Which offsets may be committed. A partition's messages are answered out of
 * order (a dead letter can be acknowledged before the prediction of an
 * earlier frame), but a commit says "everything before this offset is done",
 * so it may only move past a message once it and every message handed out
 * before it are acknowledged by the broker.
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
  private readonly entries: OffsetEntry[] = [];
  private head = 0;
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

  /** The offset to commit, if the done prefix moved since the last commit. */
  committable(): string | undefined {
    this.advance();
    if (this.doneUpTo === undefined || this.doneUpTo === this.committedUpTo) return undefined;
    return this.doneUpTo.toString();
  }

  markCommitted(offset: string): void {
    const value = BigInt(offset);
    if (this.committedUpTo === undefined || value > this.committedUpTo) this.committedUpTo = value;
  }

  private advance(): void {
    while (this.head < this.entries.length && this.entries[this.head]!.done) {
      this.doneUpTo = this.entries[this.head]!.offset + 1n;
      this.head++;
    }
    // Drop the acknowledged prefix now and then rather than shifting on every message.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries.splice(0, this.head);
      this.head = 0;
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
