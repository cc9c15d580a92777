/**
 * Multiply-accumulates (MACs) per frame of an ONNX model, read from its protobuf in TypeScript so that any
 * user's model can be measured without Python. Counted, with the batch axis (dim 0) taken as 1:
 * - Conv: output elements per frame x (Cin / group) x kh x kw (the weight's dims after the first);
 * - Gemm: K x N, one row per frame, honouring transA / transB;
 * - MatMul: output elements per frame x K; batch-like leading dims count, the leading batch axis does not.
 * Every other op costs 0 (activations, pooling, Add, normalisation, but also ConvTranspose, Einsum and ops
 * outside the default domain), as in tools/backbone/export.py, which wrote the manifests' numbers.
 *
 * Shapes come from the graph's inputs, outputs and value_info when they are static (a symbolic dim 0 is
 * the batch, taken as 1), else they are propagated from the graph inputs through the ops in RULES. A shape
 * that cannot be known (unsupported op, dynamic dim, Reshape target computed at run time...) is an error
 * only when a counted node needs it, so side branches that compute shapes at run time do not stop a count.
 */
import { readFile } from "node:fs/promises";
import onnxProto from "onnx-proto";
import type { onnx } from "onnx-proto";
import { LayercacheError } from "../errors/index.ts";

export interface MacsReport {
  /** MACs per frame of the whole graph. */
  total: number;
  /** MACs per frame by op type; only the counted types (Conv, Gemm, MatMul) present in the graph appear. */
  byOpType: Record<string, number>;
  /** Nodes in the graph, counted or not. */
  nodes: number;
}

type Shape = number[];
type Node = onnx.INodeProto;
/** Output shapes of a node from the shape of its first input (`x`) and whatever else it needs. */
type Rule = (x: Shape, node: Node, ctx: Ctx) => Shape[];
/** protobufjs decodes int64 as a Long when the long package is loadable, else as a number. */
type Int = number | { toNumber(): number };

interface Ctx {
  /** Static shapes by tensor name, batch axis resolved. */
  shapes: Map<string, Shape>;
  /** Why a tensor's shape is unknown (the root cause, not the chain), reported only if it is needed. */
  unknown: Map<string, string>;
  /** Flattened values of constant integer tensors: Reshape targets, Slice bounds, axes. */
  values: Map<string, number[]>;
}

const { ModelProto, TensorProto } = onnxProto.onnx;
const COUNTED = new Set(["Conv", "Gemm", "MatMul"]);

function fail(message: string, cause?: unknown): never {
  throw new LayercacheError("MANIFEST_INVALID", message, cause === undefined ? {} : { cause });
}

const num = (v: Int | null | undefined): number =>
  v === null || v === undefined ? 0 : typeof v === "number" ? v : v.toNumber();
const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);
const axisOf = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);
const input = (node: Node, i: number): string => node.input?.[i] ?? "";
const out0 = (node: Node): string => node.output?.[0] ?? "";
const describe = (node: Node): string => `${node.opType ?? "?"} node "${node.name ?? ""}"`;
const inDefaultDomain = (node: Node): boolean => !node.domain || node.domain === "ai.onnx";

const attr = (node: Node, name: string) => node.attribute?.find((a) => a.name === name);
const intAttr = (node: Node, name: string, dflt: number): number => num(attr(node, name)?.i ?? dflt);
const intsAttr = (node: Node, name: string): number[] | undefined => attr(node, name)?.ints?.map(num);

function shapeOf(ctx: Ctx, name: string): Shape {
  return ctx.shapes.get(name) ?? fail(ctx.unknown.get(name) ?? `no shape known for tensor "${name}"`);
}

/** Values of a constant input, or of an attribute for the older opsets that took them as attributes. */
function constInput(ctx: Ctx, node: Node, i: number, attrName?: string): number[] | undefined {
  const name = input(node, i);
  if (name === "") return attrName === undefined ? undefined : intsAttr(node, attrName);
  return ctx.values.get(name) ?? fail(`${describe(node)}: input "${name}" is not a constant`);
}

/** Runs fn, rethrowing any failure as MANIFEST_INVALID prefixed with what was being done. */
function within<T>(doing: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    return fail(`${doing}: ${(err as Error).message}`, err);
  }
}

/** Integer data held inline; external data (weights) is never read, only its dims. */
function tensorInts(t: onnx.ITensorProto): number[] | undefined {
  const wide = t.dataType === TensorProto.DataType.INT64;
  if (t.dataLocation === TensorProto.DataLocation.EXTERNAL) return undefined;
  if (!wide && t.dataType !== TensorProto.DataType.INT32) return undefined;
  const listed: Int[] = (wide ? t.int64Data : t.int32Data) ?? [];
  if (listed.length > 0) return listed.map(num);
  const raw = t.rawData ?? new Uint8Array();
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const size = wide ? 8 : 4;
  return Array.from({ length: Math.floor(raw.byteLength / size) }, (_, i) =>
    wide ? Number(view.getBigInt64(i * size, true)) : view.getInt32(i * size, true),
  );
}

/** A declared shape, or why it cannot be used. A symbolic dim 0 is the batch, taken as 1. */
function declaredShape(vi: onnx.IValueInfoProto): Shape | string {
  const dims = vi.type?.tensorType?.shape?.dim;
  if (!dims) return `tensor "${vi.name ?? ""}" has no declared shape`;
  const isSet = (d: onnx.TensorShapeProto.IDimension) => d.dimValue !== null && d.dimValue !== undefined;
  const dynamic = dims.findIndex((d, i) => i > 0 && !isSet(d));
  if (dynamic >= 0) return `tensor "${vi.name ?? ""}" has a dynamic dim ${dynamic}, not supported`;
  return dims.map((d) => (isSet(d) ? num(d.dimValue) : 1));
}

function broadcast(shapes: Shape[]): Shape {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  return Array.from({ length: rank }, (_, i) => {
    const dims = shapes.map((s) => s[s.length - rank + i] ?? 1);
    return dims.find((d) => d !== 1) ?? 1;
  });
}

/** Conv and pooling: [N, channels, ...spatial] from pads (or auto_pad), strides, dilations, ceil_mode. */
function windowed(x: Shape, node: Node, channels: number, kernel: number[]): Shape {
  const [strides, dilations, pads] = ["strides", "dilations", "pads"].map((a) => intsAttr(node, a) ?? []);
  const autoPad = new TextDecoder().decode(attr(node, "auto_pad")?.s ?? new Uint8Array()); // "" is NOTSET
  const round = intAttr(node, "ceil_mode", 0) === 1 ? Math.ceil : Math.floor;
  const spatial = kernel.map((k, i) => {
    const size = x[i + 2] ?? 0;
    const stride = strides?.[i] ?? 1;
    if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") return Math.ceil(size / stride);
    const span = (dilations?.[i] ?? 1) * (k - 1) + 1;
    const padded = autoPad === "VALID" ? size : size + (pads?.[i] ?? 0) + (pads?.[i + kernel.length] ?? 0);
    return round((padded - span) / stride) + 1;
  });
  return [x[0] ?? 1, channels, ...spatial];
}

const conv: Rule = (x, node, ctx) => {
  const w = shapeOf(ctx, input(node, 1)); // [Cout, Cin / group, ...kernel]
  return [windowed(x, node, w[0] ?? 0, intsAttr(node, "kernel_shape") ?? w.slice(2))];
};

const pool: Rule = (x, node) => {
  const kernel = intsAttr(node, "kernel_shape") ?? fail(`${describe(node)}: no kernel_shape`);
  const out = windowed(x, node, x[1] ?? 0, kernel);
  return [out, out]; // MaxPool's optional Indices output has the same shape
};

const reshape: Rule = (x, node, ctx) => {
  const allowZero = intAttr(node, "allowzero", 0) === 1;
  const target = (constInput(ctx, node, 1, "shape") ?? []).map((d, i) => (d === 0 && !allowZero ? x[i] : d));
  const rest = prod(target.filter((d) => d !== -1).map((d) => d ?? 0));
  return [target.map((d) => (d === -1 ? prod(x) / rest : (d ?? 0)))];
};

const concat: Rule = (x, node, ctx) => {
  const inputs = (node.input ?? []).filter((n) => n !== "");
  const shapes = inputs.map((n) => shapeOf(ctx, n));
  const axis = axisOf(intAttr(node, "axis", 0), x.length);
  // Folded so that shapes assembled from Shape/Gather (x.view(x.size(0), -1)) can feed a Reshape.
  const folded = inputs.flatMap((n) => ctx.values.get(n) ?? [NaN]);
  if (x.length === 1 && !folded.some(Number.isNaN)) ctx.values.set(out0(node), folded);
  return [x.map((d, i) => (i === axis ? shapes.reduce((sum, s) => sum + (s[i] ?? 0), 0) : d))];
};

const slice: Rule = (x, node, ctx) => {
  // Opset 10 moved starts, ends and axes from attributes to inputs, and added steps.
  const starts = constInput(ctx, node, 1, "starts") ?? [];
  const ends = constInput(ctx, node, 2, "ends") ?? [];
  const axes = constInput(ctx, node, 3, "axes") ?? starts.map((_, i) => i);
  const steps = constInput(ctx, node, 4) ?? [];
  const out = [...x];
  axes.forEach((a, i) => {
    const [axis, step] = [axisOf(a, x.length), steps[i] ?? 1];
    const dim = x[axis] ?? 0;
    const clamp = (v: number, lo: number) =>
      Math.min(Math.max(v < 0 ? v + dim : v, lo), step > 0 ? dim : dim - 1);
    const [start, end] = [clamp(starts[i] ?? 0, 0), clamp(ends[i] ?? dim, step > 0 ? 0 : -1)];
    out[axis] = Math.max(0, Math.ceil((end - start) / step));
  });
  return [out];
};

const reduce: Rule = (x, node, ctx) => {
  // Axes moved from an attribute to an input in opset 18 (13 for ReduceSum): accept either.
  const axes = (constInput(ctx, node, 1, "axes") ?? []).map((a) => axisOf(a, x.length));
  if (axes.length === 0 && intAttr(node, "noop_with_empty_axes", 0) === 1) return [x];
  const keep = intAttr(node, "keepdims", 1) === 1;
  return [x.flatMap((d, i) => (axes.length === 0 || axes.includes(i) ? (keep ? [1] : []) : [d]))];
};

const squeeze: Rule = (x, node, ctx) => {
  const axes = constInput(ctx, node, 1, "axes")?.map((a) => axisOf(a, x.length));
  return [x.filter((d, i) => (axes ? !axes.includes(i) : d !== 1))];
};

const unsqueeze: Rule = (x, node, ctx) => {
  const given = constInput(ctx, node, 1, "axes") ?? [];
  const rank = x.length + given.length;
  const axes = given.map((a) => axisOf(a, rank));
  const rest = [...x];
  return [Array.from({ length: rank }, (_, i) => (axes.includes(i) ? 1 : (rest.shift() ?? 1)))];
};

const gemm: Rule = (a, node, ctx) => {
  const b = shapeOf(ctx, input(node, 1));
  const m = intAttr(node, "transA", 0) === 1 ? a[1] : a[0];
  const n = intAttr(node, "transB", 0) === 1 ? b[0] : b[1];
  return [[m ?? 0, n ?? 0]];
};

/** numpy matmul: a 1-D operand gets a dim added then removed; leading dims broadcast. */
function matmulShape(a: Shape, b: Shape): Shape {
  const rows = a.length > 1 ? [a[a.length - 2] ?? 0] : [];
  const cols = b.length > 1 ? [b[b.length - 1] ?? 0] : [];
  return [...broadcast([a.slice(0, -2), b.slice(0, -2)]), ...rows, ...cols];
}

const shapeOp: Rule = (x, node, ctx) => {
  const end = attr(node, "end") ? intAttr(node, "end", 0) : undefined; // start and end: opset 15
  ctx.values.set(out0(node), x.slice(intAttr(node, "start", 0), end)); // the batch dim reads as 1
  return [[ctx.values.get(out0(node))?.length ?? 0]];
};

const gather: Rule = (data, node, ctx) => {
  const indices = shapeOf(ctx, input(node, 1));
  const axis = axisOf(intAttr(node, "axis", 0), data.length);
  const [values, picks] = [ctx.values.get(input(node, 0)), ctx.values.get(input(node, 1))];
  const picked = picks?.map((p) => values?.[axisOf(p, values.length)] ?? NaN) ?? [NaN];
  if (data.length === 1 && !picked.some(Number.isNaN)) ctx.values.set(out0(node), picked);
  return [[...data.slice(0, axis), ...indices, ...data.slice(axis + 1)]];
};

const constant: Rule = (_x, node, ctx) => {
  const t = attr(node, "value")?.t;
  const scalar = attr(node, "value_int") !== undefined;
  const value = t ? tensorInts(t) : scalar ? [intAttr(node, "value_int", 0)] : intsAttr(node, "value_ints");
  if (value) ctx.values.set(out0(node), value);
  if (t) return [(t.dims ?? []).map(num)];
  if (value) return [scalar ? [] : [value.length]];
  return fail(`${describe(node)}: only value, value_int and value_ints constants are supported`);
};

const same: Rule = (x) => [x];
const elementwise: Rule = (_x, node, ctx) => [broadcast((node.input ?? []).map((n) => shapeOf(ctx, n)))];
const globalPool: Rule = (x) => [x.map((d, i) => (i < 2 ? d : 1))];
const flatten: Rule = (x, node) => {
  const axis = axisOf(intAttr(node, "axis", 1), x.length);
  return [[prod(x.slice(0, axis)), prod(x.slice(axis))]];
};
const transpose: Rule = (x, node) => {
  const perm = intsAttr(node, "perm") ?? x.map((_, i) => x.length - 1 - i);
  return [perm.map((p) => x[p] ?? 0)];
};
const matmul: Rule = (a, node, ctx) => [matmulShape(a, shapeOf(ctx, input(node, 1)))];

/** The ops shapes are propagated through; the rules above say which attributes and inputs they honour. */
const RULES = new Map<string, Rule>(
  Object.entries({
    "Relu LeakyRelu PRelu Sigmoid Tanh HardSigmoid HardSwish Elu Selu Gelu Erf Clip Softmax LogSoftmax": same,
    "BatchNormalization InstanceNormalization LayerNormalization LRN Dropout Identity Cast": same,
    "Neg Abs Sqrt Exp Log": same,
    "Add Sub Mul Div Pow Max Min Sum Mean Where Equal": elementwise,
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2": reduce,
    "MaxPool AveragePool": pool,
    "GlobalAveragePool GlobalMaxPool": globalPool,
    ...{ Conv: conv, Flatten: flatten, Reshape: reshape, Concat: concat, Slice: slice, Transpose: transpose },
    ...{ Squeeze: squeeze, Unsqueeze: unsqueeze, Gemm: gemm, MatMul: matmul },
    ...{ Shape: shapeOp, Gather: gather, Constant: constant },
  }).flatMap(([ops, rule]) => ops.split(" ").map((op): [string, Rule] => [op, rule])),
);
/** Ops whose output holds the same integers as their input, so constants flow through them. */
const KEEPS_VALUES = new Set(["Identity", "Cast", "Squeeze", "Unsqueeze"]);

/**
 * Infers a node's output shapes. Any failure, even on a malformed node, only marks its outputs unknown: it is
 * reported if a counted node needs one of them.
 */
function propagate(ctx: Ctx, node: Node): void {
  const outputs = node.output ?? [];
  const rule = inDefaultDomain(node) ? RULES.get(node.opType ?? "") : undefined;
  try {
    if (!rule) fail(`op ${node.opType ?? "?"} (${describe(node)}) is not supported by shape propagation`);
    const shapes = rule(input(node, 0) === "" ? [] : shapeOf(ctx, input(node, 0)), node, ctx);
    outputs.forEach((name, i) => {
      const shape = shapes[i];
      if (!shape) return;
      if (!shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`${describe(node)} gave [${shape}]`);
      if (!ctx.shapes.has(name)) ctx.shapes.set(name, shape); // declared shapes win
    });
    const kept = ctx.values.get(input(node, 0));
    if (KEEPS_VALUES.has(node.opType ?? "") && kept) ctx.values.set(out0(node), kept);
  } catch (err) {
    for (const name of outputs) if (!ctx.shapes.has(name)) ctx.unknown.set(name, (err as Error).message);
  }
}

function nodeMacs(ctx: Ctx, node: Node): number {
  const b = shapeOf(ctx, input(node, 1)); // for Conv, the weight: [Cout, Cin / group, ...kernel]
  if (node.opType === "Conv") return prod(shapeOf(ctx, out0(node)).slice(1)) * prod(b.slice(1));
  const a = shapeOf(ctx, input(node, 0));
  if (node.opType === "Gemm") {
    const k = intAttr(node, "transA", 0) === 1 ? a[0] : a[1];
    const n = intAttr(node, "transB", 0) === 1 ? b[0] : b[1];
    return (k ?? 0) * (n ?? 0);
  }
  const out = matmulShape(a, b);
  // The output's leading axis is the batch, unless a is a vector and the output has one axis ([K] x [K, N]).
  return prod(out.length >= 2 || a.length >= 2 ? out.slice(1) : out) * (a[a.length - 1] ?? 0);
}

function newCtx(graph: onnx.IGraphProto): Ctx {
  const ctx: Ctx = { shapes: new Map(), unknown: new Map(), values: new Map() };
  for (const vi of [...(graph.input ?? []), ...(graph.valueInfo ?? []), ...(graph.output ?? [])]) {
    const shape = declaredShape(vi);
    if (typeof shape === "string") ctx.unknown.set(vi.name ?? "", shape);
    else ctx.shapes.set(vi.name ?? "", shape);
  }
  for (const t of graph.initializer ?? []) {
    ctx.shapes.set(t.name ?? "", (t.dims ?? []).map(num));
    const values = tensorInts(t);
    if (values) ctx.values.set(t.name ?? "", values);
  }
  return ctx;
}

/** MACs per frame of a serialised ONNX model. Throws MANIFEST_INVALID if it cannot be counted. */
export function countMacs(model: Uint8Array): MacsReport {
  const graph =
    within("not an ONNX model", () => ModelProto.decode(model).graph) ?? fail("the model has no graph");
  const ctx = newCtx(graph);
  const report: MacsReport = { total: 0, byOpType: {}, nodes: graph.node?.length ?? 0 };
  for (const node of graph.node ?? []) {
    propagate(ctx, node);
    const op = node.opType ?? "";
    if (!COUNTED.has(op) || !inDefaultDomain(node)) continue;
    const macs = within(`cannot count the MACs of ${describe(node)}`, () => nodeMacs(ctx, node));
    report.byOpType[op] = (report.byOpType[op] ?? 0) + macs;
    report.total += macs;
  }
  return report;
}

/** countMacs on a file; a file that cannot be read is MANIFEST_INVALID too. Messages name the file. */
export async function countMacsInFile(path: string): Promise<MacsReport> {
  const bytes = await readFile(path).catch((err: Error) => fail(`cannot read ${path}: ${err.message}`, err));
  return within(path, () => countMacs(bytes));
}
