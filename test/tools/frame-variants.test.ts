/**
 * Variants that make a stream longer than its data set: the flips and
 * shifts themselves, the variant each pass gives an image, a source shown
 * several times, and one that learns from some images and is measured on
 * the others.
 */
import { describe, expect, it } from "vitest";
import type { FrameSource, SourceImage } from "../../src/tools/frame-source.ts";
import { FASHION_MNIST, openFrameSource } from "../../src/tools/frame-source.ts";
import {
  learnThenUnseen,
  MAX_PASSES,
  passVariant,
  VARIANTS,
  variantPixels,
  withVariants,
} from "../../src/tools/frame-variants.ts";

const W = 6;
const H = 5;
/** Every pixel distinct and non-zero, so any move shows. */
const image = Uint8Array.from({ length: W * H }, (_, i) => i + 1);
const at = (pixels: Uint8Array, x: number, y: number) => pixels[y * W + x]!;

/** Where variant v put the pixel that was at (x, y): found by its value. */
function whereIs(pixels: Uint8Array, x: number, y: number): [number, number] | undefined {
  const i = pixels.indexOf(at(image, x, y));
  return i < 0 ? undefined : [i % W, Math.floor(i / W)];
}

describe("variantPixels", () => {
  it("variant 0 is the image unchanged", () => {
    expect([...variantPixels(image, W, H, 0)]).toEqual([...image]);
  });

  it("gives VARIANTS different images, each a flip and a shift of at most 2 pixels each way", () => {
    const seen = new Set<string>();
    for (let v = 0; v < VARIANTS; v++) {
      const out = variantPixels(image, W, H, v);
      seen.add(out.join(","));
      // The centre pixel is never shifted out: find it and read the move.
      const [x, y] = whereIs(out, 2, 2)!;
      const flipped = whereIs(out, 3, 2)?.[0] === x - 1 || whereIs(out, 1, 2)?.[0] === x + 1;
      const dx = flipped ? x - (W - 1 - 2) : x - 2;
      const dy = y - 2;
      expect(Math.abs(dx)).toBeLessThanOrEqual(2);
      expect(Math.abs(dy)).toBeLessThanOrEqual(2);
      // Every pixel moved the same way; what came in from outside is zero.
      for (let yy = 0; yy < H; yy++)
        for (let xx = 0; xx < W; xx++) {
          const sx = flipped ? W - 1 - (xx - dx) : xx - dx;
          const sy = yy - dy;
          const inside = sx >= 0 && sx < W && sy >= 0 && sy < H;
          expect(at(out, xx, yy)).toBe(inside ? at(image, sx, sy) : 0);
        }
    }
    expect(seen.size).toBe(VARIANTS);
    expect(VARIANTS).toBe(50);
  });

  it("writes into the array it is given", () => {
    const out = new Uint8Array(W * H);
    expect(variantPixels(image, W, H, 7, out)).toBe(out);
    expect(out.some((p) => p !== 0)).toBe(true);
  });

  it("rejects a variant out of range and pixels of the wrong size", () => {
    expect(() => variantPixels(image, W, H, VARIANTS)).toThrow(RangeError);
    expect(() => variantPixels(image, W, H, -1)).toThrow(RangeError);
    expect(() => variantPixels(image, W, H + 1, 1)).toThrow(RangeError);
  });
});

describe("passVariant", () => {
  it("never gives an image as it is, nor the same variant twice within MAX_PASSES passes", () => {
    for (const seed of [1, 2, 99]) {
      for (let img = 0; img < 200; img++) {
        const variants = Array.from({ length: MAX_PASSES }, (_, p) => passVariant(img, p, seed));
        expect(new Set(variants).size).toBe(MAX_PASSES);
        expect(variants.every((v) => v >= 1 && v < VARIANTS)).toBe(true);
      }
    }
    expect(() => passVariant(0, MAX_PASSES, 1)).toThrow(RangeError);
  });

  it("differs between images and between seeds, and repeats for the same ones", () => {
    const pass0 = (seed: number) => Array.from({ length: 100 }, (_, img) => passVariant(img, 0, seed));
    expect(new Set(pass0(1)).size).toBeGreaterThan(30);
    expect(pass0(1)).toEqual(pass0(1));
    expect(pass0(1)).not.toEqual(pass0(2));
  });
});

describe("withVariants", () => {
  it("shows the Fashion-MNIST split pass after pass, every frame a variant, labels kept", async () => {
    const split = await openFrameSource(FASHION_MNIST);
    const three = withVariants(split, 3, 5);
    expect(three.size).toBe(3 * split.size);
    expect(three.description).toMatch(/3 passes/);
    for (const i of [0, 1234, split.size - 1]) {
      const passes = [0, 1, 2].map((pass) => three.image(pass * split.size + i));
      passes.forEach((v, pass) => {
        expect(v.label).toBe(split.image(i).label);
        expect([...v.pixels]).toEqual([
          ...variantPixels(split.image(i).pixels, 28, 28, passVariant(i, pass, 5)),
        ]);
        expect([...v.pixels]).not.toEqual([...split.image(i).pixels]);
      });
      expect(new Set(passes.map((v) => v.pixels.join(","))).size).toBe(3);
    }
    expect(withVariants(split, 1, 5)).toBe(split);
  });

  it("refuses encoded or colour images and a pass count out of range", () => {
    const encoded: SourceImage = { width: 2, height: 2, channels: 1, encoding: "PNG", pixels: new Uint8Array(8), label: null };
    const source: FrameSource = { description: "two files", size: 2, image: () => encoded };
    expect(withVariants(source, 1, 1).image(1)).toBe(encoded);
    expect(() => withVariants(source, 2, 1).image(0)).toThrow(/gray RAW8/);
    expect(() => withVariants(source, 0, 1)).toThrow(/passes 0/);
    expect(() => withVariants(source, MAX_PASSES + 1, 1)).toThrow(/passes/);
  });
});

describe("learnThenUnseen", () => {
  /**
   * Ten gray 7x7 images labelled 0-9: image i is i + 1 at the centre and 200
   * just right of it, so that every flip and shift of it differs and none
   * leaves the frame.
   */
  const tiny: FrameSource = {
    description: "ten tiny images",
    size: 10,
    image: (i) => ({
      width: 7,
      height: 7,
      channels: 1,
      encoding: "RAW8",
      pixels: Uint8Array.from({ length: 49 }, (_, p) => (p === 24 ? i + 1 : p === 25 ? 200 : 0)),
      label: i,
    }),
  };

  it("learns from variants of some images only, then measures variants of the others", () => {
    const stream = learnThenUnseen(tiny, 25, 4, 3);
    expect(stream.size).toBe(29);
    const labels = Array.from({ length: stream.size }, (_, i) => stream.image(i).label!);
    const learned = new Set(labels.slice(0, 25));
    const measured = labels.slice(25);
    expect(learned.size).toBe(6);
    expect(new Set(measured).size).toBe(4);
    expect(measured.some((l) => learned.has(l))).toBe(false);
    // Pass after pass over the six: each seen 4 or 5 times, every time as another variant.
    for (const l of learned) {
      const seen = labels.slice(0, 25).flatMap((x, i) => (x === l ? [stream.image(i).pixels.join()] : []));
      expect(seen.length).toBeGreaterThanOrEqual(4);
      expect(new Set(seen).size).toBe(seen.length);
    }
    // The image itself never shows: every frame is flipped or shifted.
    for (let i = 0; i < stream.size; i++) {
      const { pixels, label } = stream.image(i);
      expect(pixels.join()).not.toBe(tiny.image(label!).pixels.join());
    }
    expect(learnThenUnseen(tiny, 25, 4, 3).image(27)).toEqual(stream.image(27));
  });

  it("refuses to measure every image, or to learn for more passes than there are variants", () => {
    expect(() => learnThenUnseen(tiny, 10, 10, 1)).toThrow(/unseen frames/);
    expect(() => learnThenUnseen(tiny, 10, 0, 1)).toThrow(/unseen frames/);
    expect(() => learnThenUnseen(tiny, 6 * MAX_PASSES + 1, 4, 1)).toThrow(/passes/);
    expect(learnThenUnseen(tiny, 6 * MAX_PASSES, 4, 1).size).toBe(6 * MAX_PASSES + 4);
  });
});
