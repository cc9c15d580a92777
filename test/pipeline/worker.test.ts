/**
 * The worker in this process against the real broker: 2,000 real
 * Fashion-MNIST frames over 4 partitions in, exactly one prediction per frame
 * out, in each delivery mode (and how long each took, from the worker's start
 * until every frame was committed). The cache runs with its default options.
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

describe.each(["at-least-once", "exactly-once"] as const)("pipeline worker, %s (in process)", (delivery) => {
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
    const config = workerConfig(topics, { LAYERCACHE_DELIVERY: delivery });
    let worker: RunningWorker | undefined;
    let seconds = 0;
    try {
      worker = await startWorker(config);
      const t0 = performance.now();
      // Done when every frame is committed (so answered), and everything answered has been read.
      await committedToEnd(admin, topics.group, topics.frames);
      seconds = (performance.now() - t0) / 1000;
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
    // How long a read_committed reader waits for a prediction after the worker wrote it.
    const visible = collector.messages
      .map((m, i) => m.readAt - predictions[i]!.producedAt)
      .sort((a, b) => a - b);
    const quantile = (q: number) => visible[Math.floor(q * (visible.length - 1))];
    process.stderr.write(
      `[worker ${delivery}] ${FRAMES} frames committed ${seconds.toFixed(2)} s after the start ` +
        `(${Math.round(FRAMES / seconds)} frames/s, polled every 200 ms); prediction written to readable ` +
        `p50 ${quantile(0.5)} ms, p99 ${quantile(0.99)} ms\n`,
    );
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
