/**
 * The example stream against the real Redis: two producers, one trainer
 * reading in the consumer group, a handover to a new trainer (including
 * entries the old one read but never acknowledged) with no example counted
 * twice, the approximate cap, and junk entries skipped.
 */
import { describe, expect, it } from "vitest";
import type { CacheObserver } from "../../src/cache/engine.ts";
import { softmaxWithTemperature } from "../../src/cache/heads.ts";
import type { TrainingExample } from "../../src/state/example-codec.ts";
import { encodeAudit } from "../../src/state/example-codec.ts";
import type { ReceivedEntry, ReceivedExample } from "../../src/state/example-consumer.ts";
import { TRAINER_GROUP } from "../../src/state/example-consumer.ts";
import { ExampleForwarder, ExampleStream, deliverExample } from "../../src/state/examples.ts";
import { ACK_EXAMPLES } from "../../src/state/scripts.ts";
import { LAYOUT, stateSuite, uniqueModel, waitFor } from "./helpers.ts";

/** Example number `n`: its first feature carries n, so a reader can tell examples apart. */
function example(n: number, kind: TrainingExample["kind"] = "backbone"): TrainingExample {
  const exits = kind === "early-exit" ? 2 : LAYOUT.featureSizes.length;
  const features = LAYOUT.featureSizes.slice(0, exits).map((d, e) => {
    const f = Float32Array.from({ length: d }, (_, i) => Math.cos(n + i + e));
    f[0] = n;
    return f;
  });
  const target = new Float32Array(LAYOUT.classes);
  softmaxWithTemperature(Float32Array.of(n % 3, 1, -1, 0.5), 1, target);
  return { kind, features, target };
}

function isExample(e: ReceivedEntry): e is ReceivedExample {
  return e.kind !== "audit";
}

function numberOf(e: ReceivedEntry): number {
  if (!isExample(e)) throw new Error(`entry ${e.id} is an audit, not an example`);
  return e.features[0]![0]!;
}

describe("ExampleStream", () => {
  const suite = stateSuite();
  const { prefix, redis } = suite;

  function stream(modelId: string, producerId: string, maxLength = 10_000): ExampleStream {
    return new ExampleStream({
      connection: suite.connection,
      prefix,
      modelId,
      layout: LAYOUT,
      producerId,
      maxLength,
    });
  }

  async function drain(read: () => Promise<ReceivedEntry[]>): Promise<ReceivedEntry[]> {
    const all: ReceivedEntry[] = [];
    for (;;) {
      const batch = await read();
      if (batch.length === 0) return all;
      all.push(...batch);
    }
  }

  it("carries examples from two producers to one trainer, each exactly once", async () => {
    const modelId = uniqueModel();
    const p1 = stream(modelId, "replica-1");
    const p2 = stream(modelId, "replica-2");
    for (let n = 0; n < 150; n++)
      (n % 2 === 0 ? p1 : p2).offer(example(n, n % 10 === 0 ? "held-out" : "backbone"));
    p2.offer(example(1_000, "early-exit"));
    await Promise.all([p1.flush(), p2.flush()]);
    expect(p1.stats).toEqual({ offered: 75, sent: 75, dropped: 0, buffered: 0 });
    expect(p2.stats.sent).toBe(76);

    const trainer = p1.consumer("trainer-1", { count: 40 });
    const got = await drain(() => trainer.read());
    expect(got.map(numberOf).sort((a, b) => a - b)).toEqual([
      ...Array.from({ length: 150 }, (_, n) => n),
      1_000,
    ]);
    expect(new Set(got.map((e) => e.producer))).toEqual(new Set(["replica-1", "replica-2"]));
    expect(got.filter((e) => e.kind === "held-out")).toHaveLength(15);
    const early = got.filter(isExample).find((e) => e.kind === "early-exit")!;
    expect(early.features).toHaveLength(2);
    expect(trainer.stats).toMatchObject({ received: 151, duplicates: 0, invalid: 0 });
    // Read and acknowledged: nothing pending, nothing more to read.
    expect(await trainer.read()).toEqual([]);
    const pending = (await redis.xpending(p1.keys.examples, TRAINER_GROUP)) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
  });

  it("hands over to a new trainer without counting any example twice", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-1");
    for (let n = 0; n < 100; n++) producer.offer(example(n));
    await producer.flush();

    const counted = new Map<number, string>();
    const count = (who: string, examples: ReceivedEntry[]) => {
      for (const e of examples) {
        expect(counted.has(numberOf(e)), `example ${numberOf(e)} counted twice`).toBe(false);
        counted.set(numberOf(e), who);
      }
    };
    const old = producer.consumer("trainer-old", { count: 30, claimIdleMs: 200 });
    count("old", await old.read());
    count("old", await old.read());
    // The old trainer dies mid-read: it had these 20 delivered but never acknowledged them.
    await redis.xreadgroup(
      "GROUP",
      TRAINER_GROUP,
      "trainer-old",
      "COUNT",
      20,
      "STREAMS",
      producer.keys.examples,
      ">",
    );

    // More examples arrive while the lease changes hands.
    for (let n = 100; n < 130; n++) producer.offer(example(n));
    await producer.flush();
    await new Promise((resolve) => setTimeout(resolve, 250)); // the dead trainer's entries go idle

    const next = producer.consumer("trainer-new", { count: 25, claimIdleMs: 200 });
    count("new", await drain(() => next.read()));
    expect(next.stats.claimed).toBe(20);
    expect([...counted.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 130 }, (_, n) => n));
    expect([...counted.values()].filter((w) => w === "old")).toHaveLength(60);

    // Had the old one come back and acknowledged late, it would get nothing: the ack
    // script only returns what this call removed from the pending list.
    const ids = (await redis.xrange(producer.keys.examples, "-", "+", "COUNT", 5)).map(([id]) => id);
    expect(await ACK_EXAMPLES.run(redis, [producer.keys.examples], [TRAINER_GROUP, ...ids])).toEqual([]);
  });

  it("counts an entry once when two trainers overlap during a handover", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-1");
    for (let n = 0; n < 10; n++) producer.offer(example(n));
    await producer.flush();
    await redis.xgroup("CREATE", producer.keys.examples, TRAINER_GROUP, "0", "MKSTREAM");
    // Trainer a has them delivered (mid-read) when b claims them all at once.
    await redis.xreadgroup("GROUP", TRAINER_GROUP, "a", "COUNT", 10, "STREAMS", producer.keys.examples, ">");
    const b = producer.consumer("b", { claimIdleMs: 0 });
    const got = await b.read(10);
    expect(got).toHaveLength(10);
    // a's acknowledgement, arriving now, counts nothing.
    const ids = got.map((e) => e.id);
    expect(await ACK_EXAMPLES.run(redis, [producer.keys.examples], [TRAINER_GROUP, ...ids])).toEqual([]);
  });

  it("keeps the stream near its cap", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-1", 100);
    for (let n = 0; n < 1_000; n++) producer.offer(example(n));
    await producer.flush();
    expect(producer.stats.sent + producer.stats.dropped).toBe(1_000);
    const length = await redis.xlen(producer.keys.examples);
    // "~" trims whole macro nodes: a little over the cap, never the whole history.
    expect(length).toBeGreaterThanOrEqual(100);
    expect(length).toBeLessThan(300);
  });

  it("skips and counts entries that are not examples of this model", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-1");
    const other = new ExampleStream({
      connection: suite.connection,
      prefix,
      modelId,
      layout: { featureSizes: [6, 10, 15], classes: 4 },
      producerId: "other-model-build",
    });
    producer.offer(example(1));
    await producer.flush();
    await redis.xadd(producer.keys.examples, "*", "e", Buffer.from("junk"), "p", "x");
    await redis.xadd(producer.keys.examples, "*", "nothing", "here");
    // Audit records: truncated, and one of an exit the model does not have (exit 3 of 3).
    await redis.xadd(producer.keys.examples, "*", "a", Buffer.from("LCXA"), "p", "x");
    const bad = encodeAudit({ exit: 0, agreed: true, lenient: false, headsVersion: 1 }, LAYOUT);
    bad.writeUInt16LE(LAYOUT.featureSizes.length, 6);
    await redis.xadd(producer.keys.examples, "*", "a", bad, "p", "x");
    other.offer({
      kind: "backbone",
      features: [6, 10, 15].map((d) => new Float32Array(d)),
      target: Float32Array.of(0.25, 0.25, 0.25, 0.25),
    });
    await other.flush();
    producer.offer(example(2));
    await producer.flush();
    const trainer = producer.consumer("trainer");
    const got = await drain(() => trainer.read());
    expect(got.map(numberOf)).toEqual([1, 2]);
    expect(trainer.stats).toMatchObject({ received: 2, invalid: 5 });
  });

  it("feeds a trainer from the engine's observer calls on another replica", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-2");
    const temperature = 2;
    const forwarder = new ExampleForwarder(producer, { temperature });
    const logits = Float32Array.of(2, -1, 0.5, 4);
    const features = LAYOUT.featureSizes.map((d) => new Float32Array(d).fill(0.5));
    forwarder.onBackboneFrame(features, logits, false);
    forwarder.onBackboneFrame(features, logits, true);
    forwarder.onEarlyExit(features.slice(0, 1), Float32Array.of(0.7, 0.1, 0.1, 0.1));
    forwarder.onAudit(1, false, true, 17);
    await producer.flush();

    const calls: string[] = [];
    const trainer: CacheObserver = {
      onBackboneFrame: (_f, l, heldOut) => {
        const soft = new Float32Array(4);
        softmaxWithTemperature(l, temperature, soft);
        const expected = new Float32Array(4);
        softmaxWithTemperature(logits, temperature, expected);
        soft.forEach((p, c) => expect(p).toBeCloseTo(expected[c]!, 6));
        calls.push(heldOut ? "held-out" : "backbone");
      },
      onEarlyExit: (f, probs) => void calls.push(`early ${f.length} ${probs[0]!.toFixed(1)}`),
    };
    const consumer = producer.consumer("trainer");
    for (const e of await consumer.read()) {
      if (isExample(e)) deliverExample(trainer, e, temperature);
      else calls.push(`audit exit ${e.exit} agreed ${e.agreed} lenient ${e.lenient} v${e.headsVersion}`);
    }
    expect(calls).toEqual([
      "backbone",
      "held-out",
      "early 1 0.7",
      "audit exit 1 agreed false lenient true v17",
    ]);
  });

  it("reads with a blocking consumer on its own connection", async () => {
    const modelId = uniqueModel();
    const producer = stream(modelId, "replica-1");
    const consumer = producer.consumer("blocking", { blockMs: 2_000 });
    const reading = consumer.read(5);
    await new Promise((resolve) => setTimeout(resolve, 100));
    producer.offer(example(42));
    const got = await reading;
    expect(got.map(numberOf)).toEqual([42]);
    await consumer.close();
    await waitFor(() => producer.stats.buffered === 0);
  });
});
