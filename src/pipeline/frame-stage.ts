/**
 * What happens to one consumed message on the main thread: decode it and fit
 * it to the model input, or dead-letter it with the codec's reason; gather
 * frames into micro-batches for the inference thread; turn each batch's
 * outcomes into Prediction records and write them. The promise `handle`
 * returns settles when the message's output is delivered (acknowledged by the
 * broker, or committed in a transaction with its offset: outputs.ts), which
 * is what lets the consumer commit its offset or move on.
 */
import { invalidReason } from "../codec/envelope.ts";
import type { EncodedMessage } from "../codec/envelope.ts";
import { decodeFrame, frameToModelInput } from "../codec/frame.ts";
import { encodePrediction } from "../codec/prediction.ts";
import type { Prediction } from "../codec/prediction.ts";
import type { Config } from "../config/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { ConsumedMessage } from "../transport/kafka/consumer.ts";
import type { DeadLetterPublisher } from "../transport/kafka/dead-letter.ts";
import type { OutputWriter, SourcedMessage } from "../transport/kafka/outputs.ts";
import { MicroBatcher } from "./batcher.ts";
import type { ModelInfo, OutcomeColumns } from "./inference-protocol.ts";
import type { FrameHints } from "../slo/controller.ts";
import type { FrameMeta } from "./predictions.ts";
import { toPrediction } from "./predictions.ts";

/** Batches handed to the inference thread at once: one running, one queued, so it never waits for us. */
const INFERENCE_SLOTS = 2;

export type StageConfig = Pick<
  Config,
  "batchMaxFrames" | "batchLingerMs" | "maxMessageBytes" | "predictionsTopic" | "workerId"
>;

/** What the stage reports as it goes (metrics); every call is cheap and synchronous. */
export interface StageObserver {
  /** A message was taken from the frames topic, good or bad. */
  consumed(): void;
  /** A micro-batch came back from the model. */
  batch(outcomes: OutcomeColumns): void;
  /** A prediction was delivered. */
  predicted(prediction: Prediction): void;
  /** A dead letter was delivered. */
  deadLettered(reason: string): void;
}

export interface StageDeps {
  model: ModelInfo;
  /** `strictness`: per frame (SLO mode, docs/slo.md); absent when every frame is strict. */
  infer: (ids: string[], pixels: Uint8Array, strictness?: Float32Array) => Promise<OutcomeColumns>;
  /** The strictness a frame is answered at, from SLO mode and its own hints (slo/loop.ts). */
  strictness?: (hints: FrameHints, nowMs: number) => number;
  outputs: OutputWriter;
  deadLetters: DeadLetterPublisher;
  observer?: StageObserver;
  log: Logger;
}

interface QueuedFrame extends FrameMeta {
  hints: FrameHints;
  source: ConsumedMessage;
  /** Planar model input, channels x height x width bytes. */
  pixels: Uint8Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface StageCounters {
  frames: number;
  predictions: number;
  deadLetters: number;
  batches: number;
}

export class FrameStage {
  readonly counters: StageCounters = { frames: 0, predictions: 0, deadLetters: 0, batches: 0 };
  private readonly batcher: MicroBatcher<QueuedFrame>;
  private readonly frameSize: number;

  constructor(
    private readonly config: StageConfig,
    private readonly deps: StageDeps,
  ) {
    const { channels, height, width } = deps.model.input;
    this.frameSize = channels * height * width;
    this.batcher = new MicroBatcher({
      maxItems: config.batchMaxFrames,
      lingerMs: config.batchLingerMs,
      maxConcurrent: INFERENCE_SLOTS,
      run: (items) => this.runBatch(items),
    });
  }

  /** Settles when this message's prediction or dead letter is delivered; rejects as its write does. */
  handle(message: ConsumedMessage): Promise<void> {
    this.deps.observer?.consumed();
    return new Promise<void>((resolve, reject) => {
      let frame: QueuedFrame;
      try {
        frame = this.decode(message, resolve, reject);
      } catch (err) {
        const reason = invalidReason(err);
        // Anything but a bad frame (a bug, a model the codec cannot feed) stops the worker.
        if (reason === undefined) throw err;
        this.deps.log.debug({ reason, partition: message.partition, offset: message.offset }, "dead letter");
        this.deps.deadLetters.publish(message, reason, (err as Error).message).then(() => {
          this.counters.deadLetters++;
          this.deps.observer?.deadLettered(reason);
          resolve();
        }, reject);
        return;
      }
      this.counters.frames++;
      this.batcher.add(frame);
    });
  }

  /** Shutdown: send partial batches now instead of lingering, and wait until every batch has run. */
  async flush(): Promise<void> {
    this.batcher.flush();
    await this.batcher.idle();
  }

  private decode(message: ConsumedMessage, resolve: () => void, reject: (err: unknown) => void): QueuedFrame {
    const frame = decodeFrame(message.value, message.headers, {
      maxMessageBytes: this.config.maxMessageBytes,
    });
    const pixels = frameToModelInput(frame, this.deps.model.input);
    return {
      id: frame.id,
      producedAt: frame.producedAt,
      label: frame.label,
      hints: { deadlineMs: frame.deadlineMs, minAgreement: frame.minAgreement },
      receivedAt: message.receivedAt,
      source: message,
      pixels,
      resolve,
      reject,
    };
  }

  /** Holds an inference slot only while the model works; publishing overlaps the next batch. */
  private async runBatch(items: QueuedFrame[]): Promise<void> {
    const pixels = new Uint8Array(items.length * this.frameSize);
    items.forEach((f, i) => pixels.set(f.pixels, i * this.frameSize));
    let outcomes: OutcomeColumns;
    try {
      outcomes = await this.deps.infer(
        items.map((f) => f.id),
        pixels,
        this.strictness(items),
      );
    } catch (err) {
      for (const f of items) f.reject(err);
      return;
    }
    this.counters.batches++;
    this.deps.observer?.batch(outcomes);
    void this.publish(items, outcomes);
  }

  /** Per-frame strictness, or undefined when every frame is strict (the common case costs nothing). */
  private strictness(items: QueuedFrame[]): Float32Array | undefined {
    const of = this.deps.strictness;
    if (!of) return undefined;
    const now = Date.now();
    const values = Float32Array.from(items, (f) => of(f.hints, now));
    return values.every((s) => s === 1) ? undefined : values;
  }

  private async publish(items: QueuedFrame[], outcomes: OutcomeColumns): Promise<void> {
    let predictions: Prediction[];
    let written: Promise<void>[];
    try {
      const now = Date.now();
      predictions = items.map((f, i) =>
        toPrediction(f, outcomes, i, this.deps.model, this.config.workerId, now),
      );
      const outputs: SourcedMessage[] = predictions.map((p, i) => {
        const encoded: EncodedMessage = encodePrediction(p);
        return {
          source: items[i]!.source,
          message: { key: p.frameId, value: encoded.value, headers: encoded.headers },
        };
      });
      written = this.deps.outputs.write(this.config.predictionsTopic, outputs);
    } catch (err) {
      for (const f of items) f.reject(err);
      return;
    }
    // Exactly once, the frames of one batch go in their own partitions' transactions: each settles alone.
    const results = await Promise.allSettled(written);
    results.forEach((r, i) => {
      const f = items[i]!;
      if (r.status === "rejected") {
        f.reject(r.reason);
        return;
      }
      this.counters.predictions++;
      this.deps.observer?.predicted(predictions[i]!);
      f.resolve();
    });
  }
}
