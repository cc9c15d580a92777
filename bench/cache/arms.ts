/**
 * The two arms of the cache benchmark, run over the same stream in the same
 * process: the backbone alone (one ONNX session, the cache-off baseline) and
 * the online cache (segments, heads, calibration, audit).
 */
import { OnlineCache } from "../../src/cache/online-cache.ts";
import type { CacheOptionsInput } from "../../src/cache/options.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import type { SegmentedBackbone } from "../../src/model/backbone.ts";
import type { Progress } from "../lib/progress.ts";
import { argmax } from "../../src/cache/head-math.ts";

export interface Stream {
  /** Normalised inputs in stream order, frameSize floats each. */
  inputs: Float32Array;
  /** Ground-truth labels in stream order (never shown to the engine). */
  labels: Uint8Array;
  frameSize: number;
  count: number;
}

export interface FrameRecord {
  label: number;
  exit: number;
  macs: number;
  /** Wall time of the call that answered this frame. */
  latencyMs: number;
  audited: boolean;
  heldOut: boolean;
}

export interface ArmResult {
  frames: FrameRecord[];
  /** Wall time of all inference calls. */
  computeMs: number;
  /** Wall time spent learning and calibrating between calls (cache arm only). */
  maintenanceMs: number;
  cache?: OnlineCache;
}

function batches(count: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let s = 0; s < count; s += size) out.push([s, Math.min(count, s + size)]);
  return out;
}

/** One arm, fed the stream a batch at a time. */
export interface Arm {
  /** Answers frames [s, e) of the stream (timed), then does any work between batches. */
  step(s: number, e: number): Promise<void>;
  /** For the progress bar. */
  status(): string;
  result(): ArmResult;
}

/**
 * Runs arms over the stream side by side: every batch goes through each arm
 * in turn before the next batch. The machine's speed drifts over a run (other
 * tenants, clocks); arms run one after the other would each see a different
 * stretch of it, so per-frame latencies would compare the machine, not the
 * arms.
 */
export async function runArms(
  arms: readonly Arm[],
  stream: Stream,
  batch: number,
  bar: Progress,
): Promise<ArmResult[]> {
  for (const [s, e] of batches(stream.count, batch)) {
    for (const arm of arms) await arm.step(s, e);
    bar.update(
      e,
      arms
        .map((a) => a.status())
        .filter((x) => x)
        .join("; "),
    );
  }
  bar.stop();
  return arms.map((a) => a.result());
}

/** The backbone alone: one ONNX session, the cache-off baseline. */
export function backboneArm(model: SegmentedBackbone, stream: Stream): Arm {
  const classes = model.manifest.classes.length;
  const frames: FrameRecord[] = [];
  let computeMs = 0;
  return {
    async step(s, e) {
      const n = e - s;
      const t0 = performance.now();
      const logits = await model.runFull(
        stream.inputs.subarray(s * stream.frameSize, e * stream.frameSize),
        n,
      );
      const ms = performance.now() - t0;
      computeMs += ms;
      for (let i = 0; i < n; i++) {
        frames.push({
          label: argmax(logits, i * classes, classes),
          exit: -1,
          macs: model.manifest.full.macs,
          latencyMs: ms,
          audited: false,
          heldOut: false,
        });
      }
    },
    status: () => "",
    result: () => ({ frames, computeMs, maintenanceMs: 0 }),
  };
}

/** The online cache (segments, heads, calibration, audit), learning between batches. */
export async function cacheArm(
  model: SegmentedBackbone,
  stream: Stream,
  options: CacheOptionsInput,
): Promise<Arm> {
  const cache = await OnlineCache.create(model, cacheOptions(options));
  // The backbone arm's session is built when the model loads; this arm's are built before the stream too.
  await cache.prepare();
  const frames: FrameRecord[] = [];
  let computeMs = 0;
  return {
    async step(s, e) {
      const ids = Array.from({ length: e - s }, (_, i) => String(s + i));
      const t0 = performance.now();
      const outcomes = await cache.process(
        ids,
        stream.inputs.subarray(s * stream.frameSize, e * stream.frameSize),
      );
      const ms = performance.now() - t0;
      computeMs += ms;
      for (const o of outcomes) {
        frames.push({
          label: o.label,
          exit: o.exit,
          macs: o.macs,
          latencyMs: ms,
          audited: o.audited,
          heldOut: o.heldOut,
        });
      }
      await cache.maintain();
    },
    status: () => {
      const open = cache.engine.current.decisions.filter((d) => d.open).length;
      return `v${cache.engine.version}, ${open} exits open`;
    },
    result: () => ({ frames, computeMs, maintenanceMs: cache.maintenanceMs, cache }),
  };
}

/** The cache arm alone (the target sweep of --plot: there the MACs matter, not the clock). */
export async function runCacheArm(
  model: SegmentedBackbone,
  stream: Stream,
  batch: number,
  options: CacheOptionsInput,
  bar: Progress,
): Promise<ArmResult> {
  const [result] = await runArms([await cacheArm(model, stream, options)], stream, batch, bar);
  return result!;
}
