/**
 * Ten kinds of bad message mixed into good frames, through a worker in this
 * process: each bad one lands in the dead-letter topic as it was sent (key,
 * value bytes, headers) with the codec's reason and where it came from, and
 * every good frame is still predicted. This test is about the transport, so
 * the cache is off (cacheEnabled false: every frame runs the backbone).
 */
import { describe, expect, it } from "vitest";
import type { Message, RecordMetadata } from "kafkajs";
import { PNG } from "pngjs";
import { SCHEMA_HEADER } from "../../src/codec/envelope.ts";
import type { FrameInvalidReason } from "../../src/codec/envelope.ts";
import { encodeFrame } from "../../src/codec/frame.ts";
import { DLQ_HEADERS } from "../../src/transport/kafka/dead-letter.ts";
import { startWorker } from "../../src/pipeline/worker.ts";
import type { RunningWorker } from "../../src/pipeline/worker.ts";
import { rawFrameMessage } from "../codec/helpers.ts";
import {
  TopicCollector,
  answeredToEnd,
  fashionFrames,
  headerText,
  produce,
  pipelineFixture,
  workerConfig,
} from "./helpers.ts";

const GOOD = 300;
const MAX_MESSAGE_BYTES = 4_096;
const KIND_HEADER = "test-kind";

interface BadMessage {
  kind: string;
  reason: FrameInvalidReason;
  value: Buffer;
  headers: Record<string, string>;
}

function badMessages(): BadMessage[] {
  const valid = (id: string, side = 28) =>
    encodeFrame({
      id,
      producedAt: Date.now(),
      width: side,
      height: side,
      channels: 1,
      pixels: new Uint8Array(side * side),
    });
  const fingerprint = { [SCHEMA_HEADER]: valid("fp").headers[SCHEMA_HEADER]! };
  const png = new PNG({ width: 28, height: 28 });
  png.data.fill(128);
  const corruptPng = PNG.sync.write(png);
  // Past the signature and IHDR: the compressed pixel data no longer inflates.
  for (let i = 45; i < corruptPng.length - 20; i++) corruptPng[i]! ^= 0x5a;
  const corrupt = encodeFrame({
    id: "png",
    producedAt: Date.now(),
    width: 28,
    height: 28,
    channels: 1,
    encoding: "PNG",
    pixels: corruptPng,
  });
  const truncated = valid("truncated");
  return [
    { kind: "empty", reason: "empty", value: Buffer.alloc(0), headers: fingerprint },
    {
      kind: "garbage",
      reason: "undecodable",
      value: Buffer.from("this is not avro at all, just text"),
      headers: fingerprint,
    },
    // No registry is configured, so the framing is fingerprint: a bare body without its header.
    { kind: "no-header", reason: "missing-header", value: valid("no-header").value, headers: {} },
    {
      kind: "unknown-fingerprint",
      reason: "unknown-schema",
      value: valid("unknown").value,
      headers: { [SCHEMA_HEADER]: "00".repeat(32) },
    },
    {
      kind: "truncated-avro",
      reason: "undecodable",
      value: truncated.value.subarray(0, 400),
      headers: truncated.headers,
    },
    { kind: "oversized", reason: "oversized", ...valid("big", 70) },
    {
      kind: "short-pixels",
      reason: "truncated-pixels",
      ...rawFrameMessage({ id: "short", width: 28, height: 28, pixels: Buffer.alloc(700) }),
    },
    {
      kind: "zero-width",
      reason: "bad-dimensions",
      ...rawFrameMessage({ id: "zero", width: 0, height: 28, pixels: Buffer.alloc(0) }),
    },
    {
      kind: "two-channels",
      reason: "bad-dimensions",
      ...rawFrameMessage({
        id: "two",
        channels: 2,
        width: 28,
        height: 28,
        pixels: Buffer.alloc(28 * 28 * 2),
      }),
    },
    { kind: "corrupt-png", reason: "image-decode-failed", ...corrupt },
  ];
}

describe("dead letters (worker in process, cache off)", () => {
  const fixture = pipelineFixture("dlq", 4);
  const kafka = fixture.kafka;

  it("copies each bad message to the dead-letter topic with its reason, and predicts every good frame", async () => {
    const { admin, topics } = fixture;
    const bad = badMessages();
    expect(new Set(bad.map((b) => b.kind)).size).toBe(10);
    const good = await fashionFrames("b", GOOD);
    // Good frames around the bad ones, and each bad one sent alone so that its offset is known.
    await produce(
      kafka,
      topics.frames,
      good.slice(0, GOOD / 2).map((f) => f.message),
    );
    const sentAt = new Map<string, RecordMetadata>();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    for (const [i, b] of bad.entries()) {
      const message: Message = {
        key: `bad-${b.kind}`,
        value: b.value,
        headers: { ...b.headers, [KIND_HEADER]: b.kind },
        partition: i % 4,
      };
      const [meta] = await producer.send({ topic: topics.frames, acks: -1, messages: [message] });
      sentAt.set(b.kind, meta!);
    }
    await producer.disconnect();
    await produce(
      kafka,
      topics.frames,
      good.slice(GOOD / 2).map((f) => f.message),
    );

    const predictions = await new TopicCollector(kafka, topics.predictions).start();
    const deadLetters = await new TopicCollector(kafka, topics.deadLetters).start();
    const config = workerConfig(topics, {
      LAYERCACHE_CACHE: "false",
      LAYERCACHE_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    });
    let worker: RunningWorker | undefined;
    try {
      worker = await startWorker(config);
      await answeredToEnd(fixture, predictions);
      await deadLetters.caughtUp(admin);
      await worker.stop();
      await worker.done;
    } finally {
      await worker?.stop();
      await predictions.stop();
      await deadLetters.stop();
    }

    expect(new Set(predictions.messages.map((m) => String(m.key)))).toEqual(new Set(good.map((f) => f.id)));
    expect(deadLetters.messages).toHaveLength(bad.length);
    for (const b of bad) {
      const dl = deadLetters.messages.find((m) => headerText(m.headers, KIND_HEADER) === b.kind);
      expect(dl, b.kind).toBeDefined();
      const h = (name: string) => headerText(dl!.headers, name);
      expect(h(DLQ_HEADERS.reason), b.kind).toBe(b.reason);
      expect(h(DLQ_HEADERS.message), b.kind).toBeTruthy();
      expect(String(dl!.key)).toBe(`bad-${b.kind}`);
      expect(Buffer.compare(dl!.value ?? Buffer.alloc(0), b.value), `${b.kind} value bytes`).toBe(0);
      for (const [name, value] of Object.entries(b.headers))
        expect(h(name), `${b.kind} header ${name}`).toBe(value);
      const meta = sentAt.get(b.kind)!;
      expect(h(DLQ_HEADERS.sourceTopic)).toBe(topics.frames);
      expect(h(DLQ_HEADERS.sourcePartition)).toBe(String(meta.partition));
      expect(h(DLQ_HEADERS.sourceOffset)).toBe(meta.baseOffset);
      expect(h(DLQ_HEADERS.workerId)).toBe(config.workerId);
    }
    expect(worker.counters()).toMatchObject({ predictions: GOOD, deadLetters: bad.length, inFlight: 0 });
  }, 300_000);
});
