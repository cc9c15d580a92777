/**
 * SLO mode through the real broker: a worker whose objective (p95 of 1 ms
 * produce-to-prediction) no real run can meet steps its strictness down to
 * the floor, says so in its metrics, and still answers every frame exactly
 * once. The controller's law itself is tested in test/slo; this is the
 * wiring: delivered predictions feed the loop, the loop reaches the metrics.
 */
import { describe, expect, it } from "vitest";
import { decodePrediction } from "../../src/codec/prediction.ts";
import { startWorker } from "../../src/pipeline/worker.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import { freePort } from "../../src/tools/local-services.ts";
import { metric, scrape } from "../helpers/prometheus.ts";
import {
  TopicCollector,
  committedToEnd,
  fashionFrames,
  pipelineFixture,
  produce,
  workerConfig,
} from "./helpers.ts";

const FRAMES = 1_500;

describe("SLO mode (worker in process)", () => {
  const fixture = pipelineFixture("slo", 4);

  it("steps down to the floor under an objective it cannot meet, answering every frame once", async () => {
    const { admin, kafka, topics } = fixture;
    const frames = await fashionFrames("s", FRAMES);
    await produce(
      kafka,
      topics.frames,
      frames.map((f) => f.message),
    );
    const collector = await new TopicCollector(kafka, topics.predictions).start();
    const port = await freePort();
    let worker: RunningWorker | undefined;
    try {
      worker = await startWorker(
        workerConfig(topics, {
          LAYERCACHE_METRICS_PORT: String(port),
          LAYERCACHE_SLO_P95_MS: "1",
          LAYERCACHE_SLO_PERIOD_MS: "100",
        }),
      );
      // Watch the strictness while the frames go through: once the stream ends the load is
      // light, and after a cool-down the controller starts back towards strict.
      let lowest = 1;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const level = metric(await scrape(port), "layercache_slo_strictness");
          if (level !== undefined) lowest = Math.min(lowest, level);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      await committedToEnd(admin, topics.group, topics.frames);
      watching = false;
      await watcher;
      expect(lowest).toBe(0);
      // From 1 to 0 takes at least four steps down (at most 0.3 each).
      const samples = await scrape(port);
      expect(metric(samples, "layercache_slo_steps_total", { action: "down" })).toBeGreaterThanOrEqual(4);
      await collector.caughtUp(admin);
      await worker.stop();
      await worker.done;
    } finally {
      await worker?.stop();
      await collector.stop();
    }
    const ids = collector.messages.map(
      (m) => decodePrediction(m.value, m.headers, { maxMessageBytes: 1 << 20 }).frameId,
    );
    expect(new Set(ids).size).toBe(FRAMES);
    expect(ids.length).toBe(FRAMES);
  });
});
