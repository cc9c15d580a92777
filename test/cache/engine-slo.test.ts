/**
 * SLO mode in the engine (docs/slo.md): a frame's strictness moves its
 * thresholds between the target's (1) and the floor's (0); exits only the
 * floor opens answer only for lenient frames; NO_EARLY_EXIT keeps a frame on
 * the backbone; lenient audits are judged against the floor.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ShadowAudit } from "../../src/cache/audit.ts";
import type { CacheObserver } from "../../src/cache/engine.ts";
import { BACKBONE_EXIT, CacheEngine } from "../../src/cache/engine.ts";
import { NO_EARLY_EXIT, exitThreshold } from "../../src/cache/strictness.ts";
import type { ExitHead } from "../../src/cache/heads.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { MODEL_DIR, firstTestBatch } from "../helpers/model.ts";
import { decision } from "../helpers/decisions.ts";

/**
 * A stand-in head (the test is about routing, not learning): label 3, with
 * confidence `high` on even rows of the batch and `low` on odd rows.
 */
function parityHead(high: number, low: number, classes: number, inputSize: number): ExitHead {
  const fill = (out: Float32Array, n: number) => {
    for (let i = 0; i < n; i++) {
      const conf = i % 2 === 0 ? high : low;
      for (let c = 0; c < classes; c++) out[i * classes + c] = c === 3 ? conf : (1 - conf) / (classes - 1);
    }
  };
  return {
    kind: "softmax",
    shape: { kind: "softmax", inputSize, hidden: 0, classes },
    inputSize,
    classes,
    predict: (_f, out) => fill(out, 1),
    predictBatch: (_f, n, out) => fill(out, n),
    predictBatchWith: async (_k, _f, n, out) => fill(out, n),
    macs: () => inputSize * classes,
    trainBatch: () => 0,
    trainBatchWith: async () => 0,
    toBytes: () => new Uint8Array(0),
  };
}

const sink: CacheObserver = { onBackboneFrame() {}, onEarlyExit() {} };

describe("exitThreshold", () => {
  it("interpolates between the floor's and the target's thresholds", () => {
    const d = decision(0, 0.99, 0.95);
    expect(exitThreshold(d, 1)).toBe(0.99);
    expect(exitThreshold(d, 0)).toBe(0.95);
    expect(exitThreshold(d, 0.5)).toBeCloseTo(0.97, 10);
    expect(exitThreshold(d, NO_EARLY_EXIT)).toBeNull();
  });
  it("opens a floor-only exit only below strict, and never loosens an exit the floor did not prove", () => {
    expect(exitThreshold(decision(0, null, 0.9), 1)).toBeNull();
    expect(exitThreshold(decision(0, null, 0.9), 0)).toBe(0.9);
    expect(exitThreshold(decision(0, null, 0.9), 0.5)).toBeCloseTo(0.95, 10);
    expect(exitThreshold(decision(0, 0.99, null), 0)).toBe(0.99);
    expect(exitThreshold(decision(0, null, null), 0)).toBeNull();
    // Snapshots planned without a floor behave as before.
    const { floorThreshold: _, ...noFloor } = decision(0, 0.99, null);
    expect(exitThreshold(noFloor, 0)).toBe(0.99);
  });
});

describe("CacheEngine with per-frame strictness", () => {
  let model: SegmentedBackbone;
  let input: Float32Array;
  const n = 16;
  const ids = Array.from({ length: n }, (_, i) => `frame-${i}`);

  beforeAll(async () => {
    model = await SegmentedBackbone.load(MODEL_DIR, { intraOpThreads: 2 });
    input = await firstTestBatch(model, n);
  });
  afterAll(async () => model?.close());

  /** Exit 1 opened by the floor only (0.9); exit 3 by both (target 0.99, floor 0.95). */
  function snapshot(): CacheSnapshot {
    const m = model.manifest;
    const decisions = m.exits.map((e) =>
      e.index === 1
        ? decision(1, null, 0.9)
        : e.index === 3
          ? decision(3, 0.99, 0.95)
          : decision(e.index, null, null),
    );
    const heads = m.exits.map((e) =>
      e.index === 1
        ? parityHead(0.92, 0.5, m.classes.length, e.size)
        : parityHead(0.995, 0.97, m.classes.length, e.size),
    );
    return { modelId: m.modelId, version: 3, heads, decisions };
  }

  const engine = (audit = new ShadowAudit(model.exitCount, 0, 50, 0.99, 0.01)) =>
    new CacheEngine(model, snapshot(), audit, sink, {
      cacheEnabled: true,
      calibrationRate: 0,
      warmupCalibrationRate: 0,
      warmupCalibrationFrames: 0,
      seed: 5,
    });
  const exits = (out: { exit: number }[]) => out.map((o) => o.exit);

  it("holds every frame to the target without strictness, as before SLO mode", async () => {
    const out = await engine().process(ids, input);
    // Exit 1 is not even cut; at exit 3 only the even rows (0.995) pass 0.99.
    expect(exits(out)).toEqual(ids.map((_, i) => (i % 2 === 0 ? 3 : BACKBONE_EXIT)));
    const strict = await engine().process(ids, input, new Float32Array(n).fill(1));
    expect(exits(strict)).toEqual(exits(out));
  });

  it("at the floor, uses the floor-only exit and the floor's threshold", async () => {
    const out = await engine().process(ids, input, new Float32Array(n).fill(0));
    // Even rows leave at exit 1 (0.92 >= 0.9); the odd rows reach exit 3 as rows 0, 1, 2, ...
    // of a compacted batch, where even rows (0.995) and odd rows (0.97 >= 0.95) all leave.
    expect(exits(out)).toEqual(ids.map((_, i) => (i % 2 === 0 ? 1 : 3)));
    expect(out.every((o) => o.label === 3)).toBe(true);
  });

  it("in between, a frame leaves only where its own threshold allows", async () => {
    // Strictness 0.75: exit 1 at 0.9 + 0.75 x 0.1 = 0.975 (0.92 stays), exit 3 at 0.98 (0.97 stays).
    const out = await engine().process(ids, input, new Float32Array(n).fill(0.75));
    expect(exits(out)).toEqual(ids.map((_, i) => (i % 2 === 0 ? 3 : BACKBONE_EXIT)));
  });

  it("keeps a NO_EARLY_EXIT frame on the backbone, whatever the others do", async () => {
    const s = new Float32Array(n).fill(0);
    s[0] = NO_EARLY_EXIT;
    s[1] = NO_EARLY_EXIT;
    const out = await engine().process(ids, input, s);
    expect(out[0]!.exit).toBe(BACKBONE_EXIT);
    expect(out[1]!.exit).toBe(BACKBONE_EXIT);
    expect(out.slice(2).every((o) => o.exit !== BACKBONE_EXIT)).toBe(true);
  });

  it("sends audits of lenient answers to the floor's window, not the target's", async () => {
    // Audit every confident frame: none leaves, each runs on to the backbone.
    const audit = new ShadowAudit(model.exitCount, 1, 50, 0.99, 0.01, 0.95);
    await engine(audit).process(ids, input, new Float32Array(n).fill(0));
    // Exit 1 (floor only): the 8 even frames, all lenient. Exit 3: the 8 odd frames at 0.97,
    // below the target's 0.99, so lenient too; the even ones were already audited.
    expect(audit.totals[1]!.audited).toBe(8);
    expect(audit.totals[3]!.audited).toBe(8);
    expect(audit.stats(1, 0.95, "clopper-pearson").audited).toBe(0);
    expect(audit.stats(3, 0.95, "clopper-pearson").audited).toBe(0);
    // The stand-in heads say "3" for everything: the lenient window raises the alarm.
    expect(audit.drifted(1)).toBe(true);
  });

  it("rejects a strictness array of the wrong length", async () => {
    await expect(engine().process(ids, input, new Float32Array(n - 1))).rejects.toThrow(/strictness/);
  });
});
