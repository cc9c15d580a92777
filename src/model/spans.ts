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
 * activation or logits, under the manifest's names. Features pooled the
 * exporter's way are rebuilt from the activation in six nodes (poolingNodes)
 * instead of the exporter's traced slicing. A span may carry a tail
 * (`SpanTail`): the engine appends the predict graph of the head at the exit
 * the span ends at, so that the head answers inside the span's own call.
 */
import onnxProto from "onnx-proto";
import type { onnx } from "onnx-proto";
import { LayercacheError } from "../errors/index.ts";
import type { ExitSpec, Manifest } from "./manifest.ts";
import { ACTIVATION, LOGITS } from "./manifest.ts";

const { AttributeProto, ModelProto, TensorProto } = onnxProto.onnx;

/** Name of the output carrying exit `e`'s pooled features in a span graph. */
export const spanFeatureName = (exit: number): string => `exit${exit}`;

/** Segments [first, last] (inclusive) of a manifest. */
export interface SpanRange {
  first: number;
  last: number;
  /** A small graph run on the features of the exit the span ends at, in the same session. */
  tail?: SpanTail;
}

/**
 * A graph appended to a span (the engine's head at the exit it ends at, so
 * that answering there costs no onnxruntime call of its own). Its input `x`
 * is fed the features of the exit after the span's last segment; its other
 * inputs become the span's, and its outputs the span's, all under
 * `spanTailName` (fed and read on every run). `key` names the graph: spans
 * with the same range and key share a session.
 */
export interface SpanTail {
  key: string;
  graph(): Uint8Array;
}

/** Name in a span's graph of a tail graph's input or output. */
export const spanTailName = (name: string): string => `tail/${name}`;

/** The tail graph's input that the span feeds with its last exit's features. */
const TAIL_FEATURES = "x";

/**
 * Opset from which the ops a head graph uses (Sub, Mul, Gemm, Relu, Softmax
 * along one axis) mean what they do at the heads' own opset.
 */
const TAIL_MIN_OPSET = 13;

function invalid(message: string): never {
  throw new LayercacheError("MANIFEST_INVALID", message);
}

/** Spans rename a graph's tensors, which a node's subgraph would still name the old way. */
function checkFlat(node: onnx.INodeProto, where: string): void {
  if (node.attribute?.some((a) => a.g || (a.graphs && a.graphs.length > 0))) {
    invalid(`${where}: node "${node.name}" has a subgraph; spans cannot fuse it`);
  }
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
    const exit = manifest.exits.findIndex((e) => e.afterSegment === s);
    const final = s === manifest.segments.length - 1 ? LOGITS : ACTIVATION;
    const out = (name: string) =>
      (graph.output ?? []).find((o) => o.name === name) ?? invalid(`${spec.file}: no output "${name}"`);
    // Features we know how to pool are rebuilt from the activation (see
    // poolingNodes); the exporter's own pooling nodes are then dead and go.
    const pooling = exit >= 0 ? gridPooling(manifest.exits[exit]!) : null;
    const keep = pooling ? neededFor(graph, [out(final).name!]) : null;
    for (const node of graph.node ?? []) {
      if (keep && !keep.has(node)) continue;
      checkFlat(node, spec.file);
      node.name = prefix + (node.name ?? "");
      node.input = (node.input ?? []).map(rename);
      node.output = (node.output ?? []).map(rename);
      nodes.push(node);
    }
    const used = new Set(nodes.flatMap((n) => n.input ?? []));
    for (const tensor of graph.initializer ?? []) {
      if (keep && !used.has(rename(tensor.name ?? ""))) continue;
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
    if (exit >= 0) {
      const info = out(manifest.exits[exit]!.feature);
      if (pooling) {
        nodes.push(...poolingNodes(prefix, rename(out(final).name!), pooling, spanFeatureName(exit)));
      } else {
        // An Identity gives the feature output a stable, exit-numbered name.
        nodes.push({
          opType: "Identity",
          name: `${prefix}exit`,
          input: [rename(info.name!)],
          output: [spanFeatureName(exit)],
        });
      }
      outputs.push({ ...info, name: spanFeatureName(exit) });
    }
    previousActivation = rename(out(final).name!);
    if (s === last) {
      nodes.push({ opType: "Identity", name: `${prefix}out`, input: [previousActivation], output: [final] });
      outputs.push({ ...out(final), name: final });
    }
  }

  const inputs = [graphInput!];
  if (range.tail) {
    const exit = manifest.exits.findIndex((e) => e.afterSegment === last);
    if (exit < 0) invalid(`segments ${first}-${last} end at no exit: a tail has no features to read`);
    const opset = (head!.opsetImport ?? []).find((o) => (o.domain ?? "") === "")?.version;
    if (Number(opset) < TAIL_MIN_OPSET) {
      invalid(`segments ${first}-${last} use opset ${opset}: a tail needs ${TAIL_MIN_OPSET} or newer`);
    }
    appendTail(range.tail, spanFeatureName(exit), nodes, initializers, inputs, outputs);
  }
  const graph: onnx.IGraphProto = {
    name: `segments ${first}-${last}${range.tail ? ` + ${range.tail.key}` : ""}`,
    node: nodes,
    initializer: initializers,
    input: inputs,
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

/** Adds a tail's nodes, weights, inputs and outputs to a span, its names under `spanTailName`. */
function appendTail(
  tail: SpanTail,
  features: string,
  nodes: onnx.INodeProto[],
  initializers: onnx.ITensorProto[],
  inputs: onnx.IValueInfoProto[],
  outputs: onnx.IValueInfoProto[],
): void {
  const graph = ModelProto.decode(tail.graph()).graph ?? invalid(`tail ${tail.key}: no graph`);
  if (!(graph.input ?? []).some((i) => i.name === TAIL_FEATURES)) {
    invalid(`tail ${tail.key}: no input named "${TAIL_FEATURES}" to feed the exit's features to`);
  }
  const rename = (name: string) =>
    name === "" ? name : name === TAIL_FEATURES ? features : spanTailName(name);
  for (const node of graph.node ?? []) {
    checkFlat(node, `tail ${tail.key}`);
    node.name = spanTailName(node.name ?? "");
    node.input = (node.input ?? []).map(rename);
    node.output = (node.output ?? []).map(rename);
    nodes.push(node);
  }
  for (const tensor of graph.initializer ?? []) {
    tensor.name = rename(tensor.name ?? "");
    initializers.push(tensor);
  }
  for (const input of graph.input ?? []) {
    if (input.name !== TAIL_FEATURES) inputs.push({ ...input, name: rename(input.name ?? "") });
  }
  for (const output of graph.output ?? []) outputs.push({ ...output, name: rename(output.name ?? "") });
}

/**
 * The poolings tools/backbone/export.py writes: the global average, then the
 * averages over a G x G grid of cells ("global-average+GxG-average").
 */
const GRID_POOLING = /^global-average\+(\d+)x\1-average$/;

/** Window of the grid pooling for an activation of H x W: see poolingNodes. */
interface GridPooling {
  kernel: [number, number];
  strides: [number, number];
}

/**
 * Whether an exit's features can be rebuilt by poolingNodes: the manifest's
 * pooling is the exporter's, over a [C, H, W] activation, with a 2 x 2 grid
 * (the quadrants adaptive pooling takes, for any H and W of at least 2) or a
 * finer one that divides H and W into equal cells.
 */
export function gridPooling(exit: Pick<ExitSpec, "pooling" | "activation">): GridPooling | null {
  const grid = Number(GRID_POOLING.exec(exit.pooling)?.[1]);
  const [, h, w] = exit.activation;
  if (exit.activation.length !== 3 || !(grid >= 2 && h! >= grid && w! >= grid)) return null;
  if (grid === 2) {
    return {
      kernel: [Math.ceil(h! / 2), Math.ceil(w! / 2)],
      strides: [Math.floor(h! / 2), Math.floor(w! / 2)],
    };
  }
  if (h! % grid !== 0 || w! % grid !== 0) return null;
  return { kernel: [h! / grid, w! / grid], strides: [h! / grid, w! / grid] };
}

/**
 * The exit features in six nodes. The exporter traced the quadrant pooling
 * from PyTorch slicing, which leaves some sixty small shape-arithmetic, Slice
 * and ReduceMean nodes per exit; at batch 1 they cost about a fifth of the
 * whole network's time. The same numbers come from one GlobalAveragePool and
 * one AveragePool: for the 2 x 2 grid its window is ceil(H/2) and stride
 * floor(H/2), so its two windows per axis are [0, ceil(H/2)) and
 * [floor(H/2), H), the quadrants adaptive pooling takes; a finer grid's
 * cells are equal and do not overlap. A Transpose puts them in the exporter's
 * order: the global averages of all channels, then each cell's, row by row
 * (for 2 x 2: top-left, top-right, bottom-left, bottom-right), for all channels.
 */
function poolingNodes(prefix: string, act: string, pooling: GridPooling, output: string): onnx.INodeProto[] {
  const ints = (name: string, values: number[]): onnx.IAttributeProto => ({
    name,
    type: AttributeProto.AttributeType.INTS,
    ints: values,
  });
  const int = (name: string, value: number): onnx.IAttributeProto => ({
    name,
    type: AttributeProto.AttributeType.INT,
    i: value,
  });
  const t = (name: string) => `${prefix}pool/${name}`;
  const node = (opType: string, input: string[], out: string, attribute: onnx.IAttributeProto[] = []) => ({
    opType,
    name: out,
    input,
    output: [out],
    attribute,
  });
  return [
    node("GlobalAveragePool", [act], t("global4d")),
    node("Flatten", [t("global4d")], t("global"), [int("axis", 1)]),
    node("AveragePool", [act], t("cells4d"), [
      ints("kernel_shape", pooling.kernel),
      ints("strides", pooling.strides),
    ]),
    node("Transpose", [t("cells4d")], t("cellsLast"), [ints("perm", [0, 2, 3, 1])]),
    node("Flatten", [t("cellsLast")], t("cells"), [int("axis", 1)]),
    node("Concat", [t("global"), t("cells")], output, [int("axis", 1)]),
  ];
}

/** The nodes of a graph that the named outputs depend on. */
function neededFor(graph: onnx.IGraphProto, outputs: readonly string[]): Set<onnx.INodeProto> {
  const producer = new Map<string, onnx.INodeProto>();
  for (const node of graph.node ?? []) for (const o of node.output ?? []) producer.set(o, node);
  const needed = new Set<onnx.INodeProto>();
  const pending = [...outputs];
  while (pending.length > 0) {
    const node = producer.get(pending.pop()!);
    if (!node || needed.has(node)) continue;
    needed.add(node);
    pending.push(...(node.input ?? []));
  }
  return needed;
}
