/**
 * The trainer's calibration evidence against the real Redis: held-out frames
 * go in and come back in order with the backbone's label; a drift alarm's
 * clear deletes them; the stream stays near its cap; entries that are not
 * held-out examples of this model are skipped.
 */
import { describe, expect, it } from "vitest";
import { argmax } from "../../src/cache/head-math.ts";
import { EvidenceLog } from "../../src/state/evidence.ts";
import { encodeExample } from "../../src/state/example-codec.ts";
import { stateKeys } from "../../src/state/keys.ts";
import { LAYOUT, stateSuite, uniqueModel } from "./helpers.ts";

/** Frame `n`: its first feature carries n; its logits make class n % classes the backbone's label. */
function frame(n: number): { features: Float32Array[]; logits: Float32Array } {
  const features = LAYOUT.featureSizes.map((d, e) => {
    const f = Float32Array.from({ length: d }, (_, i) => Math.sin(n + i + e));
    f[0] = n;
    return f;
  });
  const logits = Float32Array.from({ length: LAYOUT.classes }, (_, c) => (c === n % LAYOUT.classes ? 3 : 0));
  return { features, logits };
}

describe("EvidenceLog", () => {
  const suite = stateSuite();
  const { prefix, redis } = suite;

  const log = (modelId: string, maxLength = 10_000) =>
    new EvidenceLog({
      connection: suite.connection,
      prefix,
      modelId,
      layout: LAYOUT,
      producerId: "trainer-1",
      maxLength,
      temperature: 2,
    });

  it("gives a successor every held-out frame, oldest first, with the backbone's label", async () => {
    const evidence = log(uniqueModel());
    for (let n = 0; n < 300; n++) {
      const { features, logits } = frame(n);
      evidence.add(features, logits);
    }
    const { examples, invalid } = await evidence.readAll();
    expect(invalid).toBe(0);
    expect(examples.map((e) => e.features[0]![0])).toEqual(Array.from({ length: 300 }, (_, n) => n));
    for (const [n, e] of examples.entries()) {
      expect(e.kind).toBe("held-out");
      expect(e.features.map((f) => f.length)).toEqual([...LAYOUT.featureSizes]);
      expect(Array.from(e.features[1]!)).toEqual(Array.from(frame(n).features[1]!));
      expect(argmax(e.target, 0, LAYOUT.classes)).toBe(n % LAYOUT.classes);
    }
    await evidence.close();
  });

  it("deletes the evidence when the trainer drops its calibration set (drift alarm)", async () => {
    const modelId = uniqueModel();
    const evidence = log(modelId);
    for (let n = 0; n < 40; n++) evidence.add(frame(n).features, frame(n).logits);
    await evidence.readAll();
    expect(await redis.xlen(stateKeys(prefix, modelId).evidence)).toBe(40);
    evidence.clear();
    expect((await evidence.readAll()).examples).toEqual([]);
    expect(await redis.exists(stateKeys(prefix, modelId).evidence)).toBe(0);
    // Frames after the alarm are kept again.
    evidence.add(frame(7).features, frame(7).logits);
    expect((await evidence.readAll()).examples.map((e) => e.features[0]![0])).toEqual([7]);
    await evidence.close();
  });

  it("stays near its cap", async () => {
    const modelId = uniqueModel();
    const evidence = log(modelId, 100);
    for (let n = 0; n < 1_000; n++) evidence.add(frame(n).features, frame(n).logits);
    const { examples } = await evidence.readAll();
    // "~" trims whole macro nodes: a little over the cap, and always the newest frames.
    expect(examples.length).toBeGreaterThanOrEqual(100);
    expect(examples.length).toBeLessThan(300);
    expect(examples.at(-1)!.features[0]![0]).toBe(999);
    await evidence.close();
  });

  it("skips entries that are not held-out examples of this model", async () => {
    const modelId = uniqueModel();
    const evidence = log(modelId);
    const key = stateKeys(prefix, modelId).evidence;
    evidence.add(frame(1).features, frame(1).logits);
    await evidence.readAll();
    await redis.xadd(key, "*", "e", Buffer.from("not an example"), "p", "someone");
    await redis.xadd(key, "*", "x", "no e field");
    const training = encodeExample(
      { kind: "backbone", features: frame(2).features, target: new Float32Array(LAYOUT.classes).fill(0.25) },
      LAYOUT,
    );
    await redis.xadd(key, "*", "e", training, "p", "someone");
    evidence.add(frame(3).features, frame(3).logits);
    const { examples, invalid } = await evidence.readAll();
    expect(examples.map((e) => e.features[0]![0])).toEqual([1, 3]);
    expect(invalid).toBe(3);
    await evidence.close();
  });
});
