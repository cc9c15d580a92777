import { describe, expect, it } from "vitest";
import type { Type, types } from "avsc";
import { SCHEMA_HEADER, StaticSchemaRegistry } from "../../src/codec/envelope.ts";
import type { Prediction } from "../../src/codec/prediction.ts";
import { BACKBONE_EXIT, decodePrediction, encodePrediction } from "../../src/codec/prediction.ts";
import { frameSchema, parseSchema, predictionSchema, previousSchemas } from "../../src/codec/schemas.ts";
import type { LayercacheError } from "../../src/errors/index.ts";
import { LIMIT, reasonOf } from "./helpers.ts";

const PREDICTION: Prediction = {
  frameId: "cam-7/000042",
  label: 9,
  labelName: "Ankle boot",
  confidence: 0.9931,
  exit: 1,
  audited: false,
  macs: 12_345_678,
  macsSaved: 543_210_987,
  modelId: "fashion-resnet18-v1",
  headsVersion: 42,
  queueMs: 1.25,
  computeMs: 0.5,
  endToEndMs: 3.75,
  workerId: "worker-a",
  producedAt: 1_700_000_000_999,
  truthLabel: 9,
  exactHit: false,
};

describe("predictions", () => {
  it("round-trip in both framings as plain objects with exactly the schema's fields", () => {
    const plain = encodePrediction(PREDICTION);
    expect(plain.headers).toEqual({ [SCHEMA_HEADER]: predictionSchema().fingerprint });
    const back = decodePrediction(plain.value, plain.headers, LIMIT);
    expect(back).toEqual(PREDICTION);
    const fields = (predictionSchema().type as types.RecordType).fields.map((f) => f.name);
    expect(Object.keys(back)).toEqual(fields);

    const framed = encodePrediction(
      { ...PREDICTION, exit: BACKBONE_EXIT, truthLabel: null },
      { kind: "registry", schemaId: 8 },
    );
    const registry = new StaticSchemaRegistry([[8, predictionSchema().type]]);
    expect(decodePrediction(framed.value, {}, { ...LIMIT, registry })).toEqual({
      ...PREDICTION,
      exit: BACKBONE_EXIT,
      truthLabel: null,
    });
  });

  it("keeps negative savings and queue times (clock skew) that the schema allows", () => {
    const p = { ...PREDICTION, macsSaved: -1000, queueMs: -2.5 };
    const msg = encodePrediction(p);
    expect(decodePrediction(msg.value, msg.headers, LIMIT)).toEqual(p);
  });

  it("refuses to encode a prediction the worker should never build, as INTERNAL", () => {
    const bad: Partial<Prediction>[] = [
      { confidence: 1.5 },
      { exit: -2 },
      { frameId: "" },
      { label: 1.5 },
      { computeMs: Number.NaN },
    ];
    for (const b of bad) {
      expect(() => encodePrediction({ ...PREDICTION, ...b }), JSON.stringify(b)).toThrow(
        expect.objectContaining({ code: "INTERNAL" }) as LayercacheError,
      );
    }
  });

  it("rejects bad messages with a reason and record = Prediction", () => {
    const msg = encodePrediction(PREDICTION);
    const err = (() => {
      try {
        decodePrediction(msg.value.subarray(0, 10), msg.headers, LIMIT);
      } catch (e) {
        return e as LayercacheError;
      }
    })();
    expect(err?.details).toMatchObject({ reason: "undecodable", record: "Prediction" });
    // A frame is not a prediction.
    expect(
      reasonOf(() => decodePrediction(msg.value, { [SCHEMA_HEADER]: frameSchema().fingerprint }, LIMIT)),
    ).toBe("unknown-schema");
    const outOfRange = predictionSchema().type.toBuffer({ ...PREDICTION, confidence: 2 });
    expect(reasonOf(() => decodePrediction(outOfRange, msg.headers, LIMIT))).toBe("invalid-field");
  });

  it("carry exactHit, and read records of the schema before it as exactHit false", () => {
    const hit = { ...PREDICTION, exactHit: true, macs: 0, macsSaved: 555_556_665 };
    const msg = encodePrediction(hit);
    expect(decodePrediction(msg.value, msg.headers, LIMIT)).toEqual(hit);

    // v1, as workers wrote it before exactHit: kept in schemas/history, known to every reader.
    const [v1] = previousSchemas("Prediction");
    expect(v1).toBeDefined();
    const fields = (t: Type) => (t as types.RecordType).fields.map((f) => f.name);
    expect(fields(v1!)).toEqual(fields(predictionSchema().type).filter((f) => f !== "exactHit"));
    const { exactHit: _dropped, ...old } = PREDICTION;
    const body = v1!.toBuffer(old);
    const fingerprint = v1!.fingerprint("sha256").toString("hex");
    expect(fingerprint).not.toBe(predictionSchema().fingerprint);
    const read = decodePrediction(body, { [SCHEMA_HEADER]: fingerprint }, LIMIT);
    expect(read).toEqual({ ...old, exactHit: false });
    expect(Object.keys(read)).toEqual(fields(predictionSchema().type));

    // Through a registry, the same resolution.
    const registry = new StaticSchemaRegistry([[5, v1!]]);
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 5]), body]);
    expect(decodePrediction(framed, {}, { ...LIMIT, registry })).toEqual({ ...old, exactHit: false });
  });

  it("is readable by a reader of the previous schema (old readers skip exactHit)", () => {
    const [v1] = previousSchemas("Prediction");
    const current = predictionSchema().type;
    const body = current.toBuffer({ ...PREDICTION, exactHit: true });
    const resolver = v1!.createResolver(current);
    const { exactHit: _dropped, ...old } = PREDICTION;
    expect({ ...(v1!.fromBuffer(body, resolver) as object) }).toEqual(old);
  });

  it("matches the Prediction schema the codec shipped before, in its canonical form", () => {
    // The history file is the contract of older writers: it must not drift.
    const [v1] = previousSchemas("Prediction");
    const expected = parseSchema({
      type: "record",
      name: "Prediction",
      namespace: "dev.layercache",
      fields: [
        { name: "frameId", type: "string" },
        { name: "label", type: "int" },
        { name: "labelName", type: "string" },
        { name: "confidence", type: "double" },
        { name: "exit", type: "int" },
        { name: "audited", type: "boolean" },
        { name: "macs", type: "long" },
        { name: "macsSaved", type: "long" },
        { name: "modelId", type: "string" },
        { name: "headsVersion", type: "long" },
        { name: "queueMs", type: "double" },
        { name: "computeMs", type: "double" },
        { name: "endToEndMs", type: "double" },
        { name: "workerId", type: "string" },
        { name: "producedAt", type: "long" },
        { name: "truthLabel", type: ["null", "int"], default: null },
      ],
    });
    expect(v1!.fingerprint("sha256").toString("hex")).toBe(expected.fingerprint("sha256").toString("hex"));
  });
});
