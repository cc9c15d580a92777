/**
 * What the fleet tests share: worker replicas as real processes (`node
 * --single-threaded-gc bin/layercache.js worker`, test/pipeline/child.ts) in one consumer group,
 * sharing their cache through Redis under a key prefix unique to the test,
 * and a view of that shared state from outside (the stored snapshot and who
 * holds the trainer lease), read the way the replicas read it.
 */
import type { Admin } from "kafkajs";
import { afterAll } from "vitest";
import type { Prediction } from "../../src/codec/prediction.ts";
import { decodePrediction } from "../../src/codec/prediction.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { layoutOf } from "../../src/state/layout.ts";
import { StateConnection } from "../../src/state/redis-connection.ts";
import { RedisStateStore } from "../../src/state/redis-store.ts";
import type { SharedSnapshot } from "../../src/state/snapshot-codec.ts";
import { MODEL_DIR } from "../helpers/model.ts";
import { deleteKeys, testRedis, uniqueName } from "../helpers/services.ts";
import { metric, scrape } from "../helpers/prometheus.ts";
import type { Child } from "../pipeline/child.ts";
import { startChild } from "../pipeline/child.ts";
import type { Collected, PipelineFixture } from "../pipeline/helpers.ts";
import { TopicCollector, fashionFrames, pipelineFixture, produce } from "../pipeline/helpers.ts";

/** Short, so that a killed trainer is replaced within seconds. */
export const LEASE_TTL_MS = 3_000;

export interface FleetFixture extends PipelineFixture {
  /** LAYERCACHE_REDIS_PREFIX of this test's replicas (keys deleted in afterAll). */
  prefix: string;
  /** Every replica started, so that afterAll can kill what is left. */
  children: Child[];
}

/**
 * Unique topics, group and Redis key prefix for one test file; afterAll kills
 * the replicas still running, then drops the topics and the keys.
 */
export function fleetFixture(name: string, partitions = 4): FleetFixture {
  const prefix = uniqueName(`lcfleet-${name}`);
  const children: Child[] = [];
  const fixture = Object.assign(pipelineFixture(name, partitions), { prefix, children });
  // Registered after the fixture's, so it runs first: replicas go before their topics.
  afterAll(async () => {
    for (const c of children) if (c.process.exitCode === null) c.process.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exit));
    const redis = testRedis();
    try {
      await deleteKeys(redis, `${prefix}:`);
    } finally {
      redis.disconnect();
    }
  });
  return fixture;
}

/** Starts a replica of the fleet: sharing on, the test's key prefix, the given Redis. */
export function startReplica(
  fixture: FleetFixture,
  workerId: string,
  redisUrl: string,
  extra: Record<string, string> = {},
): Child {
  const child = startChild(fixture.topics, workerId, {
    REDIS_URL: redisUrl,
    LAYERCACHE_REDIS_PREFIX: fixture.prefix,
    LAYERCACHE_SHARING: "true",
    LAYERCACHE_LEASE_TTL_MS: String(LEASE_TTL_MS),
    ...extra,
  });
  fixture.children.push(child);
  return child;
}

/** Resolves once the replica has loaded the model and joined the group; throws if it exited first. */
export async function ready(child: Child): Promise<void> {
  await child.printed('"msg":"worker started"');
  if (!child.output().includes('"msg":"worker started"')) {
    throw new Error(`replica exited during start-up:\n${child.output().slice(-3_000)}`);
  }
}

/** The port a replica serves /metrics on (it logs it at start). */
export function metricsPortOf(child: Child): number {
  const m = /serving \/metrics and \/healthz on port (\d+)/.exec(child.output());
  if (!m) throw new Error("replica did not log its metrics port");
  return Number(m[1]);
}

/** One metric of a replica, summed over its labels (0 when absent). */
export async function replicaMetric(child: Child, name: string): Promise<number> {
  return metric(await scrape(metricsPortOf(child)), name) ?? 0;
}

/** Frames `start` .. `start + count - 1` of the test split, produced now; returns their ids. */
export async function produceFrames(
  fixture: FleetFixture,
  idPrefix: string,
  count: number,
  start = 0,
): Promise<string[]> {
  const frames = await fashionFrames(idPrefix, count, start);
  await produce(
    fixture.kafka,
    fixture.topics.frames,
    frames.map((f) => f.message),
  );
  return frames.map((f) => f.id);
}

export function decodeAll(messages: readonly Collected[]): Prediction[] {
  return messages.map((m) => decodePrediction(m.value, m.headers, { maxMessageBytes: 1 << 20 }));
}

/** The shared state of the fleet's model under the test's prefix, read as a replica reads it. */
export class FleetState {
  readonly store: RedisStateStore;

  private constructor(
    private readonly connection: StateConnection,
    prefix: string,
  ) {
    const manifest = loadManifest(MODEL_DIR);
    this.store = new RedisStateStore({
      connection,
      prefix,
      modelId: manifest.modelId,
      layout: layoutOf(manifest),
    });
  }

  static async open(redisUrl: string, prefix: string): Promise<FleetState> {
    const connection = new StateConnection({ url: redisUrl, minBackoffMs: 20, maxBackoffMs: 200 });
    await connection.waitReady(10_000);
    return new FleetState(connection, prefix);
  }

  get ready(): boolean {
    return this.connection.ready;
  }

  /** The Redis client underneath, for a test that writes what no replica would. */
  get client() {
    return this.connection.client;
  }

  async waitReady(timeoutMs = 10_000): Promise<void> {
    await this.connection.waitReady(timeoutMs);
  }

  /** The stored snapshot, undefined when none (or while Redis is unreachable). */
  async snapshot(): Promise<SharedSnapshot | undefined> {
    return this.store.current().catch(() => undefined);
  }

  /** Who holds the trainer lease: its token and holder id ("<worker id>/<random>"). */
  async lease(): Promise<{ token: number; holder: string } | undefined> {
    const value = await this.connection.client.get(this.store.keys.lease).catch(() => null);
    const m = value ? /^(\d+) (.+)$/.exec(value) : null;
    return m ? { token: Number(m[1]), holder: m[2]! } : undefined;
  }

  async close(): Promise<void> {
    await this.connection.close();
  }
}

/** What a fleet test watches: the shared state in Redis and every prediction the fleet writes. */
export interface FleetWatch {
  state: FleetState;
  predictions: TopicCollector;
}

/**
 * Runs `body` with the fleet's shared state (under the fixture's prefix, at
 * `redisUrl`) and a collector of its predictions open, and closes both
 * whatever happens.
 */
export async function watchFleet<T>(
  fixture: FleetFixture,
  redisUrl: string,
  body: (watch: FleetWatch) => Promise<T>,
): Promise<T> {
  const state = await FleetState.open(redisUrl, fixture.prefix);
  try {
    const predictions = await new TopicCollector(fixture.kafka, fixture.topics.predictions).start();
    try {
      return await body({ state, predictions });
    } finally {
      await predictions.stop();
    }
  } finally {
    await state.close();
  }
}

/** Polls `condition` every 200 ms until it holds; throws with `what` after `timeoutMs`. */
export async function until(
  what: string,
  condition: () => Promise<boolean> | boolean,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Whether `group` has committed every partition of `topic` to its end (one look, no waiting). */
export async function drained(admin: Admin, group: string, topic: string): Promise<boolean> {
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  const at = (p: number) => committed?.partitions.find((c) => c.partition === p)?.offset;
  return ends.every((e) => e.low === e.high || at(e.partition) === e.high);
}

/** Share of predictions that left through an exit, not the backbone. */
export function earlyExitRate(predictions: readonly Prediction[]): number {
  if (predictions.length === 0) return 0;
  return predictions.filter((p) => p.exit >= 0).length / predictions.length;
}

/** Each worker's first prediction of every frame, in the order it wrote them. */
export function byWorker(predictions: readonly Prediction[]): Map<string, Prediction[]> {
  const out = new Map<string, Prediction[]>();
  for (const p of predictions) {
    const list = out.get(p.workerId) ?? [];
    list.push(p);
    out.set(p.workerId, list);
  }
  for (const list of out.values()) list.sort((a, b) => a.producedAt - b.producedAt);
  return out;
}
