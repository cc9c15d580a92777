/**
 * Follows the shared snapshot of one model and hands every newer valid
 * version to a callback, once, in increasing order.
 *
 * Two ways to hear of a new version, both ending in the same check (read the
 * version with HGET; if newer, read and validate the whole snapshot):
 * - pub/sub: the publish script announces each accepted version on the
 *   model's channel; a subscriber connection hears it within milliseconds and
 *   resubscribes by itself after a reconnect;
 * - polling every `pollMs`, for announcements missed while disconnected or
 *   when pub/sub is unavailable (some managed Redis services restrict it).
 * Each reconnect of the subscriber also triggers a check.
 *
 * Failures never reach the callback's owner: an invalid snapshot is logged once
 * per version and skipped (the last good one stays), an unreachable Redis is
 * logged once per outage and retried on the next trigger.
 */
import type { Redis } from "ioredis";
import { isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import { closeRedis } from "./redis-connection.ts";
import type { SharedSnapshot } from "./snapshot-codec.ts";

export interface WatchOptions {
  /** Fallback polling period, ms (default 5000). */
  pollMs?: number;
  /** Listen for announcements (default true); false relies on polling alone. */
  pubsub?: boolean;
  /** Version the caller already has: only newer ones are delivered (default 0). */
  after?: number;
}

export type SnapshotListener = (snapshot: SharedSnapshot) => void | Promise<void>;

/** What the watcher needs from the store. */
export interface SnapshotSource {
  /** Stored version, 0 when nothing is published. */
  currentVersion(): Promise<number>;
  current(): Promise<SharedSnapshot | undefined>;
}

/** How the watcher reaches Redis and reports. */
export interface WatcherWiring {
  source: SnapshotSource;
  log: Logger;
  /** A subscriber connection (owned by the watcher from now on) and the channel to follow. */
  subscriber?: { redis: Redis; channel: string };
  /** Called once when the watcher stops. */
  onStop?: () => void;
}

export class SnapshotWatcher {
  private delivered: number;
  private latest: SharedSnapshot | undefined;
  private rejectedVersion = 0;
  private lowerNoticed = -1;
  private lastProblem: string | undefined;
  private outage = false;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private readonly timer: NodeJS.Timeout;

  private readonly source: SnapshotSource;
  private readonly log: Logger;

  constructor(
    private readonly wiring: WatcherWiring,
    private readonly onSnapshot: SnapshotListener,
    options: WatchOptions = {},
  ) {
    this.source = wiring.source;
    this.log = wiring.log;
    this.delivered = options.after ?? 0;
    const pollMs = options.pollMs ?? 5_000;
    this.timer = setInterval(() => void this.check(), pollMs);
    this.timer.unref();
    if (wiring.subscriber) this.listen(wiring.subscriber.redis, wiring.subscriber.channel);
    void this.check();
  }

  /** Highest version delivered (or `after`). */
  get version(): number {
    return this.delivered;
  }

  /** The newest snapshot delivered, if any: poll this between batches to adopt it. */
  get last(): SharedSnapshot | undefined {
    return this.latest;
  }

  private listen(redis: Redis, channel: string): void {
    redis.on("message", (from: string, message: string) => {
      if (from !== channel) return;
      const announced = /^\d{1,16}$/.test(message) ? Number(message) : NaN;
      // A malformed announcement still means "something changed": check anyway.
      if (!(announced <= this.delivered)) void this.check();
    });
    // Fires on the first connection and on every reconnect (after resubscribing
    // is under way): whatever was announced meanwhile is picked up here.
    redis.on("ready", () => void this.check());
    redis.subscribe(channel).catch((err: unknown) => {
      if (!this.stopped) this.log.warn({ err: String(err) }, "cannot subscribe to snapshot announcements");
    });
  }

  /** Checks now; resolves when this check (and any requested meanwhile) is done. */
  check(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.checkOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    let version = 0;
    try {
      version = await this.source.currentVersion();
      if (version <= this.delivered || version === this.rejectedVersion) {
        this.healthy();
        if (version < this.delivered && version !== this.lowerNoticed) {
          this.lowerNoticed = version;
          this.log.info(
            { stored: version, keeping: this.delivered },
            "stored snapshot version is below this replica's (Redis lost its data?); waiting for a newer one",
          );
        }
        return;
      }
      const snapshot = await this.source.current();
      this.healthy();
      if (!snapshot || snapshot.version <= this.delivered || this.stopped) return;
      this.delivered = snapshot.version;
      this.latest = snapshot;
      this.log.debug({ version: snapshot.version }, "new cache snapshot");
      try {
        await this.onSnapshot(snapshot);
      } catch (err) {
        this.log.error({ err, version: snapshot.version }, "snapshot listener failed");
      }
    } catch (err) {
      this.failed(err, version);
    }
  }

  private healthy(): void {
    if (this.outage) this.log.info({ version: this.delivered }, "snapshot watch resumed");
    this.outage = false;
    this.lastProblem = undefined;
  }

  private failed(err: unknown, version: number): void {
    if (this.stopped) return;
    if (isLayercacheError(err, "STATE_INVALID")) {
      if (version > 0) this.rejectedVersion = version;
      if (err.message !== this.lastProblem) {
        this.lastProblem = err.message;
        this.log.warn(
          { code: err.code, err: err.message, keeping: this.delivered },
          "rejected an invalid cache snapshot; keeping the last good one",
        );
      }
    } else if (isLayercacheError(err, "SERVICE_UNAVAILABLE")) {
      if (!this.outage) {
        this.outage = true;
        this.log.warn(
          { err: err.message, keeping: this.delivered },
          "snapshot watch cannot reach Redis; retrying",
        );
      }
    } else {
      this.log.error({ err }, "snapshot watch check failed");
    }
  }

  /** Stops polling and listening; waits for a check in progress. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    this.wiring.onStop?.();
    if (this.wiring.subscriber) await closeRedis(this.wiring.subscriber.redis);
    await this.running;
  }
}
