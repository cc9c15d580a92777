/**
 * Redis connections for the shared cache state, set up to fail fast and heal
 * by themselves:
 *
 * - ordinary commands never wait in ioredis's offline queue
 *   (`enableOfflineQueue: false`): while Redis is unreachable a call fails at
 *   once with SERVICE_UNAVAILABLE, and a command in flight when the socket
 *   drops is rejected at the first reconnect attempt (`maxRetriesPerRequest: 0`)
 *   rather than resent later behind the caller's back;
 * - every command has a timeout, so a server that hangs also fails the call;
 * - the connection reconnects forever with capped, jittered exponential backoff;
 * - the subscriber connection (pub/sub) is the exception: it may queue its
 *   SUBSCRIBE until connected (it sends nothing else, so that queue holds
 *   one command) and resubscribes after every reconnect.
 *
 * Authentication and TLS are whatever the URL gives ioredis: `redis://` or
 * `rediss://` (TLS), `user:password@` credentials, `/db`. The URL is only ever
 * logged through `describeRedisUrl`, which masks the password.
 */
import { Redis } from "ioredis";
import type { RedisOptions } from "ioredis";
import { LayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { componentLogger, createLogger } from "../telemetry/logger.ts";

export interface StateConnectionOptions {
  /** REDIS_URL: redis:// or rediss://, credentials allowed. */
  url: string;
  /** Root or component logger; a "state" child is used. Silent when absent. */
  logger?: Logger;
  /** Client name shown by CLIENT LIST (for example the worker id). */
  name?: string;
  /** Longest wait for any reply, ms (default 2000). */
  commandTimeoutMs?: number;
  /** Longest wait for a TCP (and TLS) connection, ms (default 2000). */
  connectTimeoutMs?: number;
  /** First reconnect delay, ms (default 100); doubles per attempt up to `maxBackoffMs`. */
  minBackoffMs?: number;
  /** Longest reconnect delay, ms (default 5000). */
  maxBackoffMs?: number;
}

/** Extra connections: a subscriber for pub/sub, or one that may block on XREADGROUP. */
export type ConnectionRole = "subscriber" | "blocking";

/** Longest BLOCK a blocking read may ask for; the blocking connection's timeout adds it. */
export const MAX_BLOCK_MS = 10_000;

/** The URL without its password, for logs and error messages. */
export function describeRedisUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "redis (unparsable URL)";
  }
  const user = parsed.username ? decodeURIComponent(parsed.username) : "";
  const auth = parsed.password ? `${user}:***@` : user ? `${user}@` : "";
  const db = parsed.pathname && parsed.pathname !== "/" ? parsed.pathname : "";
  return `${parsed.protocol}//${auth}${parsed.host}${db}`;
}

/** Reconnect delay for attempt `times` (1, 2, ...): exponential, capped, with jitter in [50%, 100%]. */
export function backoffDelay(times: number, minMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(30, Math.max(0, times - 1)));
  return Math.max(1, Math.round(ceiling * (0.5 + Math.random() / 2)));
}

function isReplyError(err: unknown): err is Error {
  return err instanceof Error && err.name === "ReplyError";
}

/**
 * What a failed Redis call means for the caller: data of the wrong type or
 * shape under our keys is STATE_INVALID; anything else (unreachable, timed
 * out, an error reply) is SERVICE_UNAVAILABLE and retriable.
 */
export function stateFailure(operation: string, err: unknown, address: string): LayercacheError {
  if (err instanceof LayercacheError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isReplyError(err) && /WRONGTYPE|value is not an integer/.test(message)) {
    return new LayercacheError("STATE_INVALID", `Redis ${address}: ${operation}: ${message}`, {
      cause: err,
      details: { operation },
    });
  }
  return new LayercacheError("SERVICE_UNAVAILABLE", `Redis ${address}: ${operation} failed: ${message}`, {
    cause: err,
    retriable: true,
    details: { operation },
  });
}

export class StateConnection {
  /** The shared connection for ordinary (non-blocking) commands. */
  readonly client: Redis;
  /** The server, for logs: never the password. */
  readonly address: string;
  readonly log: Logger;
  private readonly options: Required<Omit<StateConnectionOptions, "logger" | "name">> & { name?: string };
  private readonly extra = new Set<Redis>();
  private closed = false;

  constructor(options: StateConnectionOptions) {
    this.options = {
      url: options.url,
      name: options.name,
      commandTimeoutMs: options.commandTimeoutMs ?? 2_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 2_000,
      minBackoffMs: options.minBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 5_000,
    };
    this.address = describeRedisUrl(options.url);
    this.log = componentLogger(
      options.logger ??
        createLogger({ level: "silent", workerId: "state", destination: { write: () => undefined } }),
      "state",
    );
    this.client = new Redis(options.url, this.redisOptions("commands"));
    this.watchHealth(this.client, "commands");
  }

  private redisOptions(role: "commands" | ConnectionRole): RedisOptions {
    const { connectTimeoutMs, commandTimeoutMs, minBackoffMs, maxBackoffMs, name } = this.options;
    const base: RedisOptions = {
      connectTimeout: connectTimeoutMs,
      retryStrategy: (times) => backoffDelay(times, minBackoffMs, maxBackoffMs),
      enableReadyCheck: true,
      lazyConnect: false,
      ...(name ? { connectionName: role === "commands" ? name : `${name}:${role}` } : {}),
    };
    if (role === "subscriber") {
      return { ...base, enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true };
    }
    return {
      ...base,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: role === "blocking" ? commandTimeoutMs + MAX_BLOCK_MS : commandTimeoutMs,
    };
  }

  /** One warning when a connection goes down, one line when it is back; details at debug. */
  private watchHealth(redis: Redis, role: string): void {
    let downSince: number | undefined;
    let everReady = false;
    const log = this.log.child({ redis: this.address, connection: role });
    redis.on("ready", () => {
      if (downSince !== undefined) {
        log.info({ downMs: Date.now() - downSince }, "Redis connection restored");
      } else if (!everReady) log.debug("Redis connected");
      everReady = true;
      downSince = undefined;
    });
    redis.on("close", () => {
      if (downSince === undefined && everReady && !this.closed && !closing.has(redis)) {
        downSince = Date.now();
        log.warn("Redis connection lost; calls fail with SERVICE_UNAVAILABLE until it is back");
      }
    });
    redis.on("error", (err: Error) => {
      if (this.closed || closing.has(redis)) return;
      if (downSince === undefined && !everReady) {
        downSince = Date.now();
        log.warn({ err: err.message }, "cannot reach Redis; retrying with backoff");
      } else log.debug({ err: err.message }, "Redis connection error");
    });
  }

  get ready(): boolean {
    return this.client.status === "ready";
  }

  /** Resolves once the command connection (or `redis`) is ready; SERVICE_UNAVAILABLE after `timeoutMs`. */
  async waitReady(timeoutMs = 10_000, redis: Redis = this.client): Promise<void> {
    if (redis.status === "ready") return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        redis.off("ready", onReady);
        reject(
          new LayercacheError(
            "SERVICE_UNAVAILABLE",
            `Redis ${this.address} not reachable within ${timeoutMs} ms`,
            {
              retriable: true,
            },
          ),
        );
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      redis.once("ready", onReady);
    });
  }

  /** Calls `listener` every time the command connection becomes ready (again). Returns an unsubscribe. */
  onReady(listener: () => void): () => void {
    this.client.on("ready", listener);
    return () => void this.client.off("ready", listener);
  }

  /**
   * Runs one operation on the command connection (or on `redis`, one opened
   * from this): fails at once with SERVICE_UNAVAILABLE when not connected, and
   * maps errors (stateFailure).
   */
  async run<T>(operation: string, fn: (client: Redis) => Promise<T>, redis: Redis = this.client): Promise<T> {
    if (this.closed) {
      throw new LayercacheError("SHUTTING_DOWN", `${operation}: the Redis state connection is closed`);
    }
    if (redis.status !== "ready") {
      throw new LayercacheError(
        "SERVICE_UNAVAILABLE",
        `Redis ${this.address}: ${operation}: not connected (${redis.status})`,
        { retriable: true, details: { operation } },
      );
    }
    try {
      return await fn(redis);
    } catch (err) {
      throw stateFailure(operation, err, this.address);
    }
  }

  /** A new connection to the same server with the same credentials; closed with this one. */
  open(role: ConnectionRole): Redis {
    const redis = new Redis(this.options.url, this.redisOptions(role));
    this.watchHealth(redis, role);
    this.extra.add(redis);
    redis.once("end", () => this.extra.delete(redis));
    return redis;
  }

  /** Closes this connection and every one opened from it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.client, ...this.extra].map((redis) => closeRedis(redis)));
    this.extra.clear();
  }
}

/** Connections being closed on purpose: their going away is not an outage. */
const closing = new WeakSet<Redis>();

/** QUIT when connected (bounded wait), else drop the socket and stop reconnecting. */
export async function closeRedis(redis: Redis): Promise<void> {
  closing.add(redis);
  if (redis.status === "ready") {
    const quit = redis.quit().then(
      () => true,
      () => false,
    );
    const timedOut = new Promise<boolean>((done) => setTimeout(() => done(false), 1_000).unref());
    if (await Promise.race([quit, timedOut])) return;
  }
  redis.disconnect(false);
}
