/**
 * The trainer's publishing cadence, averaged heads, and the drift check fed
 * by other replicas' audits. Real manifest and onnxruntime kernels; constant
 * features, since what is learned does not matter here.
 */
import { describe, expect, it } from "vitest";
import { ShadowAudit } from "../../src/cache/audit.ts";
import { cacheOptions } from "../../src/cache/options.ts";
import { HeadTrainer } from "../../src/cache/trainer.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { MODEL_DIR } from "../helpers/model.ts";

describe("HeadTrainer", () => {
  it("publishes every publishEvery frames while training at the warm-up rate, every steadyPublishEvery after", async () => {
    const manifest = loadManifest(MODEL_DIR);
    const options = cacheOptions({
      publishEvery: 10,
      steadyPublishEvery: 40,
      trainingWarmupExamples: 20,
      trainBatch: 8,
    });
    const audit = new ShadowAudit(manifest.exits.length, 0, 50, 0.99, 0.01);
    const trainer = new HeadTrainer(manifest, options, audit);
    const features = manifest.exits.map((e) => new Float32Array(e.size).fill(0.5));
    const logits = Float32Array.from({ length: manifest.classes.length }, (_, c) => c);
    const publishedAt: number[] = [];
    for (let frame = 1; frame <= 120; frame++) {
      trainer.onBackboneFrame(features, logits, false);
      if (await trainer.maintain(manifest.modelId)) publishedAt.push(frame);
    }
    // Frame 20 ends the warm-up; from then on the steady cadence counts from the last publish (10).
    expect(publishedAt).toEqual([10, 50, 90]);
  });

  it("publishes the moving average of each head's parameters, and keeps training the live ones", async () => {
    const manifest = loadManifest(MODEL_DIR);
    const run = async (parameterAveraging: number) => {
      const options = cacheOptions({ publishEvery: 40, trainBatch: 8, parameterAveraging, seed: 3 });
      const audit = new ShadowAudit(manifest.exits.length, 0, 50, 0.99, 0.01);
      const trainer = new HeadTrainer(manifest, options, audit);
      const c = manifest.classes.length;
      let published;
      for (let frame = 1; frame <= 40; frame++) {
        // Two alternating inputs with different targets: the live parameters keep moving.
        const features = manifest.exits.map((e) => new Float32Array(e.size).fill(frame % 2));
        const logits = Float32Array.from({ length: c }, (_, k) => (k === frame % 2 ? 4 : 0));
        trainer.onBackboneFrame(features, logits, false);
        published = (await trainer.maintain(manifest.modelId)) ?? published;
      }
      return { trainer, snapshot: published! };
    };
    const averaged = await run(0.99);
    const live = await run(0);
    const p = (h: unknown) => (h as { parameters(): Float32Array }).parameters();
    // Same seed, same steps: the live parameters agree; only the averaged run publishes something else.
    expect(Array.from(p(averaged.trainer["heads"][0]))).toEqual(Array.from(p(live.trainer["heads"][0])));
    expect(Array.from(p(live.snapshot.heads[0]))).toEqual(Array.from(p(live.trainer["heads"][0])));
    const published = p(averaged.snapshot.heads[0]);
    const trained = p(averaged.trainer["heads"][0]);
    let differ = 0;
    for (let i = 0; i < trained.length; i++) if (published[i] !== trained[i]) differ++;
    expect(differ).toBeGreaterThan(trained.length / 2);
  });

  it("raises the drift alarm on other replicas' audits, then ignores those of heads the alarm replaced", async () => {
    const manifest = loadManifest(MODEL_DIR);
    const options = cacheOptions({ publishEvery: 1_000, trainBatch: 8 });
    const audit = new ShadowAudit(manifest.exits.length, 0, 50, 0.99, 0.01);
    const trainer = new HeadTrainer(manifest, options, audit, 6);
    // Forwarded verdicts on exit 2 of heads version 6: the follower's answers were wrong half the time.
    for (let i = 0; i < 20; i++) trainer.takeAudit(2, i % 2 === 0, false, 6);
    expect(audit.drifted(2)).toBe(true);
    // They count for the drift check, not in this replica's own totals (its metrics).
    expect(audit.totals[2]).toEqual({ audited: 0, agreed: 0 });
    const alarm = await trainer.maintain(manifest.modelId);
    expect(trainer.stats.driftAlarms).toBe(1);
    expect(alarm?.version).toBe(7);
    expect(alarm?.decisions.every((d) => !d.open)).toBe(true);
    // Verdicts on version 6 still on their way are stale: no second alarm.
    for (let i = 0; i < 20; i++) trainer.takeAudit(2, false, false, 6);
    expect(audit.drifted(2)).toBe(false);
    expect(trainer.stats).toMatchObject({ fleetAudits: 20, staleAudits: 20 });
    // Verdicts on the heads published after the alarm count again.
    for (let i = 0; i < 20; i++) trainer.takeAudit(2, false, false, 7);
    expect(audit.drifted(2)).toBe(true);
  });

  it("leaves out frames with a non-finite feature or logit, counts them, and trains on the rest", async () => {
    const manifest = loadManifest(MODEL_DIR);
    const options = cacheOptions({ publishEvery: 1_000, trainBatch: 8, stepsPerExample: 1 });
    const trainer = new HeadTrainer(
      manifest,
      options,
      new ShadowAudit(manifest.exits.length, 0, 50, 0.99, 0.01),
    );
    const c = manifest.classes.length;
    const good = manifest.exits.map((e) => new Float32Array(e.size).fill(0.5));
    const logits = Float32Array.from({ length: c }, (_, k) => k);
    const nanAt = (exit: number) =>
      good.map((f, e) => (e === exit ? Float32Array.from(f, (x, i) => (i === 3 ? NaN : x)) : f));
    for (let i = 0; i < 8; i++) trainer.onBackboneFrame(good, logits, false);
    trainer.onBackboneFrame(nanAt(6), logits, false); // learned from
    trainer.onBackboneFrame(nanAt(0), logits, true); // calibrated on
    trainer.onBackboneFrame(
      good,
      Float32Array.from(logits, (x, k) => (k === 2 ? Infinity : x)),
      true,
    );
    trainer.onBackboneFrame(
      good,
      Float32Array.from(logits, (x, k) => (k === 2 ? NaN : x)),
      false,
    );
    trainer.onEarlyExit(nanAt(1).slice(0, 3), new Float32Array(c).fill(1 / c));
    trainer.onEarlyExit(good.slice(0, 3), new Float32Array(c).fill(0.5)); // not a distribution
    expect(trainer.stats.rejected).toBe(6);
    expect(trainer.stats.examples).toBe(8);
    expect(trainer.stats.heldOut).toBe(0);
    expect(trainer.stats.taught).toBe(0);
    expect(trainer.replay.size(0)).toBe(8);
    expect(trainer.calibration.size).toBe(0);
    // What was kept trains without a complaint, and every head stays finite.
    await trainer.maintain(manifest.modelId);
    expect(trainer.stats.steps).toBe(8);
    for (const head of trainer["heads"]) {
      expect((head as { parameters(): Float32Array }).parameters().every(Number.isFinite)).toBe(true);
    }
  });

  it("trains within a step budget, and drops the steps owed beyond it", async () => {
    const manifest = loadManifest(MODEL_DIR);
    const options = cacheOptions({ publishEvery: 1_000, trainBatch: 8, stepsPerExample: 1 });
    const audit = new ShadowAudit(manifest.exits.length, 0, 50, 0.99, 0.01);
    const trainer = new HeadTrainer(manifest, options, audit);
    const features = manifest.exits.map((e) => new Float32Array(e.size).fill(0.5));
    const logits = Float32Array.from({ length: manifest.classes.length }, (_, c) => c);
    for (let i = 0; i < 40; i++) trainer.onBackboneFrame(features, logits, false);
    expect(trainer.stepsOwed).toBe(40);
    await trainer.maintain(manifest.modelId, { maxSteps: 5, maxOwed: 20 });
    expect(trainer.stats.steps).toBe(5);
    expect(trainer.stepsOwed).toBe(20);
    expect(trainer.stats.forgoneSteps).toBe(15);
    // Without a budget every step owed is taken.
    await trainer.maintain(manifest.modelId);
    expect(trainer.stats.steps).toBe(25);
    expect(trainer.stepsOwed).toBe(0);
  });
});
