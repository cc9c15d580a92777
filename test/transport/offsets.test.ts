/** The commit rule in isolation: only past messages that are done, and every one before them. */
import { describe, expect, it } from "vitest";
import { OffsetLedger, PartitionTracker } from "../../src/transport/kafka/offsets.ts";

describe("PartitionTracker", () => {
  it("commits only the prefix of messages that are all done, whatever order they finish in", () => {
    const t = new PartitionTracker();
    const [a, b, c] = ["10", "11", "12"].map((o) => t.add(o));
    expect(t.committable()).toBeUndefined();
    c!.done = true;
    b!.done = true;
    expect(t.committable()).toBeUndefined();
    a!.done = true;
    expect(t.committable()).toBe("13");
  });

  it("steps over offsets that never arrive (compacted topics, transaction markers)", () => {
    const t = new PartitionTracker();
    const first = t.add("5");
    const second = t.add("9");
    first.done = true;
    expect(t.committable()).toBe("6");
    second.done = true;
    expect(t.committable()).toBe("10");
  });

  it("offers an offset once until it moves again", () => {
    const t = new PartitionTracker();
    t.add("0").done = true;
    t.markCommitted(t.committable()!);
    expect(t.committable()).toBeUndefined();
    t.add("1").done = true;
    expect(t.committable()).toBe("2");
  });

  it("knows what it handed out, and refuses to hand it out twice", () => {
    const t = new PartitionTracker();
    expect(t.nextOffset()).toBeUndefined();
    t.add("41");
    expect(t.nextOffset()).toBe("42");
    expect(t.isNew("41")).toBe(false);
    expect(t.isNew("42")).toBe(true);
    expect(() => t.add("40")).toThrow(RangeError);
  });

  it("lists what a commit covers since the last one, and what a partition that goes gives up", () => {
    const t = new PartitionTracker();
    const [a, b, c, d] = ["0", "1", "2", "3"].map((o) => t.add(o));
    a!.done = true;
    b!.done = true;
    expect(t.committable()).toBe("2");
    expect(t.pending("2")).toEqual([a, b]);
    t.markCommitted("2");
    c!.done = true;
    expect(t.pending(t.committable()!)).toEqual([c]);
    expect(t.uncommitted()).toEqual([c, d]);
  });

  it("takes a commit that passes messages still in flight (another member's transaction)", () => {
    const t = new PartitionTracker();
    const entries = ["5", "6", "7", "8"].map((o) => t.add(o));
    t.markCommitted("7");
    // 5 and 6 are covered; the done prefix still has to pass them before anything is offered.
    entries[2]!.done = true;
    expect(t.committable()).toBeUndefined();
    entries[0]!.done = true;
    entries[1]!.done = true;
    expect(t.committable()).toBe("8");
    expect(t.pending("8")).toEqual([entries[2]]);
    expect(t.uncommitted()).toEqual([entries[2], entries[3]]);
  });

  it("handles offsets beyond 2^53 exactly", () => {
    const t = new PartitionTracker();
    t.add("9007199254740993").done = true;
    expect(t.committable()).toBe("9007199254740994");
  });

  it("keeps the commit right across a long stream (the done prefix is trimmed as it goes)", () => {
    const t = new PartitionTracker();
    const entries = Array.from({ length: 5_000 }, (_, i) => t.add(String(i)));
    for (const e of entries.slice(0, 4_000)) e.done = true;
    expect(t.committable()).toBe("4000");
    entries[4_500]!.done = true;
    expect(t.committable()).toBe("4000");
    for (const e of entries) e.done = true;
    expect(t.committable()).toBe("5000");
  });
});

describe("OffsetLedger", () => {
  it("collects one commit per partition that moved", () => {
    const ledger = new OffsetLedger();
    ledger.tracker("frames", 0).add("3").done = true;
    ledger.tracker("frames", 1).add("7");
    ledger.tracker("frames", 2).add("0").done = true;
    const offsets = ledger.committable();
    expect(offsets).toEqual([
      { topic: "frames", partition: 0, offset: "4" },
      { topic: "frames", partition: 2, offset: "1" },
    ]);
    ledger.markCommitted(offsets);
    expect(ledger.committable()).toEqual([]);
  });

  it("carries a tracker into the next generation's ledger", () => {
    const old = new OffsetLedger();
    const entry = old.tracker("frames", 3).add("20");
    const next = new OffsetLedger();
    next.adopt("frames", 3, old.get("frames", 3)!);
    entry.done = true;
    expect(next.committable()).toEqual([{ topic: "frames", partition: 3, offset: "21" }]);
    expect(next.get("frames", 1)).toBeUndefined();
  });
});
