/**
 * The trainer lease: at most one replica per model trains the heads and
 * publishes snapshots; the others send it their examples.
 *
 * - Acquire (Lua, scripts.ts): if nobody holds the lease, INCR the model's
 *   token counter and SET the lease "<token> <holder>" NX PX ttl. The token
 *   only ever goes up, so a later holder always has a larger one.
 * - Renew every `renewEveryMs` (a third of the ttl by default), by a script
 *   that extends the expiry only if the lease still holds our exact value.
 * - A holder that has not renewed successfully by `sent + ttl` (the earliest
 *   moment Redis may expire the key) considers itself lost at that moment,
 *   without waiting to hear from Redis: by the time another replica can
 *   acquire, the old one has stopped calling itself the holder.
 * - Fencing: publishes carry the token and the publish script compares it
 *   with the current lease's token, so a holder that was paused past its
 *   expiry (GC, a stalled event loop, a partition) cannot overwrite the work of
 *   its successor, whatever its clock says.
 * - Release (script) deletes the lease only if it is still ours.
 *
 * If the holder dies, its lease expires after at most `ttlMs` and a waiting
 * replica acquires it within one poll (`acquire()` sleeps no longer than the
 * lease's remaining time or `pollMs`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { StateKeys } from "./keys.ts";
import { stateKeys } from "./keys.ts";
import type { StateConnection } from "./redis-connection.ts";
import type { FencingSource } from "./redis-store.ts";
import { ACQUIRE_LEASE, RELEASE_LEASE, RENEW_LEASE } from "./scripts.ts";

export interface TrainerLeaseOptions {
  connection: StateConnection;
  prefix: string;
  modelId: string;
  /** Who holds it, for operators (the worker id); a random suffix keeps it unique per process. */
  holderId: string;
  /** Lease time, ms (default 15000). */
  ttlMs?: number;
  /** Renewal period, ms (default a third of the ttl). */
  renewEveryMs?: number;
  /** Longest sleep between two attempts of `acquire()`, ms (default 1000). */
  pollMs?: number;
}

export type LeaseListener = (reason: string) => void;

export interface CampaignHandlers {
  /** This replica now holds the lease under `token`: start training. */
  onAcquired(token: number): void | Promise<void>;
  /** It lost the lease: stop training and publishing at once. */
  onLost(reason: string): void | Promise<void>;
}

interface Held {
  token: number;
  /** Exactly what the lease key holds while it is ours. */
  value: string;
  /** Local time until which the lease is certainly still ours. */
  validUntil: number;
}

const acquireReply = z.union([
  z.tuple([z.literal(1), z.int().min(1)]),
  z.tuple([z.literal(0), z.int(), z.string()]),
]);

export class TrainerLease implements FencingSource {
  readonly keys: StateKeys;
  readonly holderId: string;
  readonly ttlMs: number;
  private readonly renewEveryMs: number;
  private readonly pollMs: number;
  private readonly log: Logger;
  private held: Held | undefined;
  /** Bumped whenever the lease is gained or given up, so stale timers and replies are ignored. */
  private generation = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private renewFailing = false;
  private readonly listeners = new Set<LeaseListener>();
  /** Remaining time of someone else's lease, from the last failed attempt. */
  private otherHolderMs = 0;
  /** Value of someone else's lease, from the last failed attempt. */
  private otherHolder: string | undefined;

  constructor(private readonly options: TrainerLeaseOptions) {
    this.keys = stateKeys(options.prefix, options.modelId);
    this.holderId = `${options.holderId}/${Math.random().toString(36).slice(2, 10)}`;
    this.ttlMs = options.ttlMs ?? 15_000;
    this.renewEveryMs = options.renewEveryMs ?? Math.max(1, Math.floor(this.ttlMs / 3));
    this.pollMs = options.pollMs ?? 1_000;
    if (!(this.ttlMs >= 100 && this.renewEveryMs < this.ttlMs)) {
      throw new LayercacheError(
        "CONFIG_INVALID",
        "lease ttl must be at least 100 ms and above the renewal period",
      );
    }
    this.log = options.connection.log.child({ model: options.modelId, lease: this.holderId });
  }

  private get connection(): StateConnection {
    return this.options.connection;
  }

  /** Whether this replica holds the lease now (locally certain, not merely hoped). */
  get isHeld(): boolean {
    return this.held !== undefined && Date.now() < this.held.validUntil;
  }

  /** The current fencing token while held. */
  get token(): number | undefined {
    return this.isHeld ? this.held!.token : undefined;
  }

  /** Who held the lease at the last failed attempt ("<token> <holder>"), for logs and tests. */
  get lastSeenHolder(): string | undefined {
    return this.otherHolder;
  }

  fencingToken(): number | undefined {
    return this.token;
  }

  fenced(reason: string): void {
    this.lose(`a publish was refused (${reason})`);
  }

  /** Calls `listener` when the lease is lost (not when released). Returns an unsubscribe. */
  onLost(listener: LeaseListener): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /** One attempt: true if this replica holds the lease afterwards. SERVICE_UNAVAILABLE if Redis is down. */
  async tryAcquire(): Promise<boolean> {
    if (this.isHeld) return true;
    const sentAt = Date.now();
    const reply = await this.connection.run("acquire trainer lease", (c) =>
      ACQUIRE_LEASE.run(c, [this.keys.lease, this.keys.leaseToken], [this.holderId, this.ttlMs]),
    );
    const parsed = acquireReply.safeParse(reply);
    if (!parsed.success) {
      throw new LayercacheError(
        "INTERNAL",
        `unexpected reply from the lease script: ${JSON.stringify(reply)}`,
      );
    }
    if (parsed.data[0] === 0) {
      this.otherHolderMs = Math.max(0, parsed.data[1]);
      this.otherHolder = parsed.data[2];
      return false;
    }
    const token = parsed.data[1];
    this.generation++;
    this.held = { token, value: `${token} ${this.holderId}`, validUntil: sentAt + this.ttlMs };
    this.renewFailing = false;
    this.armExpiry();
    this.scheduleRenew(this.renewEveryMs);
    this.log.info({ token, ttlMs: this.ttlMs }, "acquired the trainer lease");
    return true;
  }

  /**
   * Waits until this replica holds the lease and returns its token. Retries
   * through Redis outages; throws SHUTTING_DOWN when `signal` aborts.
   */
  async acquire(signal?: AbortSignal): Promise<number> {
    let unreachable = false;
    for (;;) {
      if (signal?.aborted)
        throw new LayercacheError("SHUTTING_DOWN", "stopped waiting for the trainer lease");
      let waitMs = this.pollMs;
      try {
        if (await this.tryAcquire()) return this.held!.token;
        unreachable = false;
        waitMs = Math.min(this.pollMs, this.otherHolderMs + 5);
      } catch (err) {
        if (!isLayercacheError(err, "SERVICE_UNAVAILABLE")) throw err;
        if (!unreachable)
          this.log.warn({ err: err.message }, "cannot reach Redis for the trainer lease; retrying");
        unreachable = true;
      }
      // Jitter, so replicas waiting on the same expiry do not all ask at once.
      await sleep(Math.max(1, Math.round(waitMs * (0.75 + Math.random() / 4))), undefined, { signal }).catch(
        () => undefined,
      );
    }
  }

  private scheduleRenew(delayMs: number): void {
    clearTimeout(this.renewTimer);
    const generation = this.generation;
    this.renewTimer = setTimeout(() => void this.renew(generation), delayMs);
    this.renewTimer.unref();
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    const held = this.held;
    if (!held) return;
    const generation = this.generation;
    this.expiryTimer = setTimeout(
      () => {
        if (generation === this.generation && this.held && Date.now() >= this.held.validUntil) {
          this.lose("not renewed before it expired");
        } else if (generation === this.generation) this.armExpiry();
      },
      Math.max(0, held.validUntil - Date.now()),
    );
    this.expiryTimer.unref();
  }

  private async renew(generation: number): Promise<void> {
    const held = this.held;
    if (!held || generation !== this.generation) return;
    const sentAt = Date.now();
    let renewed: unknown;
    try {
      renewed = await this.connection.run("renew trainer lease", (c) =>
        RENEW_LEASE.run(c, [this.keys.lease], [held.value, this.ttlMs]),
      );
    } catch (err) {
      if (generation !== this.generation) return;
      if (!this.renewFailing) {
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err), leftMs: held.validUntil - Date.now() },
          "cannot renew the trainer lease; retrying until it expires",
        );
      }
      this.renewFailing = true;
      const left = held.validUntil - Date.now();
      this.scheduleRenew(Math.max(20, Math.min(this.renewEveryMs, Math.floor(left / 3))));
      return;
    }
    if (generation !== this.generation) return;
    if (renewed !== 1) {
      this.lose("another replica holds it, or it expired in Redis");
      return;
    }
    if (this.renewFailing) this.log.info({ token: held.token }, "trainer lease renewed again");
    this.renewFailing = false;
    held.validUntil = sentAt + this.ttlMs;
    this.armExpiry();
    this.scheduleRenew(this.renewEveryMs);
  }

  private stopTimers(): void {
    clearTimeout(this.renewTimer);
    clearTimeout(this.expiryTimer);
    this.renewTimer = undefined;
    this.expiryTimer = undefined;
  }

  private lose(reason: string): void {
    const held = this.held;
    if (!held) return;
    this.generation++;
    this.held = undefined;
    this.stopTimers();
    this.log.warn({ token: held.token, reason }, "lost the trainer lease");
    for (const listener of [...this.listeners]) {
      try {
        listener(reason);
      } catch (err) {
        this.log.error({ err }, "lease listener failed");
      }
    }
  }

  /** Gives the lease up (deleting it only if still ours). Never throws; listeners are not called. */
  async release(): Promise<void> {
    const held = this.held;
    if (!held) return;
    this.generation++;
    this.held = undefined;
    this.stopTimers();
    try {
      await this.connection.run("release trainer lease", (c) =>
        RELEASE_LEASE.run(c, [this.keys.lease], [held.value]),
      );
      this.log.info({ token: held.token }, "released the trainer lease");
    } catch (err) {
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        "could not release the lease; it expires",
      );
    }
  }

  /**
   * Stops renewing without releasing, as a crashed holder would: the lease
   * runs out in Redis. For tests and for abrupt shutdowns.
   */
  abandon(): void {
    this.generation++;
    this.held = undefined;
    this.stopTimers();
  }

  /**
   * Runs for as long as `signal` is not aborted: waits for the lease, reports
   * it, waits until it is lost, reports that, and starts waiting again. On
   * abort the lease is released. Resolves when done.
   */
  async campaign(handlers: CampaignHandlers, signal: AbortSignal): Promise<void> {
    try {
      while (!signal.aborted) {
        let token: number;
        try {
          token = await this.acquire(signal);
        } catch (err) {
          if (isLayercacheError(err, "SHUTTING_DOWN")) break;
          throw err;
        }
        const lost = new Promise<string | undefined>((resolve) => {
          const off = this.onLost((reason) => {
            off();
            signal.removeEventListener("abort", onAbort);
            resolve(reason);
          });
          const onAbort = () => {
            off();
            resolve(undefined);
          };
          signal.addEventListener("abort", onAbort, { once: true });
        });
        await handlers.onAcquired(token);
        const reason = await lost;
        if (reason === undefined) break;
        await handlers.onLost(reason);
      }
    } finally {
      await this.release();
    }
  }
}
