/**
 * One run of a fleet for the sharing benchmark: fresh topics (frames with 4
 * partitions), consumer group and Redis key prefix, `layercache worker`
 * replicas as child processes that share their cache through Redis and can be
 * started at any point of the run, frames produced in phases, and a reader of
 * every prediction (ReplicaLog: who answered what, in which order).
 * Everything it created is removed by `close()`. Built from the pieces of
 * bench/kafka (context, teardown, Redis cleanup) and src/tools.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { produceFrames } from "../../src/tools/frame-producer.ts";
import { ROOT } from "../../src/tools/local-services.ts";
import { runName } from "../../src/tools/names.ts";
import { PredictionTail } from "../../src/tools/prediction-tail.ts";
import { createRunTopics, dropRun } from "../../src/tools/run-topics.ts";
import { WorkerReplica, describe } from "../../src/tools/worker-replica.ts";
import type { BenchContext } from "../kafka/arm.ts";
import { benchReplicaEnv } from "../kafka/arm.ts";
import { deleteKeysUnder } from "../../src/tools/redis-keys.ts";
import { Teardown } from "../kafka/teardown.ts";
import { ReplicaLog } from "./replica-log.ts";

/** Loading the model and joining the group, on a busy 2-core machine. */
const WORKER_START_TIMEOUT_MS = 180_000;

export class FleetRun {
  readonly name: string;
  readonly log: ReplicaLog;
  private readonly replicas: WorkerReplica[] = [];
  private readonly topics: { frames: string; predictions: string; deadLetters: string };
  private readonly group: string;
  private produced = 0;
  private stopping: Promise<boolean> | undefined;

  private constructor(
    private readonly ctx: BenchContext,
    private readonly teardown: Teardown,
    name: string,
    private readonly tail: PredictionTail,
  ) {
    this.name = name;
    this.topics = {
      frames: `${name}.frames`,
      predictions: `${name}.predictions`,
      deadLetters: `${name}.dlq`,
    };
    this.group = `${name}-workers`;
    this.log = ReplicaLog.follow(tail);
  }

  /** Topics, group and prefix named `<label>-<unique>`, and a reader of the predictions. */
  static async open(ctx: BenchContext, label: string): Promise<FleetRun> {
    const teardown = new Teardown(ctx.say);
    const name = runName(`lcbench-${label}`);
    const topics = {
      frames: `${name}.frames`,
      predictions: `${name}.predictions`,
      deadLetters: `${name}.dlq`,
    };
    try {
      const admin = ctx.kafka.admin();
      teardown.push("disconnect the admin client", () => admin.disconnect());
      await admin.connect();
      await createRunTopics(admin, topics);
      teardown.push("delete the run's topics and group", () => dropRun(admin, topics, `${name}-workers`));
      teardown.push(
        "delete the run's Redis keys",
        async () => void (await deleteKeysUnder(ctx.redisUrl, name)),
      );
      const tail = await PredictionTail.start(
        ctx.kafka,
        {
          topic: topics.predictions,
          fromBeginning: true,
          maxMessageBytes: ctx.config.maxMessageBytes,
          log: ctx.log,
        },
        ctx.signal,
      );
      if (!tail) throw new Error("interrupted");
      teardown.push("stop reading predictions", () => tail.stop());
      return new FleetRun(ctx, teardown, name, tail);
    } catch (err) {
      await teardown.run();
      throw err;
    }
  }

  /** Starts replicas named `<name>-<id>` (their worker ids are `id`) and waits until all have joined. */
  async start(...ids: string[]): Promise<void> {
    const logDir = join(ROOT, ".run", "bench-sharing", this.name);
    mkdirSync(logDir, { recursive: true });
    const run = { name: this.name, topics: this.topics, group: this.group };
    const started = ids.map((id) => {
      const env = benchReplicaEnv(this.ctx, run, { workerId: id, cacheEnabled: "true", sharing: "true" });
      const replica = new WorkerReplica(`${this.name}-${id}`, env, join(logDir, `${id}.log`));
      this.replicas.push(replica);
      return replica;
    });
    if (this.replicas.length === ids.length) {
      // The first replicas: from now on there is something to stop.
      this.teardown.push("stop the replicas", async () => void (await this.stop()));
    }
    await Promise.all(started.map((r) => r.ready(WORKER_START_TIMEOUT_MS, this.ctx.signal)));
  }

  /** Produces `count` frames of the test split in a seeded order, ids `<name>-<phase>-<n>`. */
  async produce(phase: string, count: number, seed: number): Promise<string> {
    const idPrefix = `${this.name}-${phase}`;
    const result = await produceFrames(this.ctx.kafka, this.ctx.source, {
      topic: this.topics.frames,
      count,
      shuffleSeed: seed,
      idPrefix,
      signal: this.ctx.signal,
      log: this.ctx.log,
    });
    if (result.aborted) throw new Error("interrupted");
    this.produced += count;
    return idPrefix;
  }

  /** Waits until every frame produced so far is answered; throws if a replica exits or on timeout. */
  async answered(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.tail.summary.distinct < this.produced) {
      if (this.ctx.signal.aborted) throw new Error("interrupted");
      const died = await this.died();
      if (died) throw new Error(`replica ${died.name} exited early; its log ends with:\n${died.logTail()}`);
      if (Date.now() > deadline) {
        throw new Error(
          `${this.tail.summary.distinct} of ${this.produced} frames answered after ${timeoutMs / 1000} s`,
        );
      }
      await sleep(200);
    }
  }

  private async died(): Promise<WorkerReplica | undefined> {
    const exited = await Promise.all(
      this.replicas.map((r) => Promise.race([r.exited.then(() => r), sleep(0).then(() => undefined)])),
    );
    return exited.find((r) => r !== undefined);
  }

  /** SIGTERM to every replica, waiting for their ordered shutdown; resolves whether any failed. Runs once. */
  stop(): Promise<boolean> {
    this.stopping ??= (async () => {
      const grace = this.ctx.config.shutdownTimeoutMs + 10_000;
      const exits = await Promise.all(this.replicas.map((r) => r.stop(grace)));
      const failed = exits.some((e) => e.code !== 0);
      if (failed) {
        const each = exits.map((e, i) => `${this.replicas[i]!.name} ${describe(e)}`);
        this.ctx.say(`replicas stopped: ${each.join(", ")}`);
      }
      return failed;
    })();
    return this.stopping;
  }

  async close(): Promise<void> {
    await this.teardown.run();
  }
}
