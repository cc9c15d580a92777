import { join } from "node:path";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { beforeAll, describe, expect, it } from "vitest";
import { SCHEMA_HEADER, StaticSchemaRegistry } from "../../src/codec/envelope.ts";
import { decodeFrame, encodeFrame, frameToModelInput } from "../../src/codec/frame.ts";
import type { FrameInput } from "../../src/codec/frame.ts";
import { frameSchema, parseSchema } from "../../src/codec/schemas.ts";
import { loadIdxDataset } from "../../src/model/idx.ts";
import type { LabelledImages } from "../../src/model/idx.ts";
import { LIMIT, rawFields, rawFrameMessage, reasonOf } from "./helpers.ts";

const decodeRaw = (overrides: Parameters<typeof rawFrameMessage>[0]) => {
  const msg = rawFrameMessage(overrides);
  return decodeFrame(msg.value, msg.headers, LIMIT);
};

describe("frame field checks", () => {
  it("rejects out-of-range fields as invalid-field, naming the field", () => {
    const cases = [
      { id: "" },
      { producedAt: -1 },
      { label: -3 },
      { deadlineMs: -5 },
      { minAgreement: 1.5 },
      { minAgreement: Number.NaN },
    ];
    for (const c of cases) {
      expect(
        reasonOf(() => decodeRaw(c)),
        JSON.stringify(c),
      ).toBe("invalid-field");
      expect(
        reasonOf(() => encodeFrame(rawFields(c) as FrameInput)),
        JSON.stringify(c),
      ).toBe("invalid-field");
    }
  });

  it("makes encodeFrame name the field of a type error", () => {
    const err = (() => {
      try {
        encodeFrame({ ...(rawFields() as FrameInput), width: 2.5 });
      } catch (e) {
        return e as { details: Record<string, unknown> };
      }
    })();
    expect(err?.details).toMatchObject({ reason: "invalid-field", field: "width" });
  });
});

describe("frame dimensions and pixels", () => {
  it("rejects RAW8 pixels shorter than width x height x channels as truncated-pixels", () => {
    expect(reasonOf(() => decodeRaw({ pixels: Buffer.from([1, 2, 3]) }))).toBe("truncated-pixels");
    expect(reasonOf(() => decodeRaw({ channels: 3 }))).toBe("truncated-pixels");
    expect(reasonOf(() => encodeFrame(rawFields({ pixels: Buffer.alloc(3) }) as FrameInput))).toBe(
      "truncated-pixels",
    );
  });

  it("rejects more pixels than the dimensions describe as bad-dimensions", () => {
    expect(reasonOf(() => decodeRaw({ pixels: Buffer.alloc(5) }))).toBe("bad-dimensions");
  });

  it("rejects zero, negative and huge sides and channel counts other than 1, 3, 4", () => {
    const cases = [
      { width: 0, pixels: Buffer.alloc(0) },
      { height: -2 },
      { width: -2, height: -2 },
      { width: 4097, height: 1, pixels: Buffer.alloc(4097) },
      { channels: 2, pixels: Buffer.alloc(8) },
      { channels: 0, pixels: Buffer.alloc(0) },
      { channels: 5, pixels: Buffer.alloc(20) },
    ];
    for (const c of cases)
      expect(
        reasonOf(() => decodeRaw(c)),
        JSON.stringify(c),
      ).toBe("bad-dimensions");
    expect(decodeRaw({ width: 4096, height: 1, pixels: Buffer.alloc(4096) }).width).toBe(4096);
  });

  it("rejects frames that cannot be scaled to the model within a factor of 8", () => {
    const model = { channels: 1, height: 28, width: 28 };
    const frame = (width: number, height: number) =>
      decodeRaw({ width, height, pixels: Buffer.alloc(width * height) });
    for (const [w, h] of [
      [225, 28],
      [28, 225],
      [3, 28],
      [28, 3],
      [1000, 1000],
    ] as const) {
      expect(
        reasonOf(() => frameToModelInput(frame(w, h), model)),
        `${w}x${h}`,
      ).toBe("bad-dimensions");
    }
    for (const [w, h] of [
      [224, 224],
      [4, 4],
      [4, 224],
    ] as const) {
      expect(frameToModelInput(frame(w, h), model)).toHaveLength(784);
    }
  });
});

describe("image encodings", () => {
  const gray = (w: number, h: number, at: (x: number, y: number) => number) =>
    Uint8Array.from({ length: w * h }, (_, i) => at(i % w, Math.floor(i / w)));

  const png = (
    w: number,
    h: number,
    rgba: (i: number) => [number, number, number, number],
    colorType: 0 | 2 | 6,
  ) => {
    const image = new PNG({ width: w, height: h });
    for (let i = 0; i < w * h; i++) image.data.set(rgba(i), 4 * i);
    return PNG.sync.write(image, { colorType });
  };

  it("decodes a grayscale PNG bit-exactly to RAW8", () => {
    const pixels = gray(5, 3, (x, y) => x * 50 + y);
    const bytes = png(5, 3, (i) => [pixels[i]!, pixels[i]!, pixels[i]!, 255], 0);
    const msg = encodeFrame({
      id: "p",
      producedAt: 0,
      width: 5,
      height: 3,
      channels: 1,
      encoding: "PNG",
      pixels: bytes,
    });
    const frame = decodeFrame(msg.value, msg.headers, LIMIT);
    expect(frame.encoding).toBe("PNG");
    expect(Array.from(frame.pixels)).toEqual(Array.from(pixels));
  });

  it("keeps the declared channels of a colour PNG: RGB, RGBA or luma", () => {
    const rgba = (i: number): [number, number, number, number] => [i * 10, 255 - i, 7, 100 + i];
    const bytes = png(2, 2, rgba, 6);
    const decode = (channels: number) => {
      const msg = encodeFrame({
        id: "c",
        producedAt: 0,
        width: 2,
        height: 2,
        channels,
        encoding: "PNG",
        pixels: bytes,
      });
      return Array.from(decodeFrame(msg.value, msg.headers, LIMIT).pixels);
    };
    expect(decode(4)).toEqual([0, 1, 2, 3].flatMap(rgba));
    expect(decode(3)).toEqual([0, 1, 2, 3].flatMap((i) => rgba(i).slice(0, 3)));
    expect(decode(1)).toEqual(
      [0, 1, 2, 3].map((i) => Math.round(0.299 * i * 10 + 0.587 * (255 - i) + 0.114 * 7)),
    );
  });

  it("rejects a corrupt PNG, a PNG of other dimensions and one that decodes too large", () => {
    const bytes = png(4, 4, () => [9, 9, 9, 255], 0);
    const corrupt = Buffer.from(bytes);
    const at = corrupt.length - 20; // inside IDAT: its CRC no longer matches
    corrupt[at] = corrupt[at]! ^ 0xff;
    const base = { id: "p", producedAt: 0, width: 4, height: 4, channels: 1, encoding: "PNG" as const };
    const decode = (frame: FrameInput, maxMessageBytes = LIMIT.maxMessageBytes) => {
      const msg = encodeFrame(frame);
      return decodeFrame(msg.value, msg.headers, { maxMessageBytes });
    };
    expect(reasonOf(() => decode({ ...base, pixels: corrupt }))).toBe("image-decode-failed");
    expect(reasonOf(() => decode({ ...base, pixels: Buffer.from("not a png at all, really not") }))).toBe(
      "image-decode-failed",
    );
    expect(reasonOf(() => decode({ ...base, pixels: bytes.subarray(0, 40) }))).toBe("image-decode-failed");
    expect(reasonOf(() => decode({ ...base, width: 5, pixels: bytes }))).toBe("bad-dimensions");
    // A flat 64x64 PNG is ~100 bytes but 4096 decoded: a decompression bomb in miniature.
    const flat = png(64, 64, () => [0, 0, 0, 255], 0);
    const big = { ...base, width: 64, height: 64, pixels: flat };
    expect(encodeFrame(big).value.length).toBeLessThan(1000);
    expect(reasonOf(() => decode(big, 4095))).toBe("oversized");
    expect(decode(big, 4096).pixels).toHaveLength(4096);
  });

  it("decodes a JPEG, and rejects a corrupt one", () => {
    const rgba = Buffer.alloc(16 * 16 * 4, 128);
    const bytes = jpeg.encode({ width: 16, height: 16, data: rgba }, 95).data;
    const base = { id: "j", producedAt: 0, width: 16, height: 16, channels: 1, encoding: "JPEG" as const };
    const decode = (frame: FrameInput) => {
      const msg = encodeFrame(frame);
      return decodeFrame(msg.value, msg.headers, LIMIT);
    };
    const frame = decode({ ...base, pixels: bytes });
    expect(frame.pixels).toHaveLength(256);
    for (const v of frame.pixels) expect(Math.abs(v - 128)).toBeLessThanOrEqual(1);
    expect(reasonOf(() => decode({ ...base, pixels: Buffer.from("garbage, no JPEG markers") }))).toBe(
      "image-decode-failed",
    );
    expect(reasonOf(() => decode({ ...base, pixels: bytes.subarray(0, bytes.length >> 1) }))).toBe(
      "image-decode-failed",
    );
    expect(reasonOf(() => decode({ ...base, height: 8, pixels: bytes }))).toBe("bad-dimensions");
  });

  it("rejects an encoding from a newer writer as unknown-encoding", () => {
    // A future schema adds WEBP; the current reader maps it to its UNKNOWN default.
    const schema = JSON.parse(JSON.stringify(frameSchema().type.schema({ exportAttrs: true })));
    schema.fields[5].type.symbols.push("WEBP");
    const newer = parseSchema(schema);
    const value = Buffer.concat([
      Buffer.from([0, 0, 0, 0, 9]),
      newer.toBuffer(rawFields({ encoding: "WEBP" })),
    ]);
    const registry = new StaticSchemaRegistry([[9, newer]]);
    expect(reasonOf(() => decodeFrame(value, {}, { ...LIMIT, registry }))).toBe("unknown-encoding");
    // And a writer that sends UNKNOWN itself.
    expect(reasonOf(() => decodeRaw({ encoding: "UNKNOWN" }))).toBe("unknown-encoding");
    expect(
      reasonOf(() => encodeFrame({ ...(rawFields() as FrameInput), encoding: "UNKNOWN" as "RAW8" })),
    ).toBe("unknown-encoding");
  });
});

describe("schema evolution", () => {
  // The first version of the schema: no optional fields, RAW8 only.
  const V1 = JSON.stringify({
    type: "record",
    name: "Frame",
    namespace: "dev.layercache",
    fields: [
      { name: "id", type: "string" },
      { name: "producedAt", type: { type: "long", logicalType: "timestamp-millis" } },
      { name: "width", type: "int" },
      { name: "height", type: "int" },
      { name: "channels", type: "int" },
      { name: "encoding", type: { type: "enum", name: "FrameEncoding", symbols: ["RAW8"] } },
      { name: "pixels", type: "bytes" },
    ],
  });
  const record = {
    id: "old",
    producedAt: 5,
    width: 2,
    height: 1,
    channels: 1,
    encoding: "RAW8",
    pixels: Buffer.from([7, 8]),
  };

  it("reads an older writer's record with avsc's resolver, filling defaults", () => {
    const v1 = parseSchema(V1);
    const resolver = frameSchema().type.createResolver(v1);
    const read: unknown = frameSchema().type.fromBuffer(v1.toBuffer(record), resolver);
    expect(read).toMatchObject({ ...record, label: null, deadlineMs: null, minAgreement: null });
  });

  it("decodes it through the registry and through fingerprint framing", () => {
    const v1 = parseSchema(V1);
    const body = v1.toBuffer(record);
    const expected = { id: "old", width: 2, label: null, deadlineMs: null, minAgreement: null };
    const registry = new StaticSchemaRegistry([[1, V1]]);
    const viaRegistry = decodeFrame(
      Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), body]),
      {},
      { ...LIMIT, registry },
    );
    expect(viaRegistry).toMatchObject(expected);
    const fingerprint = v1.fingerprint("sha256").toString("hex");
    const headers = { [SCHEMA_HEADER]: fingerprint };
    // Unknown until the reader is told about that writer schema.
    expect(reasonOf(() => decodeFrame(body, headers, LIMIT))).toBe("unknown-schema");
    expect(decodeFrame(body, headers, { ...LIMIT, writerSchemas: [v1] })).toMatchObject(expected);
  });
});

describe("Fashion-MNIST round trip", () => {
  let data: LabelledImages;
  beforeAll(async () => {
    data = await loadIdxDataset(join(import.meta.dirname, "..", "..", "data", "fashion-mnist"), "t10k");
  });

  it("carries real test images bit-exactly to the 1x28x28 model input, in both framings", () => {
    const size = data.height * data.width;
    const registry = new StaticSchemaRegistry([[3, frameSchema().type]]);
    for (const i of [0, 1, 4242, 9999]) {
      const pixels = data.images.subarray(i * size, (i + 1) * size);
      const input = {
        id: `t10k-${i}`,
        producedAt: Date.now(),
        width: 28,
        height: 28,
        channels: 1,
        pixels,
        label: data.labels[i]!,
      };
      const plain = encodeFrame(input);
      const framed = encodeFrame(input, { kind: "registry", schemaId: 3 });
      for (const frame of [
        decodeFrame(plain.value, plain.headers, LIMIT),
        decodeFrame(framed.value, {}, { ...LIMIT, registry }),
      ]) {
        expect(frame.label).toBe(data.labels[i]);
        const modelInput = frameToModelInput(frame, { channels: 1, height: 28, width: 28 });
        expect(modelInput).toHaveLength(784);
        expect(Buffer.from(modelInput).equals(Buffer.from(pixels))).toBe(true);
      }
    }
  });
});
