/**
 * The worker in this process against the real broker: 2,000 real
 * Fashion-MNIST frames over 4 partitions in, exactly one prediction per frame
 * out. The cache runs with its default options.
 */
import { describe, expect, it } from "vitest";
import { decodePrediction } from "../../src/codec/prediction.ts";
import type { Prediction } from "../../src/codec/prediction.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { startWorker } from "../../src/pipeline/worker.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import { MODEL_DIR } from "../helpers/model.ts";
import {
  TopicCollector,
  committedToEnd,
  fashionFrames,
  produce,
  pipelineFixture,
  workerConfig,
} from "./helpers.ts";

const FRAMES = 2_000;

describe("pipeline worker (in process)", () => {
  const fixture = pipelineFixture("worker", 4);
  const kafka = fixture.kafka;

  it("answers each of 2,000 frames exactly once", async () => {
    const { admin, topics } = fixture;
    const frames = await fashionFrames("a", FRAMES);
    await produce(
      kafka,
      topics.frames,
      frames.map((f) => f.message),
    );
    const collector = await new TopicCollector(kafka, topics.predictions).start();
    const config = workerConfig(topics);
    let worker: RunningWorker | undefined;
    try {
      worker = await startWorker(config);
      // Done when every frame is committed (so answered), and everything answered has been read.
      await committedToEnd(admin, topics.group, topics.frames);
      await collector.caughtUp(admin);
      await worker.stop();
      await worker.done;
    } finally {
      await worker?.stop();
      await collector.stop();
    }

    const predictions: Prediction[] = collector.messages.map((m) => {
      const p = decodePrediction(m.value, m.headers, { maxMessageBytes: 1 << 20 });
      expect(String(m.key)).toBe(p.frameId);
      return p;
    });
    const ids = new Set(predictions.map((p) => p.frameId));
    expect(ids.size).toBe(FRAMES);
    expect([...ids].sort()).toEqual(frames.map((f) => f.id).sort());
    // One worker, no rebalance, clean stop: nothing was delivered twice.
    expect(predictions).toHaveLength(FRAMES);
    expect(worker.counters()).toMatchObject({ predictions: FRAMES, deadLetters: 0, inFlight: 0 });

    const manifest = loadManifest(MODEL_DIR);
    const truth = new Map(frames.map((f) => [f.id, f.label]));
    for (const p of predictions) {
      expect(p.labelName).toBe(manifest.classes[p.label]);
      expect(p.modelId).toBe(manifest.modelId);
      expect(p.workerId).toBe(config.workerId);
      expect(p.truthLabel).toBe(truth.get(p.frameId));
      expect(p.macsSaved).toBe(Math.max(0, manifest.full.macs - p.macs));
      expect(p.exit).toBeGreaterThanOrEqual(-1);
      expect(p.exit).toBeLessThan(manifest.exits.length);
      // Consumed before answered, on one clock.
      expect(p.queueMs).toBeLessThanOrEqual(p.endToEndMs);
    }
  }, 300_000);
});
