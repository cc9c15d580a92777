/**
 * The trainer lease against the real Redis: one holder at a time, renewals
 * keep it, a holder that stops renewing (killed, stalled) loses it at expiry
 * and another replica takes over within the lease time with a larger token,
 * and a holder whose renewals fail considers itself lost by the deadline.
 */
import { describe, expect, it } from "vitest";
import { isLayercacheError } from "../../src/errors/index.ts";
import { TrainerLease } from "../../src/state/lease.ts";
import { connect, stateSuite, uniqueModel, waitFor } from "./helpers.ts";

describe("TrainerLease", () => {
  const suite = stateSuite();
  const { prefix, redis } = suite;

  function lease(modelId: string, holderId: string, ttlMs = 400, conn = suite.connection): TrainerLease {
    return new TrainerLease({
      connection: conn,
      prefix,
      modelId,
      holderId,
      ttlMs,
      renewEveryMs: ttlMs / 4,
      pollMs: 50,
    });
  }

  it("has one holder at a time; the second acquirer waits until the holder releases", async () => {
    const modelId = uniqueModel();
    const a = lease(modelId, "a");
    const b = lease(modelId, "b");
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    expect(b.lastSeenHolder).toMatch(new RegExp(`^${a.token} a/`));
    let acquiredAt = 0;
    const waiting = b.acquire().then((token) => {
      acquiredAt = Date.now();
      return token;
    });
    // Renewals keep a's lease well past its ttl while b waits.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(a.isHeld).toBe(true);
    expect(acquiredAt).toBe(0);
    const releasedAt = Date.now();
    await a.release();
    const token = await waiting;
    expect(token).toBeGreaterThan(1);
    expect(acquiredAt - releasedAt).toBeLessThan(300);
    expect(a.isHeld).toBe(false);
    expect(a.fencingToken()).toBeUndefined();
    await b.release();
  });

  it("passes to another replica within the lease time when the holder dies, with a larger token", async () => {
    const modelId = uniqueModel();
    const ttlMs = 500;
    const holder = lease(modelId, "holder", ttlMs);
    const other = lease(modelId, "other", ttlMs);
    expect(await holder.tryAcquire()).toBe(true);
    const oldToken = holder.token!;
    const waiting = other.acquire();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const diedAt = Date.now();
    holder.abandon(); // killed: no more renewals, no release
    const token = await waiting;
    const took = Date.now() - diedAt;
    expect(token).toBeGreaterThan(oldToken);
    expect(took).toBeLessThan(ttlMs + 250);
    expect(other.isHeld).toBe(true);
    // What Redis holds is the new holder's.
    expect(await redis.get(other.keys.lease)).toBe(`${token} ${other.holderId}`);
    await other.release();
  });

  it("tells a holder that stops hearing from Redis that it lost the lease once it has expired", async () => {
    const modelId = uniqueModel();
    const own = await connect();
    const ttlMs = 600;
    const holder = lease(modelId, "cut-off", ttlMs, own);
    const lost: { reason: string; at: number }[] = [];
    holder.onLost((reason) => void lost.push({ reason, at: Date.now() }));
    expect(await holder.tryAcquire()).toBe(true);
    const cutAt = Date.now();
    // Its Redis connection goes away for good: renewals fail from now on.
    own.client.disconnect(false);
    await waitFor(() => lost.length === 1, 3_000, "lost");
    expect(lost[0]!.reason).toMatch(/expired/);
    // Not before the last successful renewal's ttl ran out, and not much after the first failed one.
    expect(lost[0]!.at - cutAt).toBeLessThanOrEqual(ttlMs + 100);
    expect(holder.fencingToken()).toBeUndefined();
    // Meanwhile another replica can take it.
    const next = lease(modelId, "next", ttlMs);
    expect(await next.acquire()).toBeGreaterThan(0);
    await next.release();
    await own.close();
  });

  it("notices at the next renewal when Redis says the lease is someone else's", async () => {
    const modelId = uniqueModel();
    const holder = lease(modelId, "holder", 2_000);
    const reasons: string[] = [];
    holder.onLost((reason) => void reasons.push(reason));
    expect(await holder.tryAcquire()).toBe(true);
    await redis.set(holder.keys.lease, `999 intruder`, "PX", 2_000);
    await waitFor(() => reasons.length === 1, 2_000, "lost");
    expect(reasons[0]).toMatch(/another replica/);
    expect(holder.isHeld).toBe(false);
    // Release by a former holder never deletes the new holder's lease.
    await holder.release();
    expect(await redis.get(holder.keys.lease)).toBe("999 intruder");
  });

  it("takes over junk under the lease key instead of waiting forever", async () => {
    const modelId = uniqueModel();
    const l = lease(modelId, "x");
    await redis.set(l.keys.lease, "garbage without expiry");
    expect(await l.tryAcquire()).toBe(true);
    await l.release();
    await redis.hset(l.keys.lease, "a", "b");
    expect(await l.tryAcquire()).toBe(true);
    await l.release();
  });

  it("campaigns: acquires, reports loss, acquires again, and releases on abort", async () => {
    const modelId = uniqueModel();
    const events: string[] = [];
    const mine = lease(modelId, "mine", 400);
    const controller = new AbortController();
    const running = mine.campaign(
      {
        onAcquired: (token) => void events.push(`acquired ${token}`),
        onLost: () => void events.push("lost"),
      },
      controller.signal,
    );
    await waitFor(() => events.length === 1, 2_000, "first acquisition");
    // Someone else takes the lease; the campaign waits for it to expire and takes it back.
    await redis.set(mine.keys.lease, "999 other", "PX", 300);
    await waitFor(() => events.length === 3, 3_000, "loss and reacquisition");
    expect(events[1]).toBe("lost");
    expect(Number(events[2]!.split(" ")[1])).toBeGreaterThan(Number(events[0]!.split(" ")[1]));
    controller.abort();
    await running;
    expect(await redis.exists(mine.keys.lease)).toBe(0);
  });

  it("refuses to work on a closed connection", async () => {
    const own = await connect();
    const l = lease(uniqueModel(), "y", 400, own);
    await own.close();
    const err = await l.tryAcquire().catch((e: unknown) => e);
    expect(isLayercacheError(err, "SHUTTING_DOWN")).toBe(true);
  });
});
