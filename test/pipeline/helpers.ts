/**
 * What the pipeline tests share: real Fashion-MNIST frames as producers
 * would send them, a worker config bound to the test broker and unique
 * topics, and a collector that reads an output topic while a worker runs.
 */
import type { Admin, Consumer, IHeaders, Kafka, Message } from "kafkajs";
import { Partitioners } from "kafkajs";
import { encodeFrame } from "../../src/codec/frame.ts";
import type { Config } from "../../src/config/index.ts";
import { loadConfig } from "../../src/config/index.ts";
import { testSplit } from "../helpers/model.ts";
import { afterAll, beforeAll } from "vitest";
import { createTopics, kafkaBrokers, testKafka, uniqueName } from "../helpers/services.ts";

export interface TestTopics {
  frames: string;
  predictions: string;
  deadLetters: string;
  group: string;
  /** Deletes the topics and the consumer group. */
  drop: () => Promise<void>;
}

/** Unique topics (frames with `partitions` partitions) and group, created now. */
export async function testTopics(admin: Admin, prefix: string, partitions = 4): Promise<TestTopics> {
  const frames = uniqueName(`${prefix}-frames`);
  const predictions = uniqueName(`${prefix}-predictions`);
  const deadLetters = uniqueName(`${prefix}-dlq`);
  const group = uniqueName(`${prefix}-group`);
  const dropFrames = await createTopics(admin, [frames], partitions);
  const dropOutputs = await createTopics(admin, [predictions, deadLetters], 2);
  return {
    frames,
    predictions,
    deadLetters,
    group,
    drop: async () => {
      await admin.deleteGroups([group]).catch(() => undefined);
      await dropFrames();
      await dropOutputs();
    },
  };
}

/** Environment a worker (in process or child) runs with for these topics. */
export function workerEnv(topics: TestTopics, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KAFKA_BROKERS: kafkaBrokers().join(","),
    LAYERCACHE_FRAMES_TOPIC: topics.frames,
    LAYERCACHE_PREDICTIONS_TOPIC: topics.predictions,
    LAYERCACHE_DEAD_LETTER_TOPIC: topics.deadLetters,
    LAYERCACHE_GROUP_ID: topics.group,
    // Small enough that a killed worker leaves the group quickly, so its successor's join is short.
    LAYERCACHE_SESSION_TIMEOUT_MS: "6000",
    LAYERCACHE_HEARTBEAT_INTERVAL_MS: "1000",
    LAYERCACHE_METRICS_PORT: "0",
    LAYERCACHE_INTRA_OP_THREADS: "1",
    LOG_LEVEL: "warn",
    // These tests are about delivery through Kafka; sharing through Redis has its own (test/sharing).
    LAYERCACHE_SHARING: "false",
    ...extra,
  };
}

export function workerConfig(topics: TestTopics, extra: Record<string, string> = {}): Config {
  return loadConfig(workerEnv(topics, { LAYERCACHE_WORKER_ID: uniqueName("w"), ...extra }));
}

export interface TestFrame {
  id: string;
  label: number;
  message: Message;
}

/** `count` test-split images from `start` as RAW8 frame messages, keyed by frame id. */
export async function fashionFrames(prefix: string, count: number, start = 0): Promise<TestFrame[]> {
  const data = await testSplit();
  const size = data.height * data.width;
  return Array.from({ length: count }, (_, k) => {
    const i = (start + k) % data.count;
    const id = `${prefix}-${start + k}`;
    const encoded = encodeFrame({
      id,
      producedAt: Date.now(),
      width: data.width,
      height: data.height,
      channels: 1,
      pixels: data.images.subarray(i * size, (i + 1) * size),
      label: data.labels[i]!,
    });
    return {
      id,
      label: data.labels[i]!,
      message: { key: id, value: encoded.value, headers: encoded.headers },
    };
  });
}

export async function produce(kafka: Kafka, topic: string, messages: Message[]): Promise<void> {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 500) {
      await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 500) });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface Collected {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  /** Unix epoch milliseconds at which the collector read it. */
  readAt: number;
}

/**
 * Reads a topic from the beginning in its own group, keeping every message, until stopped. It reads
 * committed records only (read_committed, as readers of exactly-once output must): records of
 * aborted or open transactions are never seen, unless `readUncommitted` says otherwise.
 */
export class TopicCollector {
  readonly messages: Collected[] = [];
  private readonly consumer: Consumer;
  private waiters: (() => void)[] = [];
  /** Per partition, the offset after the last record read or stepped over (transaction markers). */
  private readonly position = new Map<number, number>();

  constructor(
    kafka: Kafka,
    private readonly topic: string,
    options: { readUncommitted?: boolean } = {},
  ) {
    this.consumer = kafka.consumer({
      groupId: uniqueName("collector"),
      maxWaitTimeInMs: 200,
      readUncommitted: options.readUncommitted ?? false,
    });
  }

  async start(): Promise<this> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [this.topic], fromBeginning: true });
    // Batches of only markers or aborted records reach no eachMessage, but do end a batch.
    this.consumer.on(this.consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      const next = Number(payload.lastOffset) + 1;
      if (next > (this.position.get(payload.partition) ?? 0)) this.position.set(payload.partition, next);
      this.wake();
    });
    await this.consumer.run({
      eachMessage: async ({ partition, message }) => {
        const { offset, key, value } = message;
        this.messages.push({
          partition,
          offset,
          key,
          value,
          headers: message.headers ?? {},
          readAt: Date.now(),
        });
        this.wake();
      },
    });
    return this;
  }

  /**
   * Resolves once this collector has read everything the topic holds now. After
   * `committedToEnd`, that is every output whose input was committed, so a test
   * can assert on what it has instead of waiting for what may never come. (With
   * transactions, only once none is open: an open one holds read_committed
   * readers back.)
   */
  async caughtUp(admin: Admin): Promise<void> {
    const ends = await admin.fetchTopicOffsets(this.topic);
    await this.until(() => ends.every((e) => (this.position.get(e.partition) ?? 0) >= Number(e.high)));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once `done(messages)` holds; the test's own timeout bounds the wait. */
  async until(done: (messages: readonly Collected[]) => boolean): Promise<void> {
    while (!done(this.messages)) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }
}

/** A header's value as text (kafkajs hands Buffers, or arrays when repeated). */
export function headerText(headers: IHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.map(String).join(",") : String(v);
}

/** Resolves once `group` has committed every partition of `topic` to its end (polling the broker). */
export async function committedToEnd(admin: Admin, group: string, topic: string): Promise<void> {
  for (;;) {
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    const at = (p: number) => committed?.partitions.find((c) => c.partition === p)?.offset;
    if (ends.every((e) => e.low === e.high || at(e.partition) === e.high)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Resolves once the fixture's group has committed every frame in its topic
 * and `collector` has read every answer written by then: all that was
 * produced so far is answered and read back.
 */
export async function answeredToEnd(fixture: PipelineFixture, collector: TopicCollector): Promise<void> {
  await committedToEnd(fixture.admin, fixture.topics.group, fixture.topics.frames);
  await collector.caughtUp(fixture.admin);
}

export interface PipelineFixture {
  kafka: Kafka;
  /** Connected in beforeAll, disconnected in afterAll. */
  admin: Admin;
  /** Unique topics and group, created in beforeAll and deleted in afterAll. */
  topics: TestTopics;
}

/**
 * Registers the hooks every pipeline test file needs: an admin client and a
 * fresh set of topics. Read `admin` and `topics` inside tests, not at describe time.
 */
export function pipelineFixture(prefix: string, partitions = 4): PipelineFixture {
  const fixture = { kafka: testKafka() } as PipelineFixture;
  beforeAll(async () => {
    fixture.admin = fixture.kafka.admin();
    await fixture.admin.connect();
    fixture.topics = await testTopics(fixture.admin, prefix, partitions);
  });
  afterAll(async () => {
    await fixture.topics?.drop();
    await fixture.admin?.disconnect();
  });
  return fixture;
}
