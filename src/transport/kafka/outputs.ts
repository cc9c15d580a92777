/**
 * Where the pipeline writes what a consumed message produced (its prediction
 * or its dead letter). `write` returns one promise per output, settled once
 * that output counts as delivered: acknowledged by the broker (at least once,
 * `AcknowledgedOutputs`), or committed in a transaction together with its
 * input offset (exactly once, `transactions.ts`). A promise rejected with
 * SUPERSEDED means the output was dropped because its input is answered by
 * someone else; any other rejection is a failure.
 */
import type { ConsumedMessage } from "./consumer.ts";
import type { Message, OutputProducer } from "./producer.ts";

export interface SourcedMessage {
  /** The consumed message this output answers. */
  source: ConsumedMessage;
  message: Message;
}

export interface OutputWriter {
  write(topic: string, outputs: readonly SourcedMessage[]): Promise<void>[];
}

/** At least once: one idempotent send per call; every output is delivered once the broker acknowledged it. */
export class AcknowledgedOutputs implements OutputWriter {
  constructor(private readonly producer: OutputProducer) {}

  write(topic: string, outputs: readonly SourcedMessage[]): Promise<void>[] {
    const sent = this.producer.send(
      topic,
      outputs.map((o) => o.message),
    );
    return outputs.map(() => sent);
  }
}
