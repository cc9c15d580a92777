/**
 * Fitting a decoded frame to the model input. A frame's pixels are row-major
 * with channels interleaved (RAW8 layout); the model takes C x H x W planar
 * uint8 pixels, which `Preprocessor` then normalises. Rules:
 *
 * 1. Channels. RGB or RGBA to grayscale uses ITU-R BT.601 luma,
 *    Y = 0.299 R + 0.587 G + 0.114 B rounded to nearest (alpha ignored), so a
 *    gray pixel (R = G = B) keeps its value. Grayscale to RGB replicates the
 *    plane; RGBA to RGB drops alpha; a missing alpha is opaque (255).
 * 2. Size. Each axis is scaled on its own to the model's size (aspect ratio is
 *    not kept; producers should send the model's aspect). Shrinking averages
 *    the covered source area (exact box filter for integer factors);
 *    enlarging is bilinear with pixel centres aligned (half-pixel offset).
 *    Results are rounded to nearest. Either way, an axis may change by at
 *    most a factor of 8: beyond that the frame is rejected as bad-dimensions
 *    rather than classified from a meaningless thumbnail or blow-up.
 *
 * Channels are converted before resizing, the way the producer's image would
 * look in the model's colour space.
 */
import { LayercacheError } from "../errors/index.ts";
import { frameInvalid } from "./envelope.ts";

export const MAX_SCALE_FACTOR = 8;
/** Largest accepted frame width or height, whatever the model. */
export const MAX_DIMENSION = 4096;
export const FRAME_CHANNELS: readonly number[] = [1, 3, 4];

export interface ModelInputShape {
  channels: number;
  height: number;
  width: number;
}

/** The part of a decoded Frame adaptation looks at. */
export interface FrameImage {
  width: number;
  height: number;
  channels: number;
  /** height x width x channels bytes, row-major, channels interleaved. */
  pixels: Uint8Array;
}

/** BT.601 luma in integer arithmetic: weights sum to exactly 1000, so gray stays gray. */
export function luma(r: number, g: number, b: number): number {
  return Math.floor((299 * r + 587 * g + 114 * b + 500) / 1000);
}

/** Re-interleaves `src` (from channels) into `to` channels with the rules above. */
export function convertInterleaved(src: Uint8Array, from: number, to: number): Uint8Array {
  if (from === to) return src;
  const n = src.length / from;
  const out = new Uint8Array(n * to);
  for (let i = 0; i < n; i++) {
    const s = i * from;
    const [r, g, b] = from === 1 ? [src[s]!, src[s]!, src[s]!] : [src[s]!, src[s + 1]!, src[s + 2]!];
    const d = i * to;
    if (to === 1) {
      out[d] = from === 1 ? r : luma(r, g, b);
      continue;
    }
    out[d] = r;
    out[d + 1] = g;
    out[d + 2] = b;
    if (to === 4) out[d + 3] = from === 4 ? src[s + 3]! : 255;
  }
  return out;
}

/** Model input: exactly channels x height x width planar pixels. Throws FRAME_INVALID bad-dimensions. */
export function frameToModelInput(frame: FrameImage, input: ModelInputShape): Uint8Array {
  checkModelChannels(input.channels);
  checkFrameShape(frame);
  checkPixelCount(frame);
  checkScale(frame, input);
  const size = input.height * input.width;
  const out = new Uint8Array(input.channels * size);
  // Replicated gray planes are one array: resize it once.
  const resized = new Map<Uint8Array, Uint8Array>();
  toPlanes(frame, input.channels).forEach((plane, c) => {
    let r = resized.get(plane);
    if (!r) {
      r = resizePlane(plane, frame.width, frame.height, input.width, input.height);
      resized.set(plane, r);
    }
    out.set(r, c * size);
  });
  return out;
}

/** Width and height in 1..MAX_DIMENSION, channels 1 (gray), 3 (RGB) or 4 (RGBA). */
export function checkFrameShape(frame: Omit<FrameImage, "pixels">): void {
  const { width, height, channels } = frame;
  const side = (n: number) => Number.isInteger(n) && n >= 1 && n <= MAX_DIMENSION;
  if (!side(width) || !side(height) || !FRAME_CHANNELS.includes(channels)) {
    throw frameInvalid(
      "bad-dimensions",
      `frame is ${width}x${height} with ${channels} channels; sides must be 1-${MAX_DIMENSION} ` +
        `and channels 1, 3 or 4`,
      { width, height, channels },
    );
  }
}

/**
 * RAW8 pixels must be exactly width x height x channels bytes: fewer is
 * truncated-pixels, more means the dimensions do not describe the payload.
 */
export function checkPixelCount(frame: FrameImage): void {
  const expected = frame.width * frame.height * frame.channels;
  if (frame.pixels.length === expected) return;
  const details = { expected, actual: frame.pixels.length };
  const dims = `${frame.width}x${frame.height}x${frame.channels}`;
  throw frame.pixels.length < expected
    ? frameInvalid("truncated-pixels", `${dims} frame has only ${frame.pixels.length} pixel bytes`, details)
    : frameInvalid(
        "bad-dimensions",
        `${dims} frame has ${frame.pixels.length} pixel bytes, more than ${expected}`,
        details,
      );
}

/** One source-resolution plane per model channel, converted by the channel rules. */
function toPlanes(frame: FrameImage, channels: number): Uint8Array[] {
  if (frame.channels === 1) {
    const gray = Array.from({ length: Math.min(channels, 3) }, () => frame.pixels);
    return channels === 4 ? [...gray, new Uint8Array(frame.pixels.length).fill(255)] : gray;
  }
  const converted = convertInterleaved(frame.pixels, frame.channels, channels);
  return Array.from({ length: channels }, (_, c) => extractPlane(converted, channels, c));
}

function checkModelChannels(channels: number): void {
  if (channels !== 1 && channels !== 3 && channels !== 4) {
    // The manifest describes a model this codec cannot feed: not the frame's fault.
    throw new LayercacheError("MANIFEST_INVALID", `model input with ${channels} channels is not supported`);
  }
}

function checkScale(frame: FrameImage, input: ModelInputShape): void {
  const fits = (src: number, dst: number) => src * MAX_SCALE_FACTOR >= dst && src <= dst * MAX_SCALE_FACTOR;
  if (!fits(frame.width, input.width) || !fits(frame.height, input.height)) {
    throw frameInvalid(
      "bad-dimensions",
      `a ${frame.width}x${frame.height} frame cannot be scaled to the model's ` +
        `${input.width}x${input.height}: more than a factor of ${MAX_SCALE_FACTOR}`,
      { width: frame.width, height: frame.height },
    );
  }
}

function extractPlane(src: Uint8Array, channels: number, c: number): Uint8Array {
  if (channels === 1) return src;
  const n = src.length / channels;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = src[i * channels + c]!;
  return out;
}

/** Source taps of one output pixel along one axis: indices `first`.. with `weights` summing to 1. */
interface Taps {
  first: number;
  weights: number[];
}

/** Area (box) weights when shrinking: each output pixel averages the source interval it covers. */
function areaTaps(src: number, dst: number): Taps[] {
  const scale = src / dst;
  return Array.from({ length: dst }, (_, i) => {
    const start = i * scale;
    const end = Math.min((i + 1) * scale, src);
    const first = Math.floor(start);
    const weights: number[] = [];
    for (let j = first; j < end && j < src; j++) {
      weights.push((Math.min(end, j + 1) - Math.max(start, j)) / scale);
    }
    return { first, weights };
  });
}

/** Bilinear weights when enlarging, sampling at pixel centres and clamping at the borders. */
function bilinearTaps(src: number, dst: number): Taps[] {
  return Array.from({ length: dst }, (_, i) => {
    const pos = Math.min(Math.max(((i + 0.5) * src) / dst - 0.5, 0), src - 1);
    const first = Math.floor(pos);
    const frac = pos - first;
    return { first, weights: frac === 0 ? [1] : [1 - frac, frac] };
  });
}

function taps(src: number, dst: number): Taps[] {
  if (src > dst) return areaTaps(src, dst);
  if (src < dst) return bilinearTaps(src, dst);
  return Array.from({ length: dst }, (_, i) => ({ first: i, weights: [1] }));
}

/** Separable resize of one 8-bit plane: along x into floats, then along y with rounding. */
export function resizePlane(
  src: Uint8Array,
  srcWidth: number,
  srcHeight: number,
  dstWidth: number,
  dstHeight: number,
): Uint8Array {
  if (srcWidth === dstWidth && srcHeight === dstHeight) return src;
  const xs = taps(srcWidth, dstWidth);
  const ys = taps(srcHeight, dstHeight);
  const rows = new Float64Array(srcHeight * dstWidth);
  for (let y = 0; y < srcHeight; y++) {
    for (let x = 0; x < dstWidth; x++) {
      const { first, weights } = xs[x]!;
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += weights[k]! * src[y * srcWidth + first + k]!;
      rows[y * dstWidth + x] = sum;
    }
  }
  const out = new Uint8Array(dstHeight * dstWidth);
  for (let y = 0; y < dstHeight; y++) {
    const { first, weights } = ys[y]!;
    for (let x = 0; x < dstWidth; x++) {
      let sum = 0;
      for (let k = 0; k < weights.length; k++) sum += weights[k]! * rows[(first + k) * dstWidth + x]!;
      out[y * dstWidth + x] = Math.min(255, Math.max(0, Math.round(sum)));
    }
  }
  return out;
}
