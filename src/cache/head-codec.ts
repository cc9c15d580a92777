/**
 * Binary format of an exit head, as published to shared state. Little-endian:
 *
 *   offset  size      field
 *   0       4         magic "LCXH" (layercache exit head)
 *   4       2  u16    format version (1)
 *   6       1  u8     kind: 1 = softmax regression, 2 = MLP
 *   7       1  u8     reserved, 0
 *   8       4  u32    input size D
 *   12      4  u32    hidden units H (0 for softmax regression)
 *   16      4  u32    classes C
 *   20      4  u32    parameter count P (redundant with the sizes; checked)
 *   24      8  f64    frames behind the input statistics
 *   32      8·D f64   input mean
 *   32+8D   8·D f64   input variance
 *   32+16D  4·P f32   parameters, in the head's flat layout
 *
 * The statistics stay float64 so a decoded head predicts bit for bit like
 * the encoded one; the optimizer state is deliberately left out (it is large
 * and only the trainer needs it). Decoding trusts nothing: every size, the
 * total length and every number is checked, and problems are STATE_INVALID.
 */
import { LayercacheError } from "../errors/index.ts";
import type { HeadKind, HeadShape, HeadState } from "./head-types.ts";
import { parameterCount, shapeProblem } from "./head-types.ts";

const MAGIC = [0x4c, 0x43, 0x58, 0x48]; // "LCXH"
const VERSION = 1;
const HEADER_BYTES = 32;
const KIND_CODES: Record<HeadKind, number> = { softmax: 1, mlp: 2 };

function encodedLength(shape: HeadShape): number {
  return HEADER_BYTES + 16 * shape.inputSize + 4 * parameterCount(shape);
}

export function encodeHead(shape: HeadShape, state: HeadState): Uint8Array {
  const bytes = new Uint8Array(encodedLength(shape));
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC, 0);
  view.setUint16(4, VERSION, true);
  view.setUint8(6, KIND_CODES[shape.kind]);
  view.setUint32(8, shape.inputSize, true);
  view.setUint32(12, shape.hidden, true);
  view.setUint32(16, shape.classes, true);
  view.setUint32(20, state.parameters.length, true);
  view.setFloat64(24, state.normalizerCount, true);
  let offset = HEADER_BYTES;
  for (const stats of [state.normalizerMean, state.normalizerVariance]) {
    for (const value of stats) {
      view.setFloat64(offset, value, true);
      offset += 8;
    }
  }
  for (const value of state.parameters) {
    view.setFloat32(offset, value, true);
    offset += 4;
  }
  return bytes;
}

function reject(message: string, details: Record<string, string | number> = {}): never {
  throw new LayercacheError("STATE_INVALID", `exit head bytes: ${message}`, { details });
}

function decodeShape(view: DataView): HeadShape {
  for (let i = 0; i < MAGIC.length; i++) {
    if (view.getUint8(i) !== MAGIC[i]) reject("wrong magic, not an exit head");
  }
  const version = view.getUint16(4, true);
  if (version !== VERSION) reject(`unsupported format version ${version}`, { version });
  const kindCode = view.getUint8(6);
  const kind = (Object.keys(KIND_CODES) as HeadKind[]).find((k) => KIND_CODES[k] === kindCode);
  if (kind === undefined) reject(`unknown head kind code ${kindCode}`, { kindCode });
  if (view.getUint8(7) !== 0) reject("reserved byte is not zero");
  const shape: HeadShape = {
    kind,
    inputSize: view.getUint32(8, true),
    hidden: view.getUint32(12, true),
    classes: view.getUint32(16, true),
  };
  const problem = shapeProblem(shape);
  if (problem !== undefined) reject(problem, { ...shape });
  if (view.getUint32(20, true) !== parameterCount(shape)) reject("parameter count does not match the sizes");
  return shape;
}

function readFloat64s(view: DataView, offset: number, length: number, what: string): Float64Array {
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) {
    const value = view.getFloat64(offset + 8 * i, true);
    if (!Number.isFinite(value)) reject(`non-finite ${what} at index ${i}`, { index: i });
    out[i] = value;
  }
  return out;
}

function readFloat32s(view: DataView, offset: number, length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const value = view.getFloat32(offset + 4 * i, true);
    if (!Number.isFinite(value)) reject(`non-finite parameter at index ${i}`, { index: i });
    out[i] = value;
  }
  return out;
}

/** Parses and validates an encoded head; throws STATE_INVALID on anything malformed. */
export function decodeHead(bytes: Uint8Array): { shape: HeadShape; state: HeadState } {
  if (!(bytes instanceof Uint8Array)) reject("expected a byte array");
  if (bytes.length < HEADER_BYTES) reject(`truncated: ${bytes.length} bytes`, { length: bytes.length });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = decodeShape(view);
  const expected = encodedLength(shape);
  if (bytes.length !== expected) {
    reject(`${bytes.length} bytes where the sizes imply ${expected}`, { length: bytes.length, expected });
  }
  const normalizerCount = view.getFloat64(24, true);
  if (!(Number.isInteger(normalizerCount) && normalizerCount >= 0)) {
    reject("input statistics count is not a non-negative integer");
  }
  const d = shape.inputSize;
  const normalizerMean = readFloat64s(view, HEADER_BYTES, d, "input mean");
  const normalizerVariance = readFloat64s(view, HEADER_BYTES + 8 * d, d, "input variance");
  if (normalizerVariance.some((v) => v < 0)) reject("negative input variance");
  const parameters = readFloat32s(view, HEADER_BYTES + 16 * d, parameterCount(shape));
  return { shape, state: { normalizerCount, normalizerMean, normalizerVariance, parameters } };
}
