/**
 * The cache state shared by every replica through Redis: a `CacheStateStore`
 * (the interface `OnlineCache` and the trainer already use) whose snapshots
 * live in one hash per model (see snapshot-codec.ts for the fields, keys.ts
 * for the names).
 *
 * Only the latest snapshot is kept. Readers get it with a single HGETALL, so
 * they can never mix the heads of one version with the decisions of another,
 * and no reader needs an older one (an engine only ever moves forward).
 *
 * Publishing runs one Lua script (scripts.ts) that accepts the snapshot only
 * if the publisher's fencing token is the current trainer lease's token and
 * its version is above the stored one, and announces the new version on the
 * model's pub/sub channel in the same step. `watch()` follows the snapshot
 * (watcher.ts).
 */
import { z } from "zod";
import type { CacheSnapshot, CacheStateStore } from "../cache/state.ts";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { StateKeys } from "./keys.ts";
import { stateKeys } from "./keys.ts";
import type { StateLayout } from "./layout.ts";
import type { StateConnection } from "./redis-connection.ts";
import { PUBLISH_SNAPSHOT } from "./scripts.ts";
import type { AuditCount, SharedSnapshot } from "./snapshot-codec.ts";
import { VERSION_FIELD, decodeSnapshot, encodeSnapshot, parseVersion } from "./snapshot-codec.ts";
import type { SnapshotListener, WatchOptions } from "./watcher.ts";
import { SnapshotWatcher } from "./watcher.ts";

/** Where a publisher's fencing token comes from: the trainer lease (lease.ts). */
export interface FencingSource {
  /** The token to publish under, or undefined while not holding the lease. */
  fencingToken(): number | undefined;
  /** Told when Redis refused a publish because that token is not the current lease's. */
  fenced?(reason: string): void;
}

export type PublishReason = "accepted" | "stale-version" | "stale-token" | "no-lease";

export interface PublishOutcome {
  accepted: boolean;
  reason: PublishReason;
  /** The stored version after the call (the new one when accepted). */
  version: number;
}

export interface RedisStateStoreOptions {
  connection: StateConnection;
  /** LAYERCACHE_REDIS_PREFIX. */
  prefix: string;
  modelId: string;
  /** When given, snapshots whose heads do not fit the model are rejected (STATE_INVALID). */
  layout?: StateLayout;
  /** Needed to publish through the CacheStateStore interface (`publish`). */
  fencing?: FencingSource;
  /** Recorded with each published snapshot (the worker id). */
  publisher?: string;
  /** Shadow-audit totals to record with each published snapshot. */
  audit?: () => readonly AuditCount[] | null;
}

const publishReply = z.tuple([
  z.union([z.literal(0), z.literal(1)]),
  z.enum(["accepted", "stale-version", "stale-token", "no-lease"]),
  z.int().min(0),
]);

export class RedisStateStore implements CacheStateStore {
  readonly keys: StateKeys;
  private readonly watchers = new Set<SnapshotWatcher>();

  constructor(private readonly options: RedisStateStoreOptions) {
    this.keys = stateKeys(options.prefix, options.modelId);
  }

  private get connection(): StateConnection {
    return this.options.connection;
  }

  /**
   * The latest snapshot, undefined if none was published. Throws
   * STATE_INVALID (logged) when what Redis holds is not a valid snapshot of
   * this model, SERVICE_UNAVAILABLE when Redis cannot be reached.
   */
  async current(): Promise<SharedSnapshot | undefined> {
    const fields = await this.connection.run("read cache snapshot", (c) =>
      c.hgetallBuffer(this.keys.snapshot),
    );
    try {
      return decodeSnapshot(fields, this.options.modelId, this.options.layout);
    } catch (err) {
      if (isLayercacheError(err, "STATE_INVALID")) {
        this.connection.log.warn(
          { key: this.keys.snapshot, err: err.message },
          "invalid cache snapshot in Redis",
        );
      }
      throw err;
    }
  }

  /** The stored version, 0 when nothing is published (one HGET: what pollers use). */
  async currentVersion(): Promise<number> {
    const raw = await this.connection.run("read cache snapshot version", (c) =>
      c.hget(this.keys.snapshot, VERSION_FIELD),
    );
    return raw === null ? 0 : parseVersion(raw);
  }

  /**
   * CacheStateStore.publish under the fencing source's token: true when
   * accepted, false when the version is not above the stored one (as the
   * in-memory store). Throws LEASE_LOST, after telling the fencing source,
   * when this replica does not hold the trainer lease (any more).
   */
  async publish(snapshot: CacheSnapshot): Promise<boolean> {
    const token = this.options.fencing?.fencingToken();
    if (token === undefined) {
      throw new LayercacheError(
        "LEASE_LOST",
        "not publishing: this replica does not hold the trainer lease",
        {
          details: { version: snapshot.version },
        },
      );
    }
    const outcome = await this.publishFenced(snapshot, token);
    if (outcome.accepted || outcome.reason === "stale-version") return outcome.accepted;
    this.options.fencing?.fenced?.(outcome.reason);
    throw new LayercacheError("LEASE_LOST", `publish refused by Redis: ${outcome.reason}`, {
      details: { version: snapshot.version, token, reason: outcome.reason },
    });
  }

  /** Publishes under an explicit fencing token and says whether and why it was accepted. */
  async publishFenced(snapshot: CacheSnapshot, fencingToken: number): Promise<PublishOutcome> {
    if (snapshot.modelId !== this.options.modelId) {
      throw new LayercacheError(
        "INTERNAL",
        `snapshot of model ${snapshot.modelId} published to the store of ${this.options.modelId}`,
      );
    }
    const fields = encodeSnapshot(
      snapshot,
      {
        publishedAt: Date.now(),
        publisher: this.options.publisher ?? "unknown",
        fencingToken,
        audit: this.options.audit?.() ?? null,
      },
      this.options.layout,
    );
    const reply = await this.connection.run("publish cache snapshot", (c) =>
      PUBLISH_SNAPSHOT.run(
        c,
        [this.keys.snapshot, this.keys.lease],
        [String(snapshot.version), String(fencingToken), this.keys.announce, ...fields],
      ),
    );
    const parsed = publishReply.safeParse(reply);
    if (!parsed.success) {
      throw new LayercacheError(
        "INTERNAL",
        `unexpected reply from the publish script: ${JSON.stringify(reply)}`,
      );
    }
    const [accepted, reason, version] = parsed.data;
    const outcome: PublishOutcome = { accepted: accepted === 1, reason, version };
    const log = this.connection.log;
    if (outcome.accepted) log.debug({ version, token: fencingToken }, "published cache snapshot");
    else
      log.info(
        { ...outcome, offered: snapshot.version, token: fencingToken },
        "cache snapshot not published",
      );
    return outcome;
  }

  /**
   * Calls `onSnapshot` with every newer valid snapshot (see watcher.ts). The
   * watcher uses its own subscriber connection; `stop()` it, or `close()` the store.
   */
  watch(onSnapshot: SnapshotListener, options: WatchOptions = {}): SnapshotWatcher {
    const subscriber =
      options.pubsub === false
        ? undefined
        : { redis: this.connection.open("subscriber"), channel: this.keys.announce };
    const watcher: SnapshotWatcher = new SnapshotWatcher(
      {
        source: this,
        log: this.connection.log.child({ model: this.options.modelId }),
        subscriber,
        onStop: () => this.watchers.delete(watcher),
      },
      onSnapshot,
      options,
    );
    this.watchers.add(watcher);
    return watcher;
  }

  /**
   * This store for `OnlineCache.create`: a replica that starts while Redis is
   * down or holds junk starts cold (logged) instead of failing; the watcher
   * brings the shared snapshot later. Publishing is unchanged.
   */
  tolerant(): CacheStateStore {
    return {
      current: async () => {
        try {
          return await this.current();
        } catch (err) {
          if (!isLayercacheError(err, "STATE_INVALID") && !isLayercacheError(err, "SERVICE_UNAVAILABLE")) {
            throw err;
          }
          this.connection.log.warn({ err: err.message }, "starting without the shared cache snapshot");
          return undefined;
        }
      },
      publish: (snapshot) => this.publish(snapshot),
    };
  }

  /** Stops every watcher (the connection belongs to the caller). */
  async close(): Promise<void> {
    await Promise.all([...this.watchers].map((w) => w.stop()));
  }
}
