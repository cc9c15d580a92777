/**
 * Training examples from every replica to the one trainer, through a capped
 * Redis Stream per model; the trainer reads them with an ExampleConsumer
 * (example-consumer.ts).
 *
 * Producers (every replica, `ExampleStream.offer`, or an `ExampleForwarder`
 * as the engine's observer) encode each example at once (example-codec.ts),
 * keep it in a bounded local buffer and send buffered examples in pipelined
 * batches of `XADD <key> MAXLEN ~ <maxLength> * e <bytes> p <producer>`. The
 * stream never holds much more than `maxLength` entries (the oldest are
 * trimmed, read or not). While Redis is unreachable nothing is sent: the
 * buffer keeps the newest `bufferCapacity` examples, drops the oldest (counted
 * in `stats.dropped`), and is sent when the connection is back. A batch that
 * fails in flight is counted as dropped rather than sent again, since Redis
 * may have stored it: an example may be lost, never duplicated.
 */
import type { CacheObserver } from "../cache/engine.ts";
import { softmaxWithTemperature } from "../cache/heads.ts";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { AuditRecord, TrainingExample } from "./example-codec.ts";
import { encodeAudit, encodeExample } from "./example-codec.ts";
import type { ConsumerOptions } from "./example-consumer.ts";
import { ExampleConsumer } from "./example-consumer.ts";
import type { StateKeys } from "./keys.ts";
import { stateKeys } from "./keys.ts";
import type { StateLayout } from "./layout.ts";
import type { StateConnection } from "./redis-connection.ts";

export type { TrainingExample } from "./example-codec.ts";

export interface ExampleStreamOptions {
  connection: StateConnection;
  prefix: string;
  modelId: string;
  layout: StateLayout;
  /** Recorded with each example (the worker id). */
  producerId: string;
  /** Which stream: the training examples (default) or the trainer's held-out evidence (evidence.ts). */
  stream?: "examples" | "evidence";
  /** Approximate cap of the stream, in examples (default 2048: about 41 MB for the bundled model). */
  maxLength?: number;
  /** Examples kept locally while Redis is unreachable (default 256). */
  bufferCapacity?: number;
  /** Examples per pipelined batch (default 32). */
  batchSize?: number;
}

/** Counts of entries: examples and audit records alike. */
export interface ProducerStats {
  /** Entries handed to `offer` or `offerAudit`. */
  offered: number;
  /** Entries Redis stored. */
  sent: number;
  /** Entries lost: buffer overflow while Redis was unreachable, or a batch that failed in flight. */
  dropped: number;
  /** Entries waiting in the local buffer or on their way to Redis now. */
  buffered: number;
}

export class ExampleStream {
  readonly keys: StateKeys;
  /** The stream's key. */
  readonly key: string;
  /** Encoded entries waiting to be sent: an example (field `e`) or an audit record (field `a`). */
  private readonly buffer: { field: "e" | "a"; bytes: Buffer }[] = [];
  private readonly counts = { offered: 0, sent: 0, dropped: 0 };
  private readonly maxLength: number;
  private readonly bufferCapacity: number;
  private readonly batchSize: number;
  private flushing: Promise<void> | undefined;
  private inFlight = 0;
  private closed = false;
  private readonly offReady: () => void;
  private readonly log: Logger;

  constructor(readonly options: ExampleStreamOptions) {
    this.keys = stateKeys(options.prefix, options.modelId);
    this.key = this.keys[options.stream ?? "examples"];
    this.maxLength = options.maxLength ?? 2_048;
    this.bufferCapacity = options.bufferCapacity ?? 256;
    this.batchSize = options.batchSize ?? 32;
    if (![this.maxLength, this.bufferCapacity, this.batchSize].every((n) => Number.isInteger(n) && n >= 1)) {
      throw new LayercacheError("CONFIG_INVALID", "example stream sizes must be positive integers");
    }
    this.log = options.connection.log.child({ model: options.modelId, stream: options.stream ?? "examples" });
    this.offReady = options.connection.onReady(() => this.pump());
  }

  get stats(): ProducerStats {
    return { ...this.counts, buffered: this.buffer.length + this.inFlight };
  }

  /** Queues one example (encoded now, so the caller may reuse its arrays) and sends soon. Never throws for Redis. */
  offer(example: TrainingExample): void {
    if (this.closed) return;
    this.enqueue("e", encodeExample(example, this.options.layout));
  }

  /** Queues a follower's audit of an early answer, for the trainer's drift check (example-codec.ts). */
  offerAudit(record: AuditRecord): void {
    if (this.closed) return;
    this.enqueue("a", encodeAudit(record, this.options.layout));
  }

  private enqueue(field: "e" | "a", bytes: Buffer): void {
    this.buffer.push({ field, bytes });
    this.counts.offered++;
    if (this.buffer.length > this.bufferCapacity) {
      const over = this.buffer.length - this.bufferCapacity;
      this.buffer.splice(0, over);
      this.counts.dropped += over;
    }
    this.pump();
  }

  /** Forgets what is buffered and not yet on its way (not counted as dropped: the caller no longer wants it). */
  discard(): void {
    this.buffer.length = 0;
  }

  /** Sends what is buffered, as far as Redis is reachable; resolves when done trying. */
  async flush(): Promise<void> {
    this.pump();
    while (this.flushing) await this.flushing;
  }

  private pump(): void {
    if (this.flushing || this.closed || this.buffer.length === 0) return;
    this.flushing = this.drain().finally(() => {
      this.flushing = undefined;
    });
  }

  private async drain(): Promise<void> {
    const { connection, producerId } = this.options;
    while (this.buffer.length > 0 && connection.ready) {
      const batch = this.buffer.splice(0, this.batchSize);
      const pipeline = connection.client.pipeline();
      for (const { field, bytes } of batch) {
        pipeline.xadd(this.key, "MAXLEN", "~", this.maxLength, "*", field, bytes, "p", producerId);
      }
      let failed = batch.length;
      let firstError: unknown;
      this.inFlight = batch.length;
      try {
        const results = (await pipeline.exec()) ?? [];
        failed = batch.length - results.filter(([err]) => !err).length;
        firstError = results.find(([err]) => err)?.[0];
      } catch (err) {
        firstError = err;
      } finally {
        this.inFlight = 0;
      }
      this.counts.sent += batch.length - failed;
      if (failed > 0) {
        this.counts.dropped += failed;
        this.log.warn(
          { dropped: failed, err: firstError instanceof Error ? firstError.message : String(firstError) },
          "training examples lost in flight",
        );
      }
    }
  }

  /** A reader in the trainers' group, named `name` (unique per trainer process). */
  consumer(name: string, options: ConsumerOptions = {}): ExampleConsumer {
    return new ExampleConsumer(
      this.options.connection,
      this.keys,
      this.options.layout,
      name,
      options,
      this.log,
    );
  }

  /** Stops sending after one last flush; what is still buffered then counts as dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    this.offReady();
    this.counts.dropped += this.buffer.length;
    this.buffer.length = 0;
  }
}

/** Where an ExampleForwarder sends what the engine shows: the Redis stream, or a replica's own learner. */
export type ExampleSink = Pick<ExampleStream, "offer" | "offerAudit">;

export interface ForwarderOptions {
  /** The cache temperature: soft targets are the backbone's softmax at it. */
  temperature: number;
  /**
   * Also send early-exit examples (frames that left through an open exit
   * teach the heads before it); set it from the cache's `teachEarlierExits`.
   * Default true.
   */
  earlyExits?: boolean;
}

/**
 * The engine's observer on replicas that do not train: what the engine shows
 * it becomes examples on the stream, as the trainer would have taken them.
 * A frame that ran the whole backbone gives a backbone (or held-out) example
 * whose target is the softmax at the cache temperature; a frame that left
 * early gives an early-exit example whose target is the answering head's output.
 * An audited early answer's verdict goes too, so that the trainer's drift
 * check sees the whole fleet's audits.
 */
export class ExampleForwarder implements CacheObserver {
  /** The soft target, sized by the first logits (the model's classes). */
  private target = new Float32Array(0);

  constructor(
    private readonly stream: ExampleSink,
    private readonly options: ForwarderOptions,
  ) {}

  onBackboneFrame(features: readonly Float32Array[], logits: Float32Array, heldOut: boolean): void {
    if (this.target.length !== logits.length) this.target = new Float32Array(logits.length);
    softmaxWithTemperature(logits, this.options.temperature, this.target);
    this.stream.offer({ kind: heldOut ? "held-out" : "backbone", features, target: this.target });
  }

  onEarlyExit(features: readonly Float32Array[], probs: Float32Array): void {
    if (this.options.earlyExits === false || features.length === 0) return;
    this.stream.offer({ kind: "early-exit", features, target: probs });
  }

  onAudit(exit: number, agreed: boolean, lenient: boolean, headsVersion: number): void {
    this.stream.offerAudit({ exit, agreed, lenient, headsVersion });
  }
}

/** Smallest probability turned into a logit (float32's smallest normal number). */
const MIN_PROBABILITY = 1.18e-38;

/**
 * Hands a received example to a trainer through its CacheObserver side, as if
 * the frame had run here. For backbone and held-out examples the logits given
 * are temperature · ln(target), so the trainer's softmax at that temperature
 * gives the target back, and a held-out example's backbone label (the argmax)
 * is unchanged; early-exit examples go to `onEarlyExit` as they are.
 */
export function deliverExample(observer: CacheObserver, example: TrainingExample, temperature: number): void {
  if (example.kind === "early-exit") {
    observer.onEarlyExit(example.features, example.target);
    return;
  }
  const logits = new Float32Array(example.target.length);
  for (let c = 0; c < logits.length; c++) {
    logits[c] = temperature * Math.log(Math.max(example.target[c]!, MIN_PROBABILITY));
  }
  observer.onBackboneFrame(example.features, logits, example.kind === "held-out");
}
