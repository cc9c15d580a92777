/**
 * One-sided lower confidence bounds on a binomial proportion. An exit may
 * answer only when the lower bound on its agreement with the backbone, from
 * k agreeing calibration frames out of n, clears the target agreement.
 *
 * Wilson is the score interval: cheap, closed form, slightly optimistic at
 * small n. Clopper-Pearson is exact (never undercovers), hence conservative.
 */
import { LayercacheError } from "../errors/index.ts";
import { betaQuantile, normalQuantile } from "./special.ts";

export { normalQuantile } from "./special.ts";

export type BoundMethod = "wilson" | "clopper-pearson";

export const BOUND_METHODS: readonly BoundMethod[] = ["wilson", "clopper-pearson"];

function invalid(message: string, details: Record<string, number | string>): never {
  throw new LayercacheError("INTERNAL", message, { details });
}

function checkCounts(k: number, n: number, confidence: number): void {
  if (!Number.isInteger(n) || n < 0) invalid(`trial count must be a non-negative integer (got ${n})`, { n });
  if (!Number.isInteger(k) || k < 0 || k > n) {
    invalid(`success count must be an integer in [0, ${n}] (got ${k})`, { k, n });
  }
  if (!(confidence > 0 && confidence < 1)) {
    invalid(`confidence must lie strictly between 0 and 1 (got ${confidence})`, { confidence });
  }
}

/**
 * Wilson score lower bound at one-sided level `confidence`:
 * (p + z²/2n - z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = Φ⁻¹(confidence).
 * With no trials there is no evidence, so the bound is 0.
 */
export function wilsonLower(k: number, n: number, confidence: number): number {
  checkCounts(k, n, confidence);
  if (n === 0 || k === 0) return 0;
  const z = normalQuantile(confidence);
  const z2 = z * z;
  const p = k / n;
  const centre = p + z2 / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.max(0, (centre - spread) / (1 + z2 / n));
}

/**
 * Clopper-Pearson (exact) lower bound at one-sided level `confidence`: the
 * (1 - confidence)-quantile of Beta(k, n - k + 1), i.e. the smallest p for
 * which seeing k or more successes still has probability 1 - confidence.
 */
export function clopperPearsonLower(k: number, n: number, confidence: number): number {
  checkCounts(k, n, confidence);
  if (k === 0) return 0;
  const alpha = 1 - confidence;
  // Beta(n, 1) has CDF x^n, so the all-success case has a closed form (and
  // minTrialsToProve lives on it).
  if (k === n) return Math.pow(alpha, 1 / n);
  return betaQuantile(alpha, k, n - k + 1);
}

/** The lower bound of `method` on the success rate behind k successes in n trials. */
export function lowerBound(method: BoundMethod, k: number, n: number, confidence: number): number {
  switch (method) {
    case "wilson":
      return wilsonLower(k, n, confidence);
    case "clopper-pearson":
      return clopperPearsonLower(k, n, confidence);
    default:
      return invalid(`unknown bound method ${String(method)}`, { method: String(method) });
  }
}

/**
 * The smallest n such that n successes out of n give a lower bound >= target:
 * how many agreeing calibration frames an exit needs at the very least before
 * it can open (e.g. 299 for 0.99 at 95% with Clopper-Pearson, the rule of three).
 * The bound for n of n grows with n for both methods, so a doubling search
 * followed by bisection finds it in O(log n) bound evaluations.
 */
export function minTrialsToProve(target: number, confidence: number, method: BoundMethod): number {
  if (!(target > 0 && target < 1)) {
    invalid(`target must lie strictly between 0 and 1 (got ${target})`, { target });
  }
  const proves = (n: number): boolean => lowerBound(method, n, n, confidence) >= target;
  let hi = 1;
  while (!proves(hi)) {
    hi *= 2;
    if (hi > Number.MAX_SAFE_INTEGER) invalid("target cannot be proven with any trial count", { target });
  }
  let lo = hi / 2; // Does not prove (or is 1/2, below any count).
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (proves(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}
