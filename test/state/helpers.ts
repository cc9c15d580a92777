/**
 * What the shared-state tests need: connections to the test Redis under a
 * unique key prefix, a small synthetic model layout with really trained heads,
 * a captured log, polling waits, and a private redis-server that can be
 * stopped and started again on the same port.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, inject } from "vitest";
import type { ExitHead } from "../../src/cache/heads.ts";
import { createHead } from "../../src/cache/heads.ts";
import type { ExitDecision } from "../../src/cache/planner.ts";
import { SeededRandom } from "../../src/cache/random.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import type { StateLayout } from "../../src/state/layout.ts";
import type { StateConnectionOptions } from "../../src/state/redis-connection.ts";
import { StateConnection } from "../../src/state/redis-connection.ts";
import type { Logger } from "../../src/telemetry/logger.ts";
import { createLogger } from "../../src/telemetry/logger.ts";
import { deleteKeys, testRedis, uniqueName } from "../helpers/services.ts";
import { softTargets } from "../helpers/random-data.ts";
import { tcpAnswers } from "../../src/tools/local-services.ts";

/** Three exits with 6, 10 and 14 pooled features, 4 classes. */
export const LAYOUT: StateLayout = { featureSizes: [6, 10, 14], classes: 4 };

export function redisUrl(): string {
  return inject("redisUrl");
}

export function uniquePrefix(): string {
  return uniqueName("lcstate");
}

export function uniqueModel(name = "model"): string {
  return uniqueName(name);
}

/** A log whose lines (JSON) can be searched. */
export function capturedLog(level = "debug"): { logger: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const logger = createLogger({
    level,
    workerId: "test",
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, lines, text: () => lines.join("") };
}

/** A state connection to the test Redis with quick reconnects; waits until it is ready. */
export async function connect(options: Partial<StateConnectionOptions> = {}): Promise<StateConnection> {
  const connection = new StateConnection({
    url: redisUrl(),
    minBackoffMs: 20,
    maxBackoffMs: 200,
    ...options,
  });
  await connection.waitReady(10_000);
  return connection;
}

/** Deletes every key under the prefix. */
/** What a shared-state suite works with (see stateSuite). */
export interface StateSuite {
  /** A key prefix of the suite's own. */
  prefix: string;
  /** A plain client of the test Redis, for looking at keys. */
  redis: ReturnType<typeof testRedis>;
  /** The suite's state connection, open from before the first test. */
  readonly connection: StateConnection;
}

/**
 * The usual frame of a suite against the real Redis: a unique prefix, a
 * state connection opened before the tests (with `options`), and after them
 * every key under the prefix deleted and both connections closed.
 */
export function stateSuite(options: Partial<StateConnectionOptions> = {}): StateSuite {
  const prefix = uniquePrefix();
  const redis = testRedis();
  let connection: StateConnection | undefined;
  beforeAll(async () => {
    connection = await connect(options);
  });
  afterAll(async () => {
    await cleanup(prefix);
    await connection?.close();
    redis.disconnect();
  });
  return {
    prefix,
    redis,
    get connection(): StateConnection {
      if (!connection) throw new Error("the suite's connection is opened in beforeAll");
      return connection;
    },
  };
}

export async function cleanup(prefix: string): Promise<void> {
  const redis = testRedis();
  try {
    await deleteKeys(redis, `${prefix}:`);
  } finally {
    redis.disconnect();
  }
}

function randomRows(rng: SeededRandom, n: number, size: number): Float32Array {
  const out = new Float32Array(n * size);
  for (let i = 0; i < out.length; i++) out[i] = 3 * rng.gaussian() + 1;
  return out;
}

/**
 * One head per exit of `layout` (the last one left out when `missingLast`),
 * MLPs and softmax regressions alternating, each trained a few steps on
 * random data so that weights and input statistics are far from their start.
 */
export function trainedHeads(layout = LAYOUT, seed = 1, missingLast = false): (ExitHead | null)[] {
  const rng = new SeededRandom(seed);
  return layout.featureSizes.map((size, e) => {
    if (missingLast && e === layout.featureSizes.length - 1) return null;
    const head = createHead(
      { headKind: e % 2 === 0 ? "mlp" : "softmax", mlpHidden: 5 },
      size,
      layout.classes,
      rng,
    );
    for (let step = 0; step < 3; step++) {
      head.trainBatch(randomRows(rng, 16, size), softTargets(rng, 16, layout.classes), 16);
    }
    return head;
  });
}

/** Decisions for `heads`: exit 0 open with a calibration outcome, the rest closed in various ways. */
export function decisionsFor(heads: readonly (ExitHead | null)[]): ExitDecision[] {
  return heads.map((head, exit) => {
    if (exit === 0 && head) {
      return {
        exit,
        open: true,
        threshold: 0.93,
        reason: "agreement >= 0.9912 proven on 480 of 900 frames",
        coverage: 480 / 900,
        savedMacs: 1_234_567,
        costMacs: 2_000_000,
        calibration: {
          threshold: 0.93,
          reached: 900,
          accepted: 480,
          agreed: 478,
          lowerBound: 0.9912,
          minFrames: 299,
        },
      };
    }
    return {
      exit,
      open: false,
      threshold: null,
      reason: head ? "cannot prove agreement" : "no head trained yet",
      coverage: 0,
      savedMacs: 0,
      costMacs: 0,
      calibration: head
        ? { threshold: undefined, reached: 420, accepted: 0, agreed: 0, lowerBound: 0.71, minFrames: 299 }
        : null,
    };
  });
}

export function snapshotOf(modelId: string, version: number, seed = 1, layout = LAYOUT): CacheSnapshot {
  const heads = trainedHeads(layout, seed, true);
  return { modelId, version, heads, decisions: decisionsFor(heads) };
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  timeoutMs = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A redis-server of its own on a fixed free port, nothing on disk; stop() waits for it to exit. */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "layercache-state-redis-"));

  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
  ) {}

  static async start(extraArgs: string[] = []): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort(), extraArgs);
    await redis.start();
    return redis;
  }

  url(auth = ""): string {
    return `redis://${auth}127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    const child = spawn("redis-server", [...args, ...this.extraArgs], { cwd: this.dir, stdio: "ignore" });
    this.child = child;
    const deadline = Date.now() + 10_000;
    while (!(await tcpAnswers("127.0.0.1", this.port, 200))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error("redis-server did not start");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
