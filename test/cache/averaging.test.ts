import { describe, expect, it } from "vitest";
import { ParameterAverage } from "../../src/cache/averaging.ts";

describe("ParameterAverage", () => {
  it("starts at the first parameters, then follows with the ramped decay", () => {
    const average = new ParameterAverage(0.5);
    const out = new Float32Array(2);
    average.applyTo(out);
    expect(Array.from(out)).toEqual([0, 0]); // nothing to apply before the first update
    average.update(Float32Array.of(1, 2));
    average.applyTo(out);
    expect(Array.from(out)).toEqual([1, 2]);
    // Second update: decay min(0.5, 3/12) = 0.25, so the average moves 3/4 of the way.
    average.update(Float32Array.of(5, 2));
    average.applyTo(out);
    expect(out[0]).toBeCloseTo(4, 6);
    expect(out[1]).toBeCloseTo(2, 6);
    // Later updates use the configured decay: (1 + t) / (10 + t) > 0.5 from t = 9.
    for (let t = 3; t <= 20; t++) average.update(Float32Array.of(0, 0));
    const before = new Float32Array(2);
    average.applyTo(before);
    average.update(Float32Array.of(8, 8));
    average.applyTo(out);
    expect(out[0]).toBeCloseTo(0.5 * before[0]! + 0.5 * 8, 6);
    expect(average.count).toBe(21);
  });

  it("a long run of noisy steps averages to their centre", () => {
    const average = new ParameterAverage(0.99);
    let seed = 7;
    const noise = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 2;
    for (let t = 0; t < 2000; t++) average.update(Float32Array.of(3 + noise(), -1 + noise()));
    const out = new Float32Array(2);
    average.applyTo(out);
    // Each step is off by up to 1; the average of ~100 steps is off by ~0.06 at most.
    expect(Math.abs(out[0]! - 3)).toBeLessThan(0.2);
    expect(Math.abs(out[1]! + 1)).toBeLessThan(0.2);
  });

  it("seeded with an average, moves at the full decay from the first update", () => {
    const average = new ParameterAverage(0.99);
    average.seed(Float32Array.of(1, -1));
    const out = new Float32Array(2);
    average.applyTo(out);
    expect(Array.from(out)).toEqual([1, -1]);
    average.update(Float32Array.of(101, 99));
    average.applyTo(out);
    expect(out[0]).toBeCloseTo(0.99 * 1 + 0.01 * 101, 5);
    expect(out[1]).toBeCloseTo(0.99 * -1 + 0.01 * 99, 5);

    const off = new ParameterAverage(0);
    off.seed(Float32Array.of(4));
    const untouched = Float32Array.of(-2);
    off.applyTo(untouched);
    expect(untouched[0]).toBe(-2);
  });

  it("forgets everything on reset, and is a no-op at decay 0", () => {
    const average = new ParameterAverage(0.9);
    average.update(Float32Array.of(1));
    average.update(Float32Array.of(3));
    average.reset();
    expect(average.count).toBe(0);
    average.update(Float32Array.of(10));
    const out = new Float32Array(1);
    average.applyTo(out);
    expect(out[0]).toBe(10);

    const off = new ParameterAverage(0);
    off.update(Float32Array.of(4));
    const untouched = Float32Array.of(-2);
    off.applyTo(untouched);
    expect(untouched[0]).toBe(-2);
    expect(off.count).toBe(0);
  });
});
