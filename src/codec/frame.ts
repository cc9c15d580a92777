/**
 * Frames on the wire (schemas/Frame.avsc): decoding and validating what
 * producers send, and encoding for producers (tools, tests, benchmarks).
 *
 * `decodeFrame` hands back pixels already in RAW8 layout whatever the
 * encoding, so everything after it (`frameToModelInput`, the engine) deals
 * with one pixel format. Each rejection is FRAME_INVALID with a
 * `details.reason` from FRAME_INVALID_REASONS (see envelope.ts).
 */
import { checkFrameShape, checkPixelCount } from "./adapt.ts";
import type { EncodedMessage, EnvelopeOptions, Framing, MessageHeaders } from "./envelope.ts";
import { FINGERPRINT_FRAMING, decodeEnvelope, encodeEnvelope, frameInvalid } from "./envelope.ts";
import { decodeImage } from "./image.ts";
import { frameSchema } from "./schemas.ts";

export { frameToModelInput } from "./adapt.ts";
export type { FrameImage, ModelInputShape } from "./adapt.ts";

/** Encodings this codec decodes. The schema's UNKNOWN symbol is what older readers see for newer ones. */
export const FRAME_ENCODINGS = ["RAW8", "PNG", "JPEG"] as const;
export type FrameEncoding = (typeof FRAME_ENCODINGS)[number];

export interface Frame {
  id: string;
  /** Unix epoch milliseconds. */
  producedAt: number;
  width: number;
  height: number;
  /** 1 gray, 3 RGB, 4 RGBA. */
  channels: number;
  /** How the producer sent the pixels; `pixels` below is decoded already. */
  encoding: FrameEncoding;
  /** height x width x channels bytes, row-major, channels interleaved. May share the message's buffer. */
  pixels: Uint8Array;
  /** Ground-truth class index, for evaluation. */
  label: number | null;
  /** Absolute deadline, Unix epoch milliseconds. */
  deadlineMs: number | null;
  /** Per-frame floor on the agreement an early exit must prove, in [0, 1]. */
  minAgreement: number | null;
}

/** What producers pass to `encodeFrame`: encoding defaults to RAW8, optional fields to null. */
export type FrameInput = Omit<Frame, "encoding" | "label" | "deadlineMs" | "minAgreement"> &
  Partial<Pick<Frame, "encoding" | "label" | "deadlineMs" | "minAgreement">>;

/** The record exactly as the current reader schema decodes it. */
interface FrameRecord {
  id: string;
  producedAt: number;
  width: number;
  height: number;
  channels: number;
  encoding: FrameEncoding | "UNKNOWN";
  pixels: Buffer;
  label: number | null;
  deadlineMs: number | null;
  minAgreement: number | null;
}

export type FrameDecodeOptions = EnvelopeOptions;

/** Unwraps, decodes and validates one frames-topic message. Throws FRAME_INVALID. */
export function decodeFrame(
  value: Buffer | null | undefined,
  headers: MessageHeaders | undefined,
  options: FrameDecodeOptions,
): Frame {
  // The reader schema fixes every field's type, so only values need checking.
  const record = decodeEnvelope(frameSchema(), value, headers, options) as FrameRecord;
  checkFields(record);
  const { encoding } = record;
  if (encoding === "UNKNOWN") {
    throw frameInvalid(
      "unknown-encoding",
      `frame ${clipId(record.id)} uses an encoding this reader does not know`,
    );
  }
  checkFrameShape(record);
  const pixels = decodePixels(record, encoding, options.maxMessageBytes);
  return {
    id: record.id,
    producedAt: record.producedAt,
    width: record.width,
    height: record.height,
    channels: record.channels,
    encoding,
    pixels,
    label: record.label,
    deadlineMs: record.deadlineMs,
    minAgreement: record.minAgreement,
  };
}

function decodePixels(record: FrameRecord, encoding: FrameEncoding, maxBytes: number): Uint8Array {
  if (encoding === "RAW8") {
    checkPixelCount(record);
    return record.pixels;
  }
  // A small PNG or JPEG may not expand past what a RAW8 frame could carry.
  const decodedBytes = record.width * record.height * record.channels;
  if (decodedBytes > maxBytes) {
    throw frameInvalid(
      "oversized",
      `${encoding} frame decodes to ${decodedBytes} bytes, over the limit of ${maxBytes}`,
      { bytes: decodedBytes },
    );
  }
  return decodeImage(encoding, record.pixels, record);
}

/** Range checks on the non-image fields; the same for decoding and encoding. */
function checkFields(f: Omit<FrameRecord, "pixels" | "encoding">): void {
  const rules: [field: string, ok: boolean, problem: string][] = [
    ["id", f.id.length > 0, "is empty"],
    ["producedAt", f.producedAt >= 0, "is negative"],
    ["label", f.label === null || f.label >= 0, "is negative"],
    ["deadlineMs", f.deadlineMs === null || f.deadlineMs >= 0, "is negative"],
    // Written so that NaN fails too.
    [
      "minAgreement",
      f.minAgreement === null || (f.minAgreement >= 0 && f.minAgreement <= 1),
      "is not in [0, 1]",
    ],
  ];
  const failed = rules.find(([, ok]) => !ok);
  if (failed) {
    const [field, , problem] = failed;
    throw frameInvalid("invalid-field", `frame ${clipId(f.id)}: ${field} ${problem}`, { field });
  }
}

/**
 * Serialises a frame for the frames topic. Runs the checks the worker will run
 * (except decoding PNG/JPEG payloads), so producers fail early with the same
 * reasons. Throws FRAME_INVALID.
 */
export function encodeFrame(frame: FrameInput, framing: Framing = FINGERPRINT_FRAMING): EncodedMessage {
  const record: FrameRecord = {
    id: frame.id,
    producedAt: frame.producedAt,
    width: frame.width,
    height: frame.height,
    channels: frame.channels,
    encoding: frame.encoding ?? "RAW8",
    // avsc writes Buffers only; this view shares the caller's memory.
    pixels: Buffer.from(frame.pixels.buffer, frame.pixels.byteOffset, frame.pixels.byteLength),
    label: frame.label ?? null,
    deadlineMs: frame.deadlineMs ?? null,
    minAgreement: frame.minAgreement ?? null,
  };
  if (!FRAME_ENCODINGS.includes(record.encoding as FrameEncoding)) {
    throw frameInvalid("unknown-encoding", `cannot encode a frame as ${record.encoding}`);
  }
  // Type errors (a fractional width, a string label) first, with the field named.
  const message = encodeEnvelope(frameSchema(), record, framing);
  checkFields(record);
  checkFrameShape(record);
  if (record.encoding === "RAW8") checkPixelCount(record);
  return message;
}

// Ids come from producers: keep what ends up in messages short.
const clipId = (id: string) => JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}...` : id);
