/**
 * `layercache demo` (`npm run demo`): the whole job end to end on one
 * machine. Brings up what is missing (the project's Kafka broker, a private
 * Redis), creates topics unique to this run (frames with 4 partitions),
 * starts worker replicas as child processes in one consumer group, produces
 * the Fashion-MNIST test split, follows the predictions live until every
 * frame id has been answered, prints the summary, and stops what it started:
 * workers (SIGTERM, waiting for their ordered shutdown), the run's topics,
 * groups and shared cache state (under a Redis key prefix of its own, so every
 * run starts cold), and Redis and the broker if it started them. Ctrl-C takes the same
 * way out.
 */
import { mkdirSync } from "node:fs";
import { join, relative } from "node:path";
import type { Command } from "commander";
import { z } from "zod";
import type { Config } from "../config/index.ts";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { createKafka } from "../transport/kafka/client.ts";
import { FASHION_MNIST, openFrameSource } from "../tools/frame-source.ts";
import { produceFrames } from "../tools/frame-producer.ts";
import { ROOT, ensureKafka, ensureRedis } from "../tools/local-services.ts";
import { runName } from "../tools/names.ts";
import { deleteKeysUnder } from "../tools/redis-keys.ts";
import { FRAMES_PARTITIONS, createRunTopics, dropRun } from "../tools/run-topics.ts";
import { PredictionTail } from "../tools/prediction-tail.ts";
import { startProgress } from "../tools/progress.ts";
import { formatSummaryTable } from "../tools/summary-format.ts";
import { WorkerReplica, describe, replicaEnv } from "../tools/worker-replica.ts";
import { catchInterrupts } from "./interrupt.ts";
import { parseOptions, positiveNumber, wholeNumber } from "./options.ts";
import { produceSummaryLine } from "./produce.ts";
import { followTail } from "./tail.ts";
import { toolLogger } from "./tool-logger.ts";

/** Loading the model and joining the group; generous for a busy 2-core machine. */
const WORKER_START_TIMEOUT_MS = 180_000;

const schema = z.object({
  count: wholeNumber(1).default(10_000),
  workers: wholeNumber(1, 8).default(2),
  rate: positiveNumber.optional(),
  timeout: positiveNumber.default(600),
  keepTopics: z.boolean().default(false),
});

export type DemoOptions = z.output<typeof schema>;

export function parseDemoOptions(opts: Record<string, unknown>): DemoOptions {
  return parseOptions("layercache demo", schema, opts);
}

export function addDemoOptions(cmd: Command): Command {
  return cmd
    .option("--count <n>", "frames to produce (default 10000, the whole test split)")
    .option("--workers <n>", "worker replicas (default 2)")
    .option("--rate <n>", "frames per second (default: as fast as the broker takes them)")
    .option("--timeout <seconds>", "longest wait for all predictions (default 600)")
    .option(
      "--keep-topics",
      "leave the run's topics on the broker and its cache state in Redis (default: deleted at the end)",
    );
}

/** Runs the demo; resolves with the process exit code. */
export async function runDemo(config: Config, raw: Record<string, unknown>): Promise<number> {
  const options = parseDemoOptions(raw);
  const log = toolLogger(config, "demo");
  const say = (line: string) => process.stderr.write(`[demo] ${line}\n`);
  const t0 = performance.now();
  const interrupt = catchInterrupts(log);
  const cleanup: { what: string; run: () => Promise<void> }[] = [];
  const outcome = { workersFailed: false };
  let code = 1;
  try {
    code = await demo(config, options, { log, say, signal: interrupt.signal, cleanup, outcome });
  } catch (err) {
    if (!interrupt.signal.aborted) throw err;
    log.debug({ err }, "interrupted");
    code = 130;
  } finally {
    if (interrupt.signal.aborted) say("interrupted: cleaning up");
    for (const step of cleanup.reverse()) {
      try {
        await step.run();
      } catch (err) {
        say(`cleanup: could not ${step.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    interrupt.dispose();
    say(`wall time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  // A worker that did not shut down cleanly fails the run even if every frame was answered.
  return code === 0 && outcome.workersFailed ? 1 : code;
}

interface DemoContext {
  log: Logger;
  say: (line: string) => void;
  signal: AbortSignal;
  /** Undone in reverse order, whatever happens. */
  cleanup: { what: string; run: () => Promise<void> }[];
  /** Set by cleanup steps. */
  outcome: { workersFailed: boolean };
}

async function demo(config: Config, options: DemoOptions, ctx: DemoContext): Promise<number> {
  const { log, say, signal, cleanup, outcome } = ctx;
  const stopIfInterrupted = () => {
    if (signal.aborted) throw new Error("interrupted");
  };

  const kafkaService = await ensureKafka(config.kafkaBrokers, say);
  cleanup.push({ what: "stop the Kafka broker", run: () => kafkaService.stop() });
  stopIfInterrupted();
  const redis = await ensureRedis(config.redisUrl, say);
  cleanup.push({ what: "stop redis-server", run: () => redis.stop() });
  stopIfInterrupted();
  say(
    `Kafka ${kafkaService.address} (${kafkaService.started ? "started by the demo" : "already running"}), ` +
      `Redis ${redis.started ? `${redis.address} (started by the demo)` : "already running"}`,
  );

  const run = runName("layercache-demo");
  const topics = { frames: `${run}.frames`, predictions: `${run}.predictions`, deadLetters: `${run}.dlq` };
  const group = `${run}-workers`;
  const brokers = kafkaService.address.split(",");
  const kafka = createKafka({ ...config, kafkaBrokers: brokers }, log);
  const admin = kafka.admin();
  cleanup.push({ what: "disconnect the admin client", run: () => admin.disconnect() });
  try {
    await admin.connect();
    await createRunTopics(admin, topics);
  } catch (err) {
    throw new LayercacheError(
      "SERVICE_UNAVAILABLE",
      `could not create the demo's topics on ${kafkaService.address}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  // The run's own cache state: it starts cold, whatever earlier runs left in Redis.
  const keyPrefix = `${config.redisKeyPrefix}:${run}`;
  if (!options.keepTopics) {
    cleanup.push({
      what: "delete the run's topics",
      run: () => dropRun(admin, topics, group),
    });
    cleanup.push({
      what: "delete the run's cache state in Redis",
      run: async () => void (await deleteKeysUnder(redis.address, keyPrefix)),
    });
  }
  say(
    `topics ${topics.frames} (${FRAMES_PARTITIONS} partitions), ${topics.predictions}, ${topics.deadLetters}`,
  );

  // Reading from the beginning before anything is produced: every prediction is seen.
  const tail = await PredictionTail.start(
    kafka,
    {
      topic: topics.predictions,
      fromBeginning: true,
      expect: options.count,
      maxMessageBytes: config.maxMessageBytes,
      log,
    },
    signal,
  );
  if (!tail) throw new Error("interrupted");
  cleanup.push({ what: "stop reading predictions", run: () => tail.stop() });

  const logDir = join(ROOT, ".run", "demo", run);
  mkdirSync(logDir, { recursive: true });
  const replicas: WorkerReplica[] = [];
  cleanup.push({
    what: "stop the workers",
    run: async () => {
      if (replicas.length === 0) return;
      say(`stopping ${replicas.length} workers (SIGTERM, waiting for their shutdown)`);
      const grace = config.shutdownTimeoutMs + 10_000;
      const exits = await Promise.all(replicas.map((r) => r.stop(grace)));
      outcome.workersFailed = exits.some((e) => e.code !== 0);
      say(`workers stopped: ${exits.map((e, i) => `${replicas[i]!.name} ${describe(e)}`).join(", ")}`);
    },
  });
  for (let i = 1; i <= options.workers; i++) {
    const name = `demo-w${i}`;
    const env = replicaEnv(config, {
      kafkaBrokers: kafkaService.address,
      redisUrl: redis.address,
      framesTopic: topics.frames,
      predictionsTopic: topics.predictions,
      deadLetterTopic: topics.deadLetters,
      groupId: group,
      redisKeyPrefix: keyPrefix,
      workerId: name,
      // Several replicas on one machine cannot share one metrics port.
      metricsPort: "0",
      // The demo learns that a worker is up from its "worker started" line.
      logLevel: ["trace", "debug", "info"].includes(config.logLevel) ? config.logLevel : "info",
    });
    replicas.push(new WorkerReplica(name, env, join(logDir, `worker-${i}.log`)));
  }
  say(
    `starting ${options.workers} workers in group ${group}; logs in ${relative(process.cwd(), logDir) || "."}`,
  );
  await Promise.all(replicas.map((r) => r.ready(WORKER_START_TIMEOUT_MS, signal)));
  say(`workers ready (pids ${replicas.map((r) => r.pid).join(", ")})`);

  const source = await openFrameSource(FASHION_MNIST);
  const progress = startProgress({ label: "produce", total: options.count, unit: "frames", log });
  const produced = await produceFrames(kafka, source, {
    topic: topics.frames,
    count: options.count,
    rate: options.rate,
    idPrefix: run,
    signal,
    onProgress: (sent) => progress.update(sent),
    log,
  }).finally(() => progress.stop());
  say(produceSummaryLine(produced, topics.frames));
  stopIfInterrupted();

  // Stop following if a worker dies, or on Ctrl-C.
  const following = new AbortController();
  const onInterrupt = () => following.abort();
  signal.addEventListener("abort", onInterrupt);
  let died: WorkerReplica | undefined;
  for (const r of replicas) {
    void r.exited.then(() => {
      died ??= r;
      following.abort();
    });
  }
  const { end, snapshot } = await followTail(tail, log, {
    title: `${options.workers} workers, ${topics.predictions}`,
    expect: options.count,
    timeoutMs: options.timeout * 1000,
    signal: following.signal,
  }).finally(() => signal.removeEventListener("abort", onInterrupt));

  process.stdout.write(
    `\nlayercache demo: ${options.count.toLocaleString("en")} Fashion-MNIST test frames, ` +
      `${options.workers} workers, ${FRAMES_PARTITIONS} partitions\n\n` +
      formatSummaryTable(snapshot, options.count) +
      "\n",
  );
  if (end === "complete") return 0;
  stopIfInterrupted();
  if (died) {
    const status = await died.exited;
    say(`worker ${died.name} exited early (${describe(status)}); its log ends with:\n${died.logTail()}`);
  } else {
    say(`timed out after ${options.timeout} s with ${snapshot.distinctFrames} of ${options.count} frames`);
  }
  return 1;
}
