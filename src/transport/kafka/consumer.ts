/**
 * The frames-topic consumer: at-least-once, with a bounded pipeline behind it.
 *
 * - Every fetched message is handed to `handle`, whose promise settles once
 *   the message's output (prediction or dead letter) is delivered: acknowledged
 *   by the broker, or (exactly once) committed in a transaction with its
 *   offset. Offsets are committed explicitly, and only up to the first message
 *   that is not done yet (offsets.ts); autoCommit is off. How they are
 *   committed is `commit`'s business: by this consumer's group membership
 *   (default), or inside transactions (transactions.ts). Only committed
 *   records of the frames topic are read (read_committed).
 * - At most `inFlightMaxFrames` messages are handed out and unanswered, and
 *   while several partitions have work, each may hold only an equal share of
 *   that window (else the partition first in every fetch response would take
 *   it all and starve the rest). When a batch meets a full window or share,
 *   its partition is paused and the rest of the batch is left unresolved
 *   (kafkajs fetches it again after `resume`); a paused partition resumes
 *   once it has room for half its share again, in its share and in the
 *   window (so a resume is worth a fetch). Nothing is buffered beyond the
 *   window and kafkajs's one fetch response.
 * - `eachBatch` hands messages over without waiting for their answers, so the
 *   next fetch overlaps inference; it heartbeats as it goes.
 * - Rebalance: on REBALANCING the done prefix is committed (best effort: the
 *   old generation may still commit while the group prepares). After the
 *   join, partitions this member kept carry their trackers over and kafkajs
 *   is told to fetch them from after what is already in flight (not again
 *   from the committed offset), so nothing is answered twice there; frames in
 *   flight on partitions that moved away still get answered, but only their
 *   new owner commits them: they are answered twice, never lost (exactly once:
 *   `onAssignment` hears of them, and their outputs are dropped instead).
 */
import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage } from "kafkajs";
import { LayercacheError, isLayercacheError } from "../../errors/index.ts";
import type { Logger } from "../../telemetry/logger.ts";
import type { CommitFn } from "./committer.ts";
import { OffsetCommitter } from "./committer.ts";
import type { CommitOffset, OffsetEntry, PartitionTracker } from "./offsets.ts";
import { OffsetLedger } from "./offsets.ts";

/** Resume latency when every partition is paused: kafkajs sleeps this long between idle fetch rounds. */
const FETCH_MAX_WAIT_MS = 200;

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  /** Unix epoch milliseconds at which the worker took the message from its batch. */
  receivedAt: number;
  /** Its place in the commit ledger (exactly once: the transaction that commits it reads it). */
  entry: OffsetEntry;
}

/**
 * Settles once the message's output is delivered. A rejection is fatal, except SUPERSEDED (the
 * output was dropped because the message is answered elsewhere), which counts as done.
 */
export type MessageHandler = (message: ConsumedMessage) => Promise<void>;

/** What a group join changed for this member. */
export interface AssignmentChange {
  /** Partitions of the frames topic assigned now. */
  assigned: number[];
  /** Partitions whose uncommitted messages this member gives up (moved away, or fetched again). */
  lost: { partition: number; entries: OffsetEntry[] }[];
}

export interface FrameConsumerOptions {
  groupId: string;
  topic: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  inFlightMaxFrames: number;
  handle: MessageHandler;
  /** How done offsets are committed; by default through this consumer's group membership. */
  commit?: CommitFn;
  /** Called on every group join, before anything of the new generation is handed out. */
  onAssignment?: (change: AssignmentChange) => void;
  /** A message could not be answered, or the consumer died for good: the worker must stop. */
  onFatal: (err: Error) => void;
}

export class FrameConsumer {
  private readonly consumer: Consumer;
  private ledger = new OffsetLedger();
  private inFlight = 0;
  /** Messages in flight by partition, whichever generation handed them out. */
  private readonly inFlightBy = new Map<number, number>();
  /** Partitions this wrapper paused for backpressure (kafkajs keeps pauses across rebalances). */
  private readonly paused = new Set<number>();
  private stopping = false;
  private joined = false;
  private assignedNow: readonly number[] = [];
  private drainWaiters: (() => void)[] = [];
  private readonly committer: OffsetCommitter;
  /** Per partition: messages in the log after the last one handed out, as of the latest fetch. */
  private readonly lagBy = new Map<number, number>();

  constructor(
    kafka: Kafka,
    private readonly opts: FrameConsumerOptions,
    private readonly log: Logger,
  ) {
    this.consumer = kafka.consumer({
      groupId: opts.groupId,
      sessionTimeout: opts.sessionTimeoutMs,
      heartbeatInterval: opts.heartbeatIntervalMs,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
      // Frames from a transactional producer count once committed (kafkajs's default, said out loud).
      readUncommitted: false,
    });
    this.committer = new OffsetCommitter(
      () => this.ledger,
      opts.commit ?? ((offsets) => this.commitThroughGroup(offsets)),
      log,
    );
  }

  /** Connects, subscribes and joins the group; resolves once consuming has started. */
  async start(): Promise<void> {
    const { events } = this.consumer;
    this.consumer.on(events.GROUP_JOIN, ({ payload }) => this.onJoin(payload.memberAssignment));
    this.consumer.on(events.REBALANCING, () => void this.commitDone());
    this.consumer.on(events.CRASH, ({ payload }) => {
      this.joined = false;
      if (payload.restart) this.log.warn({ err: payload.error }, "consumer crashed; kafkajs restarts it");
      else this.opts.onFatal(unavailable("the Kafka consumer stopped for good", payload.error));
    });
    try {
      await this.consumer.connect();
      // A new group starts at the oldest frame: frames written before the first worker came up count too.
      await this.consumer.subscribe({ topics: [this.opts.topic], fromBeginning: true });
      await this.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: (payload) => this.eachBatch(payload),
      });
    } catch (err) {
      throw unavailable(`could not consume ${this.opts.topic}`, err);
    }
  }

  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Partitions paused because the pipeline is full. */
  get pausedCount(): number {
    return this.paused.size;
  }

  /** In the group and fetching (a crash kafkajs restarts from clears it until the next join). */
  get consuming(): boolean {
    return this.joined && !this.stopping;
  }

  /** Partitions of the frames topic assigned at the latest join. */
  get assigned(): readonly number[] {
    return this.assignedNow;
  }

  /** Per assigned partition: how many messages of the log are not handed out yet, as of the latest fetch. */
  get lag(): ReadonlyMap<number, number> {
    return this.lagBy;
  }

  /** Asks for a commit of whatever is done (exactly once: outputs were staged for their transaction). */
  requestCommit(): void {
    this.committer.commitSoon();
  }

  /** Shutdown step 1: hand out nothing more and stop fetching (the group membership stays). */
  stopFetching(): void {
    if (this.stopping) return;
    this.stopping = true;
    try {
      this.consumer.pause([{ topic: this.opts.topic }]);
    } catch {
      // Not running (never started, or between a crash and its restart): nothing is being fetched.
    }
  }

  /** Resolves true once nothing is in flight, false if `timeoutMs` passes first. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /** Commits the done prefix of every partition (shutdown: after the drain, before disconnecting). */
  commitDone(): Promise<void> {
    return this.committer.commitNow();
  }

  /** Stops the consumer and leaves the group; call after the final commit. */
  async disconnect(): Promise<void> {
    try {
      await this.consumer.disconnect();
    } catch (err) {
      this.log.warn({ err }, "consumer disconnect failed");
    }
  }

  private async commitThroughGroup(offsets: readonly CommitOffset[]): Promise<readonly CommitOffset[]> {
    await this.consumer.commitOffsets(
      offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })),
    );
    return offsets;
  }

  private async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const tracker = this.ledger.tracker(batch.topic, batch.partition);
    try {
      await this.handOut(payload, tracker);
    } finally {
      const next = tracker.nextOffset() ?? batch.firstOffset();
      if (next !== null)
        this.lagBy.set(batch.partition, Math.max(0, Number(batch.highWatermark) - Number(next)));
    }
  }

  private async handOut(payload: EachBatchPayload, tracker: PartitionTracker): Promise<void> {
    const { batch } = payload;
    let lastBeat = Date.now();
    for (const message of batch.messages) {
      if (this.stopping || !payload.isRunning() || payload.isStale()) return;
      // A batch fetched before an earlier one was resolved can repeat messages: skip what was handed
      // out already (resolving it, or kafkajs would fetch the same messages again and again).
      if (!tracker.isNew(message.offset)) {
        payload.resolveOffset(message.offset);
        continue;
      }
      if (this.isFull(batch.partition)) {
        payload.pause();
        this.paused.add(batch.partition);
        this.log.debug({ partition: batch.partition, inFlight: this.inFlight }, "pipeline full: paused");
        return;
      }
      this.submit(batch.topic, batch.partition, message, tracker);
      payload.resolveOffset(message.offset);
      if (Date.now() - lastBeat >= this.opts.heartbeatIntervalMs) {
        await payload.heartbeat();
        lastBeat = Date.now();
      }
    }
  }

  private held(partition: number): number {
    return this.inFlightBy.get(partition) ?? 0;
  }

  /** An equal part of the window for each partition that holds frames or waits for room (and `partition`). */
  private share(partition?: number): number {
    const active = new Set(this.paused);
    if (partition !== undefined) active.add(partition);
    for (const [p, n] of this.inFlightBy) if (n > 0) active.add(p);
    return Math.ceil(this.opts.inFlightMaxFrames / Math.max(1, active.size));
  }

  /** The window is full, or `partition` holds its share of it. */
  private isFull(partition: number): boolean {
    return this.inFlight >= this.opts.inFlightMaxFrames || this.held(partition) >= this.share(partition);
  }

  private submit(topic: string, partition: number, m: KafkaMessage, tracker: PartitionTracker): void {
    const entry = tracker.add(m.offset);
    this.inFlight++;
    this.inFlightBy.set(partition, this.held(partition) + 1);
    const message: ConsumedMessage = {
      topic,
      partition,
      offset: m.offset,
      key: m.key,
      value: m.value,
      headers: m.headers ?? {},
      receivedAt: Date.now(),
      entry,
    };
    let work: Promise<void>;
    try {
      work = this.opts.handle(message);
    } catch (err) {
      work = Promise.reject(err);
    }
    void work
      .then(
        () => {
          entry.done = true;
          this.committer.commitSoon();
        },
        (err: unknown) => {
          if (isLayercacheError(err, "SUPERSEDED")) {
            // Answered elsewhere: done as far as this member's commits go.
            entry.done = true;
            this.committer.commitSoon();
            return;
          }
          this.opts.onFatal(err instanceof Error ? err : new Error(String(err)));
        },
      )
      .finally(() => this.settle(partition));
  }

  private settle(partition: number): void {
    this.inFlight--;
    this.inFlightBy.set(partition, this.held(partition) - 1);
    this.resumeReady();
    if (this.inFlight === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resumes the paused partitions that have room for half their share, in it and in the window. */
  private resumeReady(): void {
    if (this.stopping || this.paused.size === 0) return;
    const half = this.share() / 2;
    if (this.inFlight + half > this.opts.inFlightMaxFrames) return;
    const partitions = [...this.paused].filter((p) => this.held(p) <= half);
    if (partitions.length === 0) return;
    for (const p of partitions) this.paused.delete(p);
    try {
      this.consumer.resume([{ topic: this.opts.topic, partitions }]);
      this.log.debug({ partitions, inFlight: this.inFlight }, "pipeline drained: resumed");
    } catch (err) {
      // Between a crash and its restart: the restarted consumer starts unpaused anyway.
      this.log.debug({ err }, "resume skipped");
    }
  }

  private onJoin(assignment: Record<string, number[]>): void {
    const { topic } = this.opts;
    const assigned = [...(assignment[topic] ?? [])].sort((a, b) => a - b);
    const previous = this.ledger;
    this.ledger = new OffsetLedger();
    for (const partition of assigned) {
      const tracker = previous.get(topic, partition);
      const next = tracker?.nextOffset();
      if (!tracker || next === undefined) continue;
      try {
        // kafkajs would fetch again from the committed offset; what is in flight needs no second answer.
        this.consumer.seek({ topic, partition, offset: next });
        this.ledger.adopt(topic, partition, tracker);
      } catch (err) {
        this.log.warn({ err, partition }, "could not seek past in-flight frames; they will be fetched again");
      }
    }
    // Trackers not carried over: their partition moved away, or (seek failed) is fetched again.
    const lost = previous
      .partitionsOf(topic)
      .filter((p) => this.ledger.get(topic, p) === undefined)
      .filter((p) => !assigned.includes(p) || previous.get(topic, p)!.nextOffset() !== undefined)
      .map((partition) => ({ partition, entries: previous.get(topic, partition)!.uncommitted() }));
    for (const p of this.lagBy.keys()) if (!assigned.includes(p)) this.lagBy.delete(p);
    this.joined = true;
    this.assignedNow = assigned;
    this.opts.onAssignment?.({ assigned, lost });
    this.log.info({ partitions: assigned, inFlight: this.inFlight }, "joined the consumer group");
    void this.commitDone();
    this.resumeReady();
  }
}

function unavailable(message: string, cause: unknown): LayercacheError {
  return new LayercacheError("SERVICE_UNAVAILABLE", message, { cause, retriable: true });
}
