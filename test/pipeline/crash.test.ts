/**
 * Crash safety, with the worker as a real process (`node bin/layercache.js
 * worker`), in both delivery modes: it is SIGKILLed mid-stream, a fresh one
 * takes over, and every frame still gets a prediction (and every bad message
 * a dead letter). At least once, frames the first worker answered but had not
 * committed are answered again (duplicates are counted, not forbidden).
 * Exactly once, a read_committed reader sees exactly one of each: the killed
 * worker's open transactions are aborted when the fresh one takes their
 * transactional ids over. The second worker is then stopped with SIGTERM
 * sent twice, and must still shut down cleanly. The cache runs with its
 * default options.
 */
import { afterAll, describe, expect, it } from "vitest";
import type { Message } from "kafkajs";
import type { Child } from "./child.ts";
import { startChild } from "./child.ts";
import type { Collected } from "./helpers.ts";
import { TopicCollector, answeredToEnd, fashionFrames, pipelineFixture, produce } from "./helpers.ts";

const FIRST = 1_500;
const SECOND = 1_000;
const BAD = 10;

/** Messages the codec refuses (undecodable), keyed so that each can be found in the dead-letter topic. */
function badMessages(prefix: string): Message[] {
  return Array.from({ length: BAD }, (_, i) => ({
    key: `${prefix}-bad-${i}`,
    value: Buffer.from(`not a frame ${i}`),
  }));
}

function countKeys(messages: readonly Collected[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(String(m.key), (counts.get(String(m.key)) ?? 0) + 1);
  return counts;
}

describe.each(["at-least-once", "exactly-once"] as const)(
  "crash safety, %s (worker as a child process)",
  (delivery) => {
    const fixture = pipelineFixture(delivery === "exactly-once" ? "crash-eos" : "crash", 4);
    const kafka = fixture.kafka;
    const children: Child[] = [];
    const env = { LAYERCACHE_DELIVERY: delivery };

    // Registered after the fixture, so it runs first: children go before their topics.
    afterAll(async () => {
      for (const c of children) c.process.kill("SIGKILL");
      await Promise.all(children.map((c) => c.exit));
    });

    it("answers every frame across a SIGKILL and a restart", async () => {
      const { admin, topics } = fixture;
      const first = await fashionFrames("c", FIRST);
      const second = await fashionFrames("c", SECOND, FIRST);
      const bad = [...badMessages("first"), ...badMessages("second")];
      await produce(kafka, topics.frames, [...first.map((f) => f.message), ...bad.slice(0, BAD)]);
      const predictions = await new TopicCollector(kafka, topics.predictions).start();
      const deadLetters = await new TopicCollector(kafka, topics.deadLetters).start();
      // What a reader that ignores transactions would see: aborted outputs too.
      const uncommitted = await new TopicCollector(kafka, topics.predictions, {
        readUncommitted: true,
      }).start();
      const distinct = () => new Set(predictions.messages.map((m) => String(m.key))).size;
      try {
        const doomed = startChild(topics, `${delivery}-1`, env);
        children.push(doomed);
        // Mid-stream by construction: some answers are out, and the second half is not even written yet.
        await predictions.until(() => distinct() >= 300);
        doomed.process.kill("SIGKILL");
        expect((await doomed.exit).signal).toBe("SIGKILL");
        const answeredBeforeKill = distinct();

        await produce(kafka, topics.frames, [...second.map((f) => f.message), ...bad.slice(BAD)]);
        const fresh = startChild(topics, `${delivery}-2`, env);
        children.push(fresh);
        await answeredToEnd(fixture, predictions);
        await deadLetters.caughtUp(admin);
        await uncommitted.caughtUp(admin);
        // A second signal while shutting down must not cut the shutdown short.
        fresh.process.kill("SIGTERM");
        await fresh.printed("signal received");
        fresh.process.kill("SIGTERM");
        const exit = await fresh.exit;
        expect(exit, fresh.output()).toEqual({ code: 0, signal: null });
        expect(fresh.output()).toContain("worker stopped");

        const counts = countKeys(predictions.messages);
        const dlqCounts = countKeys(deadLetters.messages);
        expect([...counts.keys()].sort()).toEqual([...first, ...second].map((f) => f.id).sort());
        expect([...dlqCounts.keys()].sort()).toEqual(bad.map((m) => String(m.key)).sort());
        const duplicates = predictions.messages.length - counts.size;
        const dlqDuplicates = deadLetters.messages.length - dlqCounts.size;
        process.stderr.write(
          `[crash ${delivery}] ${answeredBeforeKill} frames answered before SIGKILL; ` +
            `${predictions.messages.length} predictions for ${counts.size} frames (${duplicates} duplicates), ` +
            `${deadLetters.messages.length} dead letters for ${dlqCounts.size} bad messages; ` +
            `a read_uncommitted reader saw ${uncommitted.messages.length} predictions\n`,
        );
        if (delivery === "exactly-once") {
          expect(duplicates).toBe(0);
          expect(dlqDuplicates).toBe(0);
        }
      } finally {
        await predictions.stop();
        await deadLetters.stop();
        await uncommitted.stop();
      }
    }, 300_000);
  },
);
