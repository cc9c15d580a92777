/**
 * What the inference thread's engine sees, handed to its own learner thread
 * (learner-thread.ts) through the thread's port instead of through Redis
 * (docs/sharing.md, "The learner thread").
 *
 * On the inference thread, `LearnerFeed` is the sink of the engine's
 * ExampleForwarder in place of the Redis stream: it copies each example and
 * audit verdict at once and posts what gathered in one message, after the
 * synchronous part of the step that produced them. On the learner thread,
 * `LocalIntake` keeps what arrives until the learner's next step, which hands
 * it to the trainer if this replica holds the lease, or forwards it through
 * Redis to whichever replica does. Both sides are bounded: the oldest entries
 * beyond the capacity are dropped and counted, never memory.
 */
import type { AuditRecord, TrainingExample } from "../state/example-codec.ts";
import type { ExampleSink } from "../state/examples.ts";

/** An example or an audit verdict, as one crosses the port. */
export type LocalEntry =
  { kind: "example"; example: TrainingExample } | { kind: "audit"; record: AuditRecord };

/** Most entries either side holds before dropping the oldest: about 20 MB of examples for the bundled model. */
export const LOCAL_CAPACITY = 1024;

/** Appends to a bounded queue; returns how many of the oldest entries it dropped. */
function pushBounded<T>(queue: T[], item: T, capacity: number): number {
  queue.push(item);
  const over = queue.length - capacity;
  if (over > 0) queue.splice(0, over);
  return Math.max(0, over);
}

/**
 * The sink of the inference thread's ExampleForwarder (examples.ts) when a
 * learner thread trains for the replica: the forwarder turns what the engine
 * shows into examples exactly as it would for the Redis stream, and this
 * copies them (the engine and the forwarder reuse their arrays) and posts
 * them to the learner.
 */
export class LearnerFeed implements ExampleSink {
  private pending: LocalEntry[] = [];
  private scheduled = false;
  private send: ((entries: LocalEntry[]) => void) | undefined;
  /** Entries dropped before the learner was there to take them (in the worker's examples-dropped count). */
  dropped = 0;

  constructor(private readonly capacity = LOCAL_CAPACITY) {}

  /** Where entries go from now on (the learner's port); what gathered before goes with the next post. */
  attach(send: (entries: LocalEntry[]) => void): void {
    this.send = send;
    this.schedule();
  }

  offer(example: TrainingExample): void {
    const { kind, features, target } = example;
    this.add({
      kind: "example",
      example: { kind, features: features.map((f) => f.slice()), target: target.slice() },
    });
  }

  offerAudit(record: AuditRecord): void {
    this.add({ kind: "audit", record: { ...record } });
  }

  private add(entry: LocalEntry): void {
    this.dropped += pushBounded(this.pending, entry, this.capacity);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || !this.send || this.pending.length === 0) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      const entries = this.pending;
      this.pending = [];
      if (entries.length > 0) this.send?.(entries);
    });
  }
}

/** The learner thread's side: entries from its replica's inference thread, until the learner's next step. */
export class LocalIntake {
  private queue: LocalEntry[] = [];
  /** Entries dropped because the learner fell behind by more than the capacity. */
  dropped = 0;

  constructor(private readonly capacity = LOCAL_CAPACITY) {}

  get size(): number {
    return this.queue.length;
  }

  add(entries: readonly LocalEntry[]): void {
    for (const e of entries) this.dropped += pushBounded(this.queue, e, this.capacity);
  }

  /** Everything held, oldest first; the intake is empty after. */
  take(): LocalEntry[] {
    const entries = this.queue;
    this.queue = [];
    return entries;
  }
}
