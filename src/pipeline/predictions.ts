/** From the inference thread's outcome for one frame to the Prediction record on the wire. */
import type { Prediction } from "../codec/prediction.ts";
import type { ModelInfo, OutcomeColumns } from "./inference-protocol.ts";

/** What the main thread keeps of a frame while the model works on it. */
export interface FrameMeta {
  id: string;
  /** Frame.producedAt, Unix epoch milliseconds. */
  producedAt: number;
  /** Frame.label: ground truth, when the producer sent it. */
  label: number | null;
  /** When the worker consumed the frame, Unix epoch milliseconds. */
  receivedAt: number;
}

export function toPrediction(
  frame: FrameMeta,
  outcomes: OutcomeColumns,
  i: number,
  model: ModelInfo,
  workerId: string,
  now: number,
): Prediction {
  const label = outcomes.label[i]!;
  const macs = Math.round(outcomes.macs[i]!);
  return {
    frameId: frame.id,
    label,
    labelName: model.classes[label] ?? String(label),
    confidence: outcomes.confidence[i]!,
    exit: outcomes.exit[i]!,
    audited: outcomes.audited[i] === 1,
    macs,
    // Heads evaluated on the way can cost more than an early exit saved; report no saving then.
    macsSaved: Math.max(0, model.fullMacs - macs),
    modelId: model.modelId,
    headsVersion: outcomes.headsVersion[i]!,
    queueMs: frame.receivedAt - frame.producedAt,
    computeMs: outcomes.computeMs[i]!,
    endToEndMs: now - frame.producedAt,
    workerId,
    producedAt: now,
    truthLabel: frame.label,
    exactHit: outcomes.exactHit[i] === 1,
  };
}
