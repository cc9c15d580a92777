/**
 * How a cache snapshot is stored in one Redis hash, and how it is read back
 * without trusting anything:
 *
 *   version    decimal version (what pollers read with HGET)
 *   meta       JSON: format, model id, version, exit count, which heads exist,
 *              the exit decisions (thresholds, calibration counts), optional
 *              shadow-audit counts, who published it, when, under which token
 *   head:<e>   exit e's head in the binary head codec (float32 parameters);
 *              absent while that exit has no head
 *
 * Reading validates the JSON with zod, decodes every head with the head
 * codec's own checks, and checks everything against the model (id, exit
 * count, feature sizes, classes). Any problem is STATE_INVALID.
 */
import { z } from "zod";
import type { ExitHead } from "../cache/heads.ts";
import { headFromBytes } from "../cache/heads.ts";
import type { ExitDecision } from "../cache/planner.ts";
import type { CacheSnapshot } from "../cache/state.ts";
import { LayercacheError } from "../errors/index.ts";
import type { StateLayout } from "./layout.ts";

export const SNAPSHOT_FORMAT = 1;
/** Most exits a snapshot may describe (a bound on what a reader allocates). */
export const MAX_EXITS = 1_024;

/** Shadow-audit totals of one exit at publish time. */
export interface AuditCount {
  audited: number;
  agreed: number;
}

/** Who published a snapshot and what else they reported with it. */
export interface SnapshotProvenance {
  /** Milliseconds since the epoch. */
  publishedAt: number;
  /** Replica (worker id) that published it. */
  publisher: string;
  /** Fencing token of the lease it was published under. */
  fencingToken: number;
  /** Audit totals per exit, when the publisher sent them. */
  audit: readonly AuditCount[] | null;
}

/** A snapshot as read from Redis: the cache's snapshot plus its provenance. */
export interface SharedSnapshot extends CacheSnapshot, SnapshotProvenance {}

const count = z.int().min(0);
const probability = z.number().min(0).max(1);

const calibrationSchema = z
  .strictObject({
    threshold: probability.nullable(),
    reached: count,
    accepted: count,
    agreed: count,
    lowerBound: probability,
    minFrames: count,
  })
  .refine((c) => c.agreed <= c.accepted && c.accepted <= c.reached, "needs agreed <= accepted <= reached");

const decisionSchema = z
  .strictObject({
    exit: count,
    open: z.boolean(),
    threshold: probability.nullable(),
    // Absent in snapshots from before SLO mode: they carry no floor thresholds.
    floorThreshold: probability.nullable().optional(),
    reason: z.string().max(2_000),
    coverage: probability,
    savedMacs: z.number().min(0),
    costMacs: z.number().min(0),
    calibration: calibrationSchema.nullable(),
  })
  .refine((d) => d.open === (d.threshold !== null), "an exit has a threshold exactly when it is open");

const auditSchema = z
  .strictObject({ audited: count, agreed: count })
  .refine((a) => a.agreed <= a.audited, "agreed <= audited");

export const snapshotMetaSchema = z
  .strictObject({
    format: z.literal(SNAPSHOT_FORMAT),
    modelId: z.string().min(1).max(128),
    version: z.int().min(1),
    exits: z.int().min(1).max(MAX_EXITS),
    heads: z.array(z.boolean()).max(MAX_EXITS),
    decisions: z.array(decisionSchema).max(MAX_EXITS),
    publishedAt: count,
    publisher: z.string().min(1).max(256),
    fencingToken: z.int().min(1),
    audit: z.array(auditSchema).max(MAX_EXITS).nullable(),
  })
  .superRefine((m, ctx) => {
    const problem = (message: string) => ctx.addIssue({ code: "custom", message });
    if (m.heads.length !== m.exits) problem(`${m.heads.length} head flags for ${m.exits} exits`);
    if (m.decisions.length !== m.exits) problem(`${m.decisions.length} decisions for ${m.exits} exits`);
    if (m.audit && m.audit.length !== m.exits) problem(`${m.audit.length} audit counts for ${m.exits} exits`);
    m.decisions.forEach((d, i) => {
      if (d.exit !== i) problem(`decisions[${i}] is for exit ${d.exit}`);
      if (d.open && !m.heads[i]) problem(`exit ${i} is open without a head`);
    });
  });

export type SnapshotMeta = z.output<typeof snapshotMetaSchema>;

export const VERSION_FIELD = "version";
export const META_FIELD = "meta";
export const headField = (exit: number): string => `head:${exit}`;

function invalid(message: string, details: Record<string, string | number> = {}): LayercacheError {
  return new LayercacheError("STATE_INVALID", `cache snapshot: ${message}`, { details });
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const at = issue.path.length > 0 ? issue.path.join(".") : "(root)";
  return `${at}: ${issue.message}`;
}

/** The JSON form of the decisions: `undefined` thresholds become null. */
function decisionsToJson(decisions: readonly ExitDecision[]): SnapshotMeta["decisions"] {
  return decisions.map((d) => ({
    exit: d.exit,
    open: d.open,
    threshold: d.threshold,
    ...(d.floorThreshold !== undefined ? { floorThreshold: d.floorThreshold } : {}),
    reason: d.reason,
    coverage: d.coverage,
    savedMacs: d.savedMacs,
    costMacs: d.costMacs,
    calibration: d.calibration && { ...d.calibration, threshold: d.calibration.threshold ?? null },
  }));
}

function decisionsFromJson(decisions: SnapshotMeta["decisions"]): ExitDecision[] {
  return decisions.map((d) => ({
    ...d,
    calibration: d.calibration && { ...d.calibration, threshold: d.calibration.threshold ?? undefined },
  }));
}

/** Checks a snapshot's heads against the model before anyone relies on it. */
export function layoutProblem(heads: readonly (ExitHead | null)[], layout: StateLayout): string | undefined {
  if (heads.length !== layout.featureSizes.length) {
    return `${heads.length} exits where the model has ${layout.featureSizes.length}`;
  }
  for (let e = 0; e < heads.length; e++) {
    const head = heads[e];
    if (!head) continue;
    if (head.inputSize !== layout.featureSizes[e]) {
      return `head ${e} takes ${head.inputSize} features where the model pools ${layout.featureSizes[e]}`;
    }
    if (head.classes !== layout.classes) {
      return `head ${e} predicts ${head.classes} classes where the model has ${layout.classes}`;
    }
  }
  return undefined;
}

/**
 * The hash fields for a snapshot (alternating names and values), after
 * checking that a reader will accept them. A snapshot that would not pass is a
 * bug of the publisher: INTERNAL.
 */
export function encodeSnapshot(
  snapshot: CacheSnapshot,
  provenance: SnapshotProvenance,
  layout?: StateLayout,
): (string | Buffer)[] {
  const meta = {
    format: SNAPSHOT_FORMAT,
    modelId: snapshot.modelId,
    version: snapshot.version,
    exits: snapshot.heads.length,
    heads: snapshot.heads.map((h) => h !== null),
    decisions: decisionsToJson(snapshot.decisions),
    publishedAt: provenance.publishedAt,
    publisher: provenance.publisher,
    fencingToken: provenance.fencingToken,
    audit: provenance.audit ? provenance.audit.map(({ audited, agreed }) => ({ audited, agreed })) : null,
  };
  const parsed = snapshotMetaSchema.safeParse(meta);
  const problem = parsed.success ? layout && layoutProblem(snapshot.heads, layout) : firstIssue(parsed.error);
  if (problem) {
    throw new LayercacheError("INTERNAL", `refusing to publish an invalid snapshot: ${problem}`, {
      details: { version: snapshot.version },
    });
  }
  const fields: (string | Buffer)[] = [
    VERSION_FIELD,
    String(snapshot.version),
    META_FIELD,
    JSON.stringify(meta),
  ];
  snapshot.heads.forEach((head, exit) => {
    if (!head) return;
    const bytes = head.toBytes();
    fields.push(headField(exit), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  });
  return fields;
}

/** Reads a stored version field: a safe integer >= 1, else STATE_INVALID. */
export function parseVersion(raw: string | Buffer): number {
  const text = raw.toString();
  if (!/^[1-9]\d{0,15}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw invalid(`version field ${JSON.stringify(text.slice(0, 40))} is not a positive integer`);
  }
  return Number(text);
}

/**
 * Decodes a snapshot hash (field name to raw bytes, as HGETALL returns it).
 * Returns undefined for an empty hash (nothing published yet); throws
 * STATE_INVALID for anything else that is not a valid snapshot of `modelId`.
 */
export function decodeSnapshot(
  fields: Readonly<Record<string, Buffer>>,
  modelId: string,
  layout?: StateLayout,
): SharedSnapshot | undefined {
  const names = Object.keys(fields);
  if (names.length === 0) return undefined;
  const rawVersion = fields[VERSION_FIELD];
  const rawMeta = fields[META_FIELD];
  if (rawVersion === undefined || rawMeta === undefined) throw invalid("version or meta field missing");
  const version = parseVersion(rawVersion);
  let json: unknown;
  try {
    json = JSON.parse(rawMeta.toString("utf8"));
  } catch {
    throw invalid("meta is not JSON", { version });
  }
  const parsed = snapshotMetaSchema.safeParse(json);
  if (!parsed.success) throw invalid(`meta ${firstIssue(parsed.error)}`, { version });
  const meta = parsed.data;
  if (meta.version !== version) throw invalid(`meta says version ${meta.version}, field says ${version}`);
  if (meta.modelId !== modelId) throw invalid(`snapshot is for model ${meta.modelId}, not ${modelId}`);
  for (const name of names) {
    const m = /^head:(\d+)$/.exec(name);
    if (m && !meta.heads[Number(m[1])]) throw invalid(`unexpected field ${name}`, { version });
  }
  const heads = meta.heads.map((present, exit) => {
    if (!present) return null;
    const bytes = fields[headField(exit)];
    if (!bytes) throw invalid(`head ${exit} is missing`, { version });
    try {
      return headFromBytes(bytes);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new LayercacheError("STATE_INVALID", `cache snapshot: head ${exit}: ${why}`, {
        cause: err,
        details: { version, exit },
      });
    }
  });
  const problem = layout && layoutProblem(heads, layout);
  if (problem) throw invalid(problem, { version });
  return {
    modelId: meta.modelId,
    version,
    heads,
    decisions: decisionsFromJson(meta.decisions),
    publishedAt: meta.publishedAt,
    publisher: meta.publisher,
    fencingToken: meta.fencingToken,
    audit: meta.audit,
  };
}
