/**
 * From 8-bit pixels to the normalised float32 tensor the manifest describes:
 * x = (pixel * scale - mean[c]) / std[c], channel-major (NCHW).
 */
import { LayercacheError } from "../errors/index.ts";
import type { Manifest } from "./manifest.ts";

export class Preprocessor {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly frameSize: number;
  /** One 256-entry table per channel: normalising becomes a lookup. */
  private readonly tables: Float32Array[];

  constructor(input: Manifest["input"]) {
    [this.channels, this.height, this.width] = input.shape;
    this.frameSize = this.channels * this.height * this.width;
    const { scale, mean, std } = input.normalisation;
    this.tables = Array.from({ length: this.channels }, (_, c) => {
      const m = mean[c] ?? mean[0]!;
      const s = std[c] ?? std[0]!;
      return Float32Array.from({ length: 256 }, (_, v) => (v * scale - m) / s);
    });
  }

  /** Writes `count` frames of planar (CHW) uint8 pixels into `out` (or a new array). */
  normalise(pixels: Uint8Array, count: number, out = new Float32Array(count * this.frameSize)): Float32Array {
    if (pixels.length !== count * this.frameSize) {
      throw new LayercacheError(
        "FRAME_INVALID",
        `expected ${count} x ${this.frameSize} pixels, got ${pixels.length} bytes`,
      );
    }
    const plane = this.height * this.width;
    for (let f = 0; f < count; f++) {
      for (let c = 0; c < this.channels; c++) {
        const table = this.tables[c]!;
        const base = f * this.frameSize + c * plane;
        for (let i = 0; i < plane; i++) out[base + i] = table[pixels[base + i]!]!;
      }
    }
    return out;
  }
}
