/**
 * The heads' batch arithmetic on onnxruntime. The TypeScript heads
 * (head-base.ts) are the reference: exact, float64 sums, checked against
 * finite differences. They are also ~50 times slower per multiply-accumulate
 * than onnxruntime's matrix kernels, and a training step of the seven MLP
 * heads is ~45M multiply-accumulates, so learning in TypeScript cost more
 * than the backbone it was meant to save. This module builds, for one head
 * shape, two small ONNX graphs with the same maths:
 *
 * - `predict`: standardize, forward, softmax → probabilities (n × C);
 * - `gradient`: the same forward, soft-target cross-entropy, and its
 *   gradient with respect to every parameter, in the head's flat layout.
 *
 * Parameters and statistics are graph inputs, not initializers, so one pair
 * of sessions serves every head of that shape at every version. Standardizing
 * happens in float32 here (float64 in the reference): the two agree to ~1e-5.
 *
 * A nearest-neighbour memory (knn-head.ts) has a third graph, `similarity`:
 * one matrix product of n unit queries with the m remembered unit vectors
 * (n × m cosine similarities), the bulk of its arithmetic; choosing the
 * neighbours and voting stay in TypeScript (O(n·m), not O(n·m·D)). The memory
 * is a graph input too, so any number of entries, any version. The "mlp+knn"
 * ensemble's kernel has all three graphs.
 */
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import type { onnx } from "onnx-proto";
import { LayercacheError } from "../errors/index.ts";
import { onnxSessionOptions } from "../model/backbone.ts";
import type { SpanTail } from "../model/spans.ts";
import type { HeadShape } from "./head-types.ts";
import { remembers } from "./head-types.ts";

const { ModelProto, TensorProto } = onnxProto.onnx;
const FLOAT = TensorProto.DataType.FLOAT;
const INT64 = TensorProto.DataType.INT64;
/** Opset 17: ReduceSum takes axes as an input, ReduceLogSumExp as an attribute. */
const OPSET = 17;

type Dim = number | string;

function valueInfo(name: string, dims: readonly Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: FLOAT,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function intAttr(name: string, i: number): onnx.IAttributeProto {
  return { name, type: onnxProto.onnx.AttributeProto.AttributeType.INT, i };
}

/** Whether a head of this shape has a hidden layer (an MLP, alone or in the ensemble). */
function hasHiddenLayer(shape: HeadShape): boolean {
  return shape.kind === "mlp" || shape.kind === "mlp+knn";
}

/** Parameter tensors of a head, in its flat layout order, with their shapes (none for a memory). */
export function parameterBlocks(shape: HeadShape): { name: string; dims: number[] }[] {
  const { inputSize: d, hidden: h, classes: c } = shape;
  if (shape.kind === "knn") return [];
  return hasHiddenLayer(shape)
    ? [
        { name: "w1", dims: [h, d] },
        { name: "w2", dims: [c, h] },
        { name: "b1", dims: [h] },
        { name: "b2", dims: [c] },
      ]
    : [
        { name: "w", dims: [c, d] },
        { name: "b", dims: [c] },
      ];
}

type ParameterLayout = { name: string; dims: number[]; offset: number; size: number }[];

/** Where each parameter tensor sits in a head's flat parameters. */
function parameterLayout(shape: HeadShape): ParameterLayout {
  let offset = 0;
  return parameterBlocks(shape).map((b) => {
    const size = b.dims.reduce((a, x) => a * x, 1);
    const block = { ...b, offset, size };
    offset += size;
    return block;
  });
}

/** The predict graph's inputs other than `x`: the head's statistics and parameters. */
export function parameterFeeds(
  head: KernelHead,
  layout: ParameterLayout = parameterLayout(head.shape),
): Record<string, ort.Tensor> {
  const d = head.shape.inputSize;
  const feeds: Record<string, ort.Tensor> = {
    mean: new ort.Tensor("float32", head.mean, [d]),
    scale: new ort.Tensor("float32", head.scale, [d]),
  };
  for (const b of layout) {
    feeds[b.name] = new ort.Tensor("float32", head.params.subarray(b.offset, b.offset + b.size), b.dims);
  }
  return feeds;
}

/**
 * A head's predict graph as the tail of the span that ends at its exit
 * (model/spans.ts): the span's session answers with the head's
 * probabilities (`probs`), fed `parameterFeeds` on each run.
 */
export function predictTail(shape: HeadShape): SpanTail {
  return {
    key: `${shape.kind}:${shape.inputSize}:${shape.hidden}:${shape.classes}`,
    graph: () => buildHeadGraph(shape, false),
  };
}

class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  private count = 0;

  op(opType: string, input: string[], attribute: onnx.IAttributeProto[] = [], output?: string): string {
    const out = output ?? `${opType.toLowerCase()}${this.count++}`;
    this.nodes.push({ opType, name: out, input, output: [out], attribute });
    return out;
  }

  axes(name: string, values: number[]): string {
    this.initializers.push({ name, dataType: INT64, dims: [values.length], int64Data: values });
    return name;
  }

  scalar(name: string, value: number): string {
    this.initializers.push({ name, dataType: FLOAT, dims: [], floatData: [value] });
    return name;
  }
}

function encodeModel(
  name: string,
  g: GraphBuilder,
  inputs: onnx.IValueInfoProto[],
  outputs: onnx.IValueInfoProto[],
) {
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: "", version: OPSET }],
    producerName: "layercache heads",
    graph: { name, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
  };
  return ModelProto.encode(ModelProto.create(model)).finish();
}

/**
 * The similarity graph of a memory: n unit queries (n × D) times the m unit
 * vectors remembered (m × D), transposed: n × m cosine similarities.
 */
export function buildSimilarityGraph(inputSize: number): Uint8Array {
  const g = new GraphBuilder();
  g.op("Gemm", ["queries", "memory"], [intAttr("transB", 1)], "similarity");
  return encodeModel(
    "nearest-neighbour similarity",
    g,
    [valueInfo("queries", ["n", inputSize]), valueInfo("memory", ["m", inputSize])],
    [valueInfo("similarity", ["n", "m"])],
  );
}

/** Builds the ONNX bytes of the predict (with `training` false) or gradient graph. */
export function buildHeadGraph(shape: HeadShape, training: boolean): Uint8Array {
  if (shape.kind === "knn") {
    throw new LayercacheError(
      "INTERNAL",
      "a nearest-neighbour memory has no parameters to build a graph for",
    );
  }
  const { inputSize: d, classes: c } = shape;
  const g = new GraphBuilder();
  const blocks = parameterBlocks(shape);
  const inputs = [valueInfo("x", ["n", d]), valueInfo("mean", [d]), valueInfo("scale", [d])];
  inputs.push(...blocks.map((b) => valueInfo(b.name, b.dims)));
  const z = g.op("Mul", [g.op("Sub", ["x", "mean"]), "scale"]);
  const transB = [intAttr("transB", 1)];
  const transA = [intAttr("transA", 1)];
  let hidden: { pre: string; act: string } | undefined;
  let logits: string;
  if (hasHiddenLayer(shape)) {
    const pre = g.op("Gemm", [z, "w1", "b1"], transB);
    const act = g.op("Relu", [pre]);
    hidden = { pre, act };
    logits = g.op("Gemm", [act, "w2", "b2"], transB);
  } else {
    logits = g.op("Gemm", [z, "w", "b"], transB);
  }
  const outputs: onnx.IValueInfoProto[] = [];
  if (!training) {
    g.op("Softmax", [logits], [intAttr("axis", 1)], "probs");
    outputs.push(valueInfo("probs", ["n", c]));
  } else {
    inputs.push(valueInfo("targets", ["n", c]), valueInfo("inv_n", []));
    const rows = g.axes("axis_rows", [0]);
    const cols = g.axes("axis_cols", [1]);
    // log p = z - logsumexp(z); loss = -Σ t · log p / n.
    const lse = g.op(
      "ReduceLogSumExp",
      [logits],
      [
        { name: "axes", type: onnxProto.onnx.AttributeProto.AttributeType.INTS, ints: [1] },
        intAttr("keepdims", 1),
      ],
    );
    const logp = g.op("Sub", [logits, lse]);
    const total = g.op("ReduceSum", [g.op("Mul", ["targets", logp])], [intAttr("keepdims", 0)]);
    g.op("Mul", [g.op("Neg", [total]), "inv_n"], [], "loss");
    // ∂loss/∂z = (softmax(z) · Σt - t) / n, exact even when a target row does not sum to 1.
    const targetSum = g.op("ReduceSum", ["targets", cols], [intAttr("keepdims", 1)]);
    const dLogits = g.op("Mul", [
      g.op("Sub", [g.op("Mul", [g.op("Exp", [logp]), targetSum]), "targets"]),
      "inv_n",
    ]);
    const keep0 = [intAttr("keepdims", 0)];
    if (hidden) {
      g.op("Gemm", [dLogits, hidden.act], transA, "grad_w2");
      g.op("ReduceSum", [dLogits, rows], keep0, "grad_b2");
      const dAct = g.op("MatMul", [dLogits, "w2"]);
      // ReLU passes the gradient only where the unit was active.
      const active = g.op("Greater", [hidden.pre, g.scalar("zero", 0)]);
      const dPre = g.op("Where", [active, dAct, "zero"]);
      g.op("Gemm", [dPre, z], transA, "grad_w1");
      g.op("ReduceSum", [dPre, rows], keep0, "grad_b1");
    } else {
      g.op("Gemm", [dLogits, z], transA, "grad_w");
      g.op("ReduceSum", [dLogits, rows], keep0, "grad_b");
    }
    outputs.push(valueInfo("loss", []), ...blocks.map((b) => valueInfo(`grad_${b.name}`, b.dims)));
  }
  return encodeModel(`${shape.kind} head ${training ? "gradient" : "predict"}`, g, inputs, outputs);
}

/** What a kernel needs from a head: its shape, flat parameters and input statistics. */
export interface KernelHead {
  readonly shape: HeadShape;
  readonly params: Float32Array;
  /** Per-feature mean and 1/std, float32. */
  readonly mean: Float32Array;
  readonly scale: Float32Array;
}

/** The sessions of one kernel: the parametric pair and the memory's similarity graph, as the kind has them. */
interface KernelSessions {
  predict?: ort.InferenceSession;
  gradient?: ort.InferenceSession;
  similarity?: ort.InferenceSession;
}

function missing(shape: HeadShape, graph: string): never {
  throw new LayercacheError("INTERNAL", `a ${shape.kind} head kernel has no ${graph} graph`);
}

export class HeadKernel {
  /** Worked out once: every predict and gradient call of this shape feeds and reads by it. */
  private readonly layout: ParameterLayout;

  private constructor(
    readonly shape: HeadShape,
    private readonly sessions: KernelSessions,
  ) {
    this.layout = parameterLayout(shape);
  }

  static async create(shape: HeadShape, threads = 1): Promise<HeadKernel> {
    const options = onnxSessionOptions(threads);
    const parametric = shape.kind !== "knn";
    const [predict, gradient, similarity] = await Promise.all([
      parametric ? ort.InferenceSession.create(buildHeadGraph(shape, false), options) : undefined,
      parametric ? ort.InferenceSession.create(buildHeadGraph(shape, true), options) : undefined,
      remembers(shape.kind)
        ? ort.InferenceSession.create(buildSimilarityGraph(shape.inputSize), options)
        : undefined,
    ]);
    return new HeadKernel(shape, { predict, gradient, similarity });
  }

  private feeds(head: KernelHead, features: Float32Array, n: number): Record<string, ort.Tensor> {
    const d = this.shape.inputSize;
    return {
      x: new ort.Tensor("float32", features.subarray(0, n * d), [n, d]),
      ...parameterFeeds(head, this.layout),
    };
  }

  /** Class probabilities of n rows into out[0 .. n·C). */
  async predict(head: KernelHead, features: Float32Array, n: number, out: Float32Array): Promise<void> {
    const session = this.sessions.predict ?? missing(this.shape, "predict");
    const result = await session.run(this.feeds(head, features, n));
    out.set((result.probs!.data as Float32Array).subarray(0, n * this.shape.classes));
  }

  /** Mean loss of n rows and its gradient, in the head's flat parameter layout, into `gradient`. */
  async gradient(
    head: KernelHead,
    features: Float32Array,
    targets: Float32Array,
    n: number,
    gradient: Float32Array,
  ): Promise<number> {
    const session = this.sessions.gradient ?? missing(this.shape, "gradient");
    const feeds = this.feeds(head, features, n);
    feeds.targets = new ort.Tensor("float32", targets.subarray(0, n * this.shape.classes), [
      n,
      this.shape.classes,
    ]);
    feeds.inv_n = new ort.Tensor("float32", new Float32Array([1 / n]), []);
    const result = await session.run(feeds);
    for (const b of this.layout) gradient.set(result[`grad_${b.name}`]!.data as Float32Array, b.offset);
    return (result.loss!.data as Float32Array)[0]!;
  }

  /**
   * Cosine similarities of n unit queries (n × D) with m unit memory rows
   * (m × D): n × m, row-major. The array belongs to onnxruntime's result;
   * read it before the next call.
   */
  async similarities(
    queries: Float32Array,
    n: number,
    memory: Float32Array,
    m: number,
  ): Promise<Float32Array> {
    const session = this.sessions.similarity ?? missing(this.shape, "similarity");
    const d = this.shape.inputSize;
    const result = await session.run({
      queries: new ort.Tensor("float32", queries.subarray(0, n * d), [n, d]),
      memory: new ort.Tensor("float32", memory.subarray(0, m * d), [m, d]),
    });
    return result.similarity!.data as Float32Array;
  }

  async release(): Promise<void> {
    const { predict, gradient, similarity } = this.sessions;
    await Promise.all([predict?.release(), gradient?.release(), similarity?.release()]);
  }
}

/** The kernels of every head shape in use, built on first use and shared by the trainer and the engine. */
export class KernelPool {
  private readonly kernels = new Map<string, Promise<HeadKernel>>();

  constructor(private readonly threads = 1) {}

  get(shape: HeadShape): Promise<HeadKernel> {
    const key = `${shape.kind}:${shape.inputSize}:${shape.hidden}:${shape.classes}`;
    let kernel = this.kernels.get(key);
    if (!kernel) {
      kernel = HeadKernel.create(shape, this.threads);
      this.kernels.set(key, kernel);
    }
    return kernel;
  }

  async release(): Promise<void> {
    const kernels = await Promise.all(this.kernels.values());
    this.kernels.clear();
    await Promise.all(kernels.map((k) => k.release()));
  }
}
