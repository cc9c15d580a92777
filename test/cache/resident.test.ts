/**
 * Committing buffer memory ahead of the writes (resident.ts): it may only
 * ever zero slots that hold nothing live, whatever the ring has been through.
 */
import { describe, expect, it } from "vitest";
import { CommitAhead } from "../../src/cache/resident.ts";
import { CalibrationSet } from "../../src/cache/calibration.ts";
import { ReplayBuffer } from "../../src/cache/replay.ts";
import { SeededRandom } from "../../src/cache/random.ts";

describe("CommitAhead", () => {
  it("zeroes only the window after the write position, once", () => {
    const data = new Float32Array(10 * 2).fill(7);
    const memory = new CommitAhead(10, [[data, 2]]);
    memory.ensure(3, 3, 4);
    expect([...data]).toEqual([...Array(6).fill(7), ...Array(8).fill(0), ...Array(6).fill(7)]);
    data.fill(7);
    // Already committed up to slot 7: only slots 7 and 8 are new.
    memory.ensure(5, 5, 4);
    expect([...data]).toEqual([...Array(14).fill(7), 0, 0, 0, 0, 7, 7]);
  });

  it("stops at the capacity and does nothing once the ring has wrapped", () => {
    const data = new Int32Array(4).fill(5);
    const memory = new CommitAhead(4, [[data, 1]]);
    memory.ensure(2, 2, 100);
    expect([...data]).toEqual([5, 5, 0, 0]);
    data.fill(5);
    memory.ensure(0, 4, 100);
    expect([...data]).toEqual([5, 5, 5, 5]);
  });

  it("skips slots written beyond the committed window", () => {
    const data = new Float32Array(8).fill(3);
    const memory = new CommitAhead(8, [[data, 1]]);
    memory.ensure(0, 0, 2);
    data.fill(3);
    // Writes ran past the window to slot 5: slots 0-4 are live.
    memory.ensure(5, 5, 2);
    expect([...data]).toEqual([3, 3, 3, 3, 3, 0, 0, 3]);
  });
});

describe("buffers reserving memory keep what they hold", () => {
  it("calibration set: frames added before a reserve are intact after it", () => {
    const set = new CalibrationSet(16, [3, 2]);
    for (let i = 0; i < 5; i++) {
      set.add([Float32Array.of(i, i, i), Float32Array.of(-i, -i)], i % 10);
      set.reserve(4);
    }
    for (let i = 0; i < 5; i++) {
      expect([...set.features[0]!.subarray(i * 3, i * 3 + 3)]).toEqual([i, i, i]);
      expect([...set.features[1]!.subarray(i * 2, i * 2 + 2)]).toEqual([-i, -i]);
      expect(set.labels[i]).toBe(i);
    }
  });

  it("replay buffer: every sample is an example that was added, through a wrap and keepNewest", () => {
    const buffer = new ReplayBuffer(8, [2], 2);
    const rng = new SeededRandom(3);
    const features = new Float32Array(2 * 4);
    const targets = new Float32Array(2 * 4);
    const check = (live: Set<number>) => {
      for (let k = 0; k < 20; k++) {
        buffer.sample(0, 4, rng, features, targets);
        for (let r = 0; r < 4; r++) {
          expect(live.has(features[2 * r]!)).toBe(true);
          expect(features[2 * r + 1]).toBe(features[2 * r]);
          expect(targets[2 * r]).toBe(Math.fround(features[2 * r]! / 100));
        }
      }
    };
    const added: number[] = [];
    for (let i = 1; i <= 11; i++) {
      buffer.add(0, Float32Array.of(i, i), Float32Array.of(i / 100, 1 - i / 100));
      added.push(i);
      buffer.reserve(3);
      check(new Set(added.slice(-8)));
    }
    buffer.keepNewest(3);
    buffer.reserve(8);
    check(new Set([9, 10, 11]));
    buffer.add(0, Float32Array.of(12, 12), Float32Array.of(0.12, 0.88));
    buffer.reserve(8);
    check(new Set([9, 10, 11, 12]));
  });
});
