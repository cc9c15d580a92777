/**
 * Binary format of an exit head, as published to shared state. Little-endian.
 * Every record starts with the same 32-byte header:
 *
 *   offset  size      field
 *   0       4         magic "LCXH" (layercache exit head)
 *   4       2  u16    format version (1)
 *   6       1  u8     kind: 1 = softmax regression, 2 = MLP,
 *                           3 = nearest-neighbour memory, 4 = MLP + memory
 *   7       1  u8     reserved, 0
 *   8       4  u32    input size D
 *   12      4  u32    hidden units H (0 for softmax regression and the memory)
 *   16      4  u32    classes C
 *   20      4  u32    parameter count P (redundant with the sizes; checked)
 *   24      8         kinds 1-2: f64 frames behind the input statistics
 *                     kinds 3-4: u32 examples kept per class R, u32 neighbours k
 *
 * Kinds 1 (softmax regression) and 2 (MLP) continue with
 *
 *   32      8·D f64   input mean
 *   32+8D   8·D f64   input variance
 *   32+16D  4·P f32   parameters, in the head's flat layout
 *
 * kind 3 (nearest-neighbour memory, P = 0) with
 *
 *   32      8·C       per class: u32 examples held n_c (<= R), u32 next ring slot
 *   32+8C   4·D·Σn_c  f32 the remembered unit vectors, class 0 first, each
 *                     class in ring-slot order
 *
 * and kind 4 (MLP + memory, P = the MLP's) with two whole records:
 *
 *   32      4  u32    length A of the MLP's record
 *   36      A         the MLP, a kind-2 record with the same D, H and C
 *   36+A    4  u32    length B of the memory's record
 *   40+A    B         the memory, a kind-3 record with the same D, C, R and k
 *
 * The statistics stay float64 so a decoded head predicts bit for bit like
 * the encoded one; the optimizer state is deliberately left out (it is large
 * and only the trainer needs it). A memory stores only the slots it has
 * filled, so its bytes (and what a reader allocates) grow with what it holds,
 * never with the capacity the header claims. Decoding trusts nothing: every
 * size, the total length and every number is checked (remembered vectors
 * must be unit length or zero), and problems are STATE_INVALID. Kinds 1 and
 * 2 are read exactly as before kinds 3 and 4 existed.
 */
import { LayercacheError } from "../errors/index.ts";
import type { HeadKind, HeadShape, HeadState } from "./head-types.ts";
import { parameterCount, remembers, shapeProblem } from "./head-types.ts";

const MAGIC = [0x4c, 0x43, 0x58, 0x48]; // "LCXH"
const VERSION = 1;
const HEADER_BYTES = 32;
const KIND_CODES: Record<HeadKind, number> = { softmax: 1, mlp: 2, knn: 3, "mlp+knn": 4 };
/** How far a remembered vector's squared length may be from 1 (float32 rounding is ~1e-7). */
const UNIT_TOLERANCE = 1e-3;

/** One class's remembered examples: unit vectors in ring-slot order and the ring's next slot. */
export interface ClassMemoryState {
  /** Examples held (at most the shape's memoryPerClass). */
  filled: number;
  /** Slot the next example goes to (equal to `filled` until the ring is full). */
  next: number;
  /** filled × D float32 values. */
  entries: Float32Array;
}

/** Everything a nearest-neighbour memory's predictions depend on besides its shape. */
export interface MemoryState {
  classes: ClassMemoryState[];
}

/** A decoded head: which form it takes follows from `shape.kind`. */
export type DecodedHead =
  | { form: "parametric"; shape: HeadShape; state: HeadState }
  | { form: "memory"; shape: HeadShape; memory: MemoryState }
  | {
      form: "ensemble";
      shape: HeadShape;
      mlp: { shape: HeadShape; state: HeadState };
      memory: { shape: HeadShape; memory: MemoryState };
    };

function writeHeader(view: DataView, bytes: Uint8Array, shape: HeadShape): void {
  bytes.set(MAGIC, 0);
  view.setUint16(4, VERSION, true);
  view.setUint8(6, KIND_CODES[shape.kind]);
  view.setUint32(8, shape.inputSize, true);
  view.setUint32(12, shape.hidden, true);
  view.setUint32(16, shape.classes, true);
  view.setUint32(20, parameterCount(shape), true);
  if (remembers(shape.kind)) {
    view.setUint32(24, shape.memoryPerClass ?? 0, true);
    view.setUint32(28, shape.neighbours ?? 0, true);
  }
}

function encodedLength(shape: HeadShape): number {
  return HEADER_BYTES + 16 * shape.inputSize + 4 * parameterCount(shape);
}

/** A softmax regression or MLP head (kinds 1 and 2). */
export function encodeHead(shape: HeadShape, state: HeadState): Uint8Array {
  const bytes = new Uint8Array(encodedLength(shape));
  const view = new DataView(bytes.buffer);
  writeHeader(view, bytes, shape);
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

/** A nearest-neighbour memory (kind 3). */
export function encodeMemoryHead(shape: HeadShape, memory: MemoryState): Uint8Array {
  const d = shape.inputSize;
  const held = memory.classes.reduce((sum, c) => sum + c.filled, 0);
  const bytes = new Uint8Array(HEADER_BYTES + 8 * shape.classes + 4 * d * held);
  const view = new DataView(bytes.buffer);
  writeHeader(view, bytes, shape);
  let offset = HEADER_BYTES;
  for (const c of memory.classes) {
    view.setUint32(offset, c.filled, true);
    view.setUint32(offset + 4, c.next, true);
    offset += 8;
  }
  for (const c of memory.classes) {
    for (let i = 0; i < c.filled * d; i++) {
      view.setFloat32(offset, c.entries[i]!, true);
      offset += 4;
    }
  }
  return bytes;
}

/** An MLP and a memory at one exit (kind 4), from their own records. */
export function encodeEnsembleHead(
  shape: HeadShape,
  mlpBytes: Uint8Array,
  memoryBytes: Uint8Array,
): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES + 8 + mlpBytes.length + memoryBytes.length);
  const view = new DataView(bytes.buffer);
  writeHeader(view, bytes, shape);
  view.setUint32(HEADER_BYTES, mlpBytes.length, true);
  bytes.set(mlpBytes, HEADER_BYTES + 4);
  const second = HEADER_BYTES + 4 + mlpBytes.length;
  view.setUint32(second, memoryBytes.length, true);
  bytes.set(memoryBytes, second + 4);
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
  if (remembers(kind)) {
    shape.memoryPerClass = view.getUint32(24, true);
    shape.neighbours = view.getUint32(28, true);
  }
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

function readFloat32s(view: DataView, offset: number, length: number, what = "parameter"): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const value = view.getFloat32(offset + 4 * i, true);
    if (!Number.isFinite(value)) reject(`non-finite ${what} at index ${i}`, { index: i });
    out[i] = value;
  }
  return out;
}

function decodeParametric(bytes: Uint8Array, view: DataView, shape: HeadShape): HeadState {
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
  return { normalizerCount, normalizerMean, normalizerVariance, parameters };
}

/** Each remembered vector must be what the memory stores: unit length, or zero for an all-zero input. */
function checkUnitRows(entries: Float32Array, d: number, what: string): void {
  for (let row = 0; row < entries.length / d; row++) {
    let squared = 0;
    for (let i = row * d; i < (row + 1) * d; i++) squared += entries[i]! * entries[i]!;
    if (squared !== 0 && Math.abs(squared - 1) > UNIT_TOLERANCE) {
      reject(`${what} example ${row} is not a unit vector`, { row });
    }
  }
}

function decodeMemory(bytes: Uint8Array, view: DataView, shape: HeadShape): MemoryState {
  const { inputSize: d, classes } = shape;
  const perClass = shape.memoryPerClass!;
  const table = HEADER_BYTES + 8 * classes;
  if (bytes.length < table) reject(`truncated: ${bytes.length} bytes`, { length: bytes.length });
  const rings: { filled: number; next: number }[] = [];
  let held = 0;
  for (let c = 0; c < classes; c++) {
    const filled = view.getUint32(HEADER_BYTES + 8 * c, true);
    const next = view.getUint32(HEADER_BYTES + 8 * c + 4, true);
    if (filled > perClass) reject(`class ${c} holds ${filled} examples, more than ${perClass}`, { c });
    if (next >= perClass) reject(`class ${c} ring slot ${next} is out of range`, { c });
    // A ring that has not wrapped yet fills its slots in order.
    if (filled < perClass && next !== filled) reject(`class ${c} ring slot ${next} with ${filled} held`);
    rings.push({ filled, next });
    held += filled;
  }
  const expected = table + 4 * d * held;
  if (bytes.length !== expected) {
    reject(`${bytes.length} bytes where the sizes imply ${expected}`, { length: bytes.length, expected });
  }
  let offset = table;
  return {
    classes: rings.map(({ filled, next }, c) => {
      const entries = readFloat32s(view, offset, filled * d, `class ${c} memory value`);
      checkUnitRows(entries, d, `class ${c}`);
      offset += 4 * filled * d;
      return { filled, next, entries };
    }),
  };
}

/** The two records inside an ensemble, each decoded with all its checks and matched to the header. */
function decodeEnsemble(bytes: Uint8Array, view: DataView, shape: HeadShape): DecodedHead {
  const part = (offset: number, kind: HeadKind): { record: Uint8Array; end: number } => {
    if (bytes.length < offset + 4) reject(`truncated before the ${kind} part`);
    const length = view.getUint32(offset, true);
    if (bytes.length < offset + 4 + length) reject(`the ${kind} part runs past the end`, { length });
    const record = bytes.subarray(offset + 4, offset + 4 + length);
    // Checked before decoding, so that records cannot nest: the parts are never ensembles.
    if (record.length < HEADER_BYTES || record[6] !== KIND_CODES[kind]) reject(`the ${kind} part is not one`);
    return { record, end: offset + 4 + length };
  };
  const first = part(HEADER_BYTES, "mlp");
  const second = part(first.end, "knn");
  if (second.end !== bytes.length) reject(`${bytes.length - second.end} bytes after the memory`);
  const mlp = decodeHead(first.record);
  const memory = decodeHead(second.record);
  if (mlp.form !== "parametric") reject("the first part is not an MLP");
  if (memory.form !== "memory") reject("the second part is not a memory");
  const same = (a: HeadShape, keys: (keyof HeadShape)[]) => keys.every((k) => a[k] === shape[k]);
  if (!same(mlp.shape, ["inputSize", "hidden", "classes"]))
    reject("the MLP's sizes differ from the header's");
  if (!same(memory.shape, ["inputSize", "classes", "memoryPerClass", "neighbours"])) {
    reject("the memory's sizes differ from the header's");
  }
  return { form: "ensemble", shape, mlp, memory };
}

/** Parses and validates an encoded head; throws STATE_INVALID on anything malformed. */
export function decodeHead(bytes: Uint8Array): DecodedHead {
  if (!(bytes instanceof Uint8Array)) reject("expected a byte array");
  if (bytes.length < HEADER_BYTES) reject(`truncated: ${bytes.length} bytes`, { length: bytes.length });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = decodeShape(view);
  switch (shape.kind) {
    case "knn":
      return { form: "memory", shape, memory: decodeMemory(bytes, view, shape) };
    case "mlp+knn":
      return decodeEnsemble(bytes, view, shape);
    default:
      return { form: "parametric", shape, state: decodeParametric(bytes, view, shape) };
  }
}
