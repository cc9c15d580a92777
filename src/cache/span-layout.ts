/**
 * How the engine cuts the backbone for a snapshot: one fused span from each
 * open exit to the next (model/spans.ts), so a closed exit costs no
 * onnxruntime call; where the head at an open exit has a predict graph, it
 * rides at the end of the span that stops there. Worked out once per
 * snapshot (a snapshot never changes), and the fused heads' weights turned
 * into onnxruntime feeds once per head.
 */
import type { Manifest } from "../model/manifest.ts";
import type { SpanRange } from "../model/spans.ts";
import type { KernelPool } from "./head-kernel.ts";
import { parameterFeeds, predictTail } from "./head-kernel.ts";
import type { ExitHead } from "./head-types.ts";
import type { CacheSnapshot } from "./state.ts";
import { STRICT, exitThreshold } from "./strictness.ts";

export type TailFeeds = ReturnType<typeof parameterFeeds>;

export class SpanLayouts {
  /** The spans of each snapshot seen, strict and lenient. */
  private readonly layouts = new WeakMap<CacheSnapshot, SpanRange[][]>();
  /** The tail inputs of each head fused into a span. */
  private readonly tailFeeds = new WeakMap<ExitHead, TailFeeds>();

  constructor(
    private readonly manifest: Manifest,
    private readonly options: { cacheEnabled: boolean; kernels?: KernelPool },
  ) {}

  /**
   * The backbone cut at the snapshot's open exits. `lenient` (some frame
   * below strict, SLO mode) also cuts at the exits only the floor opens.
   */
  ranges(snap: CacheSnapshot, lenient = false): SpanRange[] {
    let layouts = this.layouts.get(snap);
    if (!layouts) {
      layouts = [];
      this.layouts.set(snap, layouts);
    }
    const key = lenient ? 1 : 0;
    return (layouts[key] ??= this.cut(snap, lenient));
  }

  /** A fused head's tail inputs (head-kernel.ts `parameterFeeds`). */
  feedsOf(head: ExitHead): TailFeeds {
    let feeds = this.tailFeeds.get(head);
    if (!feeds) {
      // Copies: the head's own kernel input is scratch that its next kernel call refills.
      const { shape, params, mean, scale } = head.kernelInput!();
      feeds = parameterFeeds({ shape, params: params.slice(), mean: mean.slice(), scale: scale.slice() });
      this.tailFeeds.set(head, feeds);
    }
    return feeds;
  }

  private cut(snap: CacheSnapshot, lenient: boolean): SpanRange[] {
    const { exits, segments } = this.manifest;
    const open = this.options.cacheEnabled
      ? snap.decisions
          .filter((d) => exitThreshold(d, lenient ? 0 : STRICT) !== null && snap.heads[d.exit])
          .map((d) => d.exit)
          .sort((a, b) => exits[a]!.afterSegment - exits[b]!.afterSegment)
      : [];
    const ranges: SpanRange[] = [];
    let first = 0;
    for (const exit of open) {
      const last = exits[exit]!.afterSegment;
      ranges.push({
        first,
        last,
        tail: this.fusedHead(snap, exit) ? predictTail(snap.heads[exit]!.shape) : undefined,
      });
      first = last + 1;
    }
    ranges.push({ first, last: segments.length - 1 });
    return ranges;
  }

  /**
   * The head at an open exit whose predict graph runs inside the span that
   * ends there (spans.ts, head-kernel.ts): one onnxruntime call fewer per
   * open exit a batch reaches, which at batch 1 costs about as much as the
   * head's arithmetic. Heads without one graph (a memory, the ensemble), and
   * every head of an engine without kernels, answer on their own.
   */
  private fusedHead(snap: CacheSnapshot, exit: number): ExitHead | undefined {
    const head = snap.heads[exit];
    return this.options.kernels && head?.kernelInput ? head : undefined;
  }
}
