/**
 * The online layer cache in one process: engine, trainer, shadow audit and a
 * state store wired together. `process()` answers a micro-batch; learning and
 * re-calibration happen after it returns, off the per-frame path.
 */
import type { SegmentedBackbone } from "../model/backbone.ts";
import { ShadowAudit } from "./audit.ts";
import type { FrameOutcome } from "./engine.ts";
import { CacheEngine } from "./engine.ts";
import type { CacheOptions } from "./options.ts";
import type { CacheSnapshot, CacheStateStore } from "./state.ts";
import { MemoryStateStore, emptySnapshot } from "./state.ts";
import { HeadTrainer } from "./trainer.ts";
import { KernelPool } from "./head-kernel.ts";

export class OnlineCache {
  readonly engine: CacheEngine;
  readonly trainer: HeadTrainer;
  readonly audit: ShadowAudit;
  /** Milliseconds spent learning and calibrating, outside `process()`. */
  maintenanceMs = 0;
  /** onnxruntime sessions for the heads' arithmetic, shared by trainer and engine. */
  private readonly kernels = new KernelPool();

  private constructor(
    private readonly backbone: SegmentedBackbone,
    private readonly store: CacheStateStore,
    options: CacheOptions,
    snapshot: CacheSnapshot,
    private readonly cacheEnabled: boolean,
  ) {
    const exits = backbone.exitCount;
    this.audit = new ShadowAudit(
      exits,
      options.auditRate,
      options.auditWindow,
      options.targetAgreement,
      options.driftSignificance,
    );
    this.trainer = new HeadTrainer(backbone.manifest, options, this.audit, snapshot.version, this.kernels);
    this.engine = new CacheEngine(backbone, snapshot, this.audit, this.trainer, {
      cacheEnabled,
      calibrationRate: options.calibrationRate,
      warmupCalibrationRate: options.warmupCalibrationRate,
      seed: options.seed,
      kernels: this.kernels,
    });
  }

  static async create(
    backbone: SegmentedBackbone,
    options: CacheOptions,
    store: CacheStateStore = new MemoryStateStore(),
    cacheEnabled = true,
  ): Promise<OnlineCache> {
    const modelId = backbone.manifest.modelId;
    const existing = await store.current();
    const snapshot = existing?.modelId === modelId ? existing : emptySnapshot(modelId, backbone.exitCount);
    return new OnlineCache(backbone, store, options, snapshot, cacheEnabled);
  }

  async process(ids: readonly string[], input: Float32Array): Promise<FrameOutcome[]> {
    return this.engine.process(ids, input);
  }

  /** Learns from what the last batches showed; adopts a new snapshot if one was published. */
  async maintain(): Promise<CacheSnapshot | undefined> {
    // Cache off: the engine answers with the backbone alone and observes nothing.
    if (!this.cacheEnabled) return undefined;
    const t0 = performance.now();
    const next = await this.trainer.maintain(this.backbone.manifest.modelId);
    let adopted: CacheSnapshot | undefined;
    if (next && (await this.store.publish(next))) {
      this.engine.adopt(next);
      adopted = next;
    }
    this.maintenanceMs += performance.now() - t0;
    return adopted;
  }

  /** Releases the heads' onnxruntime sessions (the backbone is closed by its owner). */
  async close(): Promise<void> {
    await this.kernels.release();
  }
}
