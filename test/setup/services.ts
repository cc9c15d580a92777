/**
 * vitest global setup: finds Kafka and Redis once for the whole run (see
 * discovery.ts) and hands their addresses to tests through `inject()`.
 */
import type { TestProject } from "vitest/node";
import type { FoundService } from "./discovery.ts";
import { findKafka, findRedis, noServiceMessage } from "./discovery.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kafkaBrokers: string;
    redisUrl: string;
  }
}

let started: FoundService[] = [];

export async function setup(project: TestProject): Promise<void> {
  const tried: string[] = [];
  const kafka = await findKafka(process.env, tried);
  if (!kafka) throw new Error(noServiceMessage("Kafka broker", tried));
  started.push(kafka);
  const redis = await findRedis(process.env, tried);
  if (!redis) throw new Error(noServiceMessage("Redis", tried));
  started.push(redis);
  process.stderr.write(`[services] kafka ${kafka.address} (${kafka.via}); redis (${redis.via})\n`);
  project.provide("kafkaBrokers", kafka.address);
  project.provide("redisUrl", redis.address);
}

export async function teardown(): Promise<void> {
  const toStop = started;
  started = [];
  await Promise.all(toStop.map((s) => s.stop()));
}
