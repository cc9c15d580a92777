/** Micro-batching on a fake clock: batch size, linger, concurrency and the shutdown flush. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MicroBatcher } from "../../src/pipeline/batcher.ts";

function harness(maxItems: number, lingerMs: number, maxConcurrent: number) {
  const batches: number[][] = [];
  const finish: (() => void)[] = [];
  const batcher = new MicroBatcher<number>({
    maxItems,
    lingerMs,
    maxConcurrent,
    run: (items) => {
      batches.push(items);
      return new Promise<void>((resolve) => finish.push(resolve));
    },
  });
  return { batcher, batches, finish };
}

const settle = () => vi.advanceTimersByTimeAsync(0);

describe("MicroBatcher", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("sends full batches at once, in arrival order", () => {
    const { batcher, batches } = harness(3, 50, 2);
    for (let i = 0; i < 6; i++) batcher.add(i);
    expect(batches).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
  });

  it("holds a partial batch for the linger time from its oldest item", async () => {
    const { batcher, batches } = harness(4, 10, 1);
    batcher.add(1);
    await vi.advanceTimersByTimeAsync(6);
    batcher.add(2);
    await vi.advanceTimersByTimeAsync(3);
    expect(batches).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[1, 2]]);
  });

  it("runs at most maxConcurrent batches and fills the next one while they run", async () => {
    const { batcher, batches, finish } = harness(2, 5, 1);
    for (let i = 0; i < 5; i++) batcher.add(i);
    expect(batches).toEqual([[0, 1]]);
    await vi.advanceTimersByTimeAsync(100);
    expect(batches).toHaveLength(1);
    finish.shift()!();
    await settle();
    expect(batches).toEqual([
      [0, 1],
      [2, 3],
    ]);
    finish.shift()!();
    await settle();
    // Item 4 has waited long past the linger time already: it goes without more waiting.
    expect(batches[2]).toEqual([4]);
  });

  it("flushes partial batches without lingering and reports idle once all have run", async () => {
    const { batcher, batches, finish } = harness(8, 1_000, 2);
    batcher.add(1);
    batcher.add(2);
    let idle = false;
    void batcher.idle().then(() => (idle = true));
    batcher.flush();
    expect(batches).toEqual([[1, 2]]);
    await settle();
    expect(idle).toBe(false);
    finish.shift()!();
    await settle();
    expect(idle).toBe(true);
  });
});
