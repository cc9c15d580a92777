/**
 * Shadow audit: a share of early-exited frames also runs the whole backbone
 * and is answered with the backbone's label. Per exit, a window of recent
 * audit outcomes gives live agreement with a confidence bound and a drift
 * alarm: the exit's agreement is below target at the configured significance
 * (a one-sided binomial test on the disagreements in the window).
 *
 * While the window leans towards drift, the exit is audited ten times as
 * often, so a drift that makes heads wrong is confirmed in a few dozen frames.
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
/**
 * The window leans towards drift while the p-value of "agreement >= target"
 * is below this (the alarm needs it below `driftSignificance`). One
 * disagreement among the first few dozen audits does that; the one in a
 * hundred that an exit proven for 0.99 makes in the normal course does not,
 * so the boost comes on when there is something to confirm and goes off
 * again. (Boosting after every disagreement kept it on for good: at 20% of
 * early answers, a disagreement arrived before the boost ran out.)
 */
const SUSPICION = 0.25;
/**
 * The alarm also needs this many disagreements in the window. Two among the
 * first dozen audits after a start or a takeover already make the target
 * implausible at 0.01 (10 of 12 agreed, p = 0.006), and an exit at its target
 * makes them a few times in a thousand starts: in one bench run that closed
 * every exit of a warm cache. A third disagreement while the window is that
 * short comes from a real drift, which the boost confirms in a few more frames.
 */
const MIN_ALARM_DISAGREEMENTS = 3;

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
  /** Per exit: the window leans towards drift (SUSPICION), audits are boosted. */
  private readonly suspicious: boolean[];
  /** This replica's audits ever recorded and agreements seen, per exit (for metrics). */
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
    this.suspicious = new Array<boolean>(exits).fill(false);
    this.totals = Array.from({ length: exits }, () => ({ audited: 0, agreed: 0 }));
  }

  /** Whether an early answer at `exit` should be audited. */
  sample(exit: number, rng: SeededRandom): boolean {
    const rate = this.suspicious[exit] ? Math.min(1, this.rate * BOOST) : this.rate;
    return rate > 0 && rng.uniform() < rate;
  }

  /**
   * `lenient`: the answer was given below the target's threshold (SLO mode).
   * `own`: false for another replica's audit (a fleet's trainer, see
   * HeadTrainer.takeAudit), which counts in the windows the drift check reads
   * but not in this replica's totals.
   */
  record(exit: number, agreed: boolean, lenient = false, own = true): void {
    const c = (lenient ? this.lenientCounts : this.counts)[exit]!;
    const w = (lenient ? this.lenientWindows : this.windows)[exit]!;
    if (c.n === this.window) c.agreed -= w[c.next]!;
    else c.n++;
    w[c.next] = agreed ? 1 : 0;
    c.agreed += agreed ? 1 : 0;
    c.next = (c.next + 1) % this.window;
    if (own) {
      this.totals[exit]!.audited++;
      if (agreed) this.totals[exit]!.agreed++;
    }
    this.suspicious[exit] = this.below(exit, SUSPICION);
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
    return this.below(exit, this.significance, MIN_ALARM_DISAGREEMENTS);
  }

  /** Whether audits are boosted at an exit: its windows lean towards drift. */
  boosted(exit: number): boolean {
    return this.suspicious[exit]!;
  }

  /**
   * Either window's p-value (strict against the target, lenient against the
   * floor) is below `level`, on at least `minDisagreements` disagreements.
   */
  private below(exit: number, level: number, minDisagreements = 1): boolean {
    const test = (c: { n: number; agreed: number }, rate: number) =>
      c.n - c.agreed >= minDisagreements && disagreementPValue(c.n - c.agreed, c.n, rate) < level;
    return test(this.counts[exit]!, 1 - this.target) || test(this.lenientCounts[exit]!, 1 - this.floor);
  }

  reset(exit: number): void {
    this.counts[exit] = { n: 0, agreed: 0, next: 0 };
    this.windows[exit]!.fill(0);
    this.lenientCounts[exit] = { n: 0, agreed: 0, next: 0 };
    this.lenientWindows[exit]!.fill(0);
    this.suspicious[exit] = false;
  }
}

/** P(X >= d) for X ~ Binomial(n, p): how surprising d disagreements are if the rate were p. */
export function disagreementPValue(d: number, n: number, p: number): number {
  if (d <= 0) return 1;
  if (d > n) return 0;
  return regularizedIncompleteBeta(p, d, n - d + 1);
}
