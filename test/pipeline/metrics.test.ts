/**
 * The worker's telemetry against the real broker: /healthz answers 503 while
 * the worker starts, 200 while it runs, and nothing once it has stopped;
 * /metrics counts exactly what the worker consumed and delivered (checked
 * against the outputs read back from the topics), in both delivery modes.
 * The cache runs with its default options.
 */
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { decodePrediction } from "../../src/codec/prediction.ts";
import { startWorker } from "../../src/pipeline/worker.ts";
import { DLQ_HEADERS } from "../../src/transport/kafka/dead-letter.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import { healthz, metric, scrape } from "../helpers/prometheus.ts";
import {
  TopicCollector,
  answeredToEnd,
  fashionFrames,
  headerText,
  pipelineFixture,
  produce,
  workerConfig,
} from "./helpers.ts";

const GOOD = 400;

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe.each(["at-least-once", "exactly-once"] as const)("telemetry, %s (worker in process)", (delivery) => {
  const fixture = pipelineFixture("metrics", 4);
  const kafka = fixture.kafka;

  it("reports health as it starts, runs and stops, and counts what it delivered", async () => {
    const { admin, topics } = fixture;
    const good = await fashionFrames("m", GOOD);
    const bad = [
      { key: "bad-0", value: Buffer.from("not avro") },
      { key: "bad-1", value: Buffer.from("not avro either") },
      { key: "bad-2", value: Buffer.alloc(0) },
    ];
    await produce(kafka, topics.frames, [...good.map((f) => f.message), ...bad]);
    const predictions = await new TopicCollector(kafka, topics.predictions).start();
    const deadLetters = await new TopicCollector(kafka, topics.deadLetters).start();
    const port = await freePort();

    let worker: RunningWorker | undefined;
    const seenWhileStarting: number[] = [];
    try {
      const starting = startWorker(
        workerConfig(topics, { LAYERCACHE_METRICS_PORT: String(port), LAYERCACHE_DELIVERY: delivery }),
      );
      let started = false;
      void starting.then(() => (started = true)).catch(() => undefined);
      // The endpoint is up before the model is loaded, and says so.
      while (!started) {
        const answer = await healthz(port).catch(() => undefined);
        if (answer && !started) {
          seenWhileStarting.push(answer.status);
          if (answer.status === 503)
            expect(answer.body).toMatchObject({ healthy: false, status: "starting" });
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      worker = await starting;
      expect(worker.metricsPort).toBe(port);
      expect(seenWhileStarting).toContain(503);
      expect(await healthz(port)).toMatchObject({
        status: 200,
        body: {
          healthy: true,
          status: "running",
          consuming: true,
          inference: true,
          delivery,
        },
      });

      await answeredToEnd(fixture, predictions);
      await deadLetters.caughtUp(admin);
      const samples = await scrape(port);
      const delivered = predictions.messages.map((m) =>
        decodePrediction(m.value, m.headers, { maxMessageBytes: 1 << 20 }),
      );
      expect(delivered).toHaveLength(GOOD);
      const sum = (f: (p: (typeof delivered)[number]) => number) => delivered.reduce((a, p) => a + f(p), 0);

      expect(metric(samples, "layercache_frames_consumed_total")).toBe(GOOD + bad.length);
      expect(metric(samples, "layercache_predictions_total")).toBe(GOOD);
      expect(deadLetters.messages).toHaveLength(bad.length);
      expect(metric(samples, "layercache_dead_letters_total")).toBe(bad.length);
      for (const reason of new Set(
        deadLetters.messages.map((m) => headerText(m.headers, DLQ_HEADERS.reason)!),
      ))
        expect(metric(samples, "layercache_dead_letters_total", { reason }), reason).toBe(
          deadLetters.messages.filter((m) => headerText(m.headers, DLQ_HEADERS.reason) === reason).length,
        );
      expect(metric(samples, "layercache_exit_hits_total")).toBe(GOOD);
      expect(metric(samples, "layercache_exit_hits_total", { exit: "backbone" })).toBe(
        delivered.filter((p) => p.exit === -1).length,
      );
      // Every exit is there from the start, at 0 until it answers.
      for (let e = 0; e < worker.model.exits; e++)
        expect(metric(samples, "layercache_exit_hits_total", { exit: String(e) })).toBe(
          delivered.filter((p) => p.exit === e).length,
        );
      // Every exit's state is there; a threshold only where it is open.
      for (let e = 0; e < worker.model.exits; e++) {
        const open = metric(samples, "layercache_exit_open", { exit: String(e) });
        expect([0, 1], `exit ${e}`).toContain(open);
        const threshold = metric(samples, "layercache_exit_threshold", { exit: String(e) });
        if (open === 1) expect(threshold).toBeGreaterThan(0);
        else expect(threshold).toBeUndefined();
      }
      expect(metric(samples, "layercache_audited_frames_total")).toBe(
        delivered.filter((p) => p.audited).length,
      );
      expect(metric(samples, "layercache_macs_executed_total")).toBe(sum((p) => p.macs));
      expect(metric(samples, "layercache_macs_saved_total")).toBe(sum((p) => p.macsSaved));
      for (const h of ["queue", "compute", "end_to_end"])
        expect(metric(samples, `layercache_${h}_seconds_count`), h).toBe(GOOD);
      expect(metric(samples, "layercache_end_to_end_seconds_sum")).toBeCloseTo(
        sum((p) => p.endToEndMs) / 1000,
        3,
      );
      expect(metric(samples, "layercache_batch_frames_sum")).toBe(GOOD);
      expect(metric(samples, "layercache_batch_frames_count")).toBe(worker.counters().batches);
      expect(metric(samples, "layercache_heads_version")).toBe(
        Math.max(...delivered.map((p) => p.headsVersion)),
      );
      // Everything consumed and answered: no lag, nothing in flight, nothing paused.
      for (let p = 0; p < 4; p++)
        expect(metric(samples, "layercache_consumer_lag", { partition: String(p) }), `partition ${p}`).toBe(
          0,
        );
      expect(metric(samples, "layercache_in_flight_frames")).toBe(0);
      expect(metric(samples, "layercache_paused_partitions")).toBe(0);
      expect(
        metric(samples, "layercache_worker_info", {
          delivery,
          model_id: worker.model.modelId,
        }),
      ).toBe(1);
      expect(metric(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
      if (delivery === "exactly-once") {
        expect(metric(samples, "layercache_transactions_total", { result: "committed" })).toBeGreaterThan(0);
        expect(metric(samples, "layercache_transactions_total", { result: "aborted" })).toBe(0);
        expect(metric(samples, "layercache_transactions_total", { result: "fenced" })).toBe(0);
      }

      await worker.stop();
      await worker.done;
      expect(worker.health()).toMatchObject({ healthy: false, status: "stopped" });
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await worker?.stop();
      await predictions.stop();
      await deadLetters.stop();
    }
  }, 300_000);
});
