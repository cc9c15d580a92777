/**
 * Special functions the confidence bounds need, in plain double precision:
 * log-gamma, the complementary error function, the regularized incomplete
 * beta function and the standard normal quantile. Accurate to roughly 1e-14
 * relative over the ranges the bounds use; no dependencies, no allocation.
 */
import { LayercacheError } from "../errors/index.ts";

/** Below this a Lentz denominator is treated as zero (avoids division by zero). */
const TINY = 1e-300;
/** Continued fractions stop when a factor is this close to 1. */
const CF_EPS = 1e-16;

// Lanczos approximation, g = 7, n = 9 (Godfrey's coefficients): ~1e-15 relative.
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
const HALF_LOG_TWO_PI = 0.5 * Math.log(2 * Math.PI);

/** ln Γ(x) for x > 0. */
export function logGamma(x: number): number {
  if (x < 0.5) {
    // Reflection keeps the Lanczos sum in its accurate range.
    return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  }
  const z = x - 1;
  let sum = LANCZOS[0] as number;
  for (let i = 1; i < LANCZOS.length; i++) sum += (LANCZOS[i] as number) / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return HALF_LOG_TWO_PI + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/**
 * ln Γ(x) minus its Stirling approximation (x - 1/2) ln x - x + ln √(2π).
 * Kept separate so that log-beta terms for large arguments can be combined
 * before they are exponentiated instead of cancelling (ln 100000! ≈ 1e6).
 */
function stirlingCorrection(x: number): number {
  if (x < 15) return logGamma(x) - ((x - 0.5) * Math.log(x) - x + HALF_LOG_TWO_PI);
  // Asymptotic series; the first omitted term is below 3e-16 for x >= 15.
  const r = 1 / x;
  const r2 = r * r;
  return r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 * (1 / 1680 - r2 / 1188))));
}

/**
 * ln of x^a (1-x)^b / B(a, b), the prefactor of the incomplete beta. Written
 * as a·ln(xs/a) + b·ln((1-x)s/b) + ln√(ab/s) - ln√(2π) - Stirling corrections,
 * s = a + b: each term stays small, so the result keeps ~1e-14 relative
 * precision even when a and b are in the millions.
 */
function logBetaPrefactor(x: number, a: number, b: number): number {
  const s = a + b;
  // x·s - a = x·b - (1-x)·a, and (1-x)·s - b is its negation: formed without cancellation.
  const excess = x * b - (1 - x) * a;
  // Near the mode the ratios are close to 1 and log1p keeps the small difference;
  // far from it the direct logarithms keep the digits of x or 1 - x instead.
  const logA = Math.abs(excess) < 0.5 * a ? Math.log1p(excess / a) : Math.log(x) + Math.log1p(b / a);
  const logB = Math.abs(excess) < 0.5 * b ? Math.log1p(-excess / b) : Math.log1p(-x) + Math.log1p(a / b);
  const corrections = stirlingCorrection(a) + stirlingCorrection(b) - stirlingCorrection(s);
  return a * logA + b * logB + 0.5 * Math.log((a / s) * b) - HALF_LOG_TWO_PI - corrections;
}

/** Fails loudly rather than returning a silently wrong bound. */
function noConvergence(what: string, details: Record<string, number>): never {
  throw new LayercacheError("INTERNAL", `${what} did not converge`, { details });
}

/**
 * erfc(x) for x >= 0 as the regularized upper incomplete gamma Q(1/2, x^2):
 * a positive-term series near zero, a continued fraction in the tail, so the
 * tail keeps full relative precision (the normal quantile refinement needs it).
 */
function erfcNonNegative(x: number): number {
  const y = x * x;
  if (y < 1.5) {
    // P(1/2, y) = e^-y y^(1/2) / Γ(3/2) * Σ y^n / ((3/2)(5/2)...(1/2+n)).
    let term = 1 / 0.5;
    let sum = term;
    for (let n = 1; n < 200 && term > sum * 1e-17; n++) {
      term *= y / (0.5 + n);
      sum += term;
    }
    return 1 - (sum * Math.exp(-y) * x) / Math.sqrt(Math.PI);
  }
  // Modified Lentz on Q(a, y) = e^-y y^a / Γ(a) * 1/(y+1-a- 1(1-a)/(y+3-a- ...)).
  let b = y + 0.5;
  let c = 1 / TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 500; i++) {
    const an = -i * (i - 0.5);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < TINY) d = TINY;
    c = b + an / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < CF_EPS) return (Math.exp(-y) * x * h) / Math.sqrt(Math.PI);
  }
  return noConvergence("erfc continued fraction", { x });
}

/** Complementary error function. */
export function erfc(x: number): number {
  return x >= 0 ? erfcNonNegative(x) : 2 - erfcNonNegative(-x);
}

/** Continued fraction for I_x(a, b) (Numerical Recipes' betacf, modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const maxIterations = 1000 + Math.ceil(20 * Math.sqrt(Math.max(a, b)));
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= maxIterations; m++) {
    const m2 = 2 * m;
    // Even step.
    let aa = (m * (b - m) * x) / ((a - 1 + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    // Odd step.
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + 1 + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < CF_EPS) return h;
  }
  return noConvergence("incomplete beta continued fraction", { a, b, x });
}

/** Regularized incomplete beta function I_x(a, b) for a, b > 0, x in [0, 1]. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logBetaPrefactor(x, a, b));
  // The fraction converges fast only below the mode; use the symmetry above it.
  if (x < (a + 1) / (a + b + 2)) return (front * betaContinuedFraction(a, b, x)) / a;
  return 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/**
 * The p-quantile of Beta(a, b): the x with I_x(a, b) = p. Bisection, because
 * I_x is monotone and bisection cannot overshoot out of [0, 1]; it stops at
 * ~1e-15 relative width, which takes 50-100 evaluations.
 */
export function betaQuantile(p: number, a: number, b: number): number {
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 2000 && hi - lo > 4 * Number.EPSILON * hi; i++) {
    const mid = 0.5 * (lo + hi);
    if (regularizedIncompleteBeta(mid, a, b) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

// Acklam's rational approximation to the normal quantile (|relative error| < 1.15e-9).
const ACKLAM_A = [
  -3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1,
  2.506628277459239,
];
const ACKLAM_B = [
  -5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1,
];
const ACKLAM_C = [
  -7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968,
  2.938163982698783,
];
const ACKLAM_D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const ACKLAM_P_LOW = 0.02425;

function polynomial(coefficients: readonly number[], x: number): number {
  let acc = 0;
  for (const c of coefficients) acc = acc * x + c;
  return acc;
}

/** Acklam's approximation for p in (0, 0.5]. */
function acklamLowerHalf(p: number): number {
  if (p < ACKLAM_P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    return polynomial(ACKLAM_C, q) / (polynomial(ACKLAM_D, q) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return (polynomial(ACKLAM_A, r) * q) / (polynomial(ACKLAM_B, r) * r + 1);
}

/**
 * Standard normal quantile Φ⁻¹(p). Acklam's approximation plus one Halley
 * step against an accurate erfc gives close to full double precision. Only
 * the lower half is computed directly: for p > 0.5, 1 - p is exact in
 * floating point, so symmetry loses nothing.
 */
export function normalQuantile(p: number): number {
  if (Number.isNaN(p)) {
    throw new LayercacheError("INTERNAL", "normalQuantile: p is NaN");
  }
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  if (p === 0.5) return 0;
  if (p > 0.5) return -normalQuantile(1 - p);
  const x = acklamLowerHalf(p);
  const e = 0.5 * erfc(-x / Math.SQRT2) - p;
  const u = e * Math.sqrt(2 * Math.PI) * Math.exp((x * x) / 2);
  return x - u / (1 + (x * u) / 2);
}
