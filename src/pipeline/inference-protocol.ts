/**
 * Messages between the main thread and the inference thread. Pixel and
 * outcome arrays travel as transferred ArrayBuffers (moved, not copied);
 * only frame ids and small scalars are cloned.
 */
import type { CacheOptions } from "../cache/options.ts";
import type { ErrorCode } from "../errors/index.ts";
import { ERROR_CODES, LayercacheError } from "../errors/index.ts";

/** `workerData` of the inference thread. */
export interface InferenceInit {
  modelDir: string;
  intraOpThreads: number;
  cacheEnabled: boolean;
  cache: CacheOptions;
  logLevel: string;
  workerId: string;
  /** Share the cache with the other replicas through Redis (cache-sharing.ts); alone when absent. */
  sharing?: SharingInit;
}

/** Where the fleet's shared cache state lives. */
export interface SharingInit {
  /** REDIS_URL (may hold a password: never logged as is). */
  redisUrl: string;
  keyPrefix: string;
  leaseTtlMs: number;
  /**
   * Train on a learner thread of the replica's own (learner-thread.ts) rather
   * than on the inference thread between batches.
   */
  learnerThread: boolean;
  /** The learner thread's scheduling priority (learner-thread.ts, thread-priority.ts). */
  learnerNice: number;
}

/** How this replica takes part in sharing the cache, for metrics; totals since the thread started. */
export interface SharingStatus {
  /** Holds the trainer lease and trains (between batches; the lease itself may already be gone). */
  training: boolean;
  /** A trainer that took over, holding its snapshots back until its calibration is as good. */
  holdingBack: boolean;
  redisConnected: boolean;
  /** Newest snapshot version the engine took from the shared state or published itself. */
  snapshotVersion: number;
  /** Snapshots adopted from other replicas, and published by this one. */
  adopted: number;
  published: number;
  /** Examples (and audit verdicts) sent to the trainer through Redis, and lost on the way (Redis unreachable). */
  examplesForwarded: number;
  examplesDropped: number;
  /** Examples from other replicas trained on here. */
  examplesReceived: number;
  /** Other replicas' audit verdicts taken into this trainer's drift check. */
  auditsReceived: number;
  /** Drift alarms the shadow audit raised while this replica trained (docs/cache.md). */
  driftAlarms: number;
  /**
   * Entries read from Redis while training (forwarded examples and audits,
   * the calibration evidence of a trainer before) that could not be decoded
   * or do not fit this model: skipped, and logged.
   */
  examplesInvalid: number;
  /**
   * Examples the trainer left out: non-finite features or logits, or a
   * target that is not a distribution (cache/trainer.ts).
   */
  examplesRejected: number;
}

/** What the main thread needs to know about the model the thread loaded. */
export interface ModelInfo {
  modelId: string;
  classes: string[];
  /** Model input, channels x height x width. */
  input: { channels: number; height: number; width: number };
  /** MACs of one frame through the whole backbone. */
  fullMacs: number;
  /** Exit points (0 .. exits - 1); an outcome's exit -1 is the backbone. */
  exits: number;
}

/** Per-frame outcomes of one batch, column by column, in the order of the batch's ids. */
export interface OutcomeColumns {
  label: Int32Array;
  exit: Int32Array;
  confidence: Float64Array;
  macs: Float64Array;
  computeMs: Float64Array;
  headsVersion: Float64Array;
  /** 1 when an exit was confident but the frame was audited. */
  audited: Uint8Array;
  /** 1 when the exact cache answered (a repeated frame; cache/exact-cache.ts). */
  exactHit: Uint8Array;
}

/** The shadow audit of one exit (src/cache/audit.ts): its recent window and its lifetime totals. */
export interface ExitAudit {
  exit: number;
  /** Audits in the window the drift check looks at, and how many agreed with the backbone. */
  windowAudited: number;
  windowAgreed: number;
  audited: number;
  agreed: number;
}

/** One exit as the heads that answer now decide it (the planner's decision, without its evidence). */
export interface ExitState {
  exit: number;
  open: boolean;
  /** Confidence at or above which the exit answers; null while closed. */
  threshold: number | null;
  /** Why it is open or closed, in words (planner.ts). */
  reason: string;
}

export interface WireError {
  code: ErrorCode;
  message: string;
  retriable: boolean;
}

export type ToInference =
  /**
   * `pixels`: count x channels x height x width bytes, planar, transferred.
   * `strictness`: one per frame (SLO mode, cache/engine.ts); absent: all strict.
   */
  | { type: "batch"; seq: number; ids: string[]; pixels: ArrayBuffer; strictness?: Float32Array }
  | { type: "close" };

export type FromInference =
  | { type: "ready"; model: ModelInfo }
  /** `audit`: the exits whose audit changed with this batch, if any did. */
  | { type: "result"; seq: number; outcomes: OutcomeColumns; audit?: ExitAudit[] }
  | { type: "failed"; seq: number; error: WireError }
  /**
   * Learning alone, when a total changed: drift alarms the shadow audit
   * raised and examples the trainer left out, so far. (Shared, SharingStatus
   * counts them.)
   */
  | { type: "learning"; driftAlarms: number; examplesRejected: number }
  /** The exits of the heads that answer, sent when the heads version changed. */
  | { type: "exits"; headsVersion: number; exits: ExitState[] }
  /** Sharing the cache: sent when it changed (after batches, and while idle). */
  | { type: "sharing"; status: SharingStatus }
  /** The thread cannot go on (model failed to load, learning failed). */
  | { type: "fatal"; error: WireError }
  | { type: "closed" };

export function outcomeBuffers(o: OutcomeColumns): ArrayBuffer[] {
  return [o.label, o.exit, o.confidence, o.macs, o.computeMs, o.headsVersion, o.audited, o.exactHit].map(
    (a) => a.buffer as ArrayBuffer,
  );
}

export function toWireError(err: unknown): WireError {
  if (err instanceof LayercacheError)
    return { code: err.code, message: err.message, retriable: err.retriable };
  const message = err instanceof Error ? err.message : String(err);
  return { code: "INTERNAL", message, retriable: false };
}

export function fromWireError(e: WireError, context: string): LayercacheError {
  const code = ERROR_CODES.includes(e.code) ? e.code : "INTERNAL";
  return new LayercacheError(code, `${context}: ${e.message}`, { retriable: e.retriable });
}
