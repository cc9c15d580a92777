/**
 * Shared state through a Redis outage, on a private redis-server (password
 * required, nothing on disk) that is stopped and started again: while it is
 * down every call fails at once with SERVICE_UNAVAILABLE and examples wait in
 * a bounded buffer; after it is back (empty) the connection, the watcher's
 * subscription, the example stream and the lease all recover by themselves.
 * The password never appears in the log.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isLayercacheError } from "../../src/errors/index.ts";
import { ExampleStream } from "../../src/state/examples.ts";
import { TrainerLease } from "../../src/state/lease.ts";
import { StateConnection } from "../../src/state/redis-connection.ts";
import { RedisStateStore } from "../../src/state/redis-store.ts";
import {
  LAYOUT,
  PrivateRedis,
  capturedLog,
  snapshotOf,
  uniqueModel,
  uniquePrefix,
  waitFor,
} from "./helpers.ts";

const PASSWORD = "s3cret-pass-4711";

async function failsFast(what: string, op: () => Promise<unknown>): Promise<void> {
  const started = Date.now();
  const err = await op().then(
    () => new Error(`${what} succeeded while Redis was down`),
    (e: unknown) => e,
  );
  expect(isLayercacheError(err, "SERVICE_UNAVAILABLE"), `${what}: ${String(err)}`).toBe(true);
  expect(Date.now() - started, what).toBeLessThan(250);
}

describe("a Redis outage", () => {
  let server: PrivateRedis;

  beforeAll(async () => {
    server = await PrivateRedis.start(["--requirepass", PASSWORD]);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it("fails fast while Redis is down and recovers everything when it is back", async () => {
    const log = capturedLog("debug");
    const url = server.url(`:${PASSWORD}@`);
    const connection = new StateConnection({
      url,
      logger: log.logger,
      name: "outage-test",
      minBackoffMs: 20,
      maxBackoffMs: 200,
    });
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    const prefix = uniquePrefix();
    const modelId = uniqueModel();
    try {
      await connection.waitReady(5_000);
      const lease = new TrainerLease({ connection, prefix, modelId, holderId: "trainer", ttlMs: 1_000 });
      const lost: string[] = [];
      lease.onLost((reason) => void lost.push(reason));
      await lease.acquire();
      const store = new RedisStateStore({ connection, prefix, modelId, layout: LAYOUT, fencing: lease });
      const seen: number[] = [];
      // Polling is far too slow to matter: after the restart only the resubscribed channel can deliver.
      const watcher = store.watch((s) => void seen.push(s.version), { pollMs: 60_000 });
      await waitFor(() => connection.ready);
      await probe.connect();
      const subscribers = async () =>
        ((await probe.call("PUBSUB", "NUMSUB", store.keys.announce)) as [string, number])[1];
      for (let i = 0; i < 100 && (await subscribers()) < 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await store.publish(snapshotOf(modelId, 1))).toBe(true);
      await waitFor(() => seen.length === 1, 3_000, "version 1");

      const examples = new ExampleStream({
        connection,
        prefix,
        modelId,
        layout: LAYOUT,
        producerId: "replica",
        bufferCapacity: 5,
      });
      const trainer = examples.consumer("trainer");
      const example = (n: number) => ({
        kind: "backbone" as const,
        features: LAYOUT.featureSizes.map((d) => new Float32Array(d).fill(n)),
        target: Float32Array.of(0.25, 0.25, 0.25, 0.25),
      });

      expect(await trainer.read()).toEqual([]); // the consumer group exists now

      probe.disconnect();
      await server.stop();
      await waitFor(() => !connection.ready, 3_000, "the connection to notice");

      const other = new TrainerLease({ connection, prefix, modelId, holderId: "other" });
      await failsFast("current", () => store.current());
      await failsFast("currentVersion", () => store.currentVersion());
      await failsFast("publish", () => store.publishFenced(snapshotOf(modelId, 2), 1));
      await failsFast("acquire", () => other.tryAcquire());
      await failsFast("read examples", () => trainer.read());
      for (let n = 0; n < 8; n++) examples.offer(example(n));
      expect(examples.stats).toEqual({ offered: 8, sent: 0, dropped: 3, buffered: 5 });
      await watcher.check();
      expect(watcher.version).toBe(1);
      // Renewals fail; once the ttl has run out the holder knows it lost the lease.
      await waitFor(() => lost.length === 1, 3_000, "lease lost");
      expect(lease.fencingToken()).toBeUndefined();

      await server.start(); // empty: nothing was saved
      await connection.waitReady(5_000);
      await waitFor(() => examples.stats.buffered === 0, 5_000, "buffered examples sent");
      expect(examples.stats).toMatchObject({ sent: 5, dropped: 3 });

      await lease.acquire();
      await probe.connect();
      for (let i = 0; i < 150 && (await subscribers()) < 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await subscribers()).toBe(1);
      // The store was emptied by the restart; the trainer goes on from its own version.
      expect(await store.currentVersion()).toBe(0);
      expect(await store.publish(snapshotOf(modelId, 2))).toBe(true);
      await waitFor(() => seen.includes(2), 2_000, "version 2 over the resubscribed channel");

      // The group vanished with the data; the trainer recreates it and reads what was buffered.
      const got = await trainer.read();
      expect(got.map((e) => (e.kind === "audit" ? -1 : e.features[0]![0]))).toEqual([3, 4, 5, 6, 7]);

      await watcher.stop();
      await lease.release();
      const text = log.text();
      expect(text).toContain("Redis connection lost");
      expect(text).toContain("Redis connection restored");
      expect(text).not.toContain(PASSWORD);
    } finally {
      probe.disconnect();
      await connection.close();
    }
  }, 30_000);

  it("does not connect with a wrong password, and does not log it either", async () => {
    const log = capturedLog("debug");
    const wrong = "not-the-password-0815";
    const connection = new StateConnection({
      url: server.url(`:${wrong}@`),
      logger: log.logger,
      maxBackoffMs: 100,
    });
    try {
      const err = await connection.waitReady(1_000).catch((e: unknown) => e);
      expect(isLayercacheError(err, "SERVICE_UNAVAILABLE")).toBe(true);
      const store = new RedisStateStore({ connection, prefix: "p", modelId: "m" });
      await failsFast("current without auth", () => store.current());
      expect(log.text()).toMatch(/WRONGPASS|invalid password|NOAUTH/);
      expect(log.text()).not.toContain(wrong);
    } finally {
      await connection.close();
    }
  });
});
