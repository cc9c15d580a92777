/**
 * Dead letters: a message the worker cannot use is copied to the dead-letter
 * topic as it arrived (key, value bytes, headers), with headers saying why
 * and where it came from. The reason is a stable code (schemas/README.md,
 * "Rejections"); the message is for people and is clipped.
 */
import type { IHeaders, Message } from "kafkajs";
import type { ConsumedMessage } from "./consumer.ts";
import type { OutputWriter, SourcedMessage } from "./outputs.ts";

export const DLQ_HEADERS = {
  reason: "layercache-dlq-reason",
  message: "layercache-dlq-message",
  sourceTopic: "layercache-source-topic",
  sourcePartition: "layercache-source-partition",
  sourceOffset: "layercache-source-offset",
  workerId: "layercache-worker-id",
} as const;

const MAX_MESSAGE_CHARS = 1_000;

export function deadLetterMessage(
  source: ConsumedMessage,
  reason: string,
  message: string,
  workerId: string,
): Message {
  // Ours come last, so a message that is itself a replayed dead letter carries the new reason.
  const headers: IHeaders = {
    ...source.headers,
    [DLQ_HEADERS.reason]: reason,
    [DLQ_HEADERS.message]:
      message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}...` : message,
    [DLQ_HEADERS.sourceTopic]: source.topic,
    [DLQ_HEADERS.sourcePartition]: String(source.partition),
    [DLQ_HEADERS.sourceOffset]: source.offset,
    [DLQ_HEADERS.workerId]: workerId,
  };
  return { key: source.key, value: source.value, headers };
}

/**
 * Publishes dead letters, gathering those of one event-loop turn (a fetched
 * batch is handed over in one turn) into one write.
 */
export class DeadLetterPublisher {
  private queue: (SourcedMessage & { resolve: () => void; reject: (err: unknown) => void })[] = [];

  constructor(
    private readonly outputs: OutputWriter,
    private readonly topic: string,
    private readonly workerId: string,
  ) {}

  /** Settles as the dead letter's write does (outputs.ts): once it is delivered. */
  publish(source: ConsumedMessage, reason: string, message: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => this.flush());
      this.queue.push({
        source,
        message: deadLetterMessage(source, reason, message, this.workerId),
        resolve,
        reject,
      });
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    let written: Promise<void>[];
    try {
      written = this.outputs.write(this.topic, batch);
    } catch (err) {
      for (const b of batch) b.reject(err);
      return;
    }
    batch.forEach((b, i) => written[i]!.then(b.resolve, b.reject));
  }
}
