/**
 * Image files as frames: reads the width, height and colour type from a PNG
 * or JPEG header (the frame must declare them), and the optional label a file
 * name may carry.
 *
 * Label convention: a name ending in `_label<N>` before the extension, such
 * as `boot_label9.png` or `0042_label3.jpg`, carries class index N; any other
 * name carries no label.
 */
import { LayercacheError } from "../errors/index.ts";

export type ImageEncoding = "PNG" | "JPEG";

export interface ImageHeader {
  encoding: ImageEncoding;
  width: number;
  height: number;
  /** Channels the frame keeps after decoding: 1 for gray images, 3 for colour ones (alpha dropped). */
  channels: 1 | 3;
}

/** File extensions read as images, lower case. */
export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"] as const;

const LABEL_PATTERN = /_label(\d{1,9})\.[A-Za-z]+$/;

/** The class index a file name carries by the convention above, or null. */
export function labelFromFileName(name: string): number | null {
  const m = LABEL_PATTERN.exec(name);
  return m ? Number(m[1]) : null;
}

export function isImageFileName(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((ext) => lower.endsWith(ext));
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** What the file's header says; throws FRAME_INVALID naming `where` if it is neither PNG nor baseline/progressive JPEG. */
export function readImageHeader(bytes: Uint8Array, where: string): ImageHeader {
  if (PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return pngHeader(bytes, where);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return jpegHeader(bytes, where);
  throw bad(where, "not a PNG or JPEG file");
}

function pngHeader(bytes: Uint8Array, where: string): ImageHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ihdr = String.fromCharCode(...bytes.subarray(12, 16));
  if (bytes.length < 26 || ihdr !== "IHDR") throw bad(where, "PNG file without an IHDR header");
  const colourType = bytes[25]!;
  // 0 gray, 4 gray + alpha; 2 RGB, 3 palette, 6 RGBA.
  if (![0, 2, 3, 4, 6].includes(colourType)) throw bad(where, `PNG colour type ${colourType} is invalid`);
  return {
    encoding: "PNG",
    width: view.getUint32(16, false),
    height: view.getUint32(20, false),
    channels: colourType === 0 || colourType === 4 ? 1 : 3,
  };
}

/** Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic). */
const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

function jpegHeader(bytes: Uint8Array, where: string): ImageHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) throw bad(where, "JPEG file with a damaged marker sequence");
    const marker = bytes[at + 1]!;
    // Fill bytes and markers without a length.
    if (marker === 0xff) {
      at += 1;
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      at += 2;
      continue;
    }
    const length = view.getUint16(at + 2, false);
    if (SOF_MARKERS.has(marker)) {
      if (at + 10 > bytes.length) break;
      const components = bytes[at + 9]!;
      if (components !== 1 && components !== 3) {
        throw bad(where, `JPEG with ${components} colour components (only gray and YCbCr/RGB are read)`);
      }
      return {
        encoding: "JPEG",
        height: view.getUint16(at + 5, false),
        width: view.getUint16(at + 7, false),
        channels: components,
      };
    }
    if (marker === 0xda || length < 2) break;
    at += 2 + length;
  }
  throw bad(where, "JPEG file without a frame header");
}

const bad = (where: string, why: string) =>
  new LayercacheError("FRAME_INVALID", `${where}: ${why}`, { details: { file: where } });
