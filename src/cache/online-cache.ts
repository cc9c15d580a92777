/**
 * The online layer cache in one process: engine, trainer, shadow audit and a
 * state store wired together. `process()` answers a micro-batch; learning and
 * re-calibration happen after it returns, off the per-frame path.
 *
 * Alone (the default), the cache trains its own heads and publishes them to
 * its store. In a fleet that shares one set of heads (docs/sharing.md) it
 * has one of two roles, switched between batches by whoever holds the
 * trainer lease:
 *
 * - follower: what the engine sees goes to a forwarder (to the trainer, on
 *   another replica); `maintain()` neither trains nor publishes, and new
 *   heads arrive through `engine.adopt`;
 * - trainer: the engine's observations go to a trainer started from the
 *   heads the engine holds; `maintain()` trains and publishes as alone.
 */
import { LayercacheError } from "../errors/index.ts";
import type { SegmentedBackbone } from "../model/backbone.ts";
import { ShadowAudit } from "./audit.ts";
import type { CacheObserver, FrameOutcome } from "./engine.ts";
import { BACKBONE_EXIT, CacheEngine, checkBatch } from "./engine.ts";
import { STRICT, exitThreshold } from "./strictness.ts";
import type { CacheOptions } from "./options.ts";
import type { CacheSnapshot, CacheStateStore } from "./state.ts";
import { MemoryStateStore, emptySnapshot } from "./state.ts";
import { HeadTrainer } from "./trainer.ts";
import type { StepBudget } from "./trainer.ts";
import { KernelPool } from "./head-kernel.ts";
import type { ExactAnswer } from "./exact-cache.ts";
import { ExactCache, contentKey } from "./exact-cache.ts";
import { elements } from "../model/manifest.ts";
import { headShape } from "./heads.ts";

export type CacheRole = "alone" | "follower" | "trainer";

/** What a cache in a fleet needs besides its store. */
export interface FleetRoles {
  /** The engine's observer while another replica trains: sends what the engine sees to it. */
  forwarder: CacheObserver;
  /**
   * This cache only trains, on what the stream brings (the learner thread,
   * docs/sharing.md): its engine never answers a frame, so no span sessions
   * are built for it.
   */
  trainsOnly?: boolean;
}

/** How `becomeTrainer` started training. */
export type TakeoverKind = "resumed" | "took-over";

/**
 * A trainer that takes over starts with an empty calibration set, so its first
 * decisions would close exits the fleet has proven. Until its own evidence is
 * as good, its snapshots are held back and the fleet keeps the one it has.
 */
interface TakeoverHold {
  /** Exits open in the snapshot taken over. */
  open: number;
  /** Held-out frames behind that snapshot's decisions (at most the calibration capacity). */
  evidence: number;
  /** The trainer's drift alarms when it took over: an alarm publishes at once. */
  driftAlarms: number;
}

/** The engine's one observer: passes each call on to whoever learns now. */
class ObserverSwitch implements CacheObserver {
  constructor(public target: CacheObserver) {}

  onBackboneFrame(features: readonly Float32Array[], logits: Float32Array, heldOut: boolean): void {
    this.target.onBackboneFrame(features, logits, heldOut);
  }

  onEarlyExit(features: readonly Float32Array[], probs: Float32Array): void {
    this.target.onEarlyExit(features, probs);
  }

  onAudit(exit: number, agreed: boolean, lenient: boolean, headsVersion: number): void {
    this.target.onAudit?.(exit, agreed, lenient, headsVersion);
  }
}

/** The observer of a cache that is off: its engine runs the backbone alone and reports nothing. */
const IGNORED: CacheObserver = { onBackboneFrame: () => undefined, onEarlyExit: () => undefined };

const openExits = (s: CacheSnapshot) => s.decisions.filter((d) => d.open).length;

const answerOf = (o: FrameOutcome): ExactAnswer => ({
  label: o.label,
  confidence: o.confidence,
  exit: o.exit,
  headsVersion: o.headsVersion,
});

/** A repeat answered from the exact cache: the first answer, no MACs, the lookup as its compute time. */
const exactHit = (id: string, a: ExactAnswer, computeMs: number): FrameOutcome => ({
  id,
  label: a.label,
  confidence: a.confidence,
  exit: a.exit,
  audited: false,
  heldOut: false,
  macs: 0,
  computeMs,
  headsVersion: a.headsVersion,
  exactHit: true,
});

export class OnlineCache {
  readonly engine: CacheEngine;
  readonly audit: ShadowAudit;
  /** Answers for repeated frames (exact-cache.ts); undefined when off, and always with the cache off. */
  readonly exact: ExactCache | undefined;
  /** Milliseconds spent learning and calibrating, outside `process()`. */
  maintenanceMs = 0;
  /** onnxruntime sessions for the heads' arithmetic, shared by every trainer and the engine. */
  private readonly kernels = new KernelPool();
  private currentRole: CacheRole;
  /** The trainer learning now; on a follower, the one that last did (kept to resume). */
  private learner: HeadTrainer | undefined;
  private readonly observer: ObserverSwitch;
  /** Version of the last snapshot this cache published. */
  private lastPublished = -1;
  private hold: TakeoverHold | undefined;
  private readonly frameSize: number;

  private constructor(
    private readonly backbone: SegmentedBackbone,
    private readonly store: CacheStateStore,
    private readonly options: CacheOptions,
    snapshot: CacheSnapshot,
    private readonly cacheEnabled: boolean,
    private readonly fleet: FleetRoles | undefined,
  ) {
    const exits = backbone.exitCount;
    this.audit = new ShadowAudit(
      exits,
      options.auditRate,
      options.auditWindow,
      options.targetAgreement,
      options.driftSignificance,
      // Answers given below the target's threshold (SLO mode) are held to the floor.
      Math.min(options.floorAgreement, options.targetAgreement),
    );
    if (fleet) {
      this.currentRole = "follower";
      this.observer = new ObserverSwitch(fleet.forwarder);
    } else if (cacheEnabled) {
      this.currentRole = "alone";
      this.learner = new HeadTrainer(backbone.manifest, options, this.audit, snapshot.version, this.kernels);
      this.observer = new ObserverSwitch(this.learner);
    } else {
      // Cache off: the engine observes nothing, and no trainer commits its buffers (resident.ts).
      this.currentRole = "alone";
      this.observer = new ObserverSwitch(IGNORED);
    }
    this.frameSize = elements(backbone.manifest.input.shape);
    this.exact =
      cacheEnabled && options.exactCacheEntries > 0 ? new ExactCache(options.exactCacheEntries) : undefined;
    this.engine = new CacheEngine(backbone, snapshot, this.audit, this.observer, {
      cacheEnabled,
      calibrationRate: options.calibrationRate,
      warmupCalibrationRate: options.warmupCalibrationRate,
      warmupCalibrationFrames: options.warmupCalibrationFrames,
      seed: options.seed,
      kernels: this.kernels,
      prepareSpans: fleet?.trainsOnly !== true,
    });
  }

  /**
   * Starts from the store's snapshot when it has one for this model. With
   * `fleet`, the cache starts as a follower (see the module comment).
   */
  static async create(
    backbone: SegmentedBackbone,
    options: CacheOptions,
    store: CacheStateStore = new MemoryStateStore(),
    cacheEnabled = true,
    fleet?: FleetRoles,
  ): Promise<OnlineCache> {
    const modelId = backbone.manifest.modelId;
    const existing = await store.current();
    const snapshot = existing?.modelId === modelId ? existing : emptySnapshot(modelId, backbone.exitCount);
    return new OnlineCache(backbone, store, options, snapshot, cacheEnabled, fleet);
  }

  get role(): CacheRole {
    return this.currentRole;
  }

  /**
   * The trainer: the one learning now, or on a follower the one that last
   * did (one that never trained gets an idle trainer on first use).
   */
  get trainer(): HeadTrainer {
    this.learner ??= new HeadTrainer(
      this.backbone.manifest,
      this.options,
      this.audit,
      this.engine.version,
      this.kernels,
    );
    return this.learner;
  }

  /** What the trainer's newest drift alarm found, if it raised one since the last call: for the caller to log. */
  newDriftAlarm(): string | undefined {
    return this.learner?.takeDriftAlarm();
  }

  /** Whether a trainer that took over is holding its snapshots back (see TakeoverHold). */
  get holdingBack(): boolean {
    return this.hold !== undefined;
  }

  /**
   * Answers a micro-batch, outcomes in the order of `ids`; `strictness` is
   * SLO mode's, one per frame (engine.ts). With the exact cache on, each
   * frame's model input is looked up first; only the misses run through the
   * engine (a frame repeated within the batch at the same strictness runs
   * once, its repeats take its answer), and their answers are stored. Hits and
   * misses share the lookup time; misses also share the time to store theirs.
   */
  async process(
    ids: readonly string[],
    input: Float32Array,
    strictness?: Float32Array,
  ): Promise<FrameOutcome[]> {
    const exact = this.exact;
    if (!exact) return this.engine.process(ids, input, strictness);
    const n = ids.length;
    const size = this.frameSize;
    checkBatch(n, input, size, strictness);
    const t0 = performance.now();
    const version = this.engine.version;
    const out: (FrameOutcome | undefined)[] = new Array<FrameOutcome | undefined>(n);
    const keys: string[] = [];
    /** Frames that run the engine, by position: the first of each content and strictness in the batch. */
    const misses: number[] = [];
    const firstOf = new Map<string, number>();
    /** Repeats within the batch of a miss: [position, position of the miss]. */
    const repeats: [number, number][] = [];
    for (let i = 0; i < n; i++) {
      const key = contentKey(input.subarray(i * size, (i + 1) * size));
      keys.push(key);
      const s = strictness ? strictness[i]! : STRICT;
      const batchKey = s === STRICT ? key : `${key}@${s}`;
      const first = firstOf.get(batchKey);
      if (first !== undefined) {
        repeats.push([i, first]);
        continue;
      }
      const answer = exact.lookup(key, version);
      if (answer && this.mayAnswer(answer, s)) {
        out[i] = exactHit(ids[i]!, answer, 0);
      } else {
        firstOf.set(batchKey, i);
        misses.push(i);
      }
    }
    const lookupMs = (performance.now() - t0) / Math.max(n, 1);

    if (misses.length > 0) {
      let x = input;
      let missStrictness = strictness;
      if (misses.length < n) {
        x = new Float32Array(misses.length * size);
        misses.forEach((i, j) => x.set(input.subarray(i * size, (i + 1) * size), j * size));
        missStrictness = strictness && Float32Array.from(misses, (i) => strictness[i]!);
      }
      const missIds = misses.map((i) => ids[i]!);
      const answered = await this.engine.process(missIds, x, missStrictness);
      const t1 = performance.now();
      answered.forEach((o, j) => {
        const i = misses[j]!;
        out[i] = o;
        exact.store(keys[i]!, answerOf(o));
      });
      const storeMs = (performance.now() - t1) / misses.length;
      for (const i of misses) out[i]!.computeMs += storeMs;
    }
    for (const [i, first] of repeats) out[i] = exactHit(ids[i]!, answerOf(out[first]!), 0);
    return out.map((o) => {
      o!.computeMs += lookupMs;
      return o!;
    });
  }

  /**
   * Whether a stored answer may answer a frame of strictness `s`. The
   * backbone's always may. An early answer (of the current heads version,
   * which `ExactCache.lookup` already checked) may when its confidence clears
   * the threshold that frame is held to at that exit: a frame stricter than
   * the one first answered (up to NO_EARLY_EXIT) runs the engine, one more
   * lenient takes an answer at least as strict as it needed.
   */
  private mayAnswer(answer: ExactAnswer, s: number): boolean {
    if (answer.exit === BACKBONE_EXIT) return true;
    const decision = this.engine.current.decisions[answer.exit];
    const threshold = decision ? exitThreshold(decision, s) : null;
    return threshold !== null && answer.confidence >= threshold;
  }

  /**
   * Follower to trainer, between batches. If this cache trained before and the
   * snapshot it holds is still the last one it published itself (nobody else
   * trained meanwhile), that trainer resumes with all it had. Otherwise a new
   * trainer starts from the engine's snapshot, numbering versions above
   * `startVersion` (the highest version known to the fleet), is handed to
   * `seed` (which may give it the calibration evidence of the trainer before,
   * see src/state/evidence.ts), and holds its snapshots back until its own
   * calibration is as good as the one taken over.
   */
  becomeTrainer(startVersion: number, seed?: (trainer: HeadTrainer) => void): TakeoverKind {
    if (this.currentRole !== "follower") {
      throw new LayercacheError("INTERNAL", `becomeTrainer on a cache that is ${this.currentRole}`);
    }
    const current = this.engine.current;
    const resume = this.resumes(startVersion);
    if (!resume) {
      const trainer = HeadTrainer.fromSnapshot(
        this.backbone.manifest,
        this.options,
        this.audit,
        current,
        startVersion,
        this.kernels,
      );
      this.learner = trainer;
      seed?.(trainer);
      trainer.restartPublishCount();
      const evidence = Math.min(
        Math.max(0, ...current.decisions.map((d) => d.calibration?.reached ?? 0)),
        this.options.calibrationCapacity,
      );
      this.hold =
        openExits(current) > 0 && trainer.calibration.size < evidence
          ? { open: openExits(current), evidence, driftAlarms: trainer.stats.driftAlarms }
          : undefined;
    }
    this.observer.target = this.learner!;
    this.currentRole = "trainer";
    return resume ? "resumed" : "took-over";
  }

  /**
   * Whether `becomeTrainer(startVersion)` would resume the trainer this cache
   * had: it trained before, and the snapshot it holds is still the last one
   * it published, with nothing newer known to the fleet.
   */
  resumes(startVersion: number): boolean {
    return (
      this.learner !== undefined &&
      this.engine.current.version === this.lastPublished &&
      startVersion <= this.lastPublished
    );
  }

  /** Trainer to follower, between batches: observations go to the forwarder again; the trainer is kept. */
  becomeFollower(): void {
    if (!this.fleet || this.currentRole === "follower") return;
    this.observer.target = this.fleet.forwarder;
    this.currentRole = "follower";
  }

  /**
   * Learns from what the last batches showed, and publishes and adopts a new
   * snapshot when one is due. A follower does neither. Errors of the store
   * (a trainer that lost its lease, an unreachable store) reach the caller.
   * `budget` bounds the training (a learner thread's, see StepBudget).
   */
  async maintain(budget?: StepBudget): Promise<CacheSnapshot | undefined> {
    // Cache off: the engine answers with the backbone alone and observes nothing.
    if (!this.cacheEnabled || this.currentRole === "follower") return undefined;
    const t0 = performance.now();
    try {
      const trainer = this.trainer;
      const next = await trainer.maintain(this.backbone.manifest.modelId, budget);
      if (!next || this.heldBack(next, trainer)) return undefined;
      if (!(await this.store.publish(next))) return undefined;
      this.lastPublished = next.version;
      this.engine.adopt(next);
      // Spans the new exits need are built now, between batches, not inside the next one.
      await this.engine.prepared();
      return next;
    } finally {
      this.maintenanceMs += performance.now() - t0;
    }
  }

  /**
   * Builds, before the first frame, the onnxruntime sessions that the first
   * batches and training steps would otherwise build on the way (each blocks
   * the thread for tens of milliseconds): the spans of the snapshot held
   * and every exit head's kernel.
   */
  async prepare(): Promise<void> {
    if (!this.cacheEnabled) return;
    const { exits, classes } = this.backbone.manifest;
    const heads = this.engine.current.heads;
    await Promise.all([
      this.engine.prepared(),
      ...exits.map((e, i) =>
        this.kernels.get(heads[i]?.shape ?? headShape(this.options, e.size, classes.length)),
      ),
    ]);
  }

  /** Under overload: the training steps owed so far are dropped instead of taken later (docs/slo.md). */
  forgoLearning(): void {
    if (this.currentRole !== "follower") this.learner?.forgoPendingSteps();
  }

  private heldBack(next: CacheSnapshot, trainer: HeadTrainer): boolean {
    const hold = this.hold;
    if (!hold) return false;
    const ready =
      openExits(next) >= hold.open ||
      trainer.calibration.size >= hold.evidence ||
      trainer.stats.driftAlarms > hold.driftAlarms;
    if (ready) this.hold = undefined;
    return !ready;
  }

  /** Releases the heads' onnxruntime sessions (the backbone is closed by its owner). */
  async close(): Promise<void> {
    await this.kernels.release();
  }
}
