/**
 * The segmented backbone against its own reference: the whole network as one
 * ONNX file, on real Fashion-MNIST test images.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { SegmentedBackbone } from "../../src/model/backbone.ts";
import type { Manifest } from "../../src/model/manifest.ts";
import { buildSpan, gridPooling } from "../../src/model/spans.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { MODEL_DIR, argmax, testSplit } from "../helpers/model.ts";

const { ModelProto } = onnxProto.onnx;

/** The segment files and the weights file of the bundled model, as the span builder reads them. */
async function modelFiles(manifest: Manifest): Promise<{ segments: Uint8Array[]; weights: Uint8Array }> {
  return {
    segments: await Promise.all(manifest.segments.map((s) => readFile(join(MODEL_DIR, s.file)))),
    weights: await readFile(join(MODEL_DIR, manifest.weights!)),
  };
}

describe("SegmentedBackbone", () => {
  let model: SegmentedBackbone;
  let pre: Preprocessor;

  beforeAll(async () => {
    model = await SegmentedBackbone.load(MODEL_DIR, { intraOpThreads: 2 });
    pre = new Preprocessor(model.manifest.input);
  });
  afterAll(async () => model?.close());

  it("chains all segments to the full model's logits within 1e-4 on 256 test images", async () => {
    const data = await testSplit();
    const n = 256;
    const x = pre.normalise(data.images.subarray(0, n * pre.frameSize), n);
    const { result, features } = await model.runSegments(0, model.segmentCount, x, n);
    const full = await model.runFull(x, n);
    expect(result.logits).toHaveLength(n * model.manifest.classes.length);
    let worst = 0;
    for (let i = 0; i < full.length; i++) worst = Math.max(worst, Math.abs(full[i]! - result.logits![i]!));
    expect(worst).toBeLessThan(1e-4);
    // Every exit point on the way handed out its pooled features.
    expect([...features.keys()]).toEqual(model.manifest.exits.map((e) => e.index));
    for (const e of model.manifest.exits) expect(features.get(e.index)).toHaveLength(n * e.size);
  });

  it("runs a prefix and the matching suffix to the same logits as the whole chain", async () => {
    const data = await testSplit();
    const n = 8;
    const x = pre.normalise(data.images.subarray(0, n * pre.frameSize), n);
    const whole = await model.runSegments(0, model.segmentCount, x, n);
    const prefix = await model.runSegments(0, 3, x, n);
    const suffix = await model.runSegments(3, model.segmentCount, prefix.result.activation!, n);
    expect(Array.from(suffix.result.logits!)).toEqual(Array.from(whole.result.logits!));
  });

  it("fuses segments into spans that give the chain's activations, features and logits", async () => {
    const data = await testSplit();
    const n = 16;
    const x = pre.normalise(data.images.subarray(0, n * pre.frameSize), n);
    const chain = await model.runSegments(0, model.segmentCount, x, n);
    const last = model.segmentCount - 1;
    // Cut after segments 0 and 3, as the engine does when exits 0 and 3 are open.
    const a = await model.runSpan({ first: 0, last: 0 }, x, n);
    const b = await model.runSpan({ first: 1, last: 3 }, a.activation!, n);
    const c = await model.runSpan({ first: 4, last }, b.activation!, n);
    expect(a.logits).toBeUndefined();
    expect(b.activation).toHaveLength(n * 64 * 14 * 14);
    const worst = (p: Float32Array, q: Float32Array) =>
      p.reduce((w, v, i) => Math.max(w, Math.abs(v - q[i]!)), 0);
    expect(worst(c.logits!, chain.result.logits!)).toBeLessThan(1e-4);
    // Each span hands out the features of exactly the exits inside it.
    expect([...a.features.keys()]).toEqual([0]);
    expect([...b.features.keys()]).toEqual([1, 2, 3]);
    expect([...c.features.keys()]).toEqual([4, 5, 6]);
    for (const span of [a, b, c]) {
      for (const [exit, f] of span.features) expect(worst(f, chain.features.get(exit)!)).toBeLessThan(1e-5);
    }
  });

  it("loads without its segment sessions when asked, and still builds and runs spans", async () => {
    const light = await SegmentedBackbone.load(MODEL_DIR, {
      intraOpThreads: 1,
      loadFull: false,
      loadSegments: false,
    });
    try {
      expect(light.segmentCount).toBe(model.segmentCount);
      await expect(light.runSegment(0, new Float32Array(784), 1)).rejects.toThrow(/not loaded/);
      const x = pre.normalise((await testSplit()).images.subarray(0, 4 * pre.frameSize), 4);
      const [ours, theirs] = await Promise.all([
        light.runSpan({ first: 0, last: 0 }, x, 4),
        model.runSpan({ first: 0, last: 0 }, x, 4),
      ]);
      expect(Array.from(ours.features.get(0)!)).toEqual(Array.from(theirs.features.get(0)!));
    } finally {
      await light.close();
    }
  });

  it("builds span sessions ahead of use, and leaves a span that cannot be built to fail when it runs", async () => {
    // A range no manifest has: preparing it resolves (nothing to wait for), running it rejects.
    await expect(
      model.prepareSpans([
        { first: 0, last: 1 },
        { first: 2, last: 99 },
      ]),
    ).resolves.toBeUndefined();
    const x = new Float32Array(784);
    const prepared = await model.runSpan({ first: 0, last: 1 }, x, 1);
    expect(prepared.activation).toBeDefined();
    await expect(model.runSpan({ first: 2, last: 99 }, new Float32Array(1), 1)).rejects.toThrow(/no span/);
  });

  it("runs a tail graph on the features of the exit a span ends at, in the span's own call", async () => {
    // The tail: y = x * w, with w fed on each run.
    const size = model.manifest.exits[1]!.size;
    const info = (name: string, dims: (number | string)[]) => ({
      name,
      type: {
        tensorType: {
          elemType: onnxProto.onnx.TensorProto.DataType.FLOAT,
          shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
    const tailGraph = (input: string) =>
      ModelProto.encode(
        ModelProto.create({
          irVersion: 8,
          opsetImport: [{ domain: "", version: 13 }],
          graph: {
            name: "scale",
            node: [{ opType: "Mul", name: "mul", input: [input, "w"], output: ["y"] }],
            input: [info(input, ["n", size]), info("w", [size])],
            output: [info("y", ["n", size])],
          },
        }),
      ).finish();
    const n = 3;
    const x = pre.normalise((await testSplit()).images.subarray(0, n * pre.frameSize), n);
    const w = Float32Array.from({ length: size }, (_, i) => (i % 7) - 3);
    const feeds = { w: new ort.Tensor("float32", w, [size]) };
    const tail = { key: "scale", graph: () => tailGraph("x") };
    const plain = await model.runSpan({ first: 0, last: 1 }, x, n);
    const withTail = await model.runSpan({ first: 0, last: 1, tail }, x, n, feeds);
    const features = plain.features.get(1)!;
    expect(Array.from(withTail.features.get(1)!)).toEqual(Array.from(features));
    expect(Array.from(withTail.activation!)).toEqual(Array.from(plain.activation!));
    expect(Array.from(withTail.tail.y!)).toEqual(
      Array.from(features, (v, i) => Math.fround(v * w[i % size]!)),
    );
    expect(plain.tail).toEqual({});
    // A tail needs an exit at the span's end and an input named x to feed.
    const last = model.segmentCount - 1;
    await expect(model.runSpan({ first: 2, last, tail }, new Float32Array(1), 1)).rejects.toThrow(
      /end at no exit/,
    );
    const { segments, weights } = await modelFiles(model.manifest);
    const noX = { key: "no-x", graph: () => tailGraph("features") };
    expect(() => buildSpan(model.manifest, segments, weights, { first: 0, last: 1, tail: noX })).toThrow(
      /no input named "x"/,
    );
  });

  it("pools a span's exit features in a handful of nodes instead of the exporter's sliced ones", async () => {
    const { segments, weights } = await modelFiles(model.manifest);
    const fused = ModelProto.decode(buildSpan(model.manifest, segments, weights, { first: 0, last: 2 }));
    const ops = (fused.graph?.node ?? []).map((n) => n.opType);
    // Segment files pool their quadrants with Slice/ReduceMean chains; the span does not carry them over.
    const sliced = ModelProto.decode(segments[1]!).graph!.node!.filter((n) => n.opType === "Slice");
    expect(sliced.length).toBeGreaterThan(0);
    expect(ops.filter((op) => op === "Slice" || op === "ReduceMean")).toEqual([]);
    expect(ops.filter((op) => op === "AveragePool")).toHaveLength(3);
    expect(ops.filter((op) => op === "GlobalAveragePool")).toHaveLength(3);
  });

  it("pools exit 0 over a 7x7 grid of equal cells and the other exits over adaptive quadrants", () => {
    const [first, second] = model.manifest.exits;
    expect(first).toMatchObject({ pooling: "global-average+7x7-average", size: 32 * 50 });
    expect(gridPooling(first!)).toEqual({ kernel: [4, 4], strides: [4, 4] });
    expect(second).toMatchObject({ pooling: "global-average+2x2-average", size: 32 * 5 });
    // Quadrants of an odd side overlap in the middle row, as adaptive pooling takes them.
    const pooling = "global-average+2x2-average";
    expect(gridPooling({ pooling, activation: [128, 7, 7] })).toEqual({ kernel: [4, 4], strides: [3, 3] });
    // A finer grid must cut the activation into equal cells; other poolings are not rebuilt.
    expect(gridPooling({ pooling: "global-average+4x4-average", activation: [64, 14, 14] })).toBeNull();
    expect(gridPooling({ pooling: "global-average+7x7-average", activation: [64, 14, 14] })).not.toBeNull();
    expect(gridPooling({ pooling: "global-max", activation: [64, 14, 14] })).toBeNull();
    expect(gridPooling({ pooling: "global-average+2x3-average", activation: [64, 14, 14] })).toBeNull();
  });

  it("reproduces the manifest's test accuracy over all 10,000 test images", async () => {
    const data = await testSplit();
    const batch = 500;
    const classes = model.manifest.classes.length;
    let correct = 0;
    for (let start = 0; start < data.count; start += batch) {
      const n = Math.min(batch, data.count - start);
      const x = pre.normalise(data.images.subarray(start * pre.frameSize, (start + n) * pre.frameSize), n);
      const logits = await model.runFull(x, n);
      for (let i = 0; i < n; i++)
        if (argmax(logits, i * classes, classes) === data.labels[start + i]) correct++;
    }
    expect(data.count).toBe(10_000);
    // The manifest figure comes from PyTorch; onnxruntime sums in another order,
    // so a frame whose top two logits tie within float error may flip: allow 2.
    expect(Math.abs(correct - Math.round(model.manifest.testAccuracy * data.count))).toBeLessThanOrEqual(2);
  }, 300_000);
});
