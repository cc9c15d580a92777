/**
 * The learning side of the cache: collects what the engine observes, trains
 * the exit heads in mini-batches between batches (never inside one), and
 * publishes a new snapshot (heads + calibrated exit decisions) every
 * `publishEvery` examples. Reacts to the shadow audit's drift alarm by
 * dropping stale calibration and training data, which closes exits until
 * fresh frames prove them again.
 */
import type { Manifest } from "../model/manifest.ts";
import type { ShadowAudit } from "./audit.ts";
import { CalibrationSet } from "./calibration.ts";
import type { CacheObserver } from "./engine.ts";
import type { ExitHead } from "./heads.ts";
import { KernelPool } from "./head-kernel.ts";
import { createHead, headFromBytes, softmaxWithTemperature } from "./heads.ts";
import type { CacheOptions } from "./options.ts";
import type { ExitCosts, ExitDecision } from "./planner.ts";
import { planExits } from "./planner.ts";
import { SeededRandom } from "./random.ts";
import { ReplayBuffer } from "./replay.ts";
import type { CacheSnapshot } from "./state.ts";
import { argmax } from "./head-math.ts";

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
  };
  private readonly heads: (ExitHead | null)[];
  private readonly sizes: number[];
  private readonly classes: number;
  private readonly rng: SeededRandom;
  private readonly target: Float32Array;
  private readonly batchFeatures: Float32Array[];
  private readonly batchTargets: Float32Array;
  private readonly costs: ExitCosts;
  private pendingSteps = 0;
  private sincePublish = 0;
  private version: number;
  private driftNote: string | undefined;

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
    this.heads = this.sizes.map(() => null);
    this.rng = new SeededRandom(options.seed);
    this.target = new Float32Array(this.classes);
    this.batchFeatures = this.sizes.map((d) => new Float32Array(options.trainBatch * d));
    this.batchTargets = new Float32Array(options.trainBatch * this.classes);
    this.version = startVersion;
    this.costs = { remainingMacs: remainingMacs(manifest), overheadMacs: options.exitOverheadMacs };
  }

  /**
   * A trainer that carries on from a published snapshot, another replica's
   * work (docs/sharing.md): its heads, copied through the codec so that
   * training never touches the heads an engine answers with, and versions
   * above `startVersion`. The optimizer state, the replay window and the
   * calibration set start empty.
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
      if (head && e < trainer.heads.length) trainer.heads[e] = headFromBytes(head.toBytes());
    });
    return trainer;
  }

  onBackboneFrame(features: readonly Float32Array[], logits: Float32Array, heldOut: boolean): void {
    if (heldOut) {
      this.calibration.add(features, argmax(logits, 0, this.classes));
      this.stats.heldOut++;
    } else {
      softmaxWithTemperature(logits, this.options.temperature, this.target);
      features.forEach((f, e) => this.replay.add(e, f, this.target));
      this.stats.examples++;
      const warm = this.stats.examples <= this.options.trainingWarmupExamples;
      this.pendingSteps += warm ? this.options.stepsPerExample : this.options.steadyStepsPerExample;
    }
    this.sincePublish++;
  }

  onEarlyExit(features: readonly Float32Array[], probs: Float32Array): void {
    this.sincePublish++;
    if (!this.options.teachEarlierExits || features.length === 0) return;
    features.forEach((f, e) => this.replay.add(e, f, probs));
    this.stats.taught += features.length;
  }

  /**
   * Trains, checks the audit, and returns a new snapshot when one is due
   * (every `publishEvery` observed frames, or at once after a drift alarm).
   */
  async maintain(modelId: string): Promise<CacheSnapshot | undefined> {
    await this.train();
    const drifted = this.checkDrift();
    if (!drifted && this.sincePublish < this.options.publishEvery) return undefined;
    this.sincePublish = 0;
    return this.snapshot(modelId);
  }

  /** Mini-batch steps on onnxruntime (head-kernel.ts): one per whole pending step, every exit. */
  private async train(): Promise<void> {
    if (this.replay.size(this.sizes.length - 1) < this.options.trainBatch) return;
    const t0 = performance.now();
    const batch = this.options.trainBatch;
    while (this.pendingSteps >= 1) {
      this.pendingSteps--;
      this.stats.steps++;
      for (const [e, size] of this.sizes.entries()) {
        const head = (this.heads[e] ??= createHead(this.options, size, this.classes, this.rng));
        this.replay.sample(e, batch, this.rng, this.batchFeatures[e]!, this.batchTargets);
        const kernel = await this.kernels.get(head.shape);
        await head.trainBatchWith(kernel, this.batchFeatures[e]!, this.batchTargets, batch);
      }
    }
    this.stats.trainMs += performance.now() - t0;
  }

  private checkDrift(): boolean {
    const alarms = this.sizes.map((_, e) => e).filter((e) => this.audit.drifted(e));
    if (alarms.length === 0) return false;
    this.stats.driftAlarms++;
    this.driftNote = `drift detected by the shadow audit at exit ${alarms.join(", ")}`;
    // Stale evidence must not reopen exits: calibrate on fresh frames only,
    // and let the heads see mostly new examples.
    this.calibration.clear();
    this.replay.keepNewest(Math.max(this.options.trainBatch, this.options.replayCapacity >> 3));
    for (let e = 0; e < this.sizes.length; e++) this.audit.reset(e);
    return true;
  }

  private async snapshot(modelId: string): Promise<CacheSnapshot> {
    const t0 = performance.now();
    // Publish copies: the engine must never see a head mid-update.
    const heads = this.heads.map((h) => (h ? headFromBytes(h.toBytes()) : null));
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
