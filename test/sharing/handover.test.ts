/**
 * Who trains, with worker processes on the real broker and Redis:
 *
 * - the trainer is killed (SIGKILL, so it never releases its lease): once the
 *   lease has run out another replica takes it up and publishes under a larger
 *   fencing token, and every frame is still answered;
 * - a trainer whose lease was taken over behind its back (the test takes it,
 *   as a replica would after the key expired while the trainer was paused)
 *   still believes it holds it, so its next publish reaches Redis, whose
 *   publish script refuses the stale token; the trainer goes back to
 *   forwarding, and trains again under a new token once the lease is free
 *   (this replica learns between batches, not on a learner thread).
 *   Publishing through the script with stale tokens is covered in detail by
 *   test/state/redis-store.test.ts; this is the same check seen from a worker.
 */
import { describe, expect, inject, it } from "vitest";
import { TrainerLease } from "../../src/state/lease.ts";
import { StateConnection } from "../../src/state/redis-connection.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { MODEL_DIR } from "../helpers/model.ts";
import type { Child } from "../pipeline/child.ts";
import { answeredToEnd } from "../pipeline/helpers.ts";
import {
  drained,
  fleetFixture,
  produceFrames,
  ready,
  replicaMetric,
  startReplica,
  until,
  watchFleet,
} from "./helpers.ts";

const CHUNK = 400;

describe("the trainer lease across worker processes", () => {
  describe("when the trainer is killed", () => {
    const fixture = fleetFixture("kill", 4);

    it("passes to another replica, which publishes under a larger token; no frame is lost", async () => {
      const { admin, topics } = fixture;
      const redisUrl = inject("redisUrl");
      await watchFleet(fixture, redisUrl, async ({ state, predictions }) => {
        const replicas = new Map<string, Child>();
        const ids: string[] = [];
        let next = 0;
        const feed = async () => {
          ids.push(...(await produceFrames(fixture, "k", CHUNK, next)));
          next += CHUNK;
        };
        for (const id of ["kill-a", "kill-b"]) replicas.set(id, startReplica(fixture, id, redisUrl));
        await Promise.all([...replicas.values()].map(ready));
        await until("the first snapshot", async () => {
          if (await drained(admin, topics.group, topics.frames)) await feed();
          return ((await state.snapshot())?.version ?? 0) >= 1;
        });
        const lease = (await state.lease())!;
        const trainerId = lease.holder.split("/")[0]!;
        const survivorId = [...replicas.keys()].find((id) => id !== trainerId)!;
        const published = (await state.snapshot())!;
        expect(published.publisher).toBe(trainerId);
        expect(published.fencingToken).toBe(lease.token);

        const trainer = replicas.get(trainerId)!;
        trainer.process.kill("SIGKILL");
        expect((await trainer.exit).signal).toBe("SIGKILL");
        await feed();
        await until(
          "a snapshot from the survivor",
          async () => {
            const s = await state.snapshot();
            if (s && s.publisher === survivorId) return true;
            if (await drained(admin, topics.group, topics.frames)) await feed();
            return false;
          },
          180_000,
        );
        const taken = (await state.lease())!;
        const after = (await state.snapshot())!;
        expect(taken.holder.startsWith(`${survivorId}/`)).toBe(true);
        expect(taken.token).toBeGreaterThan(lease.token);
        expect(after.fencingToken).toBe(taken.token);
        expect(after.version).toBeGreaterThan(published.version);
        expect(replicas.get(survivorId)!.output()).toContain("training the fleet's cache heads");

        await answeredToEnd(fixture, predictions);
        expect(new Set(predictions.messages.map((m) => String(m.key)))).toEqual(new Set(ids));
        process.stderr.write(
          `[handover] ${trainerId} killed at version ${published.version} (token ${lease.token}); ` +
            `${survivorId} published version ${after.version} under token ${taken.token}; ${ids.length} frames\n`,
        );
      });
    }, 240_000);
  });

  describe("when its lease was taken over behind its back", () => {
    const fixture = fleetFixture("stale", 2);

    it("has its publish refused by Redis, forwards, and trains again once the lease is free", async () => {
      const { admin, topics } = fixture;
      const redisUrl = inject("redisUrl");
      await watchFleet(fixture, redisUrl, async ({ state, predictions }) => {
        const connection = new StateConnection({ url: redisUrl });
        const ids: string[] = [];
        let next = 0;
        const feed = async () => {
          ids.push(...(await produceFrames(fixture, "s", CHUNK, next)));
          next += CHUNK;
        };
        try {
          // A long lease: renewing it (every 20 s) must not notice the theft before a publish does.
          // This replica learns between batches on its inference thread (the other tests here and in
          // this folder use the default learner thread), so both ways of training meet a stale token.
          const replica = startReplica(fixture, "stale-a", redisUrl, {
            LAYERCACHE_LEASE_TTL_MS: "60000",
            LAYERCACHE_LEARNER_THREAD: "false",
          });
          await ready(replica);
          await until("the first snapshot", async () => {
            if (await drained(admin, topics.group, topics.frames)) await feed();
            return ((await state.snapshot())?.version ?? 0) >= 1;
          });
          const own = (await state.lease())!;
          expect(own.holder.startsWith("stale-a/")).toBe(true);

          // What a replica would do after the key expired: it is free, so take it (a new, larger token).
          await connection.waitReady(10_000);
          const thief = new TrainerLease({
            connection,
            prefix: fixture.prefix,
            modelId: loadManifest(MODEL_DIR).modelId,
            holderId: "thief",
            ttlMs: 60_000,
          });
          await connection.client.del(thief.keys.lease);
          expect(await thief.tryAcquire()).toBe(true);
          const stolen = thief.token!;
          expect(stolen).toBeGreaterThan(own.token);
          const stolenAt = (await state.snapshot())!;
          await until("the trainer's refused publish", async () => {
            if (await drained(admin, topics.group, topics.frames)) await feed();
            return replica.output().includes('"reason":"stale-token"');
          });
          await until("the trainer to go back to forwarding", () =>
            replica.output().includes("stopped training the cache heads"),
          );
          // Nothing it trained after the theft was stored.
          const refused = (await state.snapshot())!;
          expect(refused.version).toBe(stolenAt.version);
          expect(refused.fencingToken).toBe(own.token);
          await feed();
          await until(
            "examples forwarded",
            async () => (await replicaMetric(replica, "layercache_examples_forwarded_total")) > 0,
          );

          await thief.release();
          await until("a snapshot under the replica's new lease", async () => {
            if (await drained(admin, topics.group, topics.frames)) await feed();
            const s = await state.snapshot();
            return s !== undefined && s.fencingToken > stolen && s.version > refused.version;
          });
          const resumed = (await state.lease())!;
          expect(resumed.holder.startsWith("stale-a/")).toBe(true);

          await answeredToEnd(fixture, predictions);
          expect(new Set(predictions.messages.map((m) => String(m.key)))).toEqual(new Set(ids));
        } finally {
          await connection.close();
        }
      });
    }, 180_000);
  });
});
