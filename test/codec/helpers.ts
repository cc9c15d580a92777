/** Shared bits of the codec tests: bad messages built by hand and reason extraction. */
import type { FrameInvalidReason } from "../../src/codec/envelope.ts";
import { SCHEMA_HEADER, invalidReason } from "../../src/codec/envelope.ts";
import { frameSchema } from "../../src/codec/schemas.ts";
import { thrownBy } from "../helpers/errors.ts";

export const LIMIT = { maxMessageBytes: 1 << 20 };

/** The reason of the FRAME_INVALID error `fn` throws; fails the test if it throws nothing else. */
export function reasonOf(fn: () => unknown): FrameInvalidReason | undefined {
  return invalidReason(thrownBy(fn, "FRAME_INVALID"));
}

export interface RawFrameFields {
  id: string;
  producedAt: number;
  width: number;
  height: number;
  channels: number;
  encoding: string;
  pixels: Buffer;
  label: number | null;
  deadlineMs: number | null;
  minAgreement: number | null;
}

export function rawFields(overrides: Partial<RawFrameFields> = {}): RawFrameFields {
  return {
    id: "f-1",
    producedAt: 1_700_000_000_000,
    width: 2,
    height: 2,
    channels: 1,
    encoding: "RAW8",
    pixels: Buffer.from([0, 64, 128, 255]),
    label: null,
    deadlineMs: null,
    minAgreement: null,
    ...overrides,
  };
}

/**
 * A fingerprint-framed frame message written straight with avsc, skipping
 * encodeFrame's checks: how a buggy or foreign producer could write it.
 */
export function rawFrameMessage(overrides: Partial<RawFrameFields> = {}): {
  value: Buffer;
  headers: Record<string, string>;
} {
  const schema = frameSchema();
  return {
    value: schema.type.toBuffer(rawFields(overrides)),
    headers: { [SCHEMA_HEADER]: schema.fingerprint },
  };
}
