/**
 * `layercache worker`: the Kafka worker, wired. The main thread consumes
 * frames, decodes them, micro-batches them for the inference thread, and
 * publishes predictions and dead letters; offsets are committed once their
 * outputs are acknowledged (at least once).
 *
 * Shutdown is ordered and runs once however often it is asked for: stop
 * fetching; drain (partial batches go at once, every frame in flight is
 * answered and acknowledged, bounded by shutdownTimeoutMs); commit what is
 * done; leave the group and disconnect; close the inference thread. A fatal
 * error (inference thread died, broker refused a write) takes the same path,
 * committing only what was acknowledged, and `done` rejects with it.
 */
import { cacheOptions } from "../cache/options.ts";
import type { CacheOptionsInput } from "../cache/options.ts";
import type { Config } from "../config/index.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";
import { createKafka } from "../transport/kafka/client.ts";
import { FrameConsumer } from "../transport/kafka/consumer.ts";
import { DeadLetterPublisher } from "../transport/kafka/dead-letter.ts";
import { OutputProducer } from "../transport/kafka/producer.ts";
import type { StageCounters } from "./frame-stage.ts";
import { FrameStage } from "./frame-stage.ts";
import { InferenceClient } from "./inference-client.ts";
import type { InferenceInit, ModelInfo } from "./inference-protocol.ts";

export interface WorkerOptions {
  /** Root logger; by default one is made from the config (level, worker id). */
  logger?: Logger;
  /** Cache tunables beyond those in the config (tests, benchmarks). */
  cache?: CacheOptionsInput;
}

export interface RunningWorker {
  readonly workerId: string;
  readonly model: ModelInfo;
  /** Ordered shutdown; safe to call any number of times, resolves when it is complete. */
  stop(): Promise<void>;
  /** Settles once the worker has stopped: resolves after `stop()`, rejects with the error that stopped it. */
  readonly done: Promise<void>;
  counters(): StageCounters & { inFlight: number };
}

/** Starts a worker; resolves once the model is loaded and the consumer has joined its group. */
export async function startWorker(config: Config, options: WorkerOptions = {}): Promise<RunningWorker> {
  const worker = new PipelineWorker(
    config,
    options.logger ?? createLogger({ level: config.logLevel, workerId: config.workerId }),
  );
  await worker.start(options.cache ?? {});
  return worker;
}

class PipelineWorker implements RunningWorker {
  readonly done: Promise<void>;
  private settleDone!: (err?: Error) => void;
  private readonly log: Logger;
  private inference: InferenceClient | undefined;
  private producer: OutputProducer | undefined;
  private consumer: FrameConsumer | undefined;
  private stage: FrameStage | undefined;
  private fatal: Error | undefined;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly config: Config,
    private readonly root: Logger,
  ) {
    this.log = componentLogger(root, "pipeline");
    this.done = new Promise((resolve, reject) => {
      this.settleDone = (err) => (err ? reject(err) : resolve());
    });
    // Observers attach when they like; an unobserved failure must not crash the process.
    this.done.catch(() => undefined);
  }

  get workerId(): string {
    return this.config.workerId;
  }

  get model(): ModelInfo {
    if (!this.inference) throw new Error("worker not started");
    return this.inference.model;
  }

  counters(): StageCounters & { inFlight: number } {
    const none = { frames: 0, predictions: 0, deadLetters: 0, batches: 0 };
    return { ...(this.stage?.counters ?? none), inFlight: this.consumer?.inFlightCount ?? 0 };
  }

  private inferenceInit(cache: CacheOptionsInput): InferenceInit {
    const c = this.config;
    return {
      modelDir: c.modelDir,
      intraOpThreads: c.intraOpThreads,
      cacheEnabled: c.cacheEnabled,
      cache: cacheOptions({
        targetAgreement: c.targetAgreement,
        confidenceLevel: c.confidenceLevel,
        auditRate: c.auditRate,
        ...cache,
      }),
      logLevel: c.logLevel,
      workerId: c.workerId,
    };
  }

  async start(cache: CacheOptionsInput): Promise<void> {
    const c = this.config;
    try {
      const inferenceLog = componentLogger(this.root, "inference");
      const inference = await InferenceClient.start(this.inferenceInit(cache), inferenceLog, (err) =>
        this.fail(err),
      );
      this.inference = inference;
      this.throwIfFailed();
      const kafkaLog = componentLogger(this.root, "kafka");
      const kafka = createKafka(c, kafkaLog);
      const producer = await OutputProducer.connect(kafka, kafkaLog);
      this.producer = producer;
      this.throwIfFailed();
      const stage = new FrameStage(c, {
        model: inference.model,
        infer: (ids, pixels) => inference.run(ids, pixels),
        producer,
        deadLetters: new DeadLetterPublisher(producer, c.deadLetterTopic, c.workerId),
        log: this.log,
      });
      this.stage = stage;
      this.consumer = new FrameConsumer(
        kafka,
        {
          groupId: c.groupId,
          topic: c.framesTopic,
          sessionTimeoutMs: c.sessionTimeoutMs,
          heartbeatIntervalMs: c.heartbeatIntervalMs,
          inFlightMaxFrames: c.inFlightMaxFrames,
          handle: (m) => stage.handle(m),
          onFatal: (err) => this.fail(err),
        },
        kafkaLog,
      );
      await this.consumer.start();
      this.throwIfFailed();
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.log.info(
      {
        modelId: this.model.modelId,
        framesTopic: c.framesTopic,
        groupId: c.groupId,
        cacheEnabled: c.cacheEnabled,
      },
      "worker started",
    );
    this.started = true;
  }

  /** A failure reported while starting aborts the start (the caller gets it, and stop() cleans up). */
  private throwIfFailed(): void {
    if (this.fatal) throw this.fatal;
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private fail(err: Error): void {
    // Writes cut off by a shutdown that timed out: already accounted for.
    if (this.fatal || (this.stopping && isLayercacheError(err, "SHUTTING_DOWN"))) return;
    this.fatal = err;
    this.log.error({ err }, "fatal error: stopping the worker");
    if (this.started) void this.stop();
  }

  private async shutdown(): Promise<void> {
    const t0 = performance.now();
    this.log.info({ inFlight: this.consumer?.inFlightCount ?? 0 }, "stopping: no more fetching");
    this.consumer?.stopFetching();
    const flushed = this.stage?.flush();
    const drained = (await this.consumer?.drain(this.config.shutdownTimeoutMs)) ?? true;
    if (!drained) {
      const inFlight = this.consumer?.inFlightCount ?? 0;
      // Not lost (uncommitted, so delivered again), but not a clean stop either: `done` rejects.
      this.fatal ??= new LayercacheError(
        "SHUTTING_DOWN",
        `${inFlight} frames still in flight after ${this.config.shutdownTimeoutMs} ms; left uncommitted`,
      );
      this.log.warn({ inFlight }, this.fatal.message);
    } else await flushed;
    await this.consumer?.commitDone();
    await this.consumer?.disconnect();
    await this.producer?.disconnect();
    await this.inference?.close();
    this.log.info({ ...this.counters(), ms: Math.round(performance.now() - t0) }, "worker stopped");
    this.root.flush();
    this.settleDone(this.fatal);
  }
}
