/**
 * Rebalances with frames in flight: a second worker joins the group
 * mid-stream (partitions move to it), then the first one stops (they all
 * move back). Every frame must be answered at least once, and the group
 * must commit every partition to its end (the test waits for exactly that,
 * then checks that everything committed was answered). Exactly once, a
 * read_committed reader must see each prediction once: the new owner of a
 * partition fences the old one's transactions and starts after what they
 * committed. This is about the transport, so the cache is off.
 */
import { describe, expect, it } from "vitest";
import { startWorker } from "../../src/pipeline/worker.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import {
  TopicCollector,
  answeredToEnd,
  fashionFrames,
  produce,
  pipelineFixture,
  workerConfig,
} from "./helpers.ts";

const FRAMES = 3_000;

describe.each(["at-least-once", "exactly-once"] as const)(
  "rebalance, %s (two workers in process, cache off)",
  (delivery) => {
    const fixture = pipelineFixture("rebalance", 4);
    const kafka = fixture.kafka;

    it("loses no frame when partitions move between workers mid-stream", async () => {
      const { topics } = fixture;
      const frames = await fashionFrames("r", FRAMES);
      await produce(
        kafka,
        topics.frames,
        frames.map((f) => f.message),
      );
      const predictions = await new TopicCollector(kafka, topics.predictions).start();
      const distinct = () => new Set(predictions.messages.map((m) => String(m.key))).size;
      // A small window keeps frames in flight on every partition when the group changes.
      const settings = {
        LAYERCACHE_CACHE: "false",
        LAYERCACHE_IN_FLIGHT_MAX_FRAMES: "128",
        LAYERCACHE_DELIVERY: delivery,
      };
      const workers: RunningWorker[] = [];
      try {
        const first = await startWorker(workerConfig(topics, settings));
        workers.push(first);
        await predictions.until(() => distinct() >= 300);
        const second = await startWorker(workerConfig(topics, settings));
        workers.push(second);
        await predictions.until(() => distinct() >= 1_500);
        await first.stop();
        await first.done;
        await answeredToEnd(fixture, predictions);
        await second.stop();
        await second.done;
      } finally {
        await Promise.all(workers.map((w) => w.stop()));
        await predictions.stop();
      }

      const ids = predictions.messages.map((m) => String(m.key));
      expect(new Set(ids)).toEqual(new Set(frames.map((f) => f.id)));
      process.stderr.write(
        `[rebalance ${delivery}] ${ids.length} predictions for ${FRAMES} frames (${ids.length - FRAMES} duplicates); ` +
          `answered by ${workers.map((w) => w.counters().predictions).join(" + ")}\n`,
      );
      if (delivery === "exactly-once") expect(ids).toHaveLength(FRAMES);
    }, 300_000);
  },
);
