/**
 * Longer streams than a data set holds, without exact repeats: variants of
 * 8-bit gray images, flipped left to right or not and shifted by up to two
 * pixels each way with zero fill. That is the augmentation the backbone was
 * trained with (tools/backbone/train.py), so a variant is a frame the
 * backbone reads as well as the original, and, unlike a repeat, one the exact
 * cache cannot answer. A stream of several passes shows every image once a
 * pass, each time as a variant it has not had before (up to VARIANTS - 1
 * passes), and never as it is: every pass is drawn from the same mix of
 * flips and shifts, so the stream does not change character after the first
 * pass (flipped shoes, which the split never shows, would look like a drift
 * to the heads).
 */
import { LayercacheError } from "../errors/index.ts";
import { frameOrder } from "./frame-producer.ts";
import type { FrameSource, SourceImage } from "./frame-source.ts";

/** Largest shift, pixels, each way. */
const MAX_SHIFT = 2;
const SHIFTS = 2 * MAX_SHIFT + 1;
/** Distinct variants of an image, the image itself (variant 0) included: 2 flips x 5 x 5 shifts. */
export const VARIANTS = 2 * SHIFTS * SHIFTS;
/** Most passes of a stream of variants: one per variant other than the image as it is. */
export const MAX_PASSES = VARIANTS - 1;

/**
 * Variant `variant` (0 = the image unchanged) of a `width` x `height` gray
 * image, written to `out` (a new array if omitted).
 */
export function variantPixels(
  pixels: Uint8Array,
  width: number,
  height: number,
  variant: number,
  out = new Uint8Array(width * height),
): Uint8Array {
  if (!Number.isInteger(variant) || variant < 0 || variant >= VARIANTS)
    throw new RangeError(`variant ${variant}: expected 0..${VARIANTS - 1}`);
  if (pixels.length !== width * height || out.length !== width * height)
    throw new RangeError(`expected ${width}x${height} pixels`);
  // Variant 0 must be the identity: flip off, shift (0, 0) in the middle of the ranges.
  const v = (variant + Math.floor((SHIFTS * SHIFTS) / 2)) % VARIANTS;
  const flip = v >= SHIFTS * SHIFTS;
  const dy = Math.floor((v % (SHIFTS * SHIFTS)) / SHIFTS) - MAX_SHIFT;
  const dx = (v % SHIFTS) - MAX_SHIFT;
  for (let y = 0; y < height; y++) {
    const sy = y - dy;
    for (let x = 0; x < width; x++) {
      const sx = flip ? width - 1 - (x - dx) : x - dx;
      out[y * width + x] = sy >= 0 && sy < height && sx >= 0 && sx < width ? pixels[sy * width + sx]! : 0;
    }
  }
  return out;
}

/**
 * The variant image `image` gets in pass `pass` (from 0) of a stream seeded
 * with `seed`: a seeded starting variant per image, then the next one at
 * each pass, never 0 (the image as it is), so no image repeats a variant
 * within VARIANTS - 1 passes.
 */
export function passVariant(image: number, pass: number, seed: number): number {
  if (!Number.isInteger(pass) || pass < 0 || pass >= VARIANTS - 1)
    throw new RangeError(`pass ${pass}: expected 0..${VARIANTS - 2}`);
  return 1 + ((mix(image, seed) + pass) % (VARIANTS - 1));
}

/** A 32-bit integer hash of (a, b) (murmur3's finaliser), non-negative. */
function mix(a: number, b: number): number {
  let h = Math.imul(a ^ Math.imul(b, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * `source` shown `passes` times: index i is a variant of image i % size in
 * pass floor(i / size). One pass is the source as it is. Gray RAW8 images
 * only (the Fashion-MNIST split), since a variant is made from pixels.
 */
export function withVariants(source: FrameSource, passes: number, seed: number): FrameSource {
  if (!Number.isInteger(passes) || passes < 1 || passes > MAX_PASSES)
    throw new LayercacheError("CONFIG_INVALID", `passes ${passes}: expected 1..${MAX_PASSES}`);
  if (passes === 1) return source;
  return {
    description: `${source.description}, ${passes} passes of flipped and shifted variants`,
    size: source.size * passes,
    image: (index: number): SourceImage => {
      const image = index % source.size;
      const original = source.image(image);
      if (original.encoding !== "RAW8" || original.channels !== 1)
        throw new LayercacheError(
          "CONFIG_INVALID",
          `${source.description}: variants need gray RAW8 images, image ${image} is ${original.encoding} with ${original.channels} channel(s)`,
        );
      const variant = passVariant(image, Math.floor(index / source.size), seed);
      return {
        ...original,
        pixels: variantPixels(original.pixels, original.width, original.height, variant),
      };
    },
  };
}

/**
 * A stream that learns from some images and is then measured on others:
 * `learn` frames of variants of the images outside the measured set, pass
 * after pass, then `measure` frames, one variant each of images not shown
 * before. The images are split by a Fisher-Yates shuffle seeded with
 * `seed`; the stream is meant to be sent in its own order.
 */
export function learnThenUnseen(
  source: FrameSource,
  learn: number,
  measure: number,
  seed: number,
): FrameSource {
  if (!Number.isInteger(measure) || measure < 1 || measure >= source.size)
    throw new LayercacheError(
      "CONFIG_INVALID",
      `${measure} unseen frames: expected 1..${source.size - 1}, leaving images of ${source.description} to learn from`,
    );
  const order = frameOrder(source.size, seed);
  const measured = order.subarray(0, measure);
  const learned = order.subarray(measure);
  const passes = Math.ceil(learn / learned.length);
  if (!Number.isInteger(learn) || learn < 0 || passes > MAX_PASSES)
    throw new LayercacheError(
      "CONFIG_INVALID",
      `${learn} frames to learn from ${learned.length} images would take ${passes} passes; at most ${MAX_PASSES}`,
    );
  const variants = withVariants(source, MAX_PASSES, seed);
  return {
    description: `${source.description}: ${learn} frames of variants of ${learned.length} images, then ${measure} of the others`,
    size: learn + measure,
    image: (index: number): SourceImage =>
      index < learn
        ? variants.image(Math.floor(index / learned.length) * source.size + learned[index % learned.length]!)
        : variants.image(measured[index - learn]!),
  };
}
