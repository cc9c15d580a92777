/**
 * The learning side of the cache: collects what the engine observes, trains
 * the exit heads in mini-batches between batches (never inside one), and
 * publishes a new snapshot (heads + calibrated exit decisions) every
 * `publishEvery` examples. Reacts to the shadow audit's drift alarm by
 * dropping stale calibration and training data, which closes exits until
 * fresh frames prove them again.
 *
 * Heads learn in one of two ways, or both (an "mlp+knn" ensemble): gradient
 * heads by mini-batch steps sampled from the replay window, heads with a
 * nearest-neighbour memory by remembering each new example exactly once, as
 * it arrives (sampling the replay window would store duplicates).
 */
import type { Manifest } from "../model/manifest.ts";
import type { ShadowAudit } from "./audit.ts";
import { CalibrationSet } from "./calibration.ts";
import type { CacheObserver } from "./engine.ts";
import type { ExitHead } from "./heads.ts";
import { KernelPool } from "./head-kernel.ts";
import { createHead, headFromBytes, remembers, softmaxWithTemperature } from "./heads.ts";
import type { CacheOptions } from "./options.ts";
import type { ExitCosts, ExitDecision } from "./planner.ts";
import { planExits } from "./planner.ts";
import { SeededRandom } from "./random.ts";
import { ReplayBuffer } from "./replay.ts";
import { ParameterAverage } from "./averaging.ts";
import type { CacheSnapshot } from "./state.ts";
import { argmax } from "./head-math.ts";
import { allFinite, isDistribution } from "./head-base.ts";

/**
 * Examples, per buffer, whose memory is committed ahead of the writes
 * (resident.ts): more than a default micro-batch (32 frames) and the
 * forwarded examples a trainer takes between two batches (64). About 5 MB
 * per buffer for the bundled model; a larger batch faults in the rest.
 */
const RESERVE_AHEAD = 256;

export interface TrainerStats {
  examples: number;
  /** Examples given to earlier heads by frames that left through an open exit. */
  taught: number;
  heldOut: number;
  steps: number;
  publishes: number;
  driftAlarms: number;
  trainMs: number;
  calibrateMs: number;
  /** Examples taken into the heads' memories (one per exit per example), and the time it took. */
  remembered: number;
  rememberMs: number;
  /** Other replicas' audits recorded for the drift check, and those ignored as older than a drift alarm. */
  fleetAudits: number;
  staleAudits: number;
  /** Steps owed beyond a step budget's `maxOwed`, dropped (a learner thread that cannot keep up). */
  forgoneSteps: number;
  /** Frames not learned from or calibrated on: a feature not finite, or a target or logits that make no distribution. */
  rejected: number;
}

/**
 * How much one `maintain` may train: at most `maxSteps` steps, and of the
 * steps still owed after them at most `maxOwed` are kept. A learner thread
 * (docs/sharing.md) takes examples as fast as the fleet sends them and
 * trains in between as much as its core allows, rather than owing a fixed
 * number of steps per example that it could never catch up on.
 */
export interface StepBudget {
  maxSteps: number;
  maxOwed: number;
}

/**
 * Where the trainer keeps a copy of its calibration evidence outside itself
 * (in a fleet, Redis: src/state/evidence.ts), so that a trainer taking over
 * can start from it.
 */
export interface EvidenceSink {
  /** A held-out frame just taken into the calibration set: its features and the backbone's logits. */
  add(features: readonly Float32Array[], logits: Float32Array): void;
  /** The calibration set was dropped (drift alarm): so is the copy. */
  clear(): void;
}

export class HeadTrainer implements CacheObserver {
  readonly replay: ReplayBuffer;
  readonly calibration: CalibrationSet;
  readonly stats: TrainerStats = {
    examples: 0,
    taught: 0,
    heldOut: 0,
    steps: 0,
    publishes: 0,
    driftAlarms: 0,
    trainMs: 0,
    calibrateMs: 0,
    remembered: 0,
    rememberMs: 0,
    fleetAudits: 0,
    staleAudits: 0,
    forgoneSteps: 0,
    rejected: 0,
  };
  private readonly heads: (ExitHead | null)[];
  /** Per exit: the moving average of its head's parameters, which snapshots publish. */
  private readonly averages: ParameterAverage[];
  private readonly sizes: number[];
  private readonly classes: number;
  private readonly rng: SeededRandom;
  private readonly target: Float32Array;
  private readonly batchFeatures: Float32Array[];
  private readonly batchTargets: Float32Array;
  private readonly costs: ExitCosts;
  /** Receives a copy of every held-out frame (set by whoever shares the evidence). */
  evidence: EvidenceSink | undefined;
  private pendingSteps = 0;
  /** Examples still trained at the warm-up rate (`stepsPerExample`). */
  private warmupLeft: number;
  private sincePublish = 0;
  private version: number;
  /** Lowest heads version whose audits from other replicas still count (see takeAudit). */
  private auditsFrom = 0;
  private driftNote: string | undefined;
  /** What the last drift alarm found, until `takeDriftAlarm` hands it to whoever logs it. */
  private unreportedAlarm: string | undefined;

  constructor(
    private readonly manifest: Manifest,
    private readonly options: CacheOptions,
    private readonly audit: ShadowAudit,
    startVersion = 0,
    private readonly kernels: KernelPool = new KernelPool(),
  ) {
    this.sizes = manifest.exits.map((e) => e.size);
    this.classes = manifest.classes.length;
    this.replay = new ReplayBuffer(options.replayCapacity, this.sizes, this.classes);
    this.calibration = new CalibrationSet(options.calibrationCapacity, this.sizes);
    this.reserveMemory();
    this.heads = this.sizes.map(() => null);
    this.averages = this.sizes.map(() => new ParameterAverage(options.parameterAveraging));
    this.rng = new SeededRandom(options.seed);
    this.target = new Float32Array(this.classes);
    this.batchFeatures = this.sizes.map((d) => new Float32Array(options.trainBatch * d));
    this.batchTargets = new Float32Array(options.trainBatch * this.classes);
    this.version = startVersion;
    this.warmupLeft = options.trainingWarmupExamples;
    this.costs = { remainingMacs: remainingMacs(manifest), overheadMacs: options.exitOverheadMacs };
  }

  /**
   * A trainer that carries on from a published snapshot, another replica's
   * work (docs/sharing.md): its heads, copied through the codec so that
   * training never touches the heads an engine answers with, and versions
   * above `startVersion`. The optimizer state, the replay window and the
   * calibration set start empty; the snapshot's heads carry averaged
   * parameters, which both the live heads and their averages start from
   * (ParameterAverage.seed); heads with an open exit skip the warm-up
   * training rate.
   */
  static fromSnapshot(
    manifest: Manifest,
    options: CacheOptions,
    audit: ShadowAudit,
    snapshot: CacheSnapshot,
    startVersion = snapshot.version,
    kernels: KernelPool = new KernelPool(),
  ): HeadTrainer {
    const trainer = new HeadTrainer(
      manifest,
      options,
      audit,
      Math.max(startVersion, snapshot.version),
      kernels,
    );
    snapshot.heads.forEach((head, e) => {
      if (!head || e >= trainer.heads.length) return;
      const live: ExitHead = headFromBytes(head.toBytes());
      trainer.heads[e] = live;
      // The snapshot's parameters are an average already: carry it on rather than start a new one.
      if (live.parameters) trainer.averages[e]!.seed(live.parameters());
    });
    // Heads that have proven an exit are past their warm-up: train them at
    // the steady rate, as the trainer before would have.
    if (snapshot.decisions.some((d) => d.open)) trainer.warmupLeft = 0;
    return trainer;
  }

  onBackboneFrame(features: readonly Float32Array[], logits: Float32Array, heldOut: boolean): void {
    if (heldOut) {
      if (!this.acceptable(features, logits, false)) return;
      this.calibration.add(features, argmax(logits, 0, this.classes));
      this.evidence?.add(features, logits);
      this.stats.heldOut++;
    } else {
      softmaxWithTemperature(logits, this.options.temperature, this.target);
      if (!this.acceptable(features, this.target, true)) return;
      features.forEach((f, e) => this.replay.add(e, f, this.target));
      this.remember(features, this.target);
      this.stats.examples++;
      const warm = this.warmupLeft > 0;
      if (warm) this.warmupLeft--;
      this.pendingSteps += warm ? this.options.stepsPerExample : this.options.steadyStepsPerExample;
    }
    this.sincePublish++;
  }

  /**
   * Another replica's audit of an early answer (a fleet's trainer takes them
   * from the example stream), recorded in the shadow audit this trainer's
   * drift check reads, next to this replica's own. An audit of heads older
   * than the snapshot of the last drift alarm judged heads that alarm
   * replaced; it is ignored, so that one drift does not raise a second alarm
   * on arrival of the verdicts that were on their way.
   */
  takeAudit(exit: number, agreed: boolean, lenient: boolean, headsVersion: number): void {
    if (headsVersion < this.auditsFrom) {
      this.stats.staleAudits++;
      return;
    }
    this.audit.record(exit, agreed, lenient, false);
    this.stats.fleetAudits++;
  }

  onEarlyExit(features: readonly Float32Array[], probs: Float32Array): void {
    this.sincePublish++;
    if (!this.options.teachEarlierExits || features.length === 0) return;
    if (!this.acceptable(features, probs, true)) return;
    features.forEach((f, e) => this.replay.add(e, f, probs));
    this.remember(features, probs);
    this.stats.taught += features.length;
  }

  /**
   * Whether a frame may be learned from (`distribution`: the target is a
   * softmax) or calibrated on (logits, which need only be finite). The check
   * is made once, here: the heads' kernel steps trust what the replay window
   * holds. Frames come from this process's own spans or, decoded and checked
   * by the example codec, from other replicas; a frame that fails is counted
   * in `rejected` and left out, never trained on.
   */
  private acceptable(
    features: readonly Float32Array[],
    target: Float32Array,
    distribution: boolean,
  ): boolean {
    const ok =
      (distribution ? isDistribution(target, this.classes) : allFinite(target)) && features.every(allFinite);
    if (!ok) this.stats.rejected++;
    return ok;
  }

  /**
   * A new example (features at exits 0 .. features.length - 1) goes into the
   * memory of every head that has one. When the configured kind remembers,
   * heads are made here, at the first example, rather than in `train()`
   * once the replay window holds a mini-batch: a memory is useful from its
   * first examples and must not miss them.
   */
  private remember(features: readonly Float32Array[], target: Float32Array): void {
    const create = remembers(this.options.headKind);
    if (!create && !this.heads.some((h) => h?.remember)) return;
    const t0 = performance.now();
    features.forEach((f, e) => {
      const head = create ? this.headAt(e) : this.heads[e];
      if (!head?.remember) return;
      head.remember(f, target);
      this.stats.remembered++;
    });
    this.stats.rememberMs += performance.now() - t0;
  }

  private headAt(exit: number): ExitHead {
    this.heads[exit] ??= createHead(this.options, this.sizes[exit]!, this.classes, this.rng);
    return this.heads[exit];
  }

  /**
   * Drops the training steps owed so far: under overload (SLO mode) learning
   * yields to answering, and what it skipped is not paid back in a burst.
   */
  forgoPendingSteps(): void {
    this.pendingSteps = 0;
  }

  /**
   * What was observed so far does not bring the next snapshot forward: the
   * calibration evidence a trainer takes over was behind the snapshot it
   * took over already, and publishing at once, on heads not yet trained a
   * step, could only repeat or undo that snapshot.
   */
  restartPublishCount(): void {
    this.sincePublish = 0;
  }

  /** What the drift alarm raised since the last call found, if one was: for the caller to log. */
  takeDriftAlarm(): string | undefined {
    const alarm = this.unreportedAlarm;
    this.unreportedAlarm = undefined;
    return alarm;
  }

  /** Whole training steps owed and not yet taken. */
  get stepsOwed(): number {
    return Math.floor(this.pendingSteps);
  }

  /**
   * Trains, checks the audit, and returns a new snapshot when one is due
   * (every `publishEvery` observed frames while training at the warm-up rate,
   * every `steadyPublishEvery` after, and at once after a drift alarm).
   */
  async maintain(modelId: string, budget?: StepBudget): Promise<CacheSnapshot | undefined> {
    this.reserveMemory();
    await this.train(budget?.maxSteps ?? Infinity);
    if (budget && this.pendingSteps > budget.maxOwed) {
      this.stats.forgoneSteps += Math.floor(this.pendingSteps - budget.maxOwed);
      this.pendingSteps = budget.maxOwed;
    }
    const drifted = this.checkDrift();
    const every = this.warmupLeft > 0 ? this.options.publishEvery : this.options.steadyPublishEvery;
    if (!drifted && this.sincePublish < every) return undefined;
    this.sincePublish = 0;
    return this.snapshot(modelId);
  }

  /** Commits the buffers' memory for the next examples now, between batches, not as frames write them (resident.ts). */
  private reserveMemory(): void {
    this.replay.reserve(RESERVE_AHEAD);
    this.calibration.reserve(RESERVE_AHEAD);
  }

  /** Mini-batch steps on onnxruntime (head-kernel.ts): one per whole pending step, every exit. */
  private async train(maxSteps: number): Promise<void> {
    if (this.replay.size(this.sizes.length - 1) < this.options.trainBatch) return;
    const t0 = performance.now();
    const batch = this.options.trainBatch;
    for (let taken = 0; this.pendingSteps >= 1 && taken < maxSteps; taken++) {
      this.pendingSteps--;
      let stepped = false;
      for (const e of this.sizes.keys()) {
        const head = this.headAt(e);
        // A memory has learned this window's examples already, one at a time.
        if (head.learnsByGradient === false) continue;
        this.replay.sample(e, batch, this.rng, this.batchFeatures[e]!, this.batchTargets);
        const kernel = await this.kernels.get(head.shape);
        await head.trainBatchWith(kernel, this.batchFeatures[e]!, this.batchTargets, batch);
        if (head.parameters) this.averages[e]!.update(head.parameters());
        stepped = true;
      }
      if (stepped) this.stats.steps++;
    }
    this.stats.trainMs += performance.now() - t0;
  }

  private checkDrift(): boolean {
    const alarms = this.sizes.map((_, e) => e).filter((e) => this.audit.drifted(e));
    if (alarms.length === 0) return false;
    this.stats.driftAlarms++;
    this.driftNote = `drift detected by the shadow audit at exit ${alarms.join(", ")}`;
    this.unreportedAlarm = `${this.driftNote} (${alarms
      .map((e) => {
        const { audited, agreed } = this.audit.stats(
          e,
          this.options.confidenceLevel,
          this.options.boundMethod,
        );
        return `${agreed}/${audited} agreed`;
      })
      .join(", ")})`;
    // The snapshot this alarm publishes next is the first whose audits count again.
    this.auditsFrom = this.version + 1;
    // Stale evidence must not reopen exits: calibrate on fresh frames only,
    // and let the heads see mostly new examples.
    this.calibration.clear();
    this.evidence?.clear();
    this.replay.keepNewest(Math.max(this.options.trainBatch, this.options.replayCapacity >> 3));
    for (const head of this.heads) head?.keepNewest?.(Math.max(1, this.options.knnPerClass >> 3));
    for (let e = 0; e < this.sizes.length; e++) this.audit.reset(e);
    for (const average of this.averages) average.reset();
    return true;
  }

  private async snapshot(modelId: string): Promise<CacheSnapshot> {
    const t0 = performance.now();
    // Publish copies, with the averaged parameters: the engine must never see a head mid-update.
    const heads = this.heads.map((h, e) => {
      if (!h) return null;
      const copy: ExitHead = headFromBytes(h.toBytes());
      if (copy.parameters) this.averages[e]!.applyTo(copy.parameters());
      return copy;
    });
    let decisions: ExitDecision[] = await planExits(
      heads,
      this.calibration,
      this.options,
      this.costs,
      this.kernels,
    );
    if (this.driftNote) {
      const note = this.driftNote;
      if (decisions.some((d) => d.open)) this.driftNote = undefined;
      else decisions = decisions.map((d) => ({ ...d, reason: `${note}; ${d.reason}` }));
    }
    this.stats.calibrateMs += performance.now() - t0;
    this.stats.publishes++;
    return { modelId, version: ++this.version, heads, decisions };
  }
}

/** MACs of the backbone after each exit point. */
export function remainingMacs(manifest: Manifest): number[] {
  return manifest.exits.map((e) =>
    manifest.segments.filter((s) => s.index > e.afterSegment).reduce((a, s) => a + s.macs, 0),
  );
}
