/**
 * The cache's two roles in a fleet, in one process on the real backbone and
 * real test images (no Redis: the in-memory store stands for the shared one,
 * a recording observer for the forwarder):
 *
 * - a follower hands every observation to the forwarder, its audit verdicts
 *   included, and neither trains nor publishes;
 * - a replica that takes over training starts from the heads of the snapshot
 *   it holds, numbers its versions above it, and holds its own snapshots back
 *   until its calibration has proven as many open exits (or gathered as much
 *   evidence) as the one it took over, so a handover never closes exits the
 *   fleet had; given the lease back with nobody else having published, it
 *   resumes the trainer it had.
 *
 * The cache options make exits open after a few hundred frames, so the
 * stream can be short; the mechanism is the one the worker runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CacheObserver } from "../../src/cache/engine.ts";
import { OnlineCache } from "../../src/cache/online-cache.ts";
import type { CacheOptions } from "../../src/cache/options.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import type { CacheSnapshot } from "../../src/cache/state.ts";
import { MemoryStateStore } from "../../src/cache/state.ts";
import { HeadTrainer } from "../../src/cache/trainer.ts";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { MODEL_DIR, testSplit } from "../helpers/model.ts";

const BATCH = 32;

class RecordingForwarder implements CacheObserver {
  backbone = 0;
  heldOut = 0;
  early = 0;

  onBackboneFrame(_features: readonly Float32Array[], _logits: Float32Array, heldOut: boolean): void {
    if (heldOut) this.heldOut++;
    else this.backbone++;
  }

  onEarlyExit(): void {
    this.early++;
  }

  readonly audits: { exit: number; agreed: boolean; headsVersion: number }[] = [];

  onAudit(exit: number, agreed: boolean, _lenient: boolean, headsVersion: number): void {
    this.audits.push({ exit, agreed, headsVersion });
  }
}

const open = (s: CacheSnapshot | undefined) => s?.decisions.filter((d) => d.open).length ?? 0;

describe("OnlineCache in a fleet", () => {
  let model: SegmentedBackbone;
  let pre: Preprocessor;
  let x: Float32Array;
  const options: CacheOptions = cacheOptions({
    seed: 3,
    headKind: "softmax",
    targetAgreement: 0.9,
    confidenceLevel: 0.5,
    publishEvery: 50,
    steadyPublishEvery: 50,
  });

  beforeAll(async () => {
    model = await SegmentedBackbone.load(MODEL_DIR, { intraOpThreads: 1 });
    pre = new Preprocessor(model.manifest.input);
    const data = await testSplit();
    x = pre.normalise(data.images.subarray(0, 4000 * pre.frameSize), 4000);
  });
  afterAll(async () => model?.close());

  /** Frames [from, to) of the test split through the cache, a batch at a time, maintaining after each. */
  async function run(
    cache: OnlineCache,
    from: number,
    to: number,
    after?: (published?: CacheSnapshot) => void,
  ) {
    let early = 0;
    for (let s = from; s < to; s += BATCH) {
      const m = Math.min(BATCH, to - s);
      const ids = Array.from({ length: m }, (_, i) => String(s + i));
      const out = await cache.process(ids, x.subarray(s * pre.frameSize, (s + m) * pre.frameSize));
      early += out.filter((o) => o.exit >= 0).length;
      const published = await cache.maintain();
      after?.(published);
    }
    return early;
  }

  it("as a follower forwards what it sees and neither trains nor publishes", async () => {
    const store = new MemoryStateStore();
    const forwarder = new RecordingForwarder();
    const cache = await OnlineCache.create(model, options, store, true, { forwarder });
    expect(cache.role).toBe("follower");
    const published: (CacheSnapshot | undefined)[] = [];
    await run(cache, 0, 320, (p) => published.push(p));
    // Nothing open: every frame ran the backbone, and each one reached the forwarder.
    expect(forwarder.backbone + forwarder.heldOut).toBe(320);
    expect(forwarder.heldOut).toBeGreaterThan(0);
    expect(published.every((p) => p === undefined)).toBe(true);
    expect(await store.current()).toBeUndefined();
    expect(cache.engine.version).toBe(0);
    await cache.close();
  }, 120_000);

  it("takes over from the snapshot it holds, holds back until proven, and resumes its own trainer", async () => {
    const store = new MemoryStateStore();
    // The fleet so far: a cache alone that trained until exits opened.
    const first = await OnlineCache.create(model, options, store);
    for (let s = 0; s < 3000 && open(await store.current()) === 0; s += 320) await run(first, s, s + 320);
    const fleet = (await store.current())!;
    expect(open(fleet)).toBeGreaterThan(0);
    await first.close();

    // A follower auditing every early answer passes each verdict on, with the heads version it judged.
    const auditor = new RecordingForwarder();
    const audited = await OnlineCache.create(model, { ...options, auditRate: 1 }, store, true, {
      forwarder: auditor,
    });
    await run(audited, 0, 320);
    const totals = audited.audit.totals.reduce((a, t) => a + t.audited, 0);
    expect(totals).toBeGreaterThan(0);
    expect(auditor.audits).toHaveLength(totals);
    expect(auditor.audits.filter((a) => a.agreed)).toHaveLength(
      audited.audit.totals.reduce((a, t) => a + t.agreed, 0),
    );
    expect(
      auditor.audits.every((a) => a.headsVersion === fleet.version && fleet.decisions[a.exit]!.open),
    ).toBe(true);
    await audited.close();

    const forwarder = new RecordingForwarder();
    const next = await OnlineCache.create(model, options, store, true, { forwarder });
    expect(next.engine.version).toBe(fleet.version);
    expect(next.becomeTrainer(fleet.version)).toBe("took-over");
    expect(next.role).toBe("trainer");
    expect(next.holdingBack).toBe(true);

    const published: CacheSnapshot[] = [];
    for (let s = 0; s < 4000 && published.length === 0; s += BATCH) {
      await run(next, s, Math.min(s + BATCH, 4000), (p) => void (p && published.push(p)));
    }
    expect(published.length).toBeGreaterThan(0);
    // Its first snapshots were held back: they could not prove what the fleet had.
    expect(next.trainer.stats.publishes).toBeGreaterThan(published.length);
    const own = published[0]!;
    expect(own.version).toBeGreaterThan(fleet.version);
    const evidence = Math.max(...fleet.decisions.map((d) => d.calibration?.reached ?? 0));
    expect(open(own) >= open(fleet) || next.trainer.calibration.size >= evidence).toBe(true);
    expect((await store.current())!.version).toBe(own.version);
    // The forwarder heard nothing while this replica trained.
    expect(forwarder.backbone + forwarder.heldOut + forwarder.early).toBe(0);

    // The lease went away and came back, and nobody else published meanwhile: same trainer again.
    const trainer = next.trainer;
    next.becomeFollower();
    expect(next.role).toBe("follower");
    expect(await next.maintain()).toBeUndefined();
    expect(next.becomeTrainer(own.version)).toBe("resumed");
    expect(next.trainer).toBe(trainer);
    expect(next.holdingBack).toBe(false);
    await next.close();
  }, 300_000);

  it("takes over with the last trainer's calibration evidence, and then does not hold back", async () => {
    const store = new MemoryStateStore();
    const first = await OnlineCache.create(model, options, store);
    // What the evidence log in Redis would hold: a copy of every held-out frame the trainer took.
    const kept: { features: Float32Array[]; logits: Float32Array }[] = [];
    first.trainer.evidence = {
      add: (features, logits) =>
        kept.push({ features: features.map((f) => f.slice()), logits: logits.slice() }),
      clear: () => (kept.length = 0),
    };
    for (let s = 0; s < 3000 && open(await store.current()) === 0; s += 320) await run(first, s, s + 320);
    const fleet = (await store.current())!;
    expect(open(fleet)).toBeGreaterThan(0);
    expect(kept.length).toBe(first.trainer.calibration.size);
    await first.close();

    const next = await OnlineCache.create(model, options, store, true, {
      forwarder: new RecordingForwarder(),
    });
    const how = next.becomeTrainer(fleet.version, (trainer) => {
      for (const { features, logits } of kept) trainer.onBackboneFrame(features, logits, true);
    });
    expect(how).toBe("took-over");
    expect(next.trainer.calibration.size).toBe(kept.length);
    expect(Array.from(next.trainer.calibration.labels.subarray(0, kept.length))).toEqual(
      Array.from(first.trainer.calibration.labels.subarray(0, kept.length)),
    );
    expect(next.holdingBack).toBe(false);
    // Its first snapshot goes out: nothing is held back.
    let published: CacheSnapshot | undefined;
    for (let s = 0; s < 4000 && !published; s += BATCH) {
      await run(next, s, Math.min(s + BATCH, 4000), (p) => void (published ??= p));
    }
    expect(published).toBeDefined();
    expect(next.trainer.stats.publishes).toBe(1);
    expect(published!.version).toBeGreaterThan(fleet.version);
    await next.close();
  }, 300_000);

  it("starts a trainer from a snapshot's heads, copied, and numbers its versions above it", async () => {
    const store = new MemoryStateStore();
    const cache = await OnlineCache.create(model, options, store);
    for (let s = 0; s < 1000 && !(await store.current())?.heads.some((h) => h); s += 320) {
      await run(cache, s, s + 320);
    }
    const snapshot = (await store.current())!;
    const trainer = HeadTrainer.fromSnapshot(
      model.manifest,
      options,
      cache.audit,
      snapshot,
      snapshot.version + 5,
    );
    // Held-out frames only: nothing to train on, so its first snapshot carries the heads it started with.
    const features = model.manifest.exits.map((e) => new Float32Array(e.size).fill(0.5));
    const logits = Float32Array.from({ length: model.manifest.classes.length }, (_, c) => c);
    for (let i = 0; i < options.publishEvery; i++) trainer.onBackboneFrame(features, logits, true);
    const first = (await trainer.maintain(model.manifest.modelId))!;
    expect(first.version).toBe(snapshot.version + 6);
    first.heads.forEach((head, e) => {
      const original = snapshot.heads[e];
      if (!original) return expect(head).toBeNull();
      expect(head).not.toBe(original);
      expect(Buffer.from(head!.toBytes()).equals(Buffer.from(original.toBytes()))).toBe(true);
    });
    await cache.close();
  }, 120_000);

  it("trains a trainer started from heads that opened an exit at the steady rate, not the warm-up one", async () => {
    const store = new MemoryStateStore();
    const cache = await OnlineCache.create(model, options, store);
    await run(cache, 0, 320);
    const base = cache.engine.current;
    expect(base.heads.some((h) => h)).toBe(true);
    const withOpen = (open: boolean): CacheSnapshot => ({
      ...base,
      decisions: base.decisions.map((d) => ({ ...d, open: open && d.exit === 6 })),
    });
    const stepsAfter = async (snapshot: CacheSnapshot) => {
      const trainer = HeadTrainer.fromSnapshot(model.manifest, options, cache.audit, snapshot);
      const features = model.manifest.exits.map((e) => new Float32Array(e.size).fill(0.5));
      const logits = Float32Array.from({ length: model.manifest.classes.length }, (_, c) => c);
      for (let i = 0; i < 640; i++) trainer.onBackboneFrame(features, logits, false);
      await trainer.maintain(model.manifest.modelId);
      return trainer.stats.steps;
    };
    // Steps accrue fractionally per example: within one of the rate times 640.
    const warm = await stepsAfter(withOpen(false));
    const steady = await stepsAfter(withOpen(true));
    expect(Math.abs(warm - 640 * options.stepsPerExample)).toBeLessThanOrEqual(1);
    expect(Math.abs(steady - 640 * options.steadyStepsPerExample)).toBeLessThanOrEqual(1);
    await cache.close();
  }, 120_000);
});
