/**
 * The early-exit engine. Takes a micro-batch of frames and runs it from open
 * exit to open exit (the segments in between fused into one onnxruntime
 * session, see model/spans.ts; where to cut, span-layout.ts); at each open
 * exit the head answers for frames it is confident about, which leave the
 * batch, and the rest continue. Frames that reach the end are answered by the
 * backbone and become training or calibration examples for the heads.
 *
 * No Kafka, no Redis: the engine sees a snapshot of heads and decisions and
 * hands what it learns to a `CacheObserver` (the trainer).
 */
import { LayercacheError } from "../errors/index.ts";
import type { SegmentedBackbone } from "../model/backbone.ts";
import type { SpanRange } from "../model/spans.ts";
import { elements } from "../model/manifest.ts";
import { SeededRandom } from "./random.ts";
import type { CacheSnapshot } from "./state.ts";
import type { ShadowAudit } from "./audit.ts";
import { argmax } from "./head-math.ts";
import type { KernelPool } from "./head-kernel.ts";
import type { EngineProfile } from "./engine-profile.ts";
import { emptyProfile, tally, tallyIn } from "./engine-profile.ts";
import { SpanLayouts } from "./span-layout.ts";
import { STRICT, exitThreshold } from "./strictness.ts";

/**
 * Below this many multiply-accumulates per call a head answers in TypeScript:
 * with the CPU caches taken by the backbone in between, an onnxruntime call
 * costs 50-90 µs however small and the per-row loops 1.35 ns a MAC, so the
 * kernel wins from between 42,000 and 64,000 MACs a call (`npm run
 * bench:heads`).
 */
const KERNEL_MIN_MACS = 50_000;

export const BACKBONE_EXIT = -1;

/**
 * The checks of a batch handed to the cache: `frameSize` floats per frame,
 * and one strictness per frame when there are any. A mismatch is a bug of the
 * caller (INTERNAL), not bad input.
 */
export function checkBatch(
  n: number,
  input: Float32Array,
  frameSize: number,
  strictness: Float32Array | undefined,
): void {
  if (input.length !== n * frameSize) {
    throw new LayercacheError("INTERNAL", `batch of ${n} frames with ${input.length} floats`);
  }
  if (strictness && strictness.length !== n) {
    throw new LayercacheError("INTERNAL", `batch of ${n} frames with ${strictness.length} strictness values`);
  }
}

/** A frame an exit was confident about, sent to the backbone by the shadow audit. */
interface Audit {
  frame: number;
  exit: number;
  label: number;
  /** Answered below the target's threshold (SLO mode): judged against the floor. */
  lenient: boolean;
}

/** One exit's features for a batch, and which row belongs to which frame. */
interface KeptFeatures {
  rows: Map<number, number>;
  features: Float32Array;
  size: number;
}

/** The backbone's answer for one frame's logits: top class and its softmax probability. */
function topClass(logits: Float32Array): { label: number; confidence: number } {
  const best = argmax(logits, 0, logits.length);
  let sum = 0;
  for (let k = 0; k < logits.length; k++) sum += Math.exp(logits[k]! - logits[best]!);
  return { label: best, confidence: 1 / sum };
}

function rowOf(k: KeptFeatures, frame: number): Float32Array {
  const r = k.rows.get(frame)!;
  return k.features.subarray(r * k.size, (r + 1) * k.size);
}

export interface FrameOutcome {
  id: string;
  label: number;
  confidence: number;
  /** Exit that answered, or BACKBONE_EXIT. */
  exit: number;
  /** An exit was confident, but the frame was audited and the backbone answered. */
  audited: boolean;
  /** Held out for calibration: ran the whole backbone regardless of exits. */
  heldOut: boolean;
  /** Multiply-accumulates executed for this frame: segments run plus heads evaluated. */
  macs: number;
  /** This frame's share of the compute time of every step it took part in. */
  computeMs: number;
  headsVersion: number;
  /** Answered from the exact cache (exact-cache.ts, set by OnlineCache): a repeat, no model run. */
  exactHit?: boolean;
}

/** Where a frame that ran the whole backbone goes. */
export interface CacheObserver {
  /** `features[e]` are the frame's pooled features at exit e; `logits` the backbone's. */
  onBackboneFrame(features: readonly Float32Array[], logits: Float32Array, heldOut: boolean): void;
  /**
   * A frame left through an open exit: `features[e]` for the exits before it
   * (none at exit 0), `probs` the answering head's.
   */
  onEarlyExit(features: readonly Float32Array[], probs: Float32Array): void;
  /**
   * An audited early answer's verdict, already recorded in the engine's own
   * shadow audit. A trainer shares that audit and ignores this; a follower's
   * forwarder passes it on to the fleet's trainer (state/examples.ts).
   */
  onAudit?(exit: number, agreed: boolean, lenient: boolean, headsVersion: number): void;
}

export interface EngineOptions {
  cacheEnabled: boolean;
  calibrationRate: number;
  warmupCalibrationRate: number;
  /** The warm-up share holds until the last calibration had this many held-out frames. */
  warmupCalibrationFrames: number;
  seed: number;
  /** onnxruntime kernels for the heads; without them heads answer in TypeScript. */
  kernels?: KernelPool;
  /**
   * Build the span sessions of each snapshot held (default true). False for a
   * cache that never answers frames, only trains (the learner thread).
   */
  prepareSpans?: boolean;
}

export class CacheEngine {
  readonly profile: EngineProfile = emptyProfile();
  private snapshot: CacheSnapshot;
  private readonly rng: SeededRandom;
  private readonly segmentMacs: number[];
  private readonly classes: number;
  private readonly frameSize: number;
  private probs = new Float32Array(0);
  private readonly layouts: SpanLayouts;
  /** The span sessions of the snapshot held, being built (see `prepared`). */
  private preparing: Promise<void>;

  constructor(
    private readonly backbone: SegmentedBackbone,
    snapshot: CacheSnapshot,
    private readonly audit: ShadowAudit,
    private readonly observer: CacheObserver,
    private readonly options: EngineOptions,
  ) {
    this.snapshot = snapshot;
    this.rng = new SeededRandom(options.seed ^ 0x5eed);
    this.segmentMacs = backbone.manifest.segments.map((s) => s.macs);
    this.classes = backbone.manifest.classes.length;
    this.frameSize = elements(backbone.manifest.input.shape);
    this.layouts = new SpanLayouts(backbone.manifest, options);
    this.preparing = this.prepare(snapshot);
  }

  private prepare(snapshot: CacheSnapshot): Promise<void> {
    if (this.options.prepareSpans === false) return Promise.resolve();
    return this.backbone.prepareSpans(this.layouts.ranges(snapshot));
  }

  /**
   * Resolves once the span sessions of the snapshot held are built. Await it
   * between batches after `adopt` (and before the first batch), so that no
   * batch pays for building one.
   */
  prepared(): Promise<void> {
    return this.preparing;
  }

  /**
   * Under overload (SLO mode, docs/slo.md) evidence gathering yields to
   * answering: while set, no frame is held out for calibration once an exit
   * is open, since each would run the whole backbone. While none is open every
   * frame runs it anyway, and holding out stays free.
   */
  yielding = false;

  /** Swaps in a newer snapshot; takes effect from the next batch. */
  adopt(snapshot: CacheSnapshot): void {
    if (snapshot.modelId !== this.backbone.manifest.modelId) {
      throw new LayercacheError("STATE_INVALID", `snapshot is for model ${snapshot.modelId}`);
    }
    if (snapshot.version <= this.snapshot.version) return;
    this.snapshot = snapshot;
    this.preparing = this.prepare(snapshot);
  }

  private spanMacs(range: SpanRange): number {
    let macs = 0;
    for (let s = range.first; s <= range.last; s++) macs += this.segmentMacs[s]!;
    return macs;
  }

  get version(): number {
    return this.snapshot.version;
  }

  get current(): CacheSnapshot {
    return this.snapshot;
  }

  /**
   * Answers a micro-batch. `strictness` (one value per frame, SLO mode) moves
   * each frame's thresholds between the target's and the floor's; without it
   * every frame is held to the target.
   */
  async process(
    ids: readonly string[],
    input: Float32Array,
    strictness?: Float32Array,
  ): Promise<FrameOutcome[]> {
    const n = ids.length;
    checkBatch(n, input, this.frameSize, strictness);
    if (!this.options.cacheEnabled) return this.backboneOnly(ids, input);
    const snap = this.snapshot;
    const heldOutRate = this.heldOutRate(snap);
    const out: FrameOutcome[] = ids.map((id) => ({
      id,
      label: -1,
      confidence: 0,
      exit: BACKBONE_EXIT,
      audited: false,
      heldOut: this.rng.uniform() < heldOutRate,
      macs: 0,
      computeMs: 0,
      headsVersion: snap.version,
    }));
    // Frames still in the batch, by position in `out`; their rows in `x`.
    let active = Array.from({ length: n }, (_, i) => i);
    let x = input;
    const kept: KeptFeatures[] = [];
    const audits: Audit[] = [];
    // Exits only the floor opens are cut only when some frame may use them.
    const lenient = strictness !== undefined && strictness.some((s) => s < STRICT);

    for (const range of this.layouts.ranges(snap, lenient)) {
      const t0 = performance.now();
      // Ranges have a tail only where the head at their exit is fused (span-layout.ts).
      const exit = this.backbone.exitAfterSegment(range.last);
      const feeds = range.tail ? this.layouts.feedsOf(snap.heads[exit]!) : undefined;
      const result = await this.backbone.runSpan(range, x, active.length, feeds);
      const spanMs = performance.now() - t0;
      this.charge(out, active, spanMs, this.spanMacs(range));
      const step = `${range.first}-${range.last}${range.tail ? "+head" : ""}`;
      tallyIn(this.profile.spans, step, active.length, spanMs);
      const rows = new Map(active.map((f, row) => [f, row]));
      for (const [e, features] of result.features) {
        kept[e] = { rows, features, size: features.length / active.length };
      }
      if (result.logits) {
        this.finish(out, active, result.logits, kept, audits);
        break;
      }
      // The span ends at an open exit: its head answers for the frames it is sure of.
      const { features, size } = kept[exit]!;
      const leaving = await this.tryExit(
        snap,
        exit,
        out,
        active,
        features,
        size,
        audits,
        strictness,
        result.tail.probs,
      );
      if (leaving && leaving.size > 0) {
        this.teach(exit, leaving, kept);
        ({ active, x } = this.compact(out, active, result.activation!, leaving));
      } else {
        x = result.activation!;
      }
      if (active.length === 0) break;
    }
    return out;
  }

  /**
   * The batch without the frames leaving at an exit: their activation rows
   * dropped, the others' kept in order. Charged to every frame that was there.
   */
  private compact(
    out: FrameOutcome[],
    active: number[],
    activation: Float32Array,
    leaving: Set<number>,
  ): { active: number[]; x: Float32Array } {
    const t0 = performance.now();
    const rowSize = activation.length / active.length;
    const staying = active.map((f, row) => [f, row] as const).filter(([f]) => !leaving.has(f));
    const next = new Float32Array(staying.length * rowSize);
    staying.forEach(([, row], i) =>
      next.set(activation.subarray(row * rowSize, (row + 1) * rowSize), i * rowSize),
    );
    const copyMs = performance.now() - t0;
    this.charge(out, active, copyMs, 0);
    tally(this.profile.compaction, active.length, copyMs);
    return { active: staying.map(([f]) => f), x: next };
  }

  /**
   * The warm-up share while no exit is open or the snapshot's calibration had
   * too few held-out frames (every exit with a head was calibrated on all of
   * them: exit 0 reaches them all), the steady share after.
   */
  private heldOutRate(snap: CacheSnapshot): number {
    const { calibrationRate, warmupCalibrationRate, warmupCalibrationFrames } = this.options;
    const anyOpen = snap.decisions.some((d) => d.open);
    if (anyOpen && this.yielding) return 0;
    const evidence = Math.max(0, ...snap.decisions.map((d) => d.calibration?.reached ?? 0));
    return anyOpen && evidence >= warmupCalibrationFrames ? calibrationRate : warmupCalibrationRate;
  }

  /**
   * Cache off: the whole network as one session, nothing learned. This is the
   * baseline the benchmarks compare against, so it must not pay for pooling
   * features or training heads that will never answer.
   */
  private async backboneOnly(ids: readonly string[], input: Float32Array): Promise<FrameOutcome[]> {
    const n = ids.length;
    const c = this.classes;
    const t0 = performance.now();
    const logits = await this.backbone.runFull(input, n);
    const share = (performance.now() - t0) / n;
    const macs = this.backbone.manifest.full.macs;
    return ids.map((id, row) => {
      const { label, confidence } = topClass(logits.subarray(row * c, (row + 1) * c));
      return {
        id,
        label,
        confidence,
        exit: BACKBONE_EXIT,
        audited: false,
        heldOut: false,
        macs,
        computeMs: share,
        headsVersion: this.snapshot.version,
      };
    });
  }

  /** Evaluates the head at an open exit; returns the frames that leave here. */
  private async tryExit(
    snap: CacheSnapshot,
    exit: number,
    out: FrameOutcome[],
    active: number[],
    features: Float32Array,
    size: number,
    audits: Audit[],
    strictness: Float32Array | undefined,
    fusedProbs: Float32Array | undefined,
  ): Promise<Set<number> | null> {
    // The batch's snapshot throughout: its spans ran its heads.
    const decision = snap.decisions[exit];
    const head = snap.heads[exit];
    if (!decision || !head) return null;
    const t0 = performance.now();
    const m = active.length;
    if (this.probs.length < m * this.classes) this.probs = new Float32Array(m * this.classes);
    const rows = features.subarray(0, m * size);
    const { kernels } = this.options;
    if (fusedProbs) {
      // The span ran the head already (its charge is in the span's time).
      this.probs.set(fusedProbs.subarray(0, m * this.classes));
    } else if (kernels && m * head.macs() >= KERNEL_MIN_MACS) {
      await head.predictBatchWith(await kernels.get(head.shape), rows, m, this.probs);
    } else {
      head.predictBatch(rows, m, this.probs);
    }
    const leaving = new Set<number>();
    for (let row = 0; row < m; row++) {
      const f = active[row]!;
      const best = argmax(this.probs, row * this.classes, this.classes);
      const conf = this.probs[row * this.classes + best]!;
      const frame = out[f]!;
      const threshold = exitThreshold(decision, strictness ? strictness[f]! : STRICT);
      // Held-out and audited frames run to the end and take the backbone's answer.
      if (threshold === null || conf < threshold || frame.heldOut || frame.audited) continue;
      if (this.audit.sample(exit, this.rng)) {
        frame.audited = true;
        const strict = exitThreshold(decision, STRICT);
        audits.push({ frame: f, exit, label: best, lenient: strict === null || conf < strict });
        continue;
      }
      Object.assign(frame, { label: best, confidence: conf, exit });
      leaving.add(f);
    }
    const headMs = performance.now() - t0;
    this.charge(out, active, headMs, head.macs());
    if (!fusedProbs) tallyIn(this.profile.heads, exit, m, headMs);
    return leaving;
  }

  /** Hands the frames leaving at `exit` to the observer with their features at the exits before it. */
  private teach(exit: number, leaving: Set<number>, kept: KeptFeatures[]): void {
    const c = this.classes;
    const here = kept[exit]!;
    for (const f of leaving) {
      const row = here.rows.get(f)!;
      const features = kept.slice(0, exit).map((k) => rowOf(k, f));
      this.observer.onEarlyExit(features, this.probs.subarray(row * c, (row + 1) * c));
    }
  }

  private finish(
    out: FrameOutcome[],
    active: number[],
    logits: Float32Array,
    kept: KeptFeatures[],
    audits: Audit[],
  ): void {
    const c = this.classes;
    const auditedAt = new Map(audits.map((a) => [a.frame, a]));
    active.forEach((f, row) => {
      const frameLogits = logits.subarray(row * c, (row + 1) * c);
      const { label: best, confidence } = topClass(frameLogits);
      const frame = out[f]!;
      frame.label = best;
      frame.confidence = confidence;
      frame.exit = BACKBONE_EXIT;
      const audit = auditedAt.get(f);
      if (audit) {
        this.audit.record(audit.exit, audit.label === best, audit.lenient);
        this.observer.onAudit?.(audit.exit, audit.label === best, audit.lenient, frame.headsVersion);
      }
      const features = kept.map((k) => rowOf(k, f));
      this.observer.onBackboneFrame(features, frameLogits, frame.heldOut);
    });
  }

  /** Shares a step's time and MACs among the frames that took part in it. */
  private charge(out: FrameOutcome[], frames: number[], ms: number, macsEach: number): void {
    const share = ms / Math.max(frames.length, 1);
    for (const f of frames) {
      out[f]!.computeMs += share;
      out[f]!.macs += macsEach;
    }
  }
}
