import { describe, expect, it } from "vitest";
import { convertInterleaved, frameToModelInput, luma, resizePlane } from "../../src/codec/adapt.ts";
import type { LayercacheError } from "../../src/errors/index.ts";
import { reasonOf } from "./helpers.ts";

const image = (width: number, height: number, channels: number, pixels: number[] | Uint8Array) => ({
  width,
  height,
  channels,
  pixels: Uint8Array.from(pixels),
});

describe("channel conversion", () => {
  it("maps RGB to BT.601 luma on known values", () => {
    expect(luma(255, 0, 0)).toBe(76); // 76.245
    expect(luma(0, 255, 0)).toBe(150); // 149.685
    expect(luma(0, 0, 255)).toBe(29); // 29.07
    expect(luma(10, 20, 30)).toBe(18); // 18.15
    for (let v = 0; v < 256; v++) expect(luma(v, v, v)).toBe(v);
    const rgb = image(2, 2, 3, [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30]);
    expect(Array.from(frameToModelInput(rgb, { channels: 1, height: 2, width: 2 }))).toEqual([
      76, 150, 29, 18,
    ]);
  });

  it("ignores alpha for luma and replicates gray for an RGB model", () => {
    const rgba = image(2, 1, 4, [255, 0, 0, 0, 10, 20, 30, 255]);
    expect(Array.from(frameToModelInput(rgba, { channels: 1, height: 1, width: 2 }))).toEqual([76, 18]);
    const gray = image(2, 1, 1, [5, 250]);
    expect(Array.from(frameToModelInput(gray, { channels: 3, height: 1, width: 2 }))).toEqual([
      5, 250, 5, 250, 5, 250,
    ]);
    // RGBA to an RGB model: planar, alpha dropped.
    expect(Array.from(frameToModelInput(rgba, { channels: 3, height: 1, width: 2 }))).toEqual([
      255, 10, 0, 20, 0, 30,
    ]);
  });

  it("fills a missing alpha with 255", () => {
    expect(Array.from(convertInterleaved(Uint8Array.from([1, 2, 3]), 3, 4))).toEqual([1, 2, 3, 255]);
    expect(Array.from(convertInterleaved(Uint8Array.from([9]), 1, 4))).toEqual([9, 9, 9, 255]);
  });

  it("refuses a model input it cannot feed as a manifest problem", () => {
    expect(() => frameToModelInput(image(1, 1, 1, [0]), { channels: 2, height: 1, width: 1 })).toThrow(
      expect.objectContaining({ code: "MANIFEST_INVALID" }) as LayercacheError,
    );
  });

  it("re-checks the frame's own shape", () => {
    const model = { channels: 1, height: 2, width: 2 };
    expect(reasonOf(() => frameToModelInput(image(2, 2, 2, new Uint8Array(8)), model))).toBe(
      "bad-dimensions",
    );
    expect(reasonOf(() => frameToModelInput(image(2, 2, 1, [1, 2, 3]), model))).toBe("truncated-pixels");
  });
});

describe("resizing", () => {
  it("averages 2x2 blocks when shrinking 56x56 to 28x28", () => {
    // Each block holds 0/10/20/30 offsets around its own level, so its mean is level + 15.
    const level = (bx: number, by: number) => ((bx + by) % 7) * 30;
    const pixels = Uint8Array.from({ length: 56 * 56 }, (_, i) => {
      const x = i % 56;
      const y = Math.floor(i / 56);
      return (x % 2) * 10 + (y % 2) * 20 + level(x >> 1, y >> 1);
    });
    const out = frameToModelInput(image(56, 56, 1, pixels), { channels: 1, height: 28, width: 28 });
    expect(out).toHaveLength(784);
    out.forEach((v, i) => expect(v).toBe(level(i % 28, Math.floor(i / 28)) + 15));
  });

  it("weights partial pixels by the area they cover for non-integer factors", () => {
    // 3 -> 2: out0 = (1 x 0 + 0.5 x 90) / 1.5, out1 = (0.5 x 90 + 1 x 180) / 1.5.
    expect(Array.from(resizePlane(Uint8Array.from([0, 90, 180]), 3, 1, 2, 1))).toEqual([30, 150]);
  });

  it("keeps a constant image constant when enlarging 14x14 to 28x28", () => {
    for (const v of [0, 1, 77, 254, 255]) {
      const out = frameToModelInput(image(14, 14, 1, new Uint8Array(196).fill(v)), {
        channels: 1,
        height: 28,
        width: 28,
      });
      expect(out).toHaveLength(784);
      expect(out.every((p) => p === v)).toBe(true);
    }
  });

  it("interpolates bilinearly between pixel centres and clamps at the borders", () => {
    expect(Array.from(resizePlane(Uint8Array.from([0, 100]), 2, 1, 4, 1))).toEqual([0, 25, 75, 100]);
  });

  it("scales each axis on its own, shrinking one while enlarging the other", () => {
    // 4x1 -> 2x2: x averages pairs, y replicates the single row.
    expect(Array.from(resizePlane(Uint8Array.from([0, 10, 100, 200]), 4, 1, 2, 2))).toEqual([5, 150, 5, 150]);
  });

  it("returns pixels unchanged when the size already matches", () => {
    const pixels = Uint8Array.from({ length: 784 }, (_, i) => (i * 37) % 256);
    expect(
      Array.from(frameToModelInput(image(28, 28, 1, pixels), { channels: 1, height: 28, width: 28 })),
    ).toEqual(Array.from(pixels));
  });
});
