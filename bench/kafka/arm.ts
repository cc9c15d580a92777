/**
 * One arm of the Kafka benchmark: fresh topics (frames with 4 partitions,
 * predictions, dead letters), a fresh consumer group and Redis key prefix,
 * `layercache worker` replicas as child processes with the cache on or off,
 * the frames, and a reader of every prediction until each frame has one.
 *
 * Two ways to load the worker:
 *
 * - pre-produced (default): every frame is in the topic before the workers
 *   start, so they run flat out from their first fetch and the producer never
 *   shares the cores with them; throughput counts from the first prediction
 *   to the last. End-to-end latency is then mostly the wait in the topic.
 * - paced (`rate`): the workers start and join first, then frames arrive at
 *   a fixed rate; end-to-end latency is what a frame sees at that load.
 *
 * Everything the arm created (workers, the reader, topics, group, Redis keys)
 * is removed before it returns or throws.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Kafka } from "kafkajs";
import type { Config } from "../../src/config/index.ts";
import type { FieldKey } from "../../src/config/fields.ts";
import type { Logger } from "../../src/telemetry/logger.ts";
import type { ProduceResult, RatePhase } from "../../src/tools/frame-producer.ts";
import { produceFrames } from "../../src/tools/frame-producer.ts";
import type { FrameSource } from "../../src/tools/frame-source.ts";
import { ROOT, projectBrokerPid } from "../../src/tools/local-services.ts";
import { runName } from "../../src/tools/names.ts";
import { createRunTopics, dropRun } from "../../src/tools/run-topics.ts";
import type { SummarySnapshot } from "../../src/tools/prediction-summary.ts";
import type { TailEnd } from "../../src/tools/prediction-tail.ts";
import { PredictionTail } from "../../src/tools/prediction-tail.ts";
import { WorkerReplica, describe, replicaEnv } from "../../src/tools/worker-replica.ts";
import type { Progress } from "../lib/progress.ts";
import { progress } from "../lib/progress.ts";
import type { ThreadTimes, WorkerThread } from "../lib/thread-cpu.ts";
import {
  noWorkerCpu,
  processCpuSeconds,
  sampleThreads,
  splitWorkerCpu,
  threadRoles,
} from "../lib/thread-cpu.ts";
import { FrameLog } from "./frame-log.ts";
import { deleteKeysUnder } from "../../src/tools/redis-keys.ts";
import { Teardown } from "./teardown.ts";

/** Loading the model and joining the group, on a busy 2-core machine. */
const WORKER_START_TIMEOUT_MS = 180_000;

export type ArmName = "cacheOff" | "cacheOn";

export interface ArmPlan {
  arm: ArmName;
  /** 0-based repeat this arm belongs to. */
  repeat: number;
  frames: number;
  workers: number;
  /** onnxruntime intra-op threads per session, in each worker. */
  threads: number;
  /**
   * Frames per second once the workers are ready, or a load profile of
   * phases; undefined: all produced before they start.
   */
  rate?: number | readonly RatePhase[];
  /** Worker settings on top of the arm's own (bench:slo turns SLO mode on this way). */
  overrides?: Partial<Record<FieldKey, string>>;
  /** Name in progress lines and run names; defaults to the arm's. */
  label?: string;
  /** Seeded order of the test split, the same in every arm; undefined sends the source in its own order. */
  shuffleSeed?: number;
  /** Position in that order of the arm's first frame (default 0). */
  firstFrame?: number;
  /**
   * Redis key prefix of cache state that outlives the arm: its workers start
   * from what an earlier arm with the same prefix learned, and the caller
   * deletes it. Default: a prefix of the arm's own, deleted with it.
   */
  statePrefix?: string;
  /** Longest wait for every frame's prediction. */
  timeoutMs: number;
}

/** What every arm shares. */
export interface BenchContext {
  config: Config;
  kafka: Kafka;
  /** "host:port,..." as the workers get it. */
  brokers: string;
  redisUrl: string;
  source: FrameSource;
  log: Logger;
  say: (line: string) => void;
  signal: AbortSignal;
  showProgress: boolean;
  /** Undone when the whole benchmark ends (after every arm), in reverse order. */
  cleanup: (what: string, run: () => Promise<void>) => void;
}

/**
 * CPU seconds spent while the arm's frames were answered (from the workers'
 * readiness to the last prediction read): the workers' threads summed over
 * replicas, the project's broker if it runs here, and this benchmark process
 * (reading predictions, and producing them when paced). Null where it cannot
 * be read (no /proc).
 */
export interface ArmCpu {
  workers: Record<WorkerThread, number>;
  broker: number | null;
  bench: number;
  wallS: number;
}

export interface ArmRun {
  plan: ArmPlan;
  /** Unique name of the arm's topics, group, frame ids and Redis prefix. */
  name: string;
  snapshot: SummarySnapshot;
  frames: FrameLog;
  produced: ProduceResult;
  /** Whether a worker did not exit 0 when stopped. */
  workersFailed: boolean;
  cpu: ArmCpu | null;
}

const interrupted = () => new Error("interrupted");

/** Where one benchmark run's replicas read, write and share: topics, group and Redis prefix of its own. */
export interface RunPlace {
  /** Unique name of the run; its Redis key prefix. */
  name: string;
  topics: { frames: string; predictions: string; deadLetters: string };
  group: string;
}

/**
 * The environment of one `layercache worker` replica of a benchmark run: the
 * configuration, with the run's broker, Redis, prefix, topics and group, any
 * free metrics port (several replicas share one machine) and a log level that
 * writes the "worker started" line readiness waits for; then `overrides`.
 */
export function benchReplicaEnv(
  ctx: BenchContext,
  run: RunPlace,
  overrides: Partial<Record<FieldKey, string>>,
): NodeJS.ProcessEnv {
  const { config } = ctx;
  return replicaEnv(config, {
    kafkaBrokers: ctx.brokers,
    redisUrl: ctx.redisUrl,
    redisKeyPrefix: run.name,
    framesTopic: run.topics.frames,
    predictionsTopic: run.topics.predictions,
    deadLetterTopic: run.topics.deadLetters,
    groupId: run.group,
    metricsPort: "0",
    logLevel: ["trace", "debug", "info"].includes(config.logLevel) ? config.logLevel : "info",
    ...overrides,
  });
}

export async function runArm(ctx: BenchContext, plan: ArmPlan): Promise<ArmRun> {
  const teardown = new Teardown(ctx.say);
  try {
    return await armBody(ctx, plan, teardown);
  } finally {
    await teardown.run();
  }
}

async function armBody(ctx: BenchContext, plan: ArmPlan, teardown: Teardown): Promise<ArmRun> {
  const { kafka, say, signal } = ctx;
  const name = runName(`lcbench-${plan.label ?? (plan.arm === "cacheOn" ? "on" : "off")}`);
  const topics = { frames: `${name}.frames`, predictions: `${name}.predictions`, deadLetters: `${name}.dlq` };
  const group = `${name}-workers`;
  const label = `${plan.label ?? (plan.arm === "cacheOn" ? "cache on" : "cache off")} #${plan.repeat + 1}`;

  const admin = kafka.admin();
  teardown.push("disconnect the admin client", () => admin.disconnect());
  await admin.connect();
  await createRunTopics(admin, topics);
  teardown.push("delete the arm's topics and group", () => dropRun(admin, topics, group));
  if (plan.statePrefix === undefined) {
    teardown.push("delete the arm's Redis keys", async () => {
      await deleteKeysUnder(ctx.redisUrl, name);
    });
  }

  // Reading from the beginning before any prediction exists: every one is seen.
  const tail = await PredictionTail.start(
    kafka,
    {
      topic: topics.predictions,
      fromBeginning: true,
      expect: plan.frames,
      maxMessageBytes: ctx.config.maxMessageBytes,
      log: ctx.log,
    },
    signal,
  );
  if (!tail) throw interrupted();
  teardown.push("stop reading predictions", () => tail.stop());
  let bar: Progress = progress("", 0, false);
  const frames = FrameLog.follow(tail, name, plan.frames, (distinct) => bar.update(distinct));

  const workers = new Workers(ctx, plan, name, topics, group);
  teardown.push("stop the workers", async () => {
    await workers.stop();
  });

  const produce = (producerSignal: AbortSignal, onProgress?: (sent: number) => void) =>
    produceFrames(kafka, ctx.source, {
      topic: topics.frames,
      count: plan.frames,
      rate: plan.rate,
      shuffleSeed: plan.shuffleSeed,
      firstFrame: plan.firstFrame,
      idPrefix: name,
      signal: producerSignal,
      onProgress,
      log: ctx.log,
    });

  let produced: ProduceResult;
  let end: TailEnd;
  let cpuFrom: CpuMark;
  if (plan.rate === undefined) {
    const producing = progress(`${label} produce`, plan.frames, ctx.showProgress);
    produced = await produce(signal, (sent) => producing.update(sent)).finally(() => producing.stop());
    if (produced.aborted) throw interrupted();
    say(
      `${label}: ${produced.sent} frames in ${topics.frames} (${produced.ratePerSecond.toFixed(0)}/s); starting`,
    );
    await workers.start();
    cpuFrom = cpuMark(workers);
    bar = progress(label, plan.frames, ctx.showProgress);
    end = await workers.follow(tail, plan.timeoutMs).finally(() => bar.stop());
  } else {
    await workers.start();
    cpuFrom = cpuMark(workers);
    const pace =
      typeof plan.rate === "number"
        ? `${plan.rate} frames/s`
        : plan.rate.map((p) => `${p.frames} at ${p.rate.toFixed(0)}/s`).join(", then ");
    say(`${label}: workers ready; producing ${pace}`);
    const stopProducing = new AbortController();
    const producerFailed = new AbortController();
    const producing = produce(AbortSignal.any([signal, stopProducing.signal]));
    // A producer that fails ends the wait; awaiting `producing` below then throws its error.
    producing.catch(() => producerFailed.abort());
    bar = progress(label, plan.frames, ctx.showProgress);
    end = await workers.follow(tail, plan.timeoutMs, producerFailed.signal).finally(() => {
      bar.stop();
      stopProducing.abort();
    });
    produced = await producing;
  }
  const snapshot = tail.summary.snapshot(Date.now());
  const cpu = cpuSince(cpuFrom, workers);
  if (signal.aborted) throw interrupted();
  const died = workers.died;
  const workersFailed = await workers.stop();
  if (end !== "complete") {
    const why = died
      ? `worker ${died.name} exited early (${describe(await died.exited)}); its log ends with:\n${died.logTail()}`
      : `timed out after ${plan.timeoutMs / 1000} s`;
    throw new Error(`${label}: ${snapshot.distinctFrames} of ${plan.frames} frames answered: ${why}`);
  }
  return { plan, name, snapshot, frames, produced, workersFailed, cpu };
}

/** Where every process's CPU time stood at the start of the measured stretch. */
interface CpuMark {
  at: number;
  workers: (ThreadTimes | undefined)[];
  /** The project's broker and its CPU seconds, if it runs here. */
  broker: { pid: number; seconds: number | undefined } | undefined;
  bench: NodeJS.CpuUsage;
}

function cpuMark(workers: Workers): CpuMark {
  const broker = projectBrokerPid();
  return {
    at: performance.now(),
    workers: workers.replicas.map((r) => (r.pid === undefined ? undefined : sampleThreads(r.pid))),
    broker: broker === undefined ? undefined : { pid: broker, seconds: processCpuSeconds(broker) },
    bench: process.cpuUsage(),
  };
}

function cpuSince(from: CpuMark, workers: Workers): ArmCpu | null {
  const split = noWorkerCpu();
  for (const [i, replica] of workers.replicas.entries()) {
    const before = from.workers[i];
    const after = replica.pid === undefined ? undefined : sampleThreads(replica.pid);
    if (!before || !after) return null;
    let log = "";
    try {
      log = readFileSync(replica.logFile, "utf8");
    } catch {
      // No log: every thread but the main one counts as "other".
    }
    splitWorkerCpu(replica.pid!, before, after, threadRoles(log), split);
  }
  const brokerFrom = from.broker?.seconds;
  const brokerNow = from.broker === undefined ? undefined : processCpuSeconds(from.broker.pid);
  const bench = process.cpuUsage(from.bench);
  return {
    workers: split,
    broker: brokerFrom === undefined || brokerNow === undefined ? null : brokerNow - brokerFrom,
    bench: (bench.user + bench.system) / 1e6,
    wallS: (performance.now() - from.at) / 1000,
  };
}

/** The arm's worker replicas: started together, followed, stopped once. */
class Workers {
  readonly replicas: WorkerReplica[] = [];
  private stopping: Promise<boolean> | undefined;
  /** The first replica that exited on its own. */
  died: WorkerReplica | undefined;

  constructor(
    private readonly ctx: BenchContext,
    private readonly plan: ArmPlan,
    private readonly name: string,
    private readonly topics: { frames: string; predictions: string; deadLetters: string },
    private readonly group: string,
  ) {}

  /** Spawns the replicas and waits until each has loaded the model and joined the group. */
  async start(): Promise<void> {
    const logDir = join(ROOT, ".run", "bench-kafka", this.name);
    mkdirSync(logDir, { recursive: true });
    const run = { name: this.name, topics: this.topics, group: this.group };
    for (let i = 1; i <= this.plan.workers; i++) {
      const env = benchReplicaEnv(this.ctx, run, {
        workerId: `${(this.plan.label ?? this.plan.arm).replace(/[^A-Za-z0-9._-]+/g, "-")}-${this.plan.repeat + 1}-w${i}`,
        cacheEnabled: String(this.plan.arm === "cacheOn"),
        intraOpThreads: String(this.plan.threads),
        ...(this.plan.statePrefix === undefined ? {} : { redisKeyPrefix: this.plan.statePrefix }),
        ...this.plan.overrides,
      });
      const replica = new WorkerReplica(`${this.name}-w${i}`, env, join(logDir, `worker-${i}.log`));
      void replica.exited.then(() => {
        if (!this.stopping) this.died ??= replica;
      });
      this.replicas.push(replica);
    }
    await Promise.all(this.replicas.map((r) => r.ready(WORKER_START_TIMEOUT_MS, this.ctx.signal)));
  }

  /**
   * Reads predictions until every frame is answered, a worker exits, the
   * timeout, an interrupt or `also` aborts.
   */
  async follow(tail: PredictionTail, timeoutMs: number, also?: AbortSignal): Promise<TailEnd> {
    const following = new AbortController();
    const onExit = () => following.abort();
    for (const r of this.replicas) void r.exited.then(onExit);
    const signals = [this.ctx.signal, following.signal, ...(also ? [also] : [])];
    return tail.run({ timeoutMs, signal: AbortSignal.any(signals) });
  }

  /** SIGTERM to every replica, waiting for their ordered shutdown; resolves whether any failed. */
  stop(): Promise<boolean> {
    this.stopping ??= (async () => {
      if (this.replicas.length === 0) return false;
      const grace = this.ctx.config.shutdownTimeoutMs + 10_000;
      const exits = await Promise.all(this.replicas.map((r) => r.stop(grace)));
      const failed = exits.some((e) => e.code !== 0);
      if (failed) {
        this.ctx.say(
          `workers stopped: ${exits.map((e, i) => `${this.replicas[i]!.name} ${describe(e)}`).join(", ")}`,
        );
      }
      return failed;
    })();
    return this.stopping;
  }
}

/** Deletes an arm's topics and consumer group. */
