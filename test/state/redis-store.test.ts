/**
 * RedisStateStore against the real Redis: snapshots with really trained heads
 * round-trip, versions only go up, models never mix, a stale fencing token is
 * refused inside the publish script, junk in Redis is STATE_INVALID and never
 * replaces a watcher's last good snapshot, and watchers hear of new versions
 * through pub/sub or, without it, by polling.
 */
import { afterEach, describe, expect, it } from "vitest";
import { isLayercacheError } from "../../src/errors/index.ts";
import { TrainerLease } from "../../src/state/lease.ts";
import type { FencingSource, RedisStateStoreOptions } from "../../src/state/redis-store.ts";
import { RedisStateStore } from "../../src/state/redis-store.ts";
import type { SharedSnapshot } from "../../src/state/snapshot-codec.ts";
import { LAYOUT, capturedLog, snapshotOf, stateSuite, uniqueModel, waitFor } from "./helpers.ts";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (err: unknown) => err,
  );
}

describe("RedisStateStore", () => {
  const log = capturedLog();
  const suite = stateSuite({ logger: log.logger, name: "state-test" });
  const { prefix, redis } = suite;
  const leases: TrainerLease[] = [];
  const stores: RedisStateStore[] = [];

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await Promise.all(leases.splice(0).map((l) => l.release()));
  });

  /** A store for a fresh model, and a lease on it already held. */
  async function setup(options: Partial<RedisStateStoreOptions> = {}, modelId = uniqueModel()) {
    const lease = new TrainerLease({
      connection: suite.connection,
      prefix,
      modelId,
      holderId: "trainer",
      ttlMs: 5_000,
    });
    leases.push(lease);
    expect(await lease.tryAcquire()).toBe(true);
    const store = new RedisStateStore({
      connection: suite.connection,
      prefix,
      modelId,
      layout: LAYOUT,
      fencing: lease,
      publisher: "worker-a",
      ...options,
    });
    stores.push(store);
    return { store, lease, modelId };
  }

  it("round-trips a snapshot with trained heads, thresholds and counts", async () => {
    const audit = [
      { audited: 40, agreed: 39 },
      { audited: 0, agreed: 0 },
      { audited: 0, agreed: 0 },
    ];
    const { store, lease, modelId } = await setup({ audit: () => audit });
    expect(await store.current()).toBeUndefined();
    expect(await store.currentVersion()).toBe(0);
    const snap = snapshotOf(modelId, 1);
    expect(await store.publish(snap)).toBe(true);
    const back = (await store.current())!;
    expect(back).toMatchObject({
      modelId,
      version: 1,
      publisher: "worker-a",
      fencingToken: lease.token,
      audit,
    });
    expect(back.decisions).toEqual(snap.decisions);
    snap.heads.forEach((head, e) => {
      if (!head) return expect(back.heads[e]).toBeNull();
      expect(Buffer.from(back.heads[e]!.toBytes()).equals(Buffer.from(head.toBytes()))).toBe(true);
    });
    // Heads travel as the compact codec bytes, not as JSON numbers.
    const stored = await redis.hgetBuffer(store.keys.snapshot, "head:0");
    expect(stored!.equals(Buffer.from(snap.heads[0]!.toBytes()))).toBe(true);
    expect(await store.currentVersion()).toBe(1);
  });

  it("only lets versions go up", async () => {
    const { store, modelId } = await setup();
    expect(await store.publish(snapshotOf(modelId, 5))).toBe(true);
    expect(await store.publish(snapshotOf(modelId, 5, 2))).toBe(false);
    expect(await store.publish(snapshotOf(modelId, 3, 3))).toBe(false);
    const token = (await store.current())!.fencingToken;
    expect(await store.publishFenced(snapshotOf(modelId, 4), token)).toEqual({
      accepted: false,
      reason: "stale-version",
      version: 5,
    });
    expect(await store.publish(snapshotOf(modelId, 6))).toBe(true);
    expect((await store.current())!.version).toBe(6);
  });

  it("keeps two models apart, even under one prefix", async () => {
    const a = await setup();
    const b = await setup();
    expect(await a.store.publish(snapshotOf(a.modelId, 9))).toBe(true);
    expect(await b.store.current()).toBeUndefined();
    expect(await b.store.publish(snapshotOf(b.modelId, 1))).toBe(true);
    expect((await a.store.current())!.version).toBe(9);
    expect((await b.store.current())!.modelId).toBe(b.modelId);
    // Each model has its own lease, snapshot and channel.
    expect(a.store.keys.lease).not.toBe(b.store.keys.lease);
    expect(a.store.keys.announce).not.toBe(b.store.keys.announce);
    // A snapshot of one model is never written to the other's store.
    const err = await rejection(b.store.publish(snapshotOf(a.modelId, 10)));
    expect(isLayercacheError(err, "INTERNAL")).toBe(true);
    expect((await b.store.current())!.version).toBe(1);
  });

  it("refuses a stale fencing token inside the script, even with a higher version", async () => {
    const modelId = uniqueModel();
    const first = new TrainerLease({
      connection: suite.connection,
      prefix,
      modelId,
      holderId: "first",
      ttlMs: 300,
      renewEveryMs: 100,
    });
    leases.push(first);
    expect(await first.tryAcquire()).toBe(true);
    const staleToken = first.token!;
    const store = new RedisStateStore({
      connection: suite.connection,
      prefix,
      modelId,
      layout: LAYOUT,
      fencing: first,
    });
    stores.push(store);
    expect(await store.publish(snapshotOf(modelId, 1))).toBe(true);

    // The first holder stalls (stops renewing); the lease expires and a second replica takes it.
    first.abandon();
    const second = new TrainerLease({
      connection: suite.connection,
      prefix,
      modelId,
      holderId: "second",
      ttlMs: 5_000,
    });
    leases.push(second);
    await second.acquire();
    expect(second.token).toBeGreaterThan(staleToken);

    const outcome = await store.publishFenced(snapshotOf(modelId, 100), staleToken);
    expect(outcome).toEqual({ accepted: false, reason: "stale-token", version: 1 });
    expect((await store.current())!.version).toBe(1);

    // Through the CacheStateStore interface the refusal is LEASE_LOST, and the source is told.
    const fenced: string[] = [];
    const stale: FencingSource = {
      fencingToken: () => staleToken,
      fenced: (reason) => void fenced.push(reason),
    };
    const staleStore = new RedisStateStore({ connection: suite.connection, prefix, modelId, fencing: stale });
    const err = await rejection(staleStore.publish(snapshotOf(modelId, 101)));
    expect(isLayercacheError(err, "LEASE_LOST")).toBe(true);
    expect(fenced).toEqual(["stale-token"]);

    // Without any lease in Redis: refused too.
    await second.release();
    expect((await store.publishFenced(snapshotOf(modelId, 102), second.fencingToken() ?? 1)).reason).toBe(
      "no-lease",
    );
    // And a replica that holds no lease does not even ask.
    const err2 = await rejection(store.publish(snapshotOf(modelId, 103)));
    expect(isLayercacheError(err2, "LEASE_LOST")).toBe(true);
    // The new holder publishes from where the store is.
    expect(await second.tryAcquire()).toBe(true);
    const fresh = new RedisStateStore({
      connection: suite.connection,
      prefix,
      modelId,
      layout: LAYOUT,
      fencing: second,
    });
    expect(await fresh.publish(snapshotOf(modelId, 2))).toBe(true);
  });

  it("rejects junk in Redis with STATE_INVALID, logs it, and the watcher keeps its last good snapshot", async () => {
    const { store, modelId } = await setup();
    const seen: SharedSnapshot[] = [];
    const watcher = store.watch((s) => void seen.push(s), { pollMs: 50 });
    expect(await store.publish(snapshotOf(modelId, 1))).toBe(true);
    await waitFor(() => seen.length === 1, 5_000, "version 1");

    const junk: [string, string | Buffer][][] = [
      [
        ["version", "2"],
        ["meta", "{this is not json"],
      ],
      [
        ["version", "3"],
        ["meta", (await redis.hget(store.keys.snapshot, "meta"))!.replace('"version":1', '"version":3')],
        ["head:0", Buffer.from([0x4c, 0x43, 0x58, 0x48, 1, 0, 9, 9, 9, 9])],
      ],
      [
        ["version", "many"],
        ["meta", "{}"],
      ],
    ];
    for (const fields of junk) {
      await redis.del(store.keys.snapshot);
      await redis.hset(store.keys.snapshot, ...fields.flat());
      await redis.publish(store.keys.announce, String(fields[0]![1]));
      const err = await rejection(store.current());
      expect(isLayercacheError(err, "STATE_INVALID"), String(err)).toBe(true);
      await watcher.check();
      expect(watcher.version).toBe(1);
      expect(watcher.last!.version).toBe(1);
    }
    // A key of the wrong type under the snapshot's name is junk too.
    await redis.del(store.keys.snapshot);
    await redis.set(store.keys.snapshot, "a string");
    expect(isLayercacheError(await rejection(store.current()), "STATE_INVALID")).toBe(true);
    await watcher.check();
    expect(seen.map((s) => s.version)).toEqual([1]);
    expect(log.text()).toContain("invalid cache snapshot in Redis");
    expect(log.text()).toContain("keeping the last good one");

    // A valid publish repairs the key, and the watcher moves on.
    expect(await store.publish(snapshotOf(modelId, 4))).toBe(true);
    await waitFor(() => seen.length === 2, 5_000, "version 4");
    expect(watcher.version).toBe(4);

    // A replica starting now with junk in Redis starts cold instead of failing.
    await redis.hset(store.keys.snapshot, "meta", "junk", "version", "5");
    expect(await store.tolerant().current()).toBeUndefined();
  });

  it("announces new versions over pub/sub within a short time", async () => {
    const { store, modelId } = await setup();
    const seen: { version: number; at: number }[] = [];
    // Polling far too slow to matter: only pub/sub can deliver in time.
    const watcher = store.watch((s) => void seen.push({ version: s.version, at: Date.now() }), {
      pollMs: 60_000,
    });
    await waitFor(() => suite.connection.ready);
    await new Promise((resolve) => setTimeout(resolve, 200)); // let SUBSCRIBE land
    for (const version of [1, 2, 3]) {
      const sent = Date.now();
      expect(await store.publish(snapshotOf(modelId, version))).toBe(true);
      await waitFor(() => seen.some((s) => s.version === version), 2_000, `version ${version} over pub/sub`);
      expect(seen.at(-1)!.at - sent).toBeLessThan(1_000);
    }
    expect(seen.map((s) => s.version)).toEqual([1, 2, 3]);
    await watcher.stop();
    expect(await store.publish(snapshotOf(modelId, 4))).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toHaveLength(3);
  });

  it("finds new versions by polling when pub/sub is off, and skips what the caller already has", async () => {
    const { store, modelId } = await setup();
    expect(await store.publish(snapshotOf(modelId, 3))).toBe(true);
    const seen: number[] = [];
    const watcher = store.watch((s) => void seen.push(s.version), { pubsub: false, pollMs: 100, after: 3 });
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(seen).toEqual([]);
    expect(await store.publish(snapshotOf(modelId, 4))).toBe(true);
    await waitFor(() => seen.length === 1, 2_000, "version 4 by polling");
    expect(seen).toEqual([4]);
    expect(watcher.last!.version).toBe(4);
  });

  it("does not deliver a version twice when announcements and polls race", async () => {
    const { store, modelId } = await setup();
    const seen: number[] = [];
    store.watch((s) => void seen.push(s.version), { pollMs: 5 });
    for (let v = 1; v <= 20; v++) expect(await store.publish(snapshotOf(modelId, v))).toBe(true);
    await waitFor(() => seen.at(-1) === 20, 5_000, "version 20");
    expect(seen).toEqual([...seen].sort((x, y) => x - y));
    expect(new Set(seen).size).toBe(seen.length);
  });
});
