/**
 * Publishes frames from a FrameSource to the frames topic, as producers are
 * expected to: Avro in the fingerprint framing (encodeFrame), keyed by frame
 * id so frames spread over the partitions, through the idempotent producer
 * with `acks: -1`. Optionally paced to a rate and in a seeded shuffled order.
 * Used by `layercache produce` and the demo.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Kafka } from "kafkajs";
import { SeededRandom } from "../cache/random.ts";
import { encodeFrame } from "../codec/frame.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { Message } from "../transport/kafka/producer.ts";
import { OutputProducer } from "../transport/kafka/producer.ts";
import type { FrameSource } from "./frame-source.ts";

/** Most frames per produce request. */
const MAX_CHUNK = 500;
/** When paced, each request carries about this much time's worth of frames. */
const PACED_CHUNK_MS = 50;

export interface ProduceFramesOptions {
  topic: string;
  /** Frames to send; past the end of the source, its images are sent again (with new ids). */
  count: number;
  /**
   * Frames per second; undefined sends as fast as the broker takes them. A
   * list of phases paces each run of frames at its own rate, one after the
   * other (a load profile: warm-up, overload, recovery); `count` is then
   * their sum.
   */
  rate?: number | readonly RatePhase[];
  /** Seeded shuffle of the source's order; undefined keeps the source's order. */
  shuffleSeed?: number;
  /** Position in that order of the first image sent (default 0); frame ids still count from 0. */
  firstFrame?: number;
  /** Frame ids are `<idPrefix>-<n>`, n counting from 0. */
  idPrefix: string;
  /** Stops between requests; what was sent stays sent. */
  signal?: AbortSignal;
  /** Called after each acknowledged request with the frames sent so far. */
  onProgress?: (sent: number) => void;
  log: Logger;
}

export interface RatePhase {
  frames: number;
  /** Frames per second during this phase. */
  rate: number;
}

/** When frame n is due, ms after the first, for a fixed rate or a list of phases. */
export function dueMs(rate: number | readonly RatePhase[], n: number): number {
  if (typeof rate === "number") return (n / rate) * 1000;
  let ms = 0;
  let first = 0;
  for (const phase of rate) {
    if (n < first + phase.frames) return ms + ((n - first) / phase.rate) * 1000;
    ms += (phase.frames / phase.rate) * 1000;
    first += phase.frames;
  }
  return ms;
}

/** The rate frame n is sent at. */
function rateAt(rate: number | readonly RatePhase[], n: number): number {
  if (typeof rate === "number") return rate;
  let first = 0;
  for (const phase of rate) {
    first += phase.frames;
    if (n < first) return phase.rate;
  }
  return rate.at(-1)?.rate ?? 1;
}

export interface ProduceResult {
  sent: number;
  /** From the first request to the last acknowledgement, ms. */
  elapsedMs: number;
  /** Frames per second achieved over elapsedMs. */
  ratePerSecond: number;
  aborted: boolean;
}

/** Index order over the source: identity, or a Fisher-Yates shuffle seeded with `seed`. */
export function frameOrder(size: number, seed?: number): Uint32Array {
  const order = Uint32Array.from({ length: size }, (_, i) => i);
  if (seed === undefined) return order;
  const rng = new SeededRandom(seed);
  for (let i = size - 1; i > 0; i--) {
    const j = rng.integer(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** Frames per request: a fixed size flat out, about PACED_CHUNK_MS of frames when paced. */
export function chunkSize(rate: number | undefined): number {
  if (rate === undefined) return MAX_CHUNK;
  return Math.max(1, Math.min(MAX_CHUNK, Math.round((rate * PACED_CHUNK_MS) / 1000)));
}

export async function produceFrames(
  kafka: Kafka,
  source: FrameSource,
  options: ProduceFramesOptions,
): Promise<ProduceResult> {
  const { topic, count, rate, signal, log } = options;
  const order = frameOrder(source.size, options.shuffleSeed);
  const first = options.firstFrame ?? 0;
  const producer = await OutputProducer.connect(kafka, log);
  let sent = 0;
  const t0 = performance.now();
  try {
    while (sent < count && !signal?.aborted) {
      const end = Math.min(count, sent + chunkSize(rate === undefined ? undefined : rateAt(rate, sent)));
      if (rate !== undefined) {
        // A request goes when its last frame is due, so no frame leaves early.
        const wait = t0 + dueMs(rate, end - 1) - performance.now();
        if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
        if (signal?.aborted) break;
      }
      const messages: Message[] = [];
      for (let n = sent; n < end; n++) {
        const image = source.image(order[(first + n) % source.size]!);
        const id = `${options.idPrefix}-${n}`;
        // producedAt is now, as the frame leaves: end-to-end latency starts here.
        const encoded = encodeFrame({ id, producedAt: Date.now(), ...image });
        messages.push({ key: id, value: encoded.value, headers: encoded.headers });
      }
      await producer.send(topic, messages);
      sent = end;
      options.onProgress?.(sent);
    }
  } finally {
    await producer.disconnect();
  }
  const elapsedMs = performance.now() - t0;
  return {
    sent,
    elapsedMs,
    ratePerSecond: elapsedMs > 0 ? sent / (elapsedMs / 1000) : 0,
    aborted: sent < count,
  };
}
