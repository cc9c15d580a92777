/**
 * The real services the rest of the suite stands on: a round trip through
 * the Kafka broker with kafkajs and through Redis with ioredis.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Admin } from "kafkajs";
import { createTopics, deleteKeys, testKafka, testRedis, uniqueName } from "../helpers/services.ts";

describe("Kafka broker", () => {
  const kafka = testKafka();
  const topic = uniqueName("services-roundtrip");
  let admin: Admin;
  let dropTopics: () => Promise<void>;

  beforeAll(async () => {
    admin = kafka.admin();
    await admin.connect();
    dropTopics = await createTopics(admin, [topic], 3);
  });

  afterAll(async () => {
    await dropTopics?.();
    await admin?.disconnect();
  });

  it("delivers every produced message to a consumer group, in order per key", async () => {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = Array.from({ length: 60 }, (_, i) => ({ key: `k${i % 3}`, value: `m${i}` }));
    await producer.send({ topic, acks: -1, messages: sent });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: uniqueName("g") });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const got: { key: string; value: string }[] = [];
    await new Promise<void>((done, fail) => {
      consumer
        .run({
          eachMessage: async ({ message }) => {
            got.push({ key: String(message.key), value: String(message.value) });
            if (got.length === sent.length) done();
          },
        })
        .catch(fail);
    });
    await consumer.disconnect();

    expect(got).toHaveLength(sent.length);
    for (const key of ["k0", "k1", "k2"]) {
      const order = (xs: { key: string; value: string }[]) =>
        xs.filter((m) => m.key === key).map((m) => m.value);
      expect(order(got)).toEqual(order(sent));
    }
  });

  it("reports the topic with the partitions it was created with", async () => {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(meta.topics[0]?.partitions).toHaveLength(3);
  });
});

describe("Redis", () => {
  const redis = testRedis();
  const prefix = `${uniqueName("test")}:`;

  afterAll(async () => {
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  it("stores and returns binary values byte for byte", async () => {
    const weights = Buffer.from(new Float32Array([0.5, -1.25, 3e-8, Math.PI]).buffer);
    await redis.set(`${prefix}weights`, weights);
    const back = await redis.getBuffer(`${prefix}weights`);
    expect(back).not.toBeNull();
    // Copy out: a Buffer from the socket need not be 4-byte aligned.
    expect(Array.from(new Float32Array(Uint8Array.from(back!).buffer))).toEqual([
      0.5,
      -1.25,
      Math.fround(3e-8),
      Math.fround(Math.PI),
    ]);
  });

  it("runs a multi-key update atomically", async () => {
    const [a, b] = [`${prefix}a`, `${prefix}b`];
    const results = await redis.multi().incr(a).incrby(b, 10).exec();
    expect(results?.map(([err, v]) => [err, v])).toEqual([
      [null, 1],
      [null, 10],
    ]);
    expect(await deleteKeys(redis, prefix)).toBeGreaterThanOrEqual(2);
    expect(await redis.exists(a, b)).toBe(0);
  });
});
