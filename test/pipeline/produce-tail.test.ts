/**
 * `layercache produce` and `layercache tail` against the real broker: the
 * command's frames decode as the worker will read them (ids, labels, keys
 * spread over the partitions); pacing holds the rate; and the tail's summary
 * of a real worker's predictions (300 frames) adds up, in process and as the
 * command's --json output.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SCHEMA_HEADER } from "../../src/codec/envelope.ts";
import { decodeFrame } from "../../src/codec/frame.ts";
import { decodePrediction } from "../../src/codec/prediction.ts";
import { startWorker } from "../../src/pipeline/worker.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import { createLogger } from "../../src/telemetry/logger.ts";
import { openFrameSource } from "../../src/tools/frame-source.ts";
import { frameOrder, produceFrames } from "../../src/tools/frame-producer.ts";
import { PredictionTail } from "../../src/tools/prediction-tail.ts";
import type { SummarySnapshot } from "../../src/tools/prediction-summary.ts";
import { createTopics, uniqueName } from "../helpers/services.ts";
import { testSplit } from "../helpers/model.ts";
import { ROOT } from "../setup/discovery.ts";
import type { TestTopics } from "./helpers.ts";
import {
  TopicCollector,
  answeredToEnd,
  headerText,
  pipelineFixture,
  workerConfig,
  workerEnv,
} from "./helpers.ts";

const FRAMES = 300;
const log = createLogger({ level: "silent", workerId: "test" });

/** Runs `layercache <args>` bound to the test topics; resolves with its exit code and output. */
function cli(
  topics: TestTopics,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Only what the test sets: a LAYERCACHE_ variable from the outer environment would change the run.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("LAYERCACHE_")),
  );
  const child = spawn(process.execPath, [join(ROOT, "bin", "layercache.js"), ...args], {
    cwd: ROOT,
    env: { ...inherited, ...workerEnv(topics) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
}

describe("layercache produce", () => {
  const fixture = pipelineFixture("produce", 4);

  it("publishes shuffled test-split frames the worker can decode, keyed over all partitions", async () => {
    const { kafka, topics } = fixture;
    const run = await cli(topics, [
      "produce",
      ...["--count", String(FRAMES), "--shuffle", "--seed", "3", "--id-prefix", "p"],
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(
      new RegExp(`^sent ${FRAMES} frames to ${topics.frames} in [\\d.]+ s \\(\\d+ frames/s\\)\\n$`),
    );

    const collector = await new TopicCollector(kafka, topics.frames).start();
    try {
      await collector.caughtUp(fixture.admin);
    } finally {
      await collector.stop();
    }
    expect(collector.messages).toHaveLength(FRAMES);
    const data = await testSplit();
    const order = frameOrder(data.count, 3);
    const size = data.width * data.height;
    for (const m of collector.messages) {
      const frame = decodeFrame(m.value, m.headers, { maxMessageBytes: 1 << 20 });
      expect(String(m.key)).toBe(frame.id);
      expect(headerText(m.headers, SCHEMA_HEADER)).toMatch(/^[0-9a-f]{64}$/);
      const n = Number(/^p-(\d+)$/.exec(frame.id)![1]);
      const i = order[n]!;
      expect(frame).toMatchObject({ width: 28, height: 28, channels: 1, encoding: "RAW8" });
      expect(frame.label).toBe(data.labels[i]);
      expect(
        Buffer.from(frame.pixels).equals(Buffer.from(data.images.subarray(i * size, (i + 1) * size))),
      ).toBe(true);
    }
    const ids = new Set(collector.messages.map((m) => String(m.key)));
    expect(ids.size).toBe(FRAMES);
    const partitions = new Set(collector.messages.map((m) => m.partition));
    expect(partitions.size).toBe(4);
  }, 120_000);

  it("holds the requested rate", async () => {
    const { kafka, admin } = fixture;
    const topic = uniqueName("produce-paced");
    const drop = await createTopics(admin, [topic], 2);
    try {
      const source = await openFrameSource("fashion-mnist");
      const r = await produceFrames(kafka, source, { topic, count: 60, rate: 100, idPrefix: "r", log });
      expect(r).toMatchObject({ sent: 60, aborted: false });
      // The 60th frame is due 590 ms after the first.
      expect(r.elapsedMs).toBeGreaterThanOrEqual(580);
      expect(r.ratePerSecond).toBeLessThanOrEqual(105);
    } finally {
      await drop();
    }
  }, 60_000);
});

describe("layercache tail", () => {
  const fixture = pipelineFixture("tail", 4);

  it("summarises a real worker's predictions for 300 frames", async () => {
    const { kafka, topics } = fixture;
    const source = await openFrameSource("fashion-mnist");
    const produced = await produceFrames(kafka, source, {
      topic: topics.frames,
      count: FRAMES,
      shuffleSeed: 11,
      idPrefix: "t",
      log,
    });
    expect(produced.sent).toBe(FRAMES);

    const tail = await PredictionTail.start(kafka, {
      topic: topics.predictions,
      fromBeginning: true,
      expect: FRAMES,
      maxMessageBytes: 1 << 20,
      log,
    });
    const collector = await new TopicCollector(kafka, topics.predictions).start();
    const config = workerConfig(topics);
    let worker: RunningWorker | undefined;
    let snapshot: SummarySnapshot;
    try {
      worker = await startWorker(config);
      expect(await tail!.run({ timeoutMs: 120_000 })).toBe("complete");
      snapshot = tail!.summary.snapshot(Date.now());
      await answeredToEnd(fixture, collector);
      await worker.stop();
      await worker.done;
    } finally {
      await tail?.stop();
      await worker?.stop();
      await collector.stop();
    }

    expect(snapshot).toMatchObject({
      predictions: FRAMES,
      distinctFrames: FRAMES,
      duplicates: 0,
      invalid: 0,
    });
    expect(snapshot.exits.reduce((n, e) => n + e.frames, 0)).toBe(FRAMES);
    expect(snapshot.workers).toEqual({ [config.workerId]: FRAMES });
    expect(snapshot.throughput.perSecond).toBeGreaterThan(0);
    expect(snapshot.latencyMs!.p50).toBeLessThanOrEqual(snapshot.latencyMs!.max);

    // The same figures, computed straight from the topic.
    const predictions = collector.messages.map((m) =>
      decodePrediction(m.value, m.headers, { maxMessageBytes: 1 << 20 }),
    );
    expect(predictions).toHaveLength(FRAMES);
    const correct = predictions.filter((p) => p.label === p.truthLabel).length;
    expect(snapshot.accuracy).toMatchObject({ labelled: FRAMES, correct });
    expect(snapshot.audited.frames).toBe(predictions.filter((p) => p.audited).length);
    const saved = predictions.reduce((n, p) => n + p.macsSaved, 0);
    const full = predictions.reduce((n, p) => n + p.macs + p.macsSaved, 0);
    expect(snapshot.macsSavedPct).toBeCloseTo((100 * saved) / full, 9);
    for (const e of snapshot.exits) {
      expect(e.frames).toBe(predictions.filter((p) => p.exit === e.exit).length);
    }

    // The command, reading the finished topic from the beginning, agrees and prints one JSON object.
    const run = await cli(topics, [
      "tail",
      "--from-beginning",
      "--expect",
      String(FRAMES),
      "--json",
      "--timeout",
      "60",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const json = JSON.parse(run.stdout) as SummarySnapshot & { end: string; expect: number };
    expect(json).toMatchObject({
      end: "complete",
      expect: FRAMES,
      predictions: FRAMES,
      distinctFrames: FRAMES,
      duplicates: 0,
      accuracy: snapshot.accuracy,
      audited: snapshot.audited,
      exits: snapshot.exits,
      workers: snapshot.workers,
    });
  }, 300_000);

  it("stops at its timeout when fewer frames than expected arrive, and exits 1", async () => {
    // Without --from-beginning it reads only new predictions, and none come.
    const run = await cli(fixture.topics, ["tail", "--expect", "5", "--timeout", "2"]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toContain("distinct frames  0 of 5");
    expect(run.stdout).toContain("stopped: timeout after 2 s");
  }, 60_000);
});
