/**
 * What integration tests need from the real services: clients bound to the
 * broker and Redis found by the global setup, unique names, and cleanup.
 */
import { createTopicsReady } from "../../src/tools/run-topics.ts";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { Kafka, logLevel } from "kafkajs";
import type { Admin } from "kafkajs";
import { inject } from "vitest";

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

export function kafkaBrokers(): string[] {
  return inject("kafkaBrokers").split(",");
}

export function testKafka(clientId = uniqueName("test")): Kafka {
  return new Kafka({ clientId, brokers: kafkaBrokers(), logLevel: logLevel.NOTHING });
}

export function testRedis(): Redis {
  return new Redis(inject("redisUrl"), { lazyConnect: false, maxRetriesPerRequest: 2 });
}

/** Creates topics now and returns a function that deletes them. */
export async function createTopics(
  admin: Admin,
  topics: string[],
  numPartitions = 1,
): Promise<() => Promise<void>> {
  await createTopicsReady(
    admin,
    topics.map((topic) => ({ topic, numPartitions })),
  );
  return async () => {
    await admin.deleteTopics({ topics, timeout: 10_000 });
  };
}

/** Deletes every key under a prefix (SCAN, never KEYS). Returns how many went. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== "0");
  return deleted;
}
