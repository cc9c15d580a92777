/**
 * Junk in the shared example stream, as anything with write access to Redis
 * could put there: a replica training the fleet's heads skips each entry it
 * cannot read, counts it in `layercache_examples_invalid_total`, and goes on
 * answering every frame. The replica is a real worker process on the real
 * broker and Redis.
 */
import { describe, expect, inject, it } from "vitest";
import { answeredToEnd } from "../pipeline/helpers.ts";
import {
  decodeAll,
  fleetFixture,
  produceFrames,
  ready,
  replicaMetric,
  startReplica,
  until,
  watchFleet,
} from "./helpers.ts";

const FRAMES = 300;

describe("junk in the example stream (a replica as a child process)", () => {
  const fixture = fleetFixture("bad-entries", 2);

  it("is skipped and counted while the replica trains and answers every frame", async () => {
    const redisUrl = inject("redisUrl");
    await watchFleet(fixture, redisUrl, async ({ state, predictions }) => {
      const replica = startReplica(fixture, "bad-entries-a", redisUrl);
      await ready(replica);
      await until("the replica to hold the trainer lease", async () => (await state.lease()) !== undefined);
      expect(await replicaMetric(replica, "layercache_examples_invalid_total")).toBe(0);

      // Three entries no replica wrote: bytes that are not an example, an entry without its
      // example field, and an audit record cut short.
      const redis = state.client;
      const key = state.store.keys.examples;
      await redis.xadd(key, "*", "e", Buffer.from("not an example"), "p", "intruder");
      await redis.xadd(key, "*", "x", "1");
      await redis.xadd(key, "*", "a", Buffer.from("LCXA"), "p", "intruder");

      const ids = await produceFrames(fixture, "be", FRAMES);
      await until(
        "the three entries to be counted",
        async () => (await replicaMetric(replica, "layercache_examples_invalid_total")) >= 3,
        30_000,
      );
      await answeredToEnd(fixture, predictions);
      expect(await replicaMetric(replica, "layercache_examples_invalid_total")).toBe(3);
      expect(new Set(decodeAll(predictions.messages).map((p) => p.frameId))).toEqual(new Set(ids));
      expect(replica.output()).toContain("skipped an invalid example");
      expect(replica.process.exitCode).toBeNull();
    });
  });
});
