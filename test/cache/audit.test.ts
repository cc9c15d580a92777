/**
 * The shadow audit's window: when it boosts its sampling, and when it raises
 * the drift alarm. Pure: no model.
 */
import { describe, expect, it } from "vitest";
import { ShadowAudit } from "../../src/cache/audit.ts";
import { SeededRandom } from "../../src/cache/random.ts";

const sampledShare = (audit: ShadowAudit, exit: number, draws = 20_000): number => {
  const rng = new SeededRandom(11);
  let n = 0;
  for (let i = 0; i < draws; i++) if (audit.sample(exit, rng)) n++;
  return n / draws;
};

const record = (audit: ShadowAudit, exit: number, agreed: number, disagreed: number, lenient = false) => {
  for (let i = 0; i < disagreed; i++) audit.record(exit, false, lenient);
  for (let i = 0; i < agreed; i++) audit.record(exit, true, lenient);
};

describe("ShadowAudit", () => {
  it("samples at its rate, and ten times as often while a disagreement stands out in a short window", () => {
    const audit = new ShadowAudit(2, 0.02, 200, 0.99, 0.01);
    expect(sampledShare(audit, 0)).toBeCloseTo(0.02, 2);
    record(audit, 0, 5, 1);
    expect(audit.boosted(0)).toBe(true);
    expect(audit.drifted(0)).toBe(false);
    expect(sampledShare(audit, 0)).toBeCloseTo(0.2, 1);
    // The other exit is not affected.
    expect(audit.boosted(1)).toBe(false);
  });

  it("stops boosting once the window is back in line with the target", () => {
    const audit = new ShadowAudit(1, 0.02, 200, 0.99, 0.01);
    record(audit, 0, 5, 1);
    expect(audit.boosted(0)).toBe(true);
    // One disagreement in 200 audits is what an exit at 0.995 makes: no boost.
    record(audit, 0, 194, 0);
    expect(audit.boosted(0)).toBe(false);
    expect(sampledShare(audit, 0)).toBeCloseTo(0.02, 2);
  });

  it("does not stay boosted for an exit that disagrees now and then at its target rate", () => {
    const audit = new ShadowAudit(1, 0.02, 200, 0.99, 0.01);
    // Two disagreements per 200 audits, spread out, for 2,000 audits.
    let boostedAt = 0;
    for (let i = 0; i < 2000; i++) {
      audit.record(0, i % 100 !== 50);
      if (i >= 200 && audit.boosted(0)) boostedAt++;
    }
    expect(boostedAt).toBe(0);
    expect(audit.drifted(0)).toBe(false);
  });

  it("needs a third disagreement to raise the alarm, however short the window", () => {
    const audit = new ShadowAudit(1, 0.02, 200, 0.99, 0.01);
    // Two of the first twelve: p = 0.006 against 0.99, but an exit at its target does that now and then.
    record(audit, 0, 10, 2);
    expect(audit.boosted(0)).toBe(true);
    expect(audit.drifted(0)).toBe(false);
    audit.record(0, false);
    expect(audit.drifted(0)).toBe(true);
  });

  it("raises the drift alarm when the window makes the target implausible, and clears on reset", () => {
    const audit = new ShadowAudit(1, 0.02, 200, 0.99, 0.01);
    record(audit, 0, 40, 5);
    expect(audit.drifted(0)).toBe(true);
    expect(audit.boosted(0)).toBe(true);
    audit.reset(0);
    expect(audit.drifted(0)).toBe(false);
    expect(audit.boosted(0)).toBe(false);
  });

  it("holds lenient answers to the floor, not to the target", () => {
    const audit = new ShadowAudit(1, 0.02, 200, 0.99, 0.01, 0.9);
    // 3 in 60 wrong: implausible at 0.99, well within a floor of 0.9.
    record(audit, 0, 57, 3, true);
    expect(audit.drifted(0)).toBe(false);
    expect(audit.boosted(0)).toBe(false);
    record(audit, 0, 20, 15, true);
    expect(audit.drifted(0)).toBe(true);
  });
});
