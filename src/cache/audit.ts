/**
 * Shadow audit: a share of early-exited frames also runs the whole backbone
 * and is answered with the backbone's label. Per exit, a window of recent
 * audit outcomes gives live agreement with a confidence bound and a drift
 * alarm: the exit's agreement is below target at the configured significance
 * (a one-sided binomial test on the disagreements in the window).
 *
 * After a disagreement the exit is audited ten times as often for a while, so
 * a drift that makes heads wrong is confirmed in a few dozen frames.
 *
 * In SLO mode (docs/slo.md) a frame may answer below the target's threshold,
 * where only the floor was proven. Its audit goes to a second window per exit,
 * tested against the floor: lenient answers are held to what they promised,
 * and do not raise a false alarm against the target.
 */
import type { BoundMethod } from "./bounds.ts";
import { lowerBound } from "./bounds.ts";
import type { SeededRandom } from "./random.ts";
import { regularizedIncompleteBeta } from "./special.ts";

const BOOST = 10;

export interface AuditStats {
  audited: number;
  agreed: number;
  /** Lower confidence bound on agreement over the window (0 when empty). */
  lowerBound: number;
  /** P-value of "agreement >= target" given the window; small means drift. */
  pValue: number;
}

export class ShadowAudit {
  private readonly windows: Uint8Array[];
  private readonly counts: { n: number; agreed: number; next: number }[];
  /** Audits of answers given below the target's threshold (SLO mode), per exit. */
  private readonly lenientWindows: Uint8Array[];
  private readonly lenientCounts: { n: number; agreed: number; next: number }[];
  private readonly boostLeft: number[];
  /** Audits ever recorded and disagreements seen, per exit (for metrics). */
  readonly totals: { audited: number; agreed: number }[];

  constructor(
    exits: number,
    private readonly rate: number,
    private readonly window: number,
    private readonly target: number,
    private readonly significance: number,
    private readonly floor: number = target,
  ) {
    this.windows = Array.from({ length: exits }, () => new Uint8Array(window));
    this.counts = Array.from({ length: exits }, () => ({ n: 0, agreed: 0, next: 0 }));
    this.lenientWindows = Array.from({ length: exits }, () => new Uint8Array(window));
    this.lenientCounts = Array.from({ length: exits }, () => ({ n: 0, agreed: 0, next: 0 }));
    this.boostLeft = new Array<number>(exits).fill(0);
    this.totals = Array.from({ length: exits }, () => ({ audited: 0, agreed: 0 }));
  }

  /** Whether an early answer at `exit` should be audited. */
  sample(exit: number, rng: SeededRandom): boolean {
    const rate = this.boostLeft[exit]! > 0 ? Math.min(1, this.rate * BOOST) : this.rate;
    return rate > 0 && rng.uniform() < rate;
  }

  /** `lenient`: the answer was given below the target's threshold (SLO mode). */
  record(exit: number, agreed: boolean, lenient = false): void {
    const c = (lenient ? this.lenientCounts : this.counts)[exit]!;
    const w = (lenient ? this.lenientWindows : this.windows)[exit]!;
    if (c.n === this.window) c.agreed -= w[c.next]!;
    else c.n++;
    w[c.next] = agreed ? 1 : 0;
    c.agreed += agreed ? 1 : 0;
    c.next = (c.next + 1) % this.window;
    this.totals[exit]!.audited++;
    if (agreed) this.totals[exit]!.agreed++;
    if (!agreed) this.boostLeft[exit] = this.window;
    else if (this.boostLeft[exit]! > 0) this.boostLeft[exit]!--;
  }

  stats(exit: number, confidence: number, method: BoundMethod): AuditStats {
    const { n, agreed } = this.counts[exit]!;
    return {
      audited: n,
      agreed,
      lowerBound: n === 0 ? 0 : lowerBound(method, agreed, n, confidence),
      pValue: disagreementPValue(n - agreed, n, 1 - this.target),
    };
  }

  /**
   * True when the window shows agreement below target, or the lenient window
   * agreement below the floor, at the configured significance.
   */
  drifted(exit: number): boolean {
    const strict = this.counts[exit]!;
    const lenient = this.lenientCounts[exit]!;
    return (
      disagreementPValue(strict.n - strict.agreed, strict.n, 1 - this.target) < this.significance ||
      disagreementPValue(lenient.n - lenient.agreed, lenient.n, 1 - this.floor) < this.significance
    );
  }

  reset(exit: number): void {
    this.counts[exit] = { n: 0, agreed: 0, next: 0 };
    this.windows[exit]!.fill(0);
    this.lenientCounts[exit] = { n: 0, agreed: 0, next: 0 };
    this.lenientWindows[exit]!.fill(0);
  }
}

/** P(X >= d) for X ~ Binomial(n, p): how surprising d disagreements are if the rate were p. */
export function disagreementPValue(d: number, n: number, p: number): number {
  if (d <= 0) return 1;
  if (d > n) return 0;
  return regularizedIncompleteBeta(p, d, n - d + 1);
}
