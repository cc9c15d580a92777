/**
 * Spans: several consecutive segments fused into one ONNX graph, so that the
 * engine pays one onnxruntime call (and one activation hand-over) per open
 * exit instead of one per segment. bench/backbone measured what each cut
 * costs: 22-73% on top of the whole model when all eight segments run apart.
 *
 * A span's graph is the segments' graphs joined end to end: every tensor and
 * node name gets a `s<segment>/` prefix, each segment's input is wired to the
 * previous one's activation, and the weights (external data in the segment
 * files) are inlined so the session can be built from memory. Its outputs are
 * the pooled features of every exit inside the span (`exit<e>`, so that frames
 * that end at the backbone still teach every head) and the last segment's
 * activation or logits, under the manifest's names.
 */
import onnxProto from "onnx-proto";
import type { onnx } from "onnx-proto";
import { LayercacheError } from "../errors/index.ts";
import type { Manifest } from "./manifest.ts";
import { ACTIVATION, LOGITS } from "./manifest.ts";

const { ModelProto, TensorProto } = onnxProto.onnx;

/** Name of the output carrying exit `e`'s pooled features in a span graph. */
export const spanFeatureName = (exit: number): string => `exit${exit}`;

/** Segments [first, last] (inclusive) of a manifest. */
export interface SpanRange {
  first: number;
  last: number;
}

function invalid(message: string): never {
  throw new LayercacheError("MANIFEST_INVALID", message);
}

/** Inlines a tensor's external data from the model folder's weights file. */
function inlineWeights(tensor: onnx.ITensorProto, weights: Uint8Array, file: string): void {
  if (tensor.dataLocation !== TensorProto.DataLocation.EXTERNAL) return;
  const entry = (key: string) => tensor.externalData?.find((e) => e.key === key)?.value ?? undefined;
  const offset = Number(entry("offset") ?? 0);
  const length = Number(entry("length") ?? Number.NaN);
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset + length > weights.length) {
    invalid(`${file}: tensor "${tensor.name}" points outside the weights file`);
  }
  tensor.rawData = weights.subarray(offset, offset + length);
  tensor.dataLocation = TensorProto.DataLocation.DEFAULT;
  tensor.externalData = [];
}

/**
 * Builds the ONNX bytes of segments [first, last] from the decoded segment
 * models (`segments[i]` is segment i's file, decoded) and the weights file.
 */
export function buildSpan(
  manifest: Manifest,
  segments: readonly Uint8Array[],
  weights: Uint8Array,
  range: SpanRange,
): Uint8Array {
  const { first, last } = range;
  if (!(first >= 0 && first <= last && last < manifest.segments.length)) {
    throw new LayercacheError("INTERNAL", `no span of segments [${first}, ${last}]`);
  }
  const nodes: onnx.INodeProto[] = [];
  const initializers: onnx.ITensorProto[] = [];
  const valueInfo: onnx.IValueInfoProto[] = [];
  const outputs: onnx.IValueInfoProto[] = [];
  let head: onnx.IModelProto | undefined;
  let graphInput: onnx.IValueInfoProto | undefined;
  let previousActivation = "";

  for (let s = first; s <= last; s++) {
    const spec = manifest.segments[s]!;
    const model = ModelProto.decode(segments[s]!);
    const graph = model.graph ?? invalid(`${spec.file}: no graph`);
    head ??= model;
    const prefix = `s${s}/`;
    // The segment's input becomes the previous segment's activation; the span's own input keeps its name.
    const rename = (name: string): string => {
      if (name === "") return name;
      if (name === spec.input.name) return s === first ? name : previousActivation;
      return prefix + name;
    };
    for (const node of graph.node ?? []) {
      if (node.attribute?.some((a) => a.g || (a.graphs && a.graphs.length > 0))) {
        invalid(`${spec.file}: node "${node.name}" has a subgraph; spans cannot fuse it`);
      }
      node.name = prefix + (node.name ?? "");
      node.input = (node.input ?? []).map(rename);
      node.output = (node.output ?? []).map(rename);
      nodes.push(node);
    }
    for (const tensor of graph.initializer ?? []) {
      inlineWeights(tensor, weights, spec.file);
      tensor.name = rename(tensor.name ?? "");
      initializers.push(tensor);
    }
    for (const info of graph.valueInfo ?? []) {
      info.name = rename(info.name ?? "");
      valueInfo.push(info);
    }
    if (s === first) {
      graphInput = (graph.input ?? []).find((i) => i.name === spec.input.name);
      if (!graphInput) invalid(`${spec.file}: no graph input named "${spec.input.name}"`);
    }
    const out = (name: string) =>
      (graph.output ?? []).find((o) => o.name === name) ?? invalid(`${spec.file}: no output "${name}"`);
    const exit = manifest.exits.findIndex((e) => e.afterSegment === s);
    if (exit >= 0) {
      const info = out(manifest.exits[exit]!.feature);
      const renamed = rename(info.name!);
      // An Identity gives the feature output a stable, exit-numbered name.
      nodes.push({
        opType: "Identity",
        name: `${prefix}exit`,
        input: [renamed],
        output: [spanFeatureName(exit)],
      });
      outputs.push({ ...info, name: spanFeatureName(exit) });
    }
    const final = s === manifest.segments.length - 1 ? LOGITS : ACTIVATION;
    previousActivation = rename(out(final).name!);
    if (s === last) {
      nodes.push({ opType: "Identity", name: `${prefix}out`, input: [previousActivation], output: [final] });
      outputs.push({ ...out(final), name: final });
    }
  }

  const graph: onnx.IGraphProto = {
    name: `segments ${first}-${last}`,
    node: nodes,
    initializer: initializers,
    input: [graphInput!],
    output: outputs,
    valueInfo,
  };
  const model: onnx.IModelProto = {
    irVersion: head!.irVersion,
    opsetImport: head!.opsetImport,
    producerName: "layercache spans",
    graph,
  };
  return ModelProto.encode(ModelProto.create(model)).finish();
}
