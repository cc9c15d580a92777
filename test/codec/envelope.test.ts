import { describe, expect, it } from "vitest";
import {
  FRAME_INVALID_REASONS,
  MAGIC_BYTE,
  SCHEMA_HEADER,
  StaticSchemaRegistry,
  invalidReason,
} from "../../src/codec/envelope.ts";
import { decodeFrame, encodeFrame } from "../../src/codec/frame.ts";
import type { FrameInput } from "../../src/codec/frame.ts";
import { frameSchema, parseSchema, predictionSchema } from "../../src/codec/schemas.ts";
import { LayercacheError } from "../../src/errors/index.ts";
import { LIMIT, reasonOf } from "./helpers.ts";

const FRAME: FrameInput = {
  id: "cam-7/000042",
  producedAt: 1_700_000_000_123,
  width: 3,
  height: 2,
  channels: 1,
  pixels: Uint8Array.from([0, 1, 2, 253, 254, 255]),
  label: 4,
  deadlineMs: 1_700_000_000_623,
  minAgreement: 0.995,
};

const REGISTRY_ID = 17;
const registry = () => new StaticSchemaRegistry([[REGISTRY_ID, frameSchema().type]]);
const withRegistry = () => ({ ...LIMIT, registry: registry() });

describe("schemas", () => {
  it("fingerprints are SHA-256 of the canonical form, as hex", () => {
    for (const s of [frameSchema(), predictionSchema()]) {
      expect(s.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(s.fingerprint).toBe(s.type.fingerprint("sha256").toString("hex"));
    }
    expect(frameSchema().fingerprint).not.toBe(predictionSchema().fingerprint);
  });

  it("ignores docs and defaults in the fingerprint, but not a field type", () => {
    const schema = JSON.parse(JSON.stringify(frameSchema().type.schema({ exportAttrs: true })));
    schema.doc = "reworded";
    expect(parseSchema(schema).fingerprint("sha256").toString("hex")).toBe(frameSchema().fingerprint);
    schema.fields[2].type = "long";
    expect(parseSchema(schema).fingerprint("sha256").toString("hex")).not.toBe(frameSchema().fingerprint);
  });
});

describe("fingerprint framing", () => {
  it("round-trips a frame with the schema header and no prefix", () => {
    const msg = encodeFrame(FRAME);
    expect(msg.headers).toEqual({ [SCHEMA_HEADER]: frameSchema().fingerprint });
    expect(msg.value[0]).not.toBe(MAGIC_BYTE); // Avro starts with the id's length: 2 x 12
    const frame = decodeFrame(msg.value, msg.headers, LIMIT);
    expect(frame).toEqual({ ...FRAME, encoding: "RAW8", pixels: expect.anything() });
    expect(Array.from(frame.pixels)).toEqual(Array.from(FRAME.pixels));
  });

  it("accepts the header as a Buffer, in upper case, or repeated with one value", () => {
    const msg = encodeFrame(FRAME);
    const fp = frameSchema().fingerprint;
    for (const header of [Buffer.from(fp), fp.toUpperCase(), [fp, Buffer.from(fp)]]) {
      expect(decodeFrame(msg.value, { [SCHEMA_HEADER]: header }, LIMIT).id).toBe(FRAME.id);
    }
  });

  it("rejects a missing header, an unknown fingerprint and conflicting repeats", () => {
    const msg = encodeFrame(FRAME);
    expect(reasonOf(() => decodeFrame(msg.value, {}, LIMIT))).toBe("missing-header");
    expect(reasonOf(() => decodeFrame(msg.value, undefined, LIMIT))).toBe("missing-header");
    expect(reasonOf(() => decodeFrame(msg.value, { [SCHEMA_HEADER]: "ab".repeat(32) }, LIMIT))).toBe(
      "unknown-schema",
    );
    // The Prediction schema is real, but not one a frame reader accepts.
    const wrong = { [SCHEMA_HEADER]: predictionSchema().fingerprint };
    expect(reasonOf(() => decodeFrame(msg.value, wrong, LIMIT))).toBe("unknown-schema");
    const conflicting = { [SCHEMA_HEADER]: [frameSchema().fingerprint, "ab".repeat(32)] };
    expect(reasonOf(() => decodeFrame(msg.value, conflicting, LIMIT))).toBe("unknown-schema");
  });
});

describe("registry framing", () => {
  it("round-trips a frame behind magic byte 0 and a big-endian schema id", () => {
    const msg = encodeFrame(FRAME, { kind: "registry", schemaId: REGISTRY_ID });
    expect(msg.headers).toEqual({});
    expect(Array.from(msg.value.subarray(0, 5))).toEqual([0, 0, 0, 0, REGISTRY_ID]);
    expect(msg.value.subarray(5)).toEqual(encodeFrame(FRAME).value);
    const frame = decodeFrame(msg.value, {}, withRegistry());
    expect({ ...frame, pixels: Array.from(frame.pixels) }).toEqual({
      ...FRAME,
      encoding: "RAW8",
      pixels: Array.from(FRAME.pixels),
    });
  });

  it("encodes large ids in four bytes", () => {
    const msg = encodeFrame(FRAME, { kind: "registry", schemaId: 0x01020304 });
    expect(Array.from(msg.value.subarray(0, 5))).toEqual([0, 1, 2, 3, 4]);
    expect(() => encodeFrame(FRAME, { kind: "registry", schemaId: -1 })).toThrow(/31-bit/);
  });

  it("rejects a wrong magic byte, an unknown id and a message too short for an id", () => {
    const msg = encodeFrame(FRAME, { kind: "registry", schemaId: REGISTRY_ID });
    const bad = Buffer.from(msg.value);
    bad[0] = 0x01;
    expect(reasonOf(() => decodeFrame(bad, {}, withRegistry()))).toBe("bad-magic");
    // A fingerprint-framed message reaching a registry-configured reader.
    const plain = encodeFrame(FRAME);
    expect(reasonOf(() => decodeFrame(plain.value, plain.headers, withRegistry()))).toBe("bad-magic");
    const unknown = encodeFrame(FRAME, { kind: "registry", schemaId: 99 });
    expect(reasonOf(() => decodeFrame(unknown.value, {}, withRegistry()))).toBe("unknown-schema");
    expect(reasonOf(() => decodeFrame(Buffer.from([0, 0, 0]), {}, withRegistry()))).toBe("undecodable");
  });

  it("rejects a registered writer schema that cannot resolve to the reader", () => {
    const schema = JSON.parse(JSON.stringify(frameSchema().type.schema()));
    schema.fields[2].type = "string"; // width as text
    const reg = registry().register(5, schema);
    const value = Buffer.concat([Buffer.from([0, 0, 0, 0, 5]), parseSchema(schema).toBuffer(WIDTH_AS_TEXT)]);
    expect(reasonOf(() => decodeFrame(value, {}, { ...LIMIT, registry: reg }))).toBe("incompatible-schema");
  });
});

describe("bad bodies, either framing", () => {
  const framings = [
    { name: "fingerprint", encode: () => encodeFrame(FRAME), options: () => LIMIT, prefix: 0 },
    {
      name: "registry",
      encode: () => encodeFrame(FRAME, { kind: "registry", schemaId: REGISTRY_ID }),
      options: withRegistry,
      prefix: 5,
    },
  ];

  for (const f of framings) {
    it(`${f.name}: empty, tombstone, oversized`, () => {
      const { headers } = f.encode();
      expect(reasonOf(() => decodeFrame(Buffer.alloc(0), headers, f.options()))).toBe("empty");
      expect(reasonOf(() => decodeFrame(null, headers, f.options()))).toBe("empty");
      const msg = f.encode();
      const tight = { ...f.options(), maxMessageBytes: msg.value.length - 1 };
      expect(reasonOf(() => decodeFrame(msg.value, msg.headers, tight))).toBe("oversized");
      // Exactly at the limit is fine.
      const exact = { ...f.options(), maxMessageBytes: msg.value.length };
      expect(decodeFrame(msg.value, msg.headers, exact).id).toBe(FRAME.id);
    });

    it(`${f.name}: truncated Avro at every length, trailing garbage, random bytes`, () => {
      const msg = f.encode();
      for (let n = f.prefix; n < msg.value.length; n++) {
        const cut = msg.value.subarray(0, n);
        const reason = reasonOf(() => decodeFrame(cut, msg.headers, f.options()));
        expect(reason, `cut at ${n}`).toBe(n === 0 ? "empty" : "undecodable");
      }
      const trailing = Buffer.concat([msg.value, Buffer.from([0xde, 0xad])]);
      expect(reasonOf(() => decodeFrame(trailing, msg.headers, f.options()))).toBe("undecodable");
      // Deterministic "random" garbage after the framing.
      let seed = 12345;
      for (let trial = 0; trial < 200; trial++) {
        const garbage = Buffer.alloc(8 + (trial % 40));
        for (let i = 0; i < garbage.length; i++)
          garbage[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
        const value = Buffer.concat([msg.value.subarray(0, f.prefix), garbage]);
        const reason = reasonOf(() => decodeFrame(value, msg.headers, f.options()));
        expect(FRAME_INVALID_REASONS).toContain(reason);
      }
    });
  }
});

describe("invalidReason", () => {
  it("reads the reason of FRAME_INVALID errors only", () => {
    expect(invalidReason(new LayercacheError("FRAME_INVALID", "x", { details: { reason: "empty" } }))).toBe(
      "empty",
    );
    expect(invalidReason(new LayercacheError("FRAME_INVALID", "x", { details: { reason: "made-up" } }))).toBe(
      undefined,
    );
    expect(invalidReason(new LayercacheError("INTERNAL", "x", { details: { reason: "empty" } }))).toBe(
      undefined,
    );
    expect(invalidReason(new Error("x"))).toBe(undefined);
  });

  it("keeps the reason codes stable: they go into dead-letter headers", () => {
    expect(FRAME_INVALID_REASONS).toEqual([
      "empty",
      "oversized",
      "bad-magic",
      "missing-header",
      "unknown-schema",
      "incompatible-schema",
      "undecodable",
      "invalid-field",
      "unknown-encoding",
      "image-decode-failed",
      "bad-dimensions",
      "truncated-pixels",
    ]);
  });
});

/** A record for the width-as-text schema of the incompatibility test. */
const WIDTH_AS_TEXT = {
  id: "x",
  producedAt: 1,
  width: "two",
  height: 2,
  channels: 1,
  encoding: "RAW8",
  pixels: Buffer.from([1, 2, 3, 4]),
  label: null,
  deadlineMs: null,
  minAgreement: null,
};
