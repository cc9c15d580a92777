/**
 * `layercache worker`: the Kafka worker, wired. The main thread consumes
 * frames, decodes them, micro-batches them for the inference thread, and
 * writes predictions and dead letters; offsets are committed once their
 * outputs are acknowledged (at least once), or in the same transaction as
 * their outputs (exactly once: transport/kafka/transactions.ts).
 *
 * Telemetry: an HTTP server on `metricsPort` (unless "off") serves
 * Prometheus `/metrics` and `/healthz`, which answers 200 only while the
 * worker runs, its consumer is in the group and its inference thread is
 * alive. It starts first (so a probe sees "starting" while the model loads)
 * and closes last.
 *
 * Shutdown is ordered and runs once however often it is asked for: stop
 * fetching; drain (partial batches go at once, every frame in flight is
 * answered and delivered, bounded by shutdownTimeoutMs); commit what is
 * done; leave the group and disconnect; close the inference thread. A fatal
 * error (inference thread died, broker refused a write) takes the same path,
 * committing only what was delivered, and `done` rejects with it.
 */
import { cacheOptions } from "../cache/options.ts";
import type { CacheOptionsInput } from "../cache/options.ts";
import type { Config } from "../config/index.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { HealthReport } from "../telemetry/http.ts";
import { TelemetryServer } from "../telemetry/http.ts";
import type { Logger } from "../telemetry/logger.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";
import type { Kafka } from "kafkajs";
import { createKafka } from "../transport/kafka/client.ts";
import type { FrameConsumerOptions } from "../transport/kafka/consumer.ts";
import { FrameConsumer } from "../transport/kafka/consumer.ts";
import { DeadLetterPublisher } from "../transport/kafka/dead-letter.ts";
import type { OutputWriter } from "../transport/kafka/outputs.ts";
import { AcknowledgedOutputs } from "../transport/kafka/outputs.ts";
import { OutputProducer } from "../transport/kafka/producer.ts";
import { TransactionalOutputs } from "../transport/kafka/transactions.ts";
import type { StageCounters, StageObserver } from "./frame-stage.ts";
import { FrameStage } from "./frame-stage.ts";
import { InferenceClient } from "./inference-client.ts";
import type { InferenceInit, ModelInfo } from "./inference-protocol.ts";
import { WorkerMetrics } from "./metrics.ts";
import { SloLoop } from "../slo/loop.ts";

export interface WorkerOptions {
  /** Root logger; by default one is made from the config (level, worker id). */
  logger?: Logger;
  /** Cache tunables beyond those in the config (tests, benchmarks). */
  cache?: CacheOptionsInput;
}

export type WorkerStatus = "starting" | "running" | "stopping" | "stopped" | "failed";

export interface RunningWorker {
  readonly workerId: string;
  readonly model: ModelInfo;
  /** The port /metrics and /healthz are served on (the one picked, for port 0); undefined when off. */
  readonly metricsPort: number | undefined;
  /** Ordered shutdown; safe to call any number of times, resolves when it is complete. */
  stop(): Promise<void>;
  /** Settles once the worker has stopped: resolves after `stop()`, rejects with the error that stopped it. */
  readonly done: Promise<void>;
  counters(): StageCounters & { inFlight: number };
  /** What /healthz answers. */
  health(): HealthReport;
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

/** Where outputs go and how offsets are committed, by delivery mode. */
interface Delivery {
  outputs: OutputWriter;
  consumer: Pick<FrameConsumerOptions, "commit" | "onAssignment">;
  close: () => Promise<void>;
}

class PipelineWorker implements RunningWorker {
  readonly done: Promise<void>;
  private settleDone!: (err?: Error) => void;
  private readonly log: Logger;
  private readonly metrics: WorkerMetrics;
  private readonly slo: SloLoop;
  private telemetry: TelemetryServer | undefined;
  private inference: InferenceClient | undefined;
  private delivery: Delivery | undefined;
  private consumer: FrameConsumer | undefined;
  private stage: FrameStage | undefined;
  private fatal: Error | undefined;
  private status: WorkerStatus = "starting";
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
    this.metrics = new WorkerMetrics(config, {
      inFlight: () => this.consumer?.inFlightCount ?? 0,
      pausedPartitions: () => this.consumer?.pausedCount ?? 0,
      lag: () => this.consumer?.lag ?? new Map<number, number>(),
      audit: () => this.inference?.audit.values() ?? [],
      exits: () => this.inference?.exits ?? [],
      model: () => this.inference?.model,
      sharing: () => this.inference?.sharing,
      driftAlarms: () => (this.inference?.driftAlarms ?? 0) + (this.inference?.sharing?.driftAlarms ?? 0),
      examplesRejected: () =>
        (this.inference?.examplesRejected ?? 0) + (this.inference?.sharing?.examplesRejected ?? 0),
      slo: () => this.slo.strictness,
    });
    this.slo = new SloLoop({
      ...(config.sloP95Ms !== undefined
        ? { controller: { objectiveMs: config.sloP95Ms, periodMs: config.sloPeriodMs } }
        : {}),
      agreements: { target: config.targetAgreement, floor: config.floorAgreement },
      urgentMs: config.deadlineMarginMs,
      lag: () => {
        let total = 0;
        for (const lag of this.consumer?.lag.values() ?? []) total += lag;
        return total;
      },
      onStep: (step) => this.metrics.sloStep(step),
      log: componentLogger(root, "slo"),
    });
  }

  get workerId(): string {
    return this.config.workerId;
  }

  get model(): ModelInfo {
    if (!this.inference) throw new Error("worker not started");
    return this.inference.model;
  }

  get metricsPort(): number | undefined {
    return this.telemetry?.port;
  }

  counters(): StageCounters & { inFlight: number } {
    const none = { frames: 0, predictions: 0, deadLetters: 0, batches: 0 };
    return { ...(this.stage?.counters ?? none), inFlight: this.consumer?.inFlightCount ?? 0 };
  }

  health(): HealthReport {
    const consuming = this.consumer?.consuming ?? false;
    const inference = this.inference?.alive ?? false;
    return {
      healthy: this.status === "running" && consuming && inference,
      status: this.status,
      workerId: this.config.workerId,
      delivery: this.config.delivery,
      consuming,
      inference,
      partitions: this.consumer?.assigned ?? [],
      inFlight: this.consumer?.inFlightCount ?? 0,
    };
  }

  private inferenceInit(cache: CacheOptionsInput): InferenceInit {
    const c = this.config;
    return {
      modelDir: c.modelDir,
      intraOpThreads: c.intraOpThreads,
      cacheEnabled: c.cacheEnabled,
      cache: cacheOptions({
        targetAgreement: c.targetAgreement,
        floorAgreement: c.floorAgreement,
        confidenceLevel: c.confidenceLevel,
        auditRate: c.auditRate,
        headKind: c.headKind,
        knnPerClass: c.knnPerClass,
        knnK: c.knnK,
        // OnlineCache leaves the exact cache off whenever the cache is off.
        exactCacheEntries: c.exactCacheEntries,
        ...cache,
      }),
      logLevel: c.logLevel,
      workerId: c.workerId,
      // Cache off runs the backbone alone: nothing to share.
      ...(c.sharing && c.cacheEnabled
        ? {
            sharing: {
              redisUrl: c.redisUrl,
              keyPrefix: c.redisKeyPrefix,
              leaseTtlMs: c.leaseTtlMs,
              learnerThread: c.learnerThread,
              learnerNice: c.learnerNice,
            },
          }
        : {}),
    };
  }

  async start(cache: CacheOptionsInput): Promise<void> {
    const c = this.config;
    try {
      await this.startTelemetry();
      const inferenceLog = componentLogger(this.root, "inference");
      const inference = await InferenceClient.start(this.inferenceInit(cache), inferenceLog, (err) =>
        this.fail(err),
      );
      this.inference = inference;
      this.metrics.modelLoaded(inference.model, c.delivery);
      this.throwIfFailed();
      const kafkaLog = componentLogger(this.root, "kafka");
      const kafka = createKafka(c, kafkaLog);
      const delivery = await this.connectDelivery(kafka, kafkaLog);
      this.delivery = delivery;
      this.throwIfFailed();
      const metrics = this.metrics;
      const slo = this.slo;
      // Every delivered prediction feeds the metrics and SLO mode's latency window.
      const observer: StageObserver = {
        consumed: () => metrics.consumed(),
        batch: (outcomes) => metrics.batch(outcomes),
        predicted: (p) => {
          metrics.predicted(p);
          slo.delivered(p.endToEndMs);
        },
        deadLettered: (reason) => metrics.deadLettered(reason),
      };
      const stage = new FrameStage(c, {
        model: inference.model,
        infer: (ids, pixels, strictness) => inference.run(ids, pixels, strictness),
        // Cache off: every frame runs the backbone; hints have nothing to choose between.
        ...(c.cacheEnabled ? { strictness: (hints, now) => slo.forFrame(hints, now) } : {}),
        outputs: delivery.outputs,
        deadLetters: new DeadLetterPublisher(delivery.outputs, c.deadLetterTopic, c.workerId),
        observer,
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
          ...delivery.consumer,
          onFatal: (err) => this.fail(err),
        },
        kafkaLog,
      );
      await this.consumer.start();
      this.throwIfFailed();
      if (c.cacheEnabled) this.slo.start();
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.status = "running";
    this.log.info(
      {
        modelId: this.model.modelId,
        framesTopic: c.framesTopic,
        groupId: c.groupId,
        cacheEnabled: c.cacheEnabled,
        sharing: c.sharing && c.cacheEnabled,
        delivery: c.delivery,
        sloP95Ms: c.sloP95Ms ?? null,
        metricsPort: this.metricsPort,
      },
      "worker started",
    );
  }

  private async startTelemetry(): Promise<void> {
    const port = this.config.metricsPort;
    if (port === "off") return;
    this.telemetry = await TelemetryServer.start(
      port,
      { registry: this.metrics.registry, health: () => this.health() },
      componentLogger(this.root, "telemetry"),
    );
    this.log.info(
      { metricsPort: this.telemetry.port },
      `serving /metrics and /healthz on port ${this.telemetry.port}`,
    );
  }

  private async connectDelivery(kafka: Kafka, log: Logger): Promise<Delivery> {
    const c = this.config;
    if (c.delivery === "at-least-once") {
      const producer = await OutputProducer.connect(kafka, log);
      return { outputs: new AcknowledgedOutputs(producer), consumer: {}, close: () => producer.disconnect() };
    }
    const transactions = new TransactionalOutputs(
      kafka,
      {
        groupId: c.groupId,
        topic: c.framesTopic,
        sessionTimeoutMs: c.sessionTimeoutMs,
        requestCommit: () => this.consumer?.requestCommit(),
        onFatal: (err) => this.fail(err),
        onTransaction: (result) => this.metrics.transaction(result),
      },
      log,
    );
    return {
      outputs: transactions,
      consumer: {
        commit: (offsets, ledger) => transactions.commit(offsets, ledger),
        onAssignment: (change) => transactions.onAssignment(change),
      },
      close: () => transactions.close(),
    };
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
    if (this.status === "running") void this.stop();
  }

  private async shutdown(): Promise<void> {
    const t0 = performance.now();
    this.status = "stopping";
    this.log.info({ inFlight: this.consumer?.inFlightCount ?? 0 }, "stopping: no more fetching");
    this.consumer?.stopFetching();
    this.slo.stop();
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
    await this.delivery?.close();
    await this.inference?.close();
    this.status = this.fatal ? "failed" : "stopped";
    await this.telemetry?.close();
    this.log.info({ ...this.counters(), ms: Math.round(performance.now() - t0) }, "worker stopped");
    this.root.flush();
    this.settleDone(this.fatal);
  }
}
