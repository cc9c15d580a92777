/**
 * The trainer's side of the example stream (examples.ts): a reader in the
 * model's consumer group `trainers`.
 *
 * `read()` first takes over entries that an earlier trainer read but never
 * acknowledged (XAUTOCLAIM, once they have been idle for `claimIdleMs`), then
 * reads new ones (XREADGROUP `>`, optionally blocking on a connection of its
 * own). Every entry is acknowledged before it is used, one XACK at a time in
 * a script that returns only the ids this call removed from the pending list,
 * so each example is counted by exactly one trainer, across handovers and
 * even when two trainers overlap for a moment. Entries that are not valid
 * examples of the model are acknowledged, skipped and counted. A group that
 * vanished (key deleted, Redis restarted without persistence) is recreated.
 */
import { z } from "zod";
import { LayercacheError, isLayercacheError } from "../errors/index.ts";
import type { Logger } from "../telemetry/logger.ts";
import type { AuditRecord, TrainingExample } from "./example-codec.ts";
import { decodeAudit, decodeExample } from "./example-codec.ts";
import type { StateKeys } from "./keys.ts";
import type { StateLayout } from "./layout.ts";
import type { StateConnection } from "./redis-connection.ts";
import { MAX_BLOCK_MS, closeRedis } from "./redis-connection.ts";
import { ACK_EXAMPLES } from "./scripts.ts";

/** A stream entry as Redis returns it: id, then field names and values in turn. */
export interface RawEntry {
  id: string;
  fields: Buffer[];
}

function entryFields(entry: RawEntry): Map<string, Buffer> {
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < entry.fields.length; i += 2)
    fields.set(entry.fields[i]!.toString(), entry.fields[i + 1]!);
  return fields;
}

/** An entry's example (field `e`) and producer (field `p`); throws STATE_INVALID for anything else. */
export function decodeEntry(entry: RawEntry, layout: StateLayout): ReceivedExample {
  const fields = entryFields(entry);
  const bytes = fields.get("e");
  if (!bytes) throw new LayercacheError("STATE_INVALID", "training example: entry without an 'e' field");
  const example = decodeExample(bytes, layout);
  return { ...example, id: entry.id, producer: fields.get("p")?.toString() ?? "unknown" };
}

/** An example-stream entry: an example (field `e`) or a follower's audit (field `a`); STATE_INVALID otherwise. */
export function decodeStreamEntry(entry: RawEntry, layout: StateLayout): ReceivedEntry {
  const fields = entryFields(entry);
  const audit = fields.get("a");
  if (!audit || fields.has("e")) return decodeEntry(entry, layout);
  const record = decodeAudit(audit, layout);
  return { kind: "audit", ...record, id: entry.id, producer: fields.get("p")?.toString() ?? "unknown" };
}

/** The consumer group every trainer of a model reads in. */
export const TRAINER_GROUP = "trainers";

export interface ConsumerOptions {
  /** Most entries per `read()` (default 64). */
  count?: number;
  /** Block up to this long for new entries, ms (default 0: never). Blocking reads get their own connection. */
  blockMs?: number;
  /** Pending entries idle this long are taken over from the consumer that read them, ms (default 30000). */
  claimIdleMs?: number;
  /** Other consumers idle this long with nothing pending are removed from the group, ms (default 1 hour). */
  pruneIdleMs?: number;
}

export interface ConsumerStats {
  /** Examples and audits returned to the trainer (acknowledged by this consumer). */
  received: number;
  /** Entries taken over from a previous trainer's pending list. */
  claimed: number;
  /** Entries another consumer acknowledged first (not returned). */
  duplicates: number;
  /** Entries that were not valid examples of this model (acknowledged and skipped). */
  invalid: number;
}

export interface ReceivedExample extends TrainingExample {
  /** Stream entry id. */
  id: string;
  /** Replica that produced it. */
  producer: string;
}

/** A follower's shadow audit, for the trainer's drift check. */
export interface ReceivedAudit extends AuditRecord {
  kind: "audit";
  id: string;
  producer: string;
}

export type ReceivedEntry = ReceivedExample | ReceivedAudit;

const buf = z.instanceof(Buffer);
const entrySchema = z.tuple([buf, z.array(buf)]);
const readSchema = z.array(z.tuple([buf, z.array(entrySchema)])).nullable();
const claimSchema = z.tuple([buf, z.array(entrySchema.nullable())]).rest(z.unknown());
const ackSchema = z.array(z.string());

function isNoGroup(err: unknown): boolean {
  const cause = err instanceof LayercacheError ? err.cause : err;
  return cause instanceof Error && cause.message.includes("NOGROUP");
}

export class ExampleConsumer {
  private readonly counts: ConsumerStats = { received: 0, claimed: 0, duplicates: 0, invalid: 0 };
  private readonly count: number;
  private readonly blockMs: number;
  private readonly claimIdleMs: number;
  private readonly pruneIdleMs: number;
  private readonly blocking: ReturnType<StateConnection["open"]> | undefined;
  private groupReady = false;
  private claimCursor = "0-0";
  private nextClaimAt = 0;
  private invalidLogged = 0;

  constructor(
    private readonly connection: StateConnection,
    private readonly keys: StateKeys,
    private readonly layout: StateLayout,
    readonly name: string,
    options: ConsumerOptions,
    private readonly log: Logger,
  ) {
    this.count = options.count ?? 64;
    this.blockMs = options.blockMs ?? 0;
    this.claimIdleMs = options.claimIdleMs ?? 30_000;
    this.pruneIdleMs = options.pruneIdleMs ?? 3_600_000;
    if (!(this.blockMs >= 0 && this.blockMs <= MAX_BLOCK_MS)) {
      throw new LayercacheError("CONFIG_INVALID", `blockMs must be within [0, ${MAX_BLOCK_MS}]`);
    }
    this.blocking = this.blockMs > 0 ? connection.open("blocking") : undefined;
  }

  get stats(): ConsumerStats {
    return { ...this.counts };
  }

  /**
   * The next examples (and followers' audits) for this trainer: first entries
   * abandoned by earlier trainers, then new ones. SERVICE_UNAVAILABLE while
   * Redis is unreachable.
   */
  async read(count = this.count): Promise<ReceivedEntry[]> {
    if (!(Number.isInteger(count) && count >= 1)) return [];
    let entries: RawEntry[];
    try {
      entries = await this.fetch(count);
    } catch (err) {
      if (!isNoGroup(err)) throw err;
      // The stream or group vanished (deleted, or a Redis without persistence restarted).
      this.groupReady = false;
      entries = await this.fetch(count);
    }
    if (entries.length === 0) return [];
    const acked = new Set(await this.acknowledge(entries.map((e) => e.id)));
    this.counts.duplicates += entries.length - acked.size;
    const out: ReceivedEntry[] = [];
    for (const entry of entries) {
      if (!acked.has(entry.id)) continue;
      const example = this.decode(entry);
      if (example) out.push(example);
    }
    this.counts.received += out.length;
    return out;
  }

  private async fetch(count: number): Promise<RawEntry[]> {
    await this.ensureGroup();
    const entries: RawEntry[] = [];
    if (Date.now() >= this.nextClaimAt) {
      const claimed = await this.claim(count);
      this.counts.claimed += claimed.length;
      entries.push(...claimed);
    }
    if (entries.length < count) entries.push(...(await this.readNew(count - entries.length)));
    return entries;
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return;
    await this.connection.run("create the trainers' consumer group", async (c) => {
      try {
        await c.xgroup("CREATE", this.keys.examples, TRAINER_GROUP, "0", "MKSTREAM");
      } catch (err) {
        if (!(err instanceof Error && err.message.includes("BUSYGROUP"))) throw err;
      }
    });
    this.groupReady = true;
    this.claimCursor = "0-0";
    this.nextClaimAt = 0;
    await this.pruneConsumers().catch((err: unknown) =>
      this.log.debug({ err: String(err) }, "could not prune idle consumers"),
    );
  }

  /** Removes consumers that left long ago with nothing pending, so the group does not grow forever. */
  private async pruneConsumers(): Promise<void> {
    const reply = await this.connection.run("list consumers", (c) =>
      c.xinfo("CONSUMERS", this.keys.examples, TRAINER_GROUP),
    );
    const consumers = z.array(z.array(z.union([z.string(), z.number()]))).parse(reply);
    for (const flat of consumers) {
      const info = new Map<string, string | number>();
      for (let i = 0; i + 1 < flat.length; i += 2) info.set(String(flat[i]), flat[i + 1]!);
      const name = String(info.get("name"));
      if (name === this.name || info.get("pending") !== 0) continue;
      if (Number(info.get("idle")) < this.pruneIdleMs) continue;
      await this.connection.run("remove an idle consumer", (c) =>
        c.xgroup("DELCONSUMER", this.keys.examples, TRAINER_GROUP, name),
      );
    }
  }

  private async claim(count: number): Promise<RawEntry[]> {
    const reply = await this.connection.run("claim abandoned examples", (c) =>
      c.callBuffer(
        "XAUTOCLAIM",
        this.keys.examples,
        TRAINER_GROUP,
        this.name,
        this.claimIdleMs,
        this.claimCursor,
        "COUNT",
        count,
      ),
    );
    const [cursor, entries] = this.parse(claimSchema, reply, "XAUTOCLAIM");
    this.claimCursor = cursor.toString();
    // A full pass over the pending list is done: look again after a while.
    if (this.claimCursor === "0-0") this.nextClaimAt = Date.now() + Math.max(1_000, this.claimIdleMs / 2);
    return entries.flatMap((e) => (e ? [{ id: e[0].toString(), fields: e[1] }] : []));
  }

  private async readNew(count: number): Promise<RawEntry[]> {
    const args: (string | number)[] = ["GROUP", TRAINER_GROUP, this.name, "COUNT", count];
    if (this.blockMs > 0) args.push("BLOCK", this.blockMs);
    args.push("STREAMS", this.keys.examples, ">");
    // A blocking read may spend its time waiting for its connection instead (new or reconnecting).
    if (this.blocking && this.blocking.status !== "ready") {
      await this.connection.waitReady(this.blockMs, this.blocking);
    }
    const reply = await this.connection.run(
      "read examples",
      (c) => c.callBuffer("XREADGROUP", ...args),
      this.blocking ?? this.connection.client,
    );
    const streams = this.parse(readSchema, reply, "XREADGROUP") ?? [];
    return streams.flatMap(([, entries]) => entries.map(([id, fields]) => ({ id: id.toString(), fields })));
  }

  private parse<T>(schema: z.ZodType<T>, reply: unknown, command: string): T {
    const parsed = schema.safeParse(reply);
    if (!parsed.success) throw new LayercacheError("INTERNAL", `unexpected ${command} reply shape`);
    return parsed.data;
  }

  private async acknowledge(ids: string[]): Promise<string[]> {
    const reply = await this.connection.run("acknowledge examples", (c) =>
      ACK_EXAMPLES.run(c, [this.keys.examples], [TRAINER_GROUP, ...ids]),
    );
    return this.parse(ackSchema, reply, "acknowledge");
  }

  private decode(entry: RawEntry): ReceivedEntry | undefined {
    try {
      return decodeStreamEntry(entry, this.layout);
    } catch (err) {
      if (!isLayercacheError(err, "STATE_INVALID")) throw err;
      this.counts.invalid++;
      // The first few, then one in a hundred: a stream full of junk must not flood the log.
      if (this.invalidLogged < 5 || this.counts.invalid % 100 === 0) {
        this.invalidLogged++;
        this.log.warn(
          { id: entry.id, err: err.message, invalid: this.counts.invalid },
          "skipped an invalid example",
        );
      }
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.blocking) await closeRedis(this.blocking);
  }
}
