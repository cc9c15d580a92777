/**
 * The inference thread through its client, on the real model: a batch goes
 * over (its pixel buffer moved, not copied) and comes back as one outcome per
 * frame; a model that cannot load fails the start; a closed thread refuses work.
 */
import { describe, expect, it } from "vitest";
import { cacheOptions } from "../../src/cache/options.ts";
import { LayercacheError } from "../../src/errors/index.ts";
import { loadManifest } from "../../src/model/manifest.ts";
import { InferenceClient } from "../../src/pipeline/inference-client.ts";
import type { InferenceInit } from "../../src/pipeline/inference-protocol.ts";
import { createLogger } from "../../src/telemetry/logger.ts";
import { MODEL_DIR, testSplit } from "../helpers/model.ts";

const log = createLogger({ level: "silent", workerId: "test" });
const init = (over: Partial<InferenceInit> = {}): InferenceInit => ({
  modelDir: MODEL_DIR,
  intraOpThreads: 1,
  cacheEnabled: true,
  cache: cacheOptions(),
  logLevel: "silent",
  workerId: "test",
  ...over,
});

describe("InferenceClient", () => {
  it("runs a batch on the thread and answers every frame in order", async () => {
    const failures: Error[] = [];
    const client = await InferenceClient.start(init(), log, (err) => failures.push(err));
    try {
      const manifest = loadManifest(MODEL_DIR);
      expect(client.model).toMatchObject({ modelId: manifest.modelId, classes: manifest.classes });
      const data = await testSplit();
      const n = 8;
      // A copy that owns its buffer (the test split is one large Buffer).
      const pixels = new Uint8Array(data.images.subarray(0, n * 784));
      const outcomes = await client.run(
        Array.from({ length: n }, (_, i) => `f${i}`),
        pixels,
      );
      // Transferred: the main thread's copy is gone.
      expect(pixels.byteLength).toBe(0);
      expect(outcomes.label).toHaveLength(n);
      for (let i = 0; i < n; i++) {
        expect(outcomes.label[i]).toBeGreaterThanOrEqual(0);
        expect(outcomes.label[i]).toBeLessThan(manifest.classes.length);
        expect(outcomes.exit[i]).toBe(-1);
        expect(outcomes.macs[i]).toBe(manifest.full.macs);
      }
      // A view into a larger buffer is refused: transferring it would take memory the caller still uses.
      await expect(client.run(["v"], data.images.subarray(0, 784))).rejects.toMatchObject({
        code: "INTERNAL",
      });
    } finally {
      await client.close();
    }
    await expect(client.run(["x"], new Uint8Array(784))).rejects.toMatchObject({ code: "SHUTTING_DOWN" });
    expect(failures).toEqual([]);
  });

  it("reports each exit's shadow audit with the results (for metrics)", async () => {
    // Quick to open exits and audit a lot of what they answer.
    const cache = cacheOptions({
      auditRate: 0.5,
      publishEvery: 50,
      steadyPublishEvery: 50,
      confidenceLevel: 0.5,
      targetAgreement: 0.9,
      warmupCalibrationRate: 0.5,
    });
    const client = await InferenceClient.start(init({ cache }), log, () => undefined);
    try {
      const data = await testSplit();
      const n = 32;
      let audited = 0;
      for (let b = 0; b < 60 && audited < 5; b++) {
        const pixels = new Uint8Array(data.images.subarray(b * n * 784, (b + 1) * n * 784));
        const outcomes = await client.run(
          Array.from({ length: n }, (_, i) => `f${b}-${i}`),
          pixels,
        );
        audited += outcomes.audited.reduce((a, v) => a + v, 0);
      }
      expect(audited).toBeGreaterThanOrEqual(5);
      // The exits of the heads that answered came along: one state per exit, thresholds only on open ones.
      expect(client.exits.map((e) => e.exit)).toEqual([...Array(client.model.exits).keys()]);
      expect(client.exits.some((e) => e.open)).toBe(true);
      for (const e of client.exits) {
        if (e.open) expect(e.threshold).toBeGreaterThan(0);
        else expect(e.threshold).toBeNull();
        expect(e.reason.length).toBeGreaterThan(0);
      }
      const audits = [...client.audit.values()];
      // Every audited frame is one audit of the exit that was confident about it.
      expect(audits.reduce((a, e) => a + e.audited, 0)).toBe(audited);
      for (const a of audits) {
        expect(a.exit).toBeGreaterThanOrEqual(0);
        expect(a.exit).toBeLessThan(client.model.exits);
        expect(a.windowAgreed).toBeLessThanOrEqual(a.windowAudited);
        expect(a.windowAudited).toBeLessThanOrEqual(a.audited);
        expect(a.agreed).toBeLessThanOrEqual(a.audited);
      }
    } finally {
      await client.close();
    }
  }, 120_000);

  it("fails to start when the model cannot be loaded", async () => {
    const start = InferenceClient.start(init({ modelDir: "/nonexistent" }), log, () => undefined);
    await expect(start).rejects.toBeInstanceOf(LayercacheError);
    await expect(start).rejects.toMatchObject({ code: "MANIFEST_INVALID" });
  });
});
