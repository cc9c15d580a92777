/**
 * PNG and JPEG payloads to RAW8 pixels, with pure-JS decoders (pngjs,
 * jpeg-js) so the worker image needs no native libraries.
 *
 * The frame's declared width and height must match the image's own (else
 * bad-dimensions): they were already checked against MAX_DIMENSION and the
 * byte limit, so checking the image header against them first bounds the
 * work a small compressed message can cause. The declared channels say what
 * to keep from the decoded colour image: 1 = BT.601 luma (exact for gray
 * images), 3 = RGB, 4 = RGBA (opaque for JPEG).
 */
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { MAX_DIMENSION, convertInterleaved } from "./adapt.ts";
import { frameInvalid } from "./envelope.ts";

export interface DeclaredShape {
  width: number;
  height: number;
  channels: number;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
// jpeg-js allocates per component beyond the output: bound it well above what MAX_DIMENSION needs.
const JPEG_MAX_MEMORY_MB = 512;

export function decodeImage(
  encoding: "PNG" | "JPEG",
  bytes: Uint8Array,
  declared: DeclaredShape,
): Uint8Array {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return encoding === "PNG" ? decodePng(buf, declared) : decodeJpeg(buf, declared);
}

function decodePng(buf: Buffer, declared: DeclaredShape): Uint8Array {
  // The IHDR chunk must come first: signature (8), length (4), "IHDR" (4), width, height.
  if (
    buf.length < 24 ||
    !buf.subarray(0, 8).equals(PNG_SIGNATURE) ||
    buf.toString("latin1", 12, 16) !== "IHDR"
  ) {
    throw frameInvalid("image-decode-failed", "PNG payload has no PNG signature and header");
  }
  checkSize("PNG", buf.readUInt32BE(16), buf.readUInt32BE(20), declared);
  let png: PNG;
  try {
    // Always 8-bit RGBA out: palettes, gray and 16-bit samples are expanded or rescaled.
    png = PNG.sync.read(buf);
  } catch (err) {
    throw frameInvalid("image-decode-failed", `PNG payload does not decode: ${describe(err)}`);
  }
  checkSize("PNG", png.width, png.height, declared);
  return convertInterleaved(
    new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length),
    4,
    declared.channels,
  );
}

function decodeJpeg(buf: Buffer, declared: DeclaredShape): Uint8Array {
  let image: { width: number; height: number; data: Uint8Array };
  try {
    image = jpeg.decode(buf, {
      useTArray: true,
      formatAsRGBA: false,
      // Reject damaged scans instead of returning partly gray images.
      tolerantDecoding: false,
      maxResolutionInMP: (MAX_DIMENSION * MAX_DIMENSION) / 1e6,
      maxMemoryUsageInMB: JPEG_MAX_MEMORY_MB,
    });
  } catch (err) {
    throw frameInvalid("image-decode-failed", `JPEG payload does not decode: ${describe(err)}`);
  }
  checkSize("JPEG", image.width, image.height, declared);
  if (image.data.length !== image.width * image.height * 3) {
    throw frameInvalid("image-decode-failed", "JPEG decoder returned an unexpected pixel count");
  }
  return convertInterleaved(image.data, 3, declared.channels);
}

function checkSize(kind: string, width: number, height: number, declared: DeclaredShape): void {
  if (width !== declared.width || height !== declared.height) {
    throw frameInvalid(
      "bad-dimensions",
      `${kind} image is ${width}x${height} but the frame declares ${declared.width}x${declared.height}`,
      { width, height },
    );
  }
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));
