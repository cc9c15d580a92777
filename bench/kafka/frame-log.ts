/**
 * The first prediction of every frame of one arm, by frame index, taken from a
 * PredictionTail as it counts them: what the tail's summary does not keep, and
 * the Kafka benchmark needs to compare arms frame by frame (agreement) and to
 * rank latencies exactly (p95).
 *
 * Frame ids are `<idPrefix>-<n>` (src/tools/frame-producer.ts); with the same
 * shuffle seed, frame n is the same image in every arm, so n is the key.
 */
import type { Prediction } from "../../src/codec/prediction.ts";
import type { PredictionTail } from "../../src/tools/prediction-tail.ts";

/** `labels[n]` of a frame not answered (yet). */
export const UNANSWERED = -1;

export class FrameLog {
  /** Predicted label of frame n, or UNANSWERED. */
  readonly labels: Int16Array;
  /** `endToEndMs` of each first prediction, in the order read. */
  readonly endToEndMs: number[] = [];
  /** For each first prediction, in the order read: the frame's n, when it was read (epoch ms), its exit. */
  readonly frameIndex: number[] = [];
  readonly readAtMs: number[] = [];
  readonly exits: number[] = [];
  /** First predictions whose frame id is not one of this arm's (never expected). */
  foreign = 0;

  constructor(
    readonly idPrefix: string,
    readonly count: number,
  ) {
    this.labels = new Int16Array(count).fill(UNANSWERED);
  }

  /**
   * Follows `tail`: every prediction its summary counts as a new frame id is
   * recorded here too, then `onNew` hears the number of distinct frames.
   * Attach before any prediction can be read.
   */
  static follow(
    tail: PredictionTail,
    idPrefix: string,
    count: number,
    onNew?: (distinct: number) => void,
  ): FrameLog {
    const log = new FrameLog(idPrefix, count);
    const summary = tail.summary;
    const add = summary.add.bind(summary);
    summary.add = (p, readAt) => {
      const fresh = add(p, readAt);
      if (fresh) {
        log.record(p, readAt);
        onNew?.(summary.distinct);
      }
      return fresh;
    };
    return log;
  }

  /** Records the first prediction of a frame. */
  record(p: Prediction, readAtMs = Date.now()): void {
    const n = this.indexOf(p.frameId);
    if (n === undefined) {
      this.foreign += 1;
      return;
    }
    this.labels[n] = p.label;
    this.endToEndMs.push(p.endToEndMs);
    this.frameIndex.push(n);
    this.readAtMs.push(readAtMs);
    this.exits.push(p.exit);
  }

  /** n of `<idPrefix>-<n>`, or undefined for another id. */
  indexOf(frameId: string): number | undefined {
    if (!frameId.startsWith(`${this.idPrefix}-`)) return undefined;
    const n = Number(frameId.slice(this.idPrefix.length + 1));
    return Number.isInteger(n) && n >= 0 && n < this.count ? n : undefined;
  }
}

/** Share of frames answered in both logs that got the same label; compared counts those frames. */
export function agreement(a: FrameLog, b: FrameLog): { agreement: number; compared: number } {
  let compared = 0;
  let same = 0;
  for (let n = 0; n < Math.min(a.count, b.count); n++) {
    const x = a.labels[n]!;
    const y = b.labels[n]!;
    if (x === UNANSWERED || y === UNANSWERED) continue;
    compared += 1;
    if (x === y) same += 1;
  }
  return { agreement: compared > 0 ? same / compared : NaN, compared };
}
