/**
 * Binary format of one training example on the example stream: what a
 * replica's engine showed its observer (see CacheObserver), as the trainer
 * needs it. Three kinds:
 *
 * - backbone (0): a frame that ran the whole backbone, features at every exit,
 *   target the backbone's softmax at the cache temperature;
 * - held-out (1): the same, held out for calibration (never trained on);
 * - early-exit (2): a frame that left through exit k >= 1, features at the k
 *   exits before it, target the answering head's probabilities.
 *
 * Little-endian:
 *
 *   offset  size      field
 *   0       4         magic "LCXE" (layercache example)
 *   4       2  u16    format version (1)
 *   6       1  u8     kind (0, 1 or 2 above)
 *   7       1  u8     reserved, 0
 *   8       4  u32    exits carried E (all of the model's; k for early-exit)
 *   12      4  u32    classes C
 *   16      4·E u32   feature size D_e of each exit carried
 *   16+4E   4·ΣD f32  pooled features, exit after exit
 *   ...     4·C f32   target distribution
 *
 * About 20 KB for a backbone example of the bundled model (7 exits, 4960
 * features, 10 classes). Decoding trusts nothing: sizes must match the model's
 * layout, every number must be finite, the target must be a distribution.
 * Problems are STATE_INVALID.
 *
 * The same stream carries the followers' shadow audits (entry field `a`
 * instead of `e`), so that the trainer's drift check sees every replica's
 * audits, not only its own. An audit record is 20 bytes, little-endian:
 *
 *   offset  size      field
 *   0       4         magic "LCXA" (layercache audit)
 *   4       2  u16    format version (1)
 *   6       2  u16    exit audited
 *   8       1  u8     agreed with the backbone (0 or 1)
 *   9       1  u8     lenient: answered below the target's threshold, SLO mode (0 or 1)
 *   10      2         reserved, 0
 *   12      8  f64    heads version that answered (a whole number)
 */
import { endianness } from "node:os";
import { LayercacheError } from "../errors/index.ts";
import type { StateLayout } from "./layout.ts";

export const EXAMPLE_KINDS = ["backbone", "held-out", "early-exit"] as const;
export type ExampleKind = (typeof EXAMPLE_KINDS)[number];

export interface TrainingExample {
  kind: ExampleKind;
  /**
   * Pooled features at each exit (early-exit: at the exits before the one that
   * answered), each at least the layout's size (the rest is ignored).
   */
  features: readonly Float32Array[];
  /** Distribution over the classes: backbone softmax, or the answering head's for early-exit. */
  target: Float32Array;
}

const MAGIC = [0x4c, 0x43, 0x58, 0x45]; // "LCXE"
/** The format is little-endian; on such a host float32 arrays are copied as bytes. */
const LITTLE_ENDIAN = endianness() === "LE";
const FORMAT = 1;
const HEADER_BYTES = 16;
/** How far a target's sum may stray from 1 (float32 rounding over a few thousand classes). */
const SUM_TOLERANCE = 1e-3;

/** Size of an example carrying features at the first `exits` exits. */
export function exampleBytes(layout: StateLayout, exits = layout.featureSizes.length): number {
  const features = layout.featureSizes.slice(0, exits).reduce((a, d) => a + d, 0);
  return HEADER_BYTES + 4 * exits + 4 * (features + layout.classes);
}

/** Why `exits` feature blocks do not fit an example of this kind, or undefined. */
function exitsProblem(kind: ExampleKind, exits: number, layout: StateLayout): string | undefined {
  const all = layout.featureSizes.length;
  if (kind === "early-exit") {
    return exits >= 1 && exits < all
      ? undefined
      : `an early exit carries 1 to ${all - 1} exits, not ${exits}`;
  }
  return exits === all ? undefined : `a ${kind} example carries all ${all} exits, not ${exits}`;
}

export function encodeExample(example: TrainingExample, layout: StateLayout): Buffer {
  const { classes } = layout;
  const exits = example.features.length;
  const problem = exitsProblem(example.kind, exits, layout);
  if (problem) throw new LayercacheError("INTERNAL", `cannot encode the example: ${problem}`);
  const featureSizes = layout.featureSizes.slice(0, exits);
  const bytes = Buffer.alloc(exampleBytes(layout, exits));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.set(MAGIC, 0);
  view.setUint16(4, FORMAT, true);
  view.setUint8(6, EXAMPLE_KINDS.indexOf(example.kind));
  view.setUint32(8, exits, true);
  view.setUint32(12, classes, true);
  let offset = HEADER_BYTES;
  for (const d of featureSizes) {
    view.setUint32(offset, d, true);
    offset += 4;
  }
  const write = (values: Float32Array, n: number, what: string) => {
    if (values.length < n)
      throw new LayercacheError("INTERNAL", `${what}: ${values.length} values, ${n} needed`);
    if (LITTLE_ENDIAN) {
      // The host's float32 bytes are the format's: one copy instead of n DataView calls.
      bytes.set(new Uint8Array(values.buffer, values.byteOffset, 4 * n), offset);
      offset += 4 * n;
      return;
    }
    for (let i = 0; i < n; i++) {
      view.setFloat32(offset, values[i]!, true);
      offset += 4;
    }
  };
  featureSizes.forEach((d, e) => write(example.features[e]!, d, `features of exit ${e}`));
  write(example.target, classes, "target");
  return bytes;
}

function reject(message: string): never {
  throw new LayercacheError("STATE_INVALID", `training example: ${message}`);
}

/** Parses one example of the model with `layout`; throws STATE_INVALID on anything else. */
export function decodeExample(bytes: Uint8Array, layout: StateLayout): TrainingExample {
  if (bytes.length < HEADER_BYTES) reject(`truncated: ${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < MAGIC.length; i++) if (bytes[i] !== MAGIC[i]) reject("wrong magic");
  const format = view.getUint16(4, true);
  if (format !== FORMAT) reject(`unsupported format ${format}`);
  const kind = EXAMPLE_KINDS[view.getUint8(6)];
  if (kind === undefined) reject(`unknown kind ${view.getUint8(6)}`);
  if (view.getUint8(7) !== 0) reject("reserved byte is not zero");
  const exits = view.getUint32(8, true);
  const classes = view.getUint32(12, true);
  if (classes !== layout.classes) reject(`${classes} classes where the model has ${layout.classes}`);
  const problem = exitsProblem(kind, exits, layout);
  if (problem) reject(problem);
  const expected = exampleBytes(layout, exits);
  if (bytes.length !== expected) reject(`${bytes.length} bytes where ${expected} were expected`);
  const featureSizes = layout.featureSizes.slice(0, exits);
  let offset = HEADER_BYTES;
  featureSizes.forEach((d, e) => {
    const got = view.getUint32(offset, true);
    if (got !== d) reject(`exit ${e} has ${got} features where the model pools ${d}`);
    offset += 4;
  });
  const read = (n: number, what: string): Float32Array => {
    const out = new Float32Array(n);
    if (LITTLE_ENDIAN) {
      // Byte copy (the entry's bytes need not be 4-byte aligned), then the same checks.
      new Uint8Array(out.buffer).set(bytes.subarray(offset, offset + 4 * n));
      offset += 4 * n;
    } else {
      for (let i = 0; i < n; i++) {
        out[i] = view.getFloat32(offset, true);
        offset += 4;
      }
    }
    for (let i = 0; i < n; i++) if (!Number.isFinite(out[i]!)) reject(`non-finite ${what} at index ${i}`);
    return out;
  };
  const features = featureSizes.map((d, e) => read(d, `feature of exit ${e}`));
  const target = read(classes, "target");
  let sum = 0;
  for (const p of target) {
    if (p < 0 || p > 1) reject("target is not a distribution (value outside [0, 1])");
    sum += p;
  }
  if (Math.abs(sum - 1) > SUM_TOLERANCE) reject(`target sums to ${sum.toFixed(6)}, not 1`);
  return { kind, features, target };
}

/** A follower's shadow audit of one early answer (see ShadowAudit.record). */
export interface AuditRecord {
  exit: number;
  agreed: boolean;
  lenient: boolean;
  /** Heads version that gave the answer: audits of heads older than a drift alarm are stale. */
  headsVersion: number;
}

const AUDIT_MAGIC = [0x4c, 0x43, 0x58, 0x41]; // "LCXA"
export const AUDIT_BYTES = 20;

export function encodeAudit(record: AuditRecord, layout: StateLayout): Buffer {
  const { exit, headsVersion } = record;
  if (!(Number.isInteger(exit) && exit >= 0 && exit < layout.featureSizes.length)) {
    throw new LayercacheError("INTERNAL", `cannot encode the audit: no exit ${exit}`);
  }
  if (!(Number.isSafeInteger(headsVersion) && headsVersion >= 0)) {
    throw new LayercacheError("INTERNAL", `cannot encode the audit: heads version ${headsVersion}`);
  }
  const bytes = Buffer.alloc(AUDIT_BYTES);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  bytes.set(AUDIT_MAGIC, 0);
  view.setUint16(4, FORMAT, true);
  view.setUint16(6, exit, true);
  view.setUint8(8, record.agreed ? 1 : 0);
  view.setUint8(9, record.lenient ? 1 : 0);
  view.setFloat64(12, headsVersion, true);
  return bytes;
}

/** Parses one audit record of the model with `layout`; throws STATE_INVALID on anything else. */
export function decodeAudit(bytes: Uint8Array, layout: StateLayout): AuditRecord {
  const fail = (message: string): never => {
    throw new LayercacheError("STATE_INVALID", `audit record: ${message}`);
  };
  if (bytes.length !== AUDIT_BYTES) fail(`${bytes.length} bytes where ${AUDIT_BYTES} were expected`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < AUDIT_MAGIC.length; i++) if (bytes[i] !== AUDIT_MAGIC[i]) fail("wrong magic");
  const format = view.getUint16(4, true);
  if (format !== FORMAT) fail(`unsupported format ${format}`);
  const exit = view.getUint16(6, true);
  if (exit >= layout.featureSizes.length) fail(`exit ${exit}, the model has ${layout.featureSizes.length}`);
  const agreed = view.getUint8(8);
  const lenient = view.getUint8(9);
  if (agreed > 1 || lenient > 1) fail("flags are not 0 or 1");
  if (view.getUint16(10, true) !== 0) fail("reserved bytes are not zero");
  const headsVersion = view.getFloat64(12, true);
  if (!(Number.isSafeInteger(headsVersion) && headsVersion >= 0)) fail(`heads version ${headsVersion}`);
  return { exit, agreed: agreed === 1, lenient: lenient === 1, headsVersion };
}
