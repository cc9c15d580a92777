/**
 * Finds the Kafka broker and the Redis server that integration tests use, in
 * this order, per service:
 *   1. KAFKA_BROKERS / REDIS_URL from the environment;
 *   2. testcontainers, when a container runtime answers;
 *   3. the project's own broker (scripts/kafka/start.sh) and a local Redis
 *      (127.0.0.1:6379 if it answers, else a private `redis-server`).
 * Used by the vitest global setup (`npm run demo` brings up its services with
 * src/tools/local-services.ts instead, without testcontainers).
 */
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { tcpAnswers } from "../../src/tools/local-services.ts";

export const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

export interface FoundService {
  /** How it was found: "env", "testcontainers", "project-broker", "local-redis", "private-redis". */
  via: string;
  /** Connection string: brokers "h:p,h:p" for Kafka, a redis:// URL for Redis. */
  address: string;
  stop: () => Promise<void>;
}

const noop = async (): Promise<void> => undefined;

function hostPort(address: string, defaultPort: number): [string, number] {
  const m = /^(?:[a-z]+:\/\/)?(?:[^@/]*@)?\[?([^\]\s/:]+)\]?(?::(\d+))?/.exec(address);
  if (!m?.[1]) throw new Error(`cannot read host:port from ${address}`);
  return [m[1], m[2] ? Number(m[2]) : defaultPort];
}

let runtimeAnswer: Promise<boolean> | undefined;

/** Asked once per process: Kafka and Redis discovery would otherwise each wait up to 10 s. */
function containerRuntimeAnswers(): Promise<boolean> {
  runtimeAnswer ??= (async () => {
    try {
      const { getContainerRuntimeClient } = await import("testcontainers");
      await Promise.race([
        getContainerRuntimeClient(),
        new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), 10_000)),
      ]);
      return true;
    } catch {
      return false;
    }
  })();
  return runtimeAnswer;
}

export async function findKafka(env = process.env, tried: string[] = []): Promise<FoundService | undefined> {
  if (env.KAFKA_BROKERS) {
    const [host, port] = hostPort(env.KAFKA_BROKERS.split(",")[0] ?? "", 9092);
    if (await tcpAnswers(host, port)) return { via: "env", address: env.KAFKA_BROKERS, stop: noop };
    tried.push(`KAFKA_BROKERS=${env.KAFKA_BROKERS} does not answer`);
  } else tried.push("KAFKA_BROKERS is not set");

  if (await containerRuntimeAnswers()) {
    const { KafkaContainer } = await import("@testcontainers/kafka");
    const c = await new KafkaContainer("confluentinc/cp-kafka:7.9.0").withKraft().start();
    return {
      via: "testcontainers",
      address: `${c.getHost()}:${c.getMappedPort(9093)}`,
      stop: async () => void (await c.stop()),
    };
  }
  tried.push("no container runtime answered (testcontainers)");

  const port = Number(env.LAYERCACHE_KAFKA_PORT ?? 9092);
  const wasRunning = await tcpAnswers("127.0.0.1", port);
  const run = spawnSync("bash", [join(ROOT, "scripts/kafka/start.sh")], { stdio: "inherit", env });
  if (run.status === 0) {
    return {
      via: "project-broker",
      address: `127.0.0.1:${port}`,
      // Leave a broker that was already up (for example one .ci/run started) running.
      stop: wasRunning
        ? noop
        : async () =>
            void spawnSync("bash", [join(ROOT, "scripts/kafka/stop.sh")], { stdio: "inherit", env }),
    };
  }
  tried.push("scripts/kafka/start.sh failed (needs Java 17 and Maven; see the README)");
  return undefined;
}

export async function findRedis(env = process.env, tried: string[] = []): Promise<FoundService | undefined> {
  if (env.REDIS_URL) {
    const [host, port] = hostPort(env.REDIS_URL, 6379);
    if (await tcpAnswers(host, port)) return { via: "env", address: env.REDIS_URL, stop: noop };
    tried.push(`REDIS_URL=${env.REDIS_URL} does not answer`);
  } else tried.push("REDIS_URL is not set");

  if (await containerRuntimeAnswers()) {
    const { RedisContainer } = await import("@testcontainers/redis");
    const c = await new RedisContainer("redis:7-alpine").start();
    return { via: "testcontainers", address: c.getConnectionUrl(), stop: async () => void (await c.stop()) };
  }
  tried.push("no container runtime answered (testcontainers)");

  if (await tcpAnswers("127.0.0.1", 6379)) {
    return { via: "local-redis", address: "redis://127.0.0.1:6379", stop: noop };
  }
  tried.push("nothing answers on 127.0.0.1:6379");

  const priv = await startPrivateRedis();
  if (priv) return priv;
  tried.push("redis-server is not on the PATH");
  return undefined;
}

/** Starts `redis-server` on a free port, keeping nothing on disk. */
export async function startPrivateRedis(port = 0): Promise<FoundService | undefined> {
  const chosen = port || 20_000 + Math.floor(Math.random() * 20_000);
  let child: ChildProcess;
  try {
    child = spawn(
      "redis-server",
      ["--port", String(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { cwd: mkdtempSync(join(tmpdir(), "layercache-redis-")), stdio: "ignore" },
    );
  } catch {
    return undefined;
  }
  const failed = new Promise<boolean>((done) => child.once("error", () => done(true)));
  for (let i = 0; i < 50; i++) {
    if (await Promise.race([failed, new Promise<boolean>((d) => setTimeout(() => d(false), 100))])) {
      return undefined;
    }
    if (await tcpAnswers("127.0.0.1", chosen)) {
      return {
        via: "private-redis",
        address: `redis://127.0.0.1:${chosen}`,
        stop: async () => {
          child.kill("SIGTERM");
        },
      };
    }
  }
  child.kill("SIGKILL");
  return undefined;
}

export function noServiceMessage(name: string, tried: string[]): string {
  return [
    `No ${name} found for the tests. layercache looks, in order, for:`,
    "  1. KAFKA_BROKERS / REDIS_URL in the environment (an existing broker or server);",
    "  2. a container runtime for testcontainers (Docker);",
    "  3. the project's own broker (npm run kafka:start: Java 17 and Maven) and a local",
    "     Redis on 127.0.0.1:6379 or redis-server on the PATH.",
    "What was tried:",
    ...tried.map((t) => `  - ${t}`),
  ].join("\n");
}
