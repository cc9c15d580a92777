/**
 * At least once, the one producer a worker writes predictions and dead
 * letters with (exactly once, transactions.ts has one per partition):
 * idempotent (the broker drops the duplicates its own retries would make),
 * `acks: -1` so a send resolves only once every in-sync replica has the
 * messages, which is what makes committing the input offsets afterwards safe.
 */
import { Partitioners } from "kafkajs";
import type { Kafka, Message, Producer } from "kafkajs";
import { LayercacheError } from "../../errors/index.ts";
import type { Logger } from "../../telemetry/logger.ts";

export type { Message } from "kafkajs";

export class OutputProducer {
  private closed = false;

  private constructor(
    private readonly producer: Producer,
    private readonly log: Logger,
  ) {}

  static async connect(kafka: Kafka, log: Logger): Promise<OutputProducer> {
    const producer = kafka.producer({
      idempotent: true,
      // kafkajs keeps sequence numbers right only with one request in flight per broker.
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    try {
      await producer.connect();
    } catch (err) {
      throw new LayercacheError("SERVICE_UNAVAILABLE", "the Kafka producer could not connect", {
        cause: err,
        retriable: true,
      });
    }
    return new OutputProducer(producer, log);
  }

  /** Resolves when the broker has acknowledged every message (acks from all in-sync replicas). */
  async send(topic: string, messages: Message[]): Promise<void> {
    if (messages.length === 0) return;
    if (this.closed) throw new LayercacheError("SHUTTING_DOWN", `producer closed; ${topic} not written`);
    try {
      await this.producer.send({ topic, acks: -1, messages });
    } catch (err) {
      throw new LayercacheError("SERVICE_UNAVAILABLE", `could not write ${messages.length} to ${topic}`, {
        cause: err,
        retriable: true,
      });
    }
  }

  async disconnect(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.producer.disconnect();
    } catch (err) {
      this.log.warn({ err }, "producer disconnect failed");
    }
  }
}
