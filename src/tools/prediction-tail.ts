/**
 * Reads the predictions topic into a PredictionSummary: its own consumer
 * group (a throwaway one by default, deleted again on stop), optionally from
 * the beginning, until a number of distinct frame ids has been seen, a
 * timeout passes or the caller aborts. Used by `layercache tail` and the demo.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Consumer, Kafka } from "kafkajs";
import { decodePrediction } from "../codec/prediction.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { runName } from "./names.ts";
import { PredictionSummary } from "./prediction-summary.ts";

export interface PredictionTailOptions {
  topic: string;
  /** A named group keeps its offsets; without one a throwaway group is made and deleted on stop. */
  groupId?: string;
  /** Where a group without committed offsets starts: the topic's beginning, or its end. */
  fromBeginning: boolean;
  /** Stop once this many distinct frame ids have been read. */
  expect?: number;
  /** Decoding limit (the config's maxMessageBytes). */
  maxMessageBytes: number;
  log: Logger;
}

/** Why `run` returned. */
export type TailEnd = "complete" | "timeout" | "aborted";

export class PredictionTail {
  readonly summary = new PredictionSummary();
  readonly groupId: string;
  private readonly consumer: Consumer;
  private readonly throwaway: boolean;
  private waiters: (() => void)[] = [];
  private failure: Error | undefined;
  private stopped: Promise<void> | undefined;

  private constructor(
    private readonly kafka: Kafka,
    private readonly opts: PredictionTailOptions,
  ) {
    this.throwaway = opts.groupId === undefined;
    this.groupId = opts.groupId ?? runName("layercache-tail");
    this.consumer = kafka.consumer({ groupId: this.groupId, maxWaitTimeInMs: 250 });
  }

  /**
   * Waits for the topic to exist (the workers may not have written to it
   * yet), then connects, subscribes and starts reading in the background.
   * Resolves undefined if `signal` aborts first.
   */
  static async start(
    kafka: Kafka,
    opts: PredictionTailOptions,
    signal?: AbortSignal,
  ): Promise<PredictionTail | undefined> {
    if (!(await topicExists(kafka, opts.topic, opts.log, signal))) return undefined;
    const tail = new PredictionTail(kafka, opts);
    await tail.begin();
    return tail;
  }

  get complete(): boolean {
    return this.opts.expect !== undefined && this.summary.distinct >= this.opts.expect;
  }

  private async begin(): Promise<void> {
    const { consumer, opts } = this;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) return;
      this.failure = new LayercacheError("SERVICE_UNAVAILABLE", `reading ${opts.topic} failed for good`, {
        cause: payload.error,
      });
      this.wake();
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [opts.topic], fromBeginning: opts.fromBeginning });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw new LayercacheError("SERVICE_UNAVAILABLE", `could not subscribe to ${opts.topic}`, {
        cause: err,
        retriable: true,
      });
    }
    let invalidLogged = 0;
    await consumer.run({
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        for (const message of batch.messages) {
          if (this.complete) break;
          const readAt = Date.now();
          try {
            const p = decodePrediction(message.value, message.headers, {
              maxMessageBytes: opts.maxMessageBytes,
            });
            this.summary.add(p, readAt);
          } catch (err) {
            if (!isLayercacheError(err, "FRAME_INVALID")) throw err;
            this.summary.addInvalid(readAt);
            // A topic full of something else would flood the log: the count is in the summary.
            if (invalidLogged++ < 5) {
              opts.log.warn(
                { partition: batch.partition, offset: message.offset, reason: err.details.reason },
                `skipped a message that is not a prediction: ${err.message}`,
              );
            }
          }
          resolveOffset(message.offset);
        }
        await heartbeat();
        this.wake();
      },
    });
  }

  /**
   * Resolves once `expect` distinct frame ids are read ("complete"), after
   * `timeoutMs` ("timeout") or when `signal` aborts ("aborted"); without
   * `expect`, only the last two end it. Rejects if the consumer failed for good.
   */
  async run(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<TailEnd> {
    const { timeoutMs, signal } = options;
    let timedOut = false;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            this.wake();
          }, timeoutMs);
    const onAbort = () => this.wake();
    signal?.addEventListener("abort", onAbort);
    try {
      for (;;) {
        if (this.failure) throw this.failure;
        if (this.complete) return "complete";
        if (signal?.aborted) return "aborted";
        if (timedOut) return "timeout";
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Leaves the group and disconnects; a throwaway group is then deleted. Safe to call twice. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.consumer.disconnect().catch((err: unknown) => {
        this.opts.log.warn({ err }, "tail consumer disconnect failed");
      });
      if (!this.throwaway) return;
      const admin = this.kafka.admin();
      try {
        await admin.connect();
        await admin.deleteGroups([this.groupId]);
      } catch (err) {
        this.opts.log.debug({ err, groupId: this.groupId }, "could not delete the tail's consumer group");
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    })();
    return this.stopped;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** Polls the broker until `topic` exists; false if `signal` aborts first. */
async function topicExists(kafka: Kafka, topic: string, log: Logger, signal?: AbortSignal): Promise<boolean> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    for (let said = false; !signal?.aborted; said = true) {
      if ((await admin.listTopics()).includes(topic)) return true;
      if (!said) log.info({ topic }, `waiting for ${topic} to exist`);
      await sleep(500, undefined, { signal }).catch(() => undefined);
    }
    return false;
  } catch (err) {
    throw new LayercacheError("SERVICE_UNAVAILABLE", `could not list the topics of the Kafka cluster`, {
      cause: err,
      retriable: true,
    });
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
