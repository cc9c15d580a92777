/**
 * Exactly-once delivery with Kafka transactions: a message's outputs
 * (prediction or dead letter) are staged on its ledger entry, and the commit
 * of a partition's done prefix is one transaction holding the outputs of
 * every message it covers plus the consumed offset (`sendOffsets`), committed
 * or aborted as a unit. A reader with read_committed sees each output once.
 *
 * Fencing. kafkajs commits transactional offsets with TxnOffsetCommit v0-1,
 * which carries no consumer-group generation (no KIP-447), so the group
 * coordinator cannot refuse a commit from a member that lost its partitions.
 * Zombies are fenced the pre-KIP-447 way instead: one transactional producer
 * per input partition, with a transactional id derived from the group, the
 * frames topic and the partition only (`transactionalIdFor`), the same on
 * every replica. Whoever owns the partition next initialises the same id;
 * the broker bumps its epoch, aborts the previous owner's open transaction
 * (or waits for one already committing to finish), and refuses the previous
 * owner's later writes (INVALID_PRODUCER_EPOCH). A per-replica id would
 * fence only a restart of the same replica, never a partition that moved.
 *
 * After taking an id over, the committed offset is read again (the consumer
 * fetched it at the join, possibly before the previous owner's last
 * transaction landed): outputs of messages below it are dropped (SUPERSEDED).
 *
 * A transaction that fails is aborted and its producer dropped; the outputs
 * stay staged and go again in the next one, from a fresh producer that
 * re-checks the committed offset. A fenced partition is left alone for a
 * session timeout (this member is probably a zombie about to hear of the
 * rebalance) or until a join assigns it again. Repeated failures are fatal.
 */
import type { Admin, Kafka, Message, Producer, TopicMessages, Transaction } from "kafkajs";
import { Partitioners } from "kafkajs";
import { LayercacheError } from "../../errors/index.ts";
import type { Logger } from "../../telemetry/logger.ts";
import type { AssignmentChange } from "./consumer.ts";
import type { CommitOffset, OffsetEntry, OffsetLedger } from "./offsets.ts";
import type { OutputWriter, SourcedMessage } from "./outputs.ts";

/** Broker-side limit of an open transaction (a producer that died mid-transaction is aborted after it). */
const TRANSACTION_TIMEOUT_MS = 60_000;
/** Consecutive failed transactions on one partition (fencing aside) before the worker gives up. */
const MAX_FAILURES = 5;
const RETRY_DELAY_MS = 500;
/** Kafka protocol error types that mean another producer holds this transactional id now. */
const FENCED = new Set(["INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED", "TRANSACTION_COORDINATOR_FENCED"]);
const PRODUCER_FENCED_CODE = 90;

export type TransactionResult = "committed" | "aborted" | "fenced";

export interface TransactionalOptions {
  groupId: string;
  /** The consumed (frames) topic. */
  topic: string;
  /** How long a fenced partition is left alone before this member may take its id back. */
  sessionTimeoutMs: number;
  /** Asks the consumer for a commit soon: outputs were staged. */
  requestCommit: () => void;
  /** Transactions keep failing: the worker must stop. */
  onFatal: (err: Error) => void;
  /** Each transaction's outcome and how many consumed messages it covered. */
  onTransaction?: (result: TransactionResult, messages: number) => void;
}

/** Same for every replica of a group: that is what lets the next owner of a partition fence the last one. */
export function transactionalIdFor(groupId: string, topic: string, partition: number): string {
  return `layercache.${groupId}.${topic}.${partition}`;
}

interface Staged {
  outputs: { topic: string; message: Message }[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface PartitionState {
  producer: Producer | undefined;
  /** The committed offset was read again since `producer` took the id over. */
  verified: boolean;
  /** Start the next transaction from a new producer. */
  renew: boolean;
  /** Offsets below were committed by an earlier owner: outputs for them are dropped. */
  floor: bigint | undefined;
  fencedUntil: number | undefined;
  failures: number;
  /** The transaction in progress, if any. */
  busy: Promise<unknown> | undefined;
  retry: NodeJS.Timeout | undefined;
}

export class TransactionalOutputs implements OutputWriter {
  private readonly staged = new Map<OffsetEntry, Staged>();
  /** Entries of partitions given up: their outputs are dropped. */
  private readonly abandoned = new WeakSet<OffsetEntry>();
  private readonly partitions = new Map<number, PartitionState>();
  private admin: Admin | undefined;
  private closed = false;

  constructor(
    private readonly kafka: Kafka,
    private readonly opts: TransactionalOptions,
    private readonly log: Logger,
  ) {}

  /** Stages outputs for the transaction that will commit their sources; one write per consumed message. */
  write(topic: string, outputs: readonly SourcedMessage[]): Promise<void>[] {
    const written = outputs.map(({ source, message }) => {
      const entry = source.entry;
      if (this.closed) return Promise.reject(new LayercacheError("SHUTTING_DOWN", "transactions closed"));
      const floor = this.partitions.get(source.partition)?.floor;
      if (this.abandoned.has(entry) || (floor !== undefined && entry.offset < floor))
        return Promise.reject(superseded(source.partition, entry.offset));
      let staged = this.staged.get(entry);
      if (!staged) {
        staged = deferred();
        this.staged.set(entry, staged);
      }
      staged.outputs.push({ topic, message });
      entry.done = true;
      return staged.promise;
    });
    this.opts.requestCommit();
    return written;
  }

  /** The consumer's commit function: one transaction per partition, run side by side. */
  async commit(offsets: CommitOffset[], ledger: OffsetLedger): Promise<readonly CommitOffset[]> {
    const jobs = offsets.map((o) => {
      // Taken now: entries that become done while the transaction runs wait for the next one.
      const entries = ledger.get(o.topic, o.partition)?.pending(o.offset) ?? [];
      const state = this.state(o.partition);
      const job = this.commitPartition(o, entries, state);
      state.busy = job;
      return job.finally(() => {
        if (state.busy === job) state.busy = undefined;
      });
    });
    const results = await Promise.all(jobs);
    return results.filter((r): r is CommitOffset => r !== undefined);
  }

  /** A join: partitions given up drop their staged outputs and their producers; fenced ones assigned again may retry. */
  onAssignment(change: AssignmentChange): void {
    for (const p of change.assigned) {
      const state = this.partitions.get(p);
      if (state) state.fencedUntil = undefined;
    }
    for (const { partition, entries } of change.lost) {
      for (const e of entries) this.abandoned.add(e);
      if (change.assigned.includes(partition)) {
        // Still ours, but fetched again from the committed offset: check it again, from a new producer
        // (whose initialisation waits until this member's last transaction is complete).
        this.supersede(partition, entries);
        this.state(partition).renew = true;
      } else void this.release(partition, entries);
    }
  }

  /** Waits for transactions in progress, then disconnects; outputs still staged are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.partitions.values()].map((s) => s.busy));
    for (const s of this.partitions.values()) clearTimeout(s.retry);
    for (const staged of this.staged.values())
      staged.reject(new LayercacheError("SHUTTING_DOWN", "stopped before the output's transaction"));
    this.staged.clear();
    await Promise.allSettled([...this.partitions.keys()].map((p) => this.dropProducer(p)));
    await this.admin?.disconnect().catch((err: unknown) => this.log.warn({ err }, "admin disconnect failed"));
  }

  private state(partition: number): PartitionState {
    let s = this.partitions.get(partition);
    if (!s) {
      s = {
        producer: undefined,
        verified: false,
        renew: false,
        floor: undefined,
        fencedUntil: undefined,
        failures: 0,
        busy: undefined,
        retry: undefined,
      };
      this.partitions.set(partition, s);
    }
    return s;
  }

  private async commitPartition(
    o: CommitOffset,
    entries: OffsetEntry[],
    state: PartitionState,
  ): Promise<CommitOffset | undefined> {
    if (this.closed) return undefined;
    if (state.fencedUntil !== undefined && Date.now() < state.fencedUntil) return undefined;
    let txn: Transaction | undefined;
    try {
      if (state.renew) {
        state.renew = false;
        await this.dropProducer(o.partition);
      }
      state.producer ??= await this.connect(o.partition);
      // The first transaction of a producer initialises its id: fences the previous owner.
      txn = await state.producer.transaction();
      if (!state.verified) {
        state.floor = await this.committedOffset(o.partition);
        state.verified = true;
      }
      const floor = state.floor;
      const live = floor === undefined ? entries : entries.filter((e) => e.offset >= floor);
      if (live.length < entries.length)
        this.supersede(o.partition, entries.slice(0, entries.length - live.length));
      if (floor !== undefined && BigInt(o.offset) <= floor) {
        // Everything this commit covers was committed before: nothing to send.
        await txn.abort();
        return { ...o, offset: floor.toString() };
      }
      const topicMessages = this.outputsOf(live);
      if (topicMessages.length > 0) await txn.sendBatch({ topicMessages, acks: -1 });
      await txn.sendOffsets({
        consumerGroupId: this.opts.groupId,
        topics: [{ topic: o.topic, partitions: [{ partition: o.partition, offset: o.offset }] }],
      });
      await txn.commit();
      for (const e of live) {
        this.staged.get(e)?.resolve();
        this.staged.delete(e);
      }
      state.failures = 0;
      this.opts.onTransaction?.("committed", live.length);
      return o;
    } catch (err) {
      await this.failed(o.partition, state, txn, err, entries.length);
      return undefined;
    }
  }

  private outputsOf(entries: readonly OffsetEntry[]): TopicMessages[] {
    const byTopic = new Map<string, Message[]>();
    for (const e of entries) {
      for (const { topic, message } of this.staged.get(e)?.outputs ?? []) {
        const list = byTopic.get(topic) ?? [];
        list.push(message);
        byTopic.set(topic, list);
      }
    }
    return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
  }

  private async failed(
    partition: number,
    state: PartitionState,
    txn: Transaction | undefined,
    err: unknown,
    messages: number,
  ): Promise<void> {
    if (txn?.isActive()) await txn.abort().catch(() => undefined);
    // Its state is unknown now; the next transaction starts from a new producer (and re-checks the offset).
    await this.dropProducer(partition);
    if (this.closed) return;
    if (isFenced(err)) {
      state.fencedUntil = Date.now() + this.opts.sessionTimeoutMs;
      this.opts.onTransaction?.("fenced", messages);
      this.log.info(
        { partition },
        "transaction fenced: another member took this partition's transactional id",
      );
      this.retryLater(state, this.opts.sessionTimeoutMs);
      return;
    }
    state.failures++;
    this.opts.onTransaction?.("aborted", messages);
    if (state.failures >= MAX_FAILURES) {
      this.opts.onFatal(
        new LayercacheError(
          "SERVICE_UNAVAILABLE",
          `${state.failures} transactions failed on partition ${partition}`,
          {
            cause: err,
            retriable: true,
          },
        ),
      );
      return;
    }
    this.log.warn({ err, partition, failures: state.failures }, "transaction aborted; its outputs go again");
    this.retryLater(state, RETRY_DELAY_MS * state.failures);
  }

  private retryLater(state: PartitionState, ms: number): void {
    clearTimeout(state.retry);
    state.retry = setTimeout(() => this.opts.requestCommit(), ms);
    state.retry.unref();
  }

  private supersede(partition: number, entries: readonly OffsetEntry[]): void {
    for (const e of entries) {
      this.staged.get(e)?.reject(superseded(partition, e.offset));
      this.staged.delete(e);
    }
  }

  private async release(partition: number, entries: readonly OffsetEntry[]): Promise<void> {
    const state = this.partitions.get(partition);
    await state?.busy;
    this.supersede(partition, entries);
    if (state) clearTimeout(state.retry);
    // A later assignment of this partition starts over: new producer, offset checked again.
    if (this.partitions.get(partition) === state) this.partitions.delete(partition);
    if (state?.producer) await disconnect(state.producer, this.log);
  }

  private async connect(partition: number): Promise<Producer> {
    const producer = this.kafka.producer({
      transactionalId: transactionalIdFor(this.opts.groupId, this.opts.topic, partition),
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      // Transactional sends are idempotent whatever this says; false only skips kafkajs's extra
      // non-transactional producer id at connect and keeps its retries bounded (a failed
      // transaction is aborted and sent again).
      idempotent: false,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    return producer;
  }

  private async dropProducer(partition: number): Promise<void> {
    const state = this.partitions.get(partition);
    if (!state?.producer) return;
    const producer = state.producer;
    state.producer = undefined;
    state.verified = false;
    await disconnect(producer, this.log);
  }

  /** The group's committed offset of `partition`, undefined when it has none. */
  private async committedOffset(partition: number): Promise<bigint | undefined> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    const [topic] = await this.admin.fetchOffsets({ groupId: this.opts.groupId, topics: [this.opts.topic] });
    const offset = topic?.partitions.find((p) => p.partition === partition)?.offset;
    return offset === undefined || BigInt(offset) < 0n ? undefined : BigInt(offset);
  }
}

function deferred(): Staged {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Settled outputs are awaited by the writer's caller; one dropped before anyone looked must not crash.
  promise.catch(() => undefined);
  return { outputs: [], promise, resolve, reject };
}

function superseded(partition: number, offset: bigint): LayercacheError {
  return new LayercacheError(
    "SUPERSEDED",
    `partition ${partition} offset ${offset} is answered by another transaction; output dropped`,
  );
}

async function disconnect(producer: Producer, log: Logger): Promise<void> {
  try {
    await producer.disconnect();
  } catch (err) {
    log.warn({ err }, "transactional producer disconnect failed");
  }
}

/** Whether a kafkajs error (or one it wraps) says this producer was fenced. */
export function isFenced(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const { type, code } = e as { type?: unknown; code?: unknown };
    if ((typeof type === "string" && FENCED.has(type)) || code === PRODUCER_FENCED_CODE) return true;
    e =
      (e as { cause?: unknown; originalError?: unknown }).cause ??
      (e as { originalError?: unknown }).originalError;
  }
  return false;
}
