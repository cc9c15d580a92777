/**
 * A Redis outage under a fleet of worker processes, on a private redis-server
 * (password required, nothing on disk) that is stopped mid-stream and started
 * again empty. While it is down the replicas keep answering, early exits
 * included, with the heads they hold, and the examples they cannot send are
 * dropped and counted. Once it is back, a trainer takes the lease again and
 * publishes a version above every one the fleet had (versions never go back),
 * and both replicas answer with it: sharing resumed. No frame is lost, and
 * the password never appears in the replicas' output.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Child } from "../pipeline/child.ts";
import { answeredToEnd, committedToEnd } from "../pipeline/helpers.ts";
import { PrivateRedis } from "../state/helpers.ts";
import {
  decodeAll,
  drained,
  fleetFixture,
  produceFrames,
  ready,
  replicaMetric,
  startReplica,
  until,
  watchFleet,
} from "./helpers.ts";

const PASSWORD = "fleet-pass-5150";
const CHUNK = 500;
const DURING_OUTAGE = 1_500;

describe("a fleet through a Redis outage (replicas as child processes)", () => {
  let server: PrivateRedis;
  // Registered before the fixture's hooks, so that it stops after the replicas.
  beforeAll(async () => {
    server = await PrivateRedis.start(["--requirepass", PASSWORD]);
  });
  afterAll(async () => {
    await server?.dispose();
  });
  const fixture = fleetFixture("outage", 4);

  it("keeps answering with the heads it holds, loses no frame, and shares again afterwards", async () => {
    const { admin, topics } = fixture;
    const redisUrl = server.url(`:${PASSWORD}@`);
    await watchFleet(fixture, redisUrl, async ({ state, predictions }) => {
      const replicas: Child[] = [];
      const ids: string[] = [];
      let next = 0;
      const feed = async (count = CHUNK) => {
        ids.push(...(await produceFrames(fixture, "o", count, next)));
        next += count;
      };
      for (const id of ["outage-a", "outage-b"]) replicas.push(startReplica(fixture, id, redisUrl));
      await Promise.all(replicas.map(ready));
      await until("an open exit", async () => {
        if (await drained(admin, topics.group, topics.frames)) await feed();
        return (await state.snapshot())?.decisions.some((d) => d.open) ?? false;
      });
      await committedToEnd(admin, topics.group, topics.frames);

      await server.stop();
      const outageStart = next;
      await feed(DURING_OUTAGE);
      await answeredToEnd(fixture, predictions);
      const all = decodeAll(predictions.messages);
      const during = all.filter((p) => Number(p.frameId.slice(2)) >= outageStart);
      expect(new Set(during.map((p) => p.frameId)).size).toBe(DURING_OUTAGE);
      // The heads held kept answering.
      expect(during.filter((p) => p.exit >= 0).length).toBeGreaterThan(0);
      const dropped = await Promise.all(
        replicas.map((r) => replicaMetric(r, "layercache_examples_dropped_total")),
      );
      expect(dropped.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      const before = Math.max(...all.map((p) => p.headsVersion));

      await server.start(); // empty: nothing was saved
      await state.waitReady();
      await until(
        "a version above the fleet's, published after the restart",
        async () => {
          if (await drained(admin, topics.group, topics.frames)) await feed();
          return ((await state.snapshot())?.version ?? 0) > before;
        },
        180_000,
      );
      const resumed = (await state.snapshot())!;
      await until("both replicas answering with it", async () => {
        if (await drained(admin, topics.group, topics.frames)) await feed();
        await predictions.caughtUp(admin);
        const workers = new Set(
          decodeAll(predictions.messages)
            .filter((p) => p.headsVersion >= resumed.version)
            .map((p) => p.workerId),
        );
        return workers.size === 2;
      });

      await answeredToEnd(fixture, predictions);
      expect(new Set(predictions.messages.map((m) => String(m.key)))).toEqual(new Set(ids));
      for (const r of replicas) expect(r.output()).not.toContain(PASSWORD);
      process.stderr.write(
        `[outage] ${DURING_OUTAGE} frames answered while Redis was down (${dropped.join(" + ")} examples dropped); ` +
          `version ${before} before, ${resumed.version} published by ${resumed.publisher} after the restart; ` +
          `${ids.length} frames\n`,
      );
    });
  }, 300_000);
});
