import { describe, expect, it } from "vitest";
import {
  BOUND_METHODS,
  clopperPearsonLower,
  lowerBound,
  minTrialsToProve,
  normalQuantile,
  wilsonLower,
} from "../../src/cache/bounds.ts";
import { erfc, logGamma, regularizedIncompleteBeta } from "../../src/cache/special.ts";
import { thrownBy } from "../helpers/errors.ts";

/** Relative closeness, for values that span many orders of magnitude. */
function expectRelClose(actual: number, expected: number, tolerance: number): void {
  expect(Math.abs(actual - expected) / Math.max(Math.abs(expected), 1e-300)).toBeLessThan(tolerance);
}

/** P(X >= k) for X ~ Binomial(n, p), summed term by term (independent of the beta machinery). */
function binomialUpperTail(k: number, n: number, p: number): number {
  let logChoose = 0; // ln C(n, 0)
  let tail = 0;
  for (let i = 0; i <= n; i++) {
    if (i > 0) logChoose += Math.log((n - i + 1) / i);
    if (i >= k) tail += Math.exp(logChoose + i * Math.log(p) + (n - i) * Math.log1p(-p));
  }
  return tail;
}

/** The Clopper-Pearson lower bound by definition: the p where P(X >= k; p) = 1 - confidence. */
function referenceClopperPearson(k: number, n: number, confidence: number): number {
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (binomialUpperTail(k, n, mid) < 1 - confidence) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

function codeOf(fn: () => unknown): string {
  return thrownBy(fn).code;
}

describe("special functions", () => {
  it("computes ln Γ at known points", () => {
    expect(Math.abs(logGamma(1))).toBeLessThan(1e-14);
    expectRelClose(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-14);
    expectRelClose(logGamma(11), Math.log(3628800), 1e-14);
    // ln 100! = 363.73937555556347 (Stirling series, also Python math.lgamma(101)).
    expectRelClose(logGamma(101), 363.73937555556347, 1e-14);
  });

  it("computes erfc in the centre and far in the tail", () => {
    // Values from Python math.erfc.
    expectRelClose(erfc(0.5), 0.4795001221869535, 1e-14);
    expectRelClose(erfc(1), 0.15729920705028513, 1e-14);
    expectRelClose(erfc(3), 2.209049699858544e-5, 1e-13);
    expectRelClose(erfc(10), 2.088487583762545e-45, 1e-12);
    expectRelClose(erfc(-1), 1.8427007929497148, 1e-15);
  });

  it("computes the regularized incomplete beta against closed forms", () => {
    // I_x(1, b) = 1 - (1 - x)^b and I_x(a, 1) = x^a.
    expectRelClose(regularizedIncompleteBeta(0.3, 1, 7), 1 - Math.pow(0.7, 7), 1e-14);
    expectRelClose(regularizedIncompleteBeta(0.9, 12, 1), Math.pow(0.9, 12), 1e-13);
    // I_x(2, 2) = 3x² - 2x³.
    expectRelClose(regularizedIncompleteBeta(0.8, 2, 2), 3 * 0.64 - 2 * 0.512, 1e-14);
    expect(regularizedIncompleteBeta(0, 3, 4)).toBe(0);
    expect(regularizedIncompleteBeta(1, 3, 4)).toBe(1);
  });
});

describe("normalQuantile", () => {
  it("matches scipy.stats.norm.ppf to near double precision", () => {
    expect(normalQuantile(0.5)).toBe(0);
    expectRelClose(normalQuantile(0.95), 1.6448536269514722, 1e-14);
    expectRelClose(normalQuantile(0.975), 1.959963984540054, 1e-14);
    expectRelClose(normalQuantile(0.99), 2.3263478740408408, 1e-14);
    expectRelClose(normalQuantile(0.999), 3.090232306167813, 1e-14);
    expectRelClose(normalQuantile(1e-10), -6.361340902404056, 1e-13);
    expectRelClose(normalQuantile(1 - 1e-12), 7.0344869100478356, 1e-4); // 1 - 1e-12 itself is inexact
  });

  it("is antisymmetric and saturates at the ends", () => {
    // Dyadic p so that 1 - p is exact and the symmetry can be checked bit for bit.
    for (const p of [2 ** -20, 2 ** -10, 0.0625, 0.3125, 0.4375]) {
      expect(normalQuantile(1 - p)).toBe(-normalQuantile(p));
    }
    expect(normalQuantile(0)).toBe(-Infinity);
    expect(normalQuantile(1)).toBe(Infinity);
    expect(codeOf(() => normalQuantile(Number.NaN))).toBe("INTERNAL");
  });
});

describe("wilsonLower", () => {
  // Closed form (p + z²/2n - z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.6448536269514722.
  it("matches the closed form at known points", () => {
    // k=8, n=10: (0.8 + 0.135277 - 1.644854·0.135426) / 1.270554 = 0.540792805687488
    expectRelClose(wilsonLower(8, 10, 0.95), 0.540792805687488, 1e-12);
    expectRelClose(wilsonLower(98, 100, 0.95), 0.9413516316431647, 1e-12);
    expectRelClose(wilsonLower(50, 100, 0.95), 0.41884779611252954, 1e-12);
    // 99% level, z = 2.3263478740408408.
    expectRelClose(wilsonLower(990, 1000, 0.99), 0.9796006129813145, 1e-12);
  });

  it("reduces to n / (n + z²) when every trial succeeds", () => {
    const z2 = 1.6448536269514722 ** 2;
    for (const n of [1, 7, 268, 10_000]) expectRelClose(wilsonLower(n, n, 0.95), n / (n + z2), 1e-12);
  });

  it("gives 0 without evidence or without successes", () => {
    expect(wilsonLower(0, 0, 0.95)).toBe(0);
    expect(wilsonLower(0, 50, 0.95)).toBe(0);
  });
});

describe("clopperPearsonLower", () => {
  it("is (1 - c)^(1/n) when all n trials succeed", () => {
    expectRelClose(clopperPearsonLower(299, 299, 0.95), 0.9900308532071007, 1e-14);
    for (const n of [1, 2, 10, 1000])
      expectRelClose(clopperPearsonLower(n, n, 0.9), Math.pow(0.1, 1 / n), 1e-14);
  });

  it("matches scipy.stats.beta.ppf(1 - c, k, n - k + 1)", () => {
    expectRelClose(clopperPearsonLower(8, 10, 0.95), 0.49309869893679764, 1e-12);
    expectRelClose(clopperPearsonLower(9, 10, 0.95), 0.6058366975634953, 1e-12);
    expectRelClose(clopperPearsonLower(98, 100, 0.95), 0.9383807996039593, 1e-12);
    expectRelClose(clopperPearsonLower(298, 299, 0.95), 0.9842332168723886, 1e-12);
    expectRelClose(clopperPearsonLower(990, 1000, 0.99), 0.9799573940991211, 1e-12);
    expectRelClose(clopperPearsonLower(1, 5, 0.9), 0.02085163763902321, 1e-12);
    expectRelClose(clopperPearsonLower(999_990, 1_000_000, 0.95), 0.9999830378398117, 1e-12);
  });

  it("agrees with the closed form for k = 1 and with a binomial-tail bisection", () => {
    // k = 1: P(X >= 1) = 1 - (1 - p)^n = α  =>  p = 1 - (1 - α)^(1/n).
    expectRelClose(clopperPearsonLower(1, 2, 0.95), 1 - Math.sqrt(0.95), 1e-12);
    for (const [k, n] of [
      [1, 3],
      [2, 3],
      [5, 12],
      [19, 20],
      [49, 50],
      [37, 40],
    ] as const) {
      for (const c of [0.8, 0.95, 0.99]) {
        expectRelClose(clopperPearsonLower(k, n, c), referenceClopperPearson(k, n, c), 1e-10);
      }
    }
  });

  it("is never above Wilson's at high success rates (it is the conservative one)", () => {
    for (const [k, n] of [
      [9, 10],
      [98, 100],
      [298, 299],
    ] as const) {
      expect(clopperPearsonLower(k, n, 0.95)).toBeLessThan(wilsonLower(k, n, 0.95));
    }
  });
});

describe("lowerBound", () => {
  it("dispatches on the method and validates its inputs", () => {
    expect(lowerBound("wilson", 8, 10, 0.95)).toBe(wilsonLower(8, 10, 0.95));
    expect(lowerBound("clopper-pearson", 8, 10, 0.95)).toBe(clopperPearsonLower(8, 10, 0.95));
    expect(codeOf(() => lowerBound("wilson", 11, 10, 0.95))).toBe("INTERNAL");
    expect(codeOf(() => lowerBound("wilson", 1.5, 10, 0.95))).toBe("INTERNAL");
    expect(codeOf(() => lowerBound("clopper-pearson", 1, -1, 0.95))).toBe("INTERNAL");
    expect(codeOf(() => lowerBound("clopper-pearson", 1, 2, 1))).toBe("INTERNAL");
  });

  for (const method of BOUND_METHODS) {
    it(`${method}: rises with k, falls with failures, tightens with n, loosens with confidence`, () => {
      for (const n of [1, 5, 40, 300]) {
        for (let k = 1; k <= n; k++) {
          expect(lowerBound(method, k, n, 0.95)).toBeGreaterThan(lowerBound(method, k - 1, n, 0.95));
          // Same successes, one more trial (one more failure): lower.
          expect(lowerBound(method, k, n + 1, 0.95)).toBeLessThan(lowerBound(method, k, n, 0.95));
        }
      }
      // Same observed rate, more evidence: higher.
      let previous = 0;
      for (const scale of [1, 2, 4, 8, 16, 64, 256]) {
        const bound = lowerBound(method, 9 * scale, 10 * scale, 0.95);
        expect(bound).toBeGreaterThan(previous);
        expect(bound).toBeLessThan(0.9);
        previous = bound;
      }
      // Higher confidence, lower bound.
      let last = 1;
      for (const c of [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]) {
        const bound = lowerBound(method, 95, 100, c);
        expect(bound).toBeLessThan(last);
        last = bound;
      }
    });
  }
});

describe("minTrialsToProve", () => {
  it("follows the rule of three for Clopper-Pearson", () => {
    // ln 0.05 / ln 0.99 = 298.07, so 299 clean frames are needed.
    expect(minTrialsToProve(0.99, 0.95, "clopper-pearson")).toBe(299);
    expect(clopperPearsonLower(298, 298, 0.95)).toBeLessThan(0.99);
    // ln 0.05 / ln 0.999 = 2994.2; ln 0.01 / ln 0.99 = 458.2.
    expect(minTrialsToProve(0.999, 0.95, "clopper-pearson")).toBe(2995);
    expect(minTrialsToProve(0.99, 0.99, "clopper-pearson")).toBe(459);
  });

  it("needs n >= z² t / (1 - t) for Wilson", () => {
    // 1.6448536269514722² · 0.99 / 0.01 = 267.85.
    expect(minTrialsToProve(0.99, 0.95, "wilson")).toBe(268);
    // 2.705543... · 0.5 / 0.5 = 2.71.
    expect(minTrialsToProve(0.5, 0.95, "wilson")).toBe(3);
  });

  it("returns the smallest count that proves the target", () => {
    for (const method of BOUND_METHODS) {
      for (const target of [0.3, 0.9, 0.95, 0.99, 0.995]) {
        const n = minTrialsToProve(target, 0.95, method);
        expect(lowerBound(method, n, n, 0.95)).toBeGreaterThanOrEqual(target);
        if (n > 1) expect(lowerBound(method, n - 1, n - 1, 0.95)).toBeLessThan(target);
      }
    }
  });

  it("rejects targets that no count can prove", () => {
    expect(codeOf(() => minTrialsToProve(1, 0.95, "wilson"))).toBe("INTERNAL");
    expect(codeOf(() => minTrialsToProve(0, 0.95, "clopper-pearson"))).toBe("INTERNAL");
  });
});
