import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { parseIdx } from "../../src/model/idx.ts";
import { Preprocessor } from "../../src/model/preprocess.ts";
import { testSplit } from "../helpers/model.ts";
import { thrownBy } from "../helpers/errors.ts";

const idx = (dims: number[], data: number[]) => {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(0x00000800 | dims.length, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, Buffer.from(data)]);
};

describe("IDX reader", () => {
  it("reads the bundled test split: 10,000 28x28 images with labels 0-9", async () => {
    const d = await testSplit();
    expect([d.count, d.height, d.width]).toEqual([10_000, 28, 28]);
    expect(d.images).toHaveLength(10_000 * 784);
    expect(new Set(d.labels)).toEqual(new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    // Fashion-MNIST's test split is balanced: 1,000 of each class.
    expect(d.labels.filter((l) => l === 9)).toHaveLength(1000);
  });

  it("reads plain and gzipped files alike", () => {
    const raw = idx([2, 3], [1, 2, 3, 4, 5, 6]);
    for (const bytes of [raw, gzipSync(raw)]) {
      const a = parseIdx(bytes);
      expect(a.dims).toEqual([2, 3]);
      expect(Array.from(a.data)).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });

  it("rejects bad magic, other element types and truncated data", () => {
    const raw = idx([2, 3], [1, 2, 3, 4, 5, 6]);
    const reasons = [
      Buffer.from([1, 0, 8, 1]),
      Buffer.from([0, 0, 0x0d, 1, 0, 0, 0, 0]),
      raw.subarray(0, -1),
    ].map((b) => thrownBy(() => parseIdx(b)).message);
    expect(reasons[0]).toMatch(/bad magic/);
    expect(reasons[1]).toMatch(/element type 0xd/);
    expect(reasons[2]).toMatch(/expected 6 data bytes, found 5/);
  });
});

describe("Preprocessor", () => {
  const input = {
    name: "x",
    shape: [1, 2, 2] as [number, number, number],
    dtype: "float32" as const,
    layout: "NCHW" as const,
    normalisation: { scale: 1 / 255, mean: [0.5], std: [0.25] },
  };

  it("maps pixels to (p/255 - mean) / std", () => {
    const out = new Preprocessor(input).normalise(Uint8Array.from([0, 255, 51, 128]), 1);
    const expected = [0, 255, 51, 128].map((p) => (p / 255 - 0.5) / 0.25);
    out.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
  });

  it("refuses a pixel buffer of the wrong size", () => {
    expect(() => new Preprocessor(input).normalise(new Uint8Array(5), 1)).toThrow(/expected 1 x 4 pixels/);
  });
});
