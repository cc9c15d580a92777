/**
 * Predictions on the wire (schemas/Prediction.avsc). The worker encodes them;
 * consumers (tests, benchmarks, downstream services) decode them. A bad
 * prediction message is rejected like a bad frame: FRAME_INVALID with a
 * `details.reason` and `details.record = "Prediction"`.
 */
import { LayercacheError } from "../errors/index.ts";
import type { EncodedMessage, EnvelopeOptions, Framing, MessageHeaders } from "./envelope.ts";
import { FINGERPRINT_FRAMING, decodeEnvelope, encodeEnvelope, frameInvalid } from "./envelope.ts";
import { predictionSchema, previousSchemas } from "./schemas.ts";

/** `Prediction.exit` when the full backbone answered. */
export const BACKBONE_EXIT = -1;

export interface Prediction {
  frameId: string;
  label: number;
  labelName: string;
  /** Probability of `label`, in [0, 1]. */
  confidence: number;
  /** Exit that answered, or BACKBONE_EXIT. */
  exit: number;
  audited: boolean;
  /** Multiply-accumulates executed for this frame. */
  macs: number;
  /** Full-backbone MACs minus `macs` (negative when heads cost more than they saved). */
  macsSaved: number;
  modelId: string;
  headsVersion: number;
  /** From the frame's producedAt to the start of work; negative readings mean clock skew. */
  queueMs: number;
  computeMs: number;
  endToEndMs: number;
  workerId: string;
  /** Unix epoch milliseconds. */
  producedAt: number;
  /** The frame's label, when it carried one. */
  truthLabel: number | null;
  /** Answered from the exact cache (a repeat of an earlier frame's model input); false from older writers. */
  exactHit: boolean;
}

const FIELDS: readonly (keyof Prediction)[] = [
  "frameId",
  "label",
  "labelName",
  "confidence",
  "exit",
  "audited",
  "macs",
  "macsSaved",
  "modelId",
  "headsVersion",
  "queueMs",
  "computeMs",
  "endToEndMs",
  "workerId",
  "producedAt",
  "truthLabel",
  "exactHit",
];

/** The first field whose value is out of range, with why; undefined when all are fine. */
function findProblem(p: Prediction): [field: string, problem: string] | undefined {
  const finite = (n: number) => Number.isFinite(n);
  const rules: [string, boolean, string][] = [
    ["frameId", p.frameId.length > 0, "is empty"],
    ["label", p.label >= 0, "is negative"],
    ["confidence", p.confidence >= 0 && p.confidence <= 1, "is not in [0, 1]"],
    ["exit", p.exit >= BACKBONE_EXIT, `is below ${BACKBONE_EXIT}`],
    ["macs", p.macs >= 0, "is negative"],
    ["headsVersion", p.headsVersion >= 0, "is negative"],
    ["queueMs", finite(p.queueMs), "is not finite"],
    ["computeMs", finite(p.computeMs) && p.computeMs >= 0, "is negative or not finite"],
    ["endToEndMs", finite(p.endToEndMs), "is not finite"],
    ["producedAt", p.producedAt >= 0, "is negative"],
    ["truthLabel", p.truthLabel === null || p.truthLabel >= 0, "is negative"],
  ];
  const failed = rules.find(([, ok]) => !ok);
  return failed && [failed[0], failed[2]];
}

/** Serialises the worker's own prediction; a bad one is a bug, so this throws INTERNAL. */
export function encodePrediction(p: Prediction, framing: Framing = FINGERPRINT_FRAMING): EncodedMessage {
  const record = pick(p);
  const message = encodeEnvelope(predictionSchema(), record, framing, "INTERNAL");
  const problem = findProblem(record);
  if (problem) {
    throw new LayercacheError("INTERNAL", `prediction for ${p.frameId}: ${problem[0]} ${problem[1]}`);
  }
  return message;
}

/**
 * Unwraps, decodes and checks one predictions-topic message. Throws
 * FRAME_INVALID. Records written with an earlier Prediction schema
 * (schemas/history) decode too, with the defaults of the fields added since.
 */
export function decodePrediction(
  value: Buffer | null | undefined,
  headers: MessageHeaders | undefined,
  options: EnvelopeOptions,
): Prediction {
  let record: Prediction;
  try {
    const writerSchemas = [...(options.writerSchemas ?? []), ...previousSchemas("Prediction")];
    // The reader schema fixes every field's type, so only values need checking.
    record = pick(
      decodeEnvelope(predictionSchema(), value, headers, { ...options, writerSchemas }) as Prediction,
    );
  } catch (err) {
    if (err instanceof LayercacheError && err.code === "FRAME_INVALID") {
      throw new LayercacheError("FRAME_INVALID", err.message, {
        details: { ...err.details, record: "Prediction" },
      });
    }
    throw err;
  }
  const problem = findProblem(record);
  if (problem) {
    throw frameInvalid("invalid-field", `prediction: ${problem[0]} ${problem[1]}`, {
      field: problem[0],
      record: "Prediction",
    });
  }
  return record;
}

/** A plain object with exactly the schema's fields (no avsc record class, no extra properties). */
function pick(p: Prediction): Prediction {
  const out: Partial<Record<keyof Prediction, unknown>> = {};
  for (const f of FIELDS) out[f] = p[f];
  return out as Prediction;
}
