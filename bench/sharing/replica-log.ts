/**
 * The first prediction of every frame, by the replica that answered it, taken
 * from a PredictionTail as it counts them (the way bench/kafka/frame-log.ts
 * follows one): what the sharing benchmark needs to see one replica's early
 * exits in the order it answered.
 */
import type { Prediction } from "../../src/codec/prediction.ts";
import type { PredictionTail } from "../../src/tools/prediction-tail.ts";

export interface Answer {
  frameId: string;
  exit: number;
  /** When the replica wrote the prediction, epoch ms. */
  producedAt: number;
  headsVersion: number;
}

export class ReplicaLog {
  private readonly answers = new Map<string, Answer[]>();

  /** Records every prediction the tail's summary counts as a new frame id. Attach before any is read. */
  static follow(tail: PredictionTail): ReplicaLog {
    const log = new ReplicaLog();
    const summary = tail.summary;
    const add = summary.add.bind(summary);
    summary.add = (p, readAt) => {
      const fresh = add(p, readAt);
      if (fresh) log.record(p);
      return fresh;
    };
    return log;
  }

  record(p: Prediction): void {
    const list = this.answers.get(p.workerId) ?? [];
    list.push({ frameId: p.frameId, exit: p.exit, producedAt: p.producedAt, headsVersion: p.headsVersion });
    this.answers.set(p.workerId, list);
  }

  /** A replica's answers in the order it wrote them. */
  of(workerId: string): Answer[] {
    return [...(this.answers.get(workerId) ?? [])].sort((a, b) => a.producedAt - b.producedAt);
  }

  /** Answers of the replicas other than `except`, to frames whose id starts with `idPrefix`. */
  others(except: string, idPrefix: string): Answer[] {
    return [...this.answers.entries()]
      .filter(([worker]) => worker !== except)
      .flatMap(([, list]) => list.filter((a) => a.frameId.startsWith(idPrefix)));
  }
}

/** Share of answers given by an exit rather than the backbone. */
export function earlyShare(answers: readonly Answer[]): number {
  return answers.length === 0 ? NaN : answers.filter((a) => a.exit >= 0).length / answers.length;
}

/**
 * How many frames a replica answered before its early-exit share over its
 * last `window` frames first reached `target`: the end of that first window,
 * so never below `window`. Null if it never did.
 */
export function framesToReach(answers: readonly Answer[], target: number, window: number): number | null {
  let early = 0;
  for (let n = 0; n < answers.length; n++) {
    if (answers[n]!.exit >= 0) early++;
    if (n >= window && answers[n - window]!.exit >= 0) early--;
    if (n + 1 >= window && early / window >= target) return n + 1;
  }
  return null;
}

/** 1-based position of the first early answer, null if none. */
export function firstEarly(answers: readonly Answer[]): number | null {
  const i = answers.findIndex((a) => a.exit >= 0);
  return i < 0 ? null : i + 1;
}
