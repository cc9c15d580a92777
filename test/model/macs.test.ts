import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LayercacheError } from "../../src/errors/index.ts";
import { countMacs, countMacsInFile } from "../../src/model/macs.ts";
import { INT64_MAX, int64s, model, node, tensor, weight } from "./fixtures/onnx.ts";
import { thrownBy } from "../helpers/errors.ts";
import { MODEL_DIR } from "../helpers/model.ts";

function problem(fn: () => unknown): string {
  return thrownBy(fn, "MANIFEST_INVALID").message;
}

describe("countMacs on Conv", () => {
  it("counts output elements per frame x Cin/group x kh x kw, with groups, strides and pads", () => {
    // [1,4,10,10] -> 3x3, group 2, stride 2, pad 1: floor((10+2-3)/2)+1 = 5, so [1,8,5,5] = 200 elements,
    // each 2 (Cin/group) x 3 x 3 = 18 MACs: 3600.
    const conv = node("Conv", ["x", "w"], ["y"], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] });
    const bytes = model({
      inputs: [tensor("x", ["batch", 4, 10, 10])],
      outputs: ["y"],
      nodes: [conv],
      initializers: [weight("w", [8, 2, 3, 3])],
    });
    expect(countMacs(bytes)).toEqual({ total: 3600, byOpType: { Conv: 3600 }, nodes: 1 });
  });

  it("takes a static batch as given but still counts per frame", () => {
    const conv = node("Conv", ["x", "w"], ["y"], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] });
    const bytes = model({
      inputs: [tensor("x", [8, 4, 10, 10])],
      outputs: ["y"],
      nodes: [conv],
      initializers: [weight("w", [8, 2, 3, 3])],
    });
    expect(countMacs(bytes).total).toBe(3600);
  });

  it("honours dilations and asymmetric pads", () => {
    // H: 9 + 1 + 2 padded, dilated kernel spans 2*(3-1)+1 = 5: 12-5+1 = 8. W: 7 + 0 + 1 - 3 + 1 = 6.
    // [1,6,8,6] = 288 elements x 3*3*3 = 7776.
    const conv = node("Conv", ["x", "w"], ["y"], { dilations: [2, 1], pads: [1, 0, 2, 1] });
    const bytes = model({
      inputs: [tensor("x", ["batch", 3, 9, 7])],
      outputs: ["y"],
      nodes: [conv],
      initializers: [weight("w", [6, 3, 3, 3])],
    });
    expect(countMacs(bytes).total).toBe(7776);
  });

  it("honours auto_pad SAME_UPPER and VALID, and chains shapes from one Conv to the next", () => {
    // Depthwise, SAME_UPPER, stride 2: ceil(9/2) = 5, [1,16,5,5] = 400 x (1*3*3) = 3600.
    // Then VALID 3x3: 5-3+1 = 3, [1,4,3,3] = 36 x (16*3*3) = 5184. Total 8784.
    const bytes = model({
      inputs: [tensor("x", ["batch", 16, 9, 9])],
      outputs: ["z"],
      nodes: [
        node("Conv", ["x", "dw"], ["y"], { group: 16, strides: [2, 2], auto_pad: "SAME_UPPER" }),
        node("Conv", ["y", "w"], ["z"], { auto_pad: "VALID" }),
      ],
      initializers: [weight("dw", [16, 1, 3, 3]), weight("w", [4, 16, 3, 3])],
    });
    expect(countMacs(bytes)).toEqual({ total: 8784, byOpType: { Conv: 8784 }, nodes: 2 });
  });
});

describe("countMacs on Gemm and MatMul", () => {
  it("counts K x N per frame for Gemm, honouring transB", () => {
    // [1,20] x [5,20]^T: K=20, N=5 -> 100. Then [1,5] x [5,3]: K=5, N=3 -> 15. Total 115.
    const bytes = model({
      inputs: [tensor("x", ["batch", 20])],
      outputs: ["z"],
      nodes: [node("Gemm", ["x", "w", "b"], ["y"], { transB: 1 }), node("Gemm", ["y", "w2"], ["z"])],
      initializers: [weight("w", [5, 20]), weight("b", [5]), weight("w2", [5, 3])],
    });
    expect(countMacs(bytes)).toEqual({ total: 115, byOpType: { Gemm: 115 }, nodes: 2 });
  });

  it("honours transA, reading K from the first dim of A", () => {
    // Transpose [1,20] -> [20,1]; Gemm with transA: K = 20, N = 5 -> 100.
    const bytes = model({
      inputs: [tensor("x", ["batch", 20])],
      outputs: ["y"],
      nodes: [node("Transpose", ["x"], ["xt"]), node("Gemm", ["xt", "w"], ["y"], { transA: 1 })],
      initializers: [weight("w", [20, 5])],
    });
    expect(countMacs(bytes).total).toBe(100);
  });

  it("counts rows x K x N for MatMul, including batch-like dims but not the batch axis", () => {
    // [1,6,4] x [4,3]: 6 rows x 4 x 3 = 72.
    // [1,2,6,4] x [1,2,4,3]: 2 x 6 rows x 4 x 3 = 144.
    // [1,4] x [4,3]: one row per frame, 4 x 3 = 12.
    const bytes = model({
      inputs: [
        tensor("a", ["batch", 6, 4]),
        tensor("b", ["batch", 2, 6, 4]),
        tensor("c", ["batch", 2, 4, 3]),
      ].concat([tensor("d", ["batch", 4])]),
      outputs: ["y1", "y2", "y3"],
      nodes: [
        node("MatMul", ["a", "w"], ["y1"]),
        node("MatMul", ["b", "c"], ["y2"]),
        node("MatMul", ["d", "w"], ["y3"]),
      ],
      initializers: [weight("w", [4, 3])],
    });
    expect(countMacs(bytes)).toEqual({ total: 228, byOpType: { MatMul: 228 }, nodes: 3 });
  });
});

describe("countMacs shape propagation", () => {
  it("propagates through pooling, Slice, Concat, Flatten, Reshape and Transpose without value_info", () => {
    const bytes = model({
      inputs: [tensor("x", ["batch", 3, 32, 32])],
      outputs: ["out"],
      nodes: [
        // [1,8,32,32] = 8192 elements x 3*3*3 = 221184.
        node("Conv", ["x", "w1", "b1"], ["c1"], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] }),
        node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["bn"]),
        node("Relu", ["bn"], ["r1"]),
        node("MaxPool", ["r1"], ["p1"], { kernel_shape: [2, 2], strides: [2, 2] }), // [1,8,16,16]
        node("AveragePool", ["p1"], ["p2"], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), // [1,8,16,16]
        node("Add", ["p2", "bias"], ["a1"]), // bias [8,1,1] broadcasts: [1,8,16,16]
        node("Slice", ["a1", "starts", "ends", "axes", "steps"], ["s1"]), // channels 2.. : [1,6,16,16]
        node("Conv", ["s1", "w2"], ["c2"]), // [1,4,16,16] = 1024 x 6*1*1 = 6144
        node("Concat", ["c2", "s1"], ["cat"], { axis: 1 }), // [1,10,16,16]
        node("GlobalAveragePool", ["cat"], ["gap"]), // [1,10,1,1]
        node("Flatten", ["gap"], ["flat"]), // [1,10]
        node("Gemm", ["flat", "w3"], ["g"], { transB: 1 }), // [1,7]: K=10 x N=7 = 70
        node("Constant", [], ["target"], { value: int64s("", [0, -1, 1]) }),
        node("Reshape", ["g", "target"], ["rs"]), // 0 keeps 1, -1 is 7: [1,7,1]
        node("MatMul", ["rs", "w4"], ["mm1"]), // [1,7,3]: 7 rows x K=1 x N=3 = 21
        node("Transpose", ["mm1"], ["t"], { perm: [0, 2, 1] }), // [1,3,7]
        node("MatMul", ["t", "w5"], ["out"]), // [1,3,5]: 3 rows x K=7 x N=5 = 105
      ],
      initializers: [
        ...[weight("w1", [8, 3, 3, 3]), weight("b1", [8]), weight("bias", [8, 1, 1])],
        ...["s", "b", "m", "v"].map((n) => weight(n, [8])),
        ...[int64s("starts", [2]), int64s("ends", [INT64_MAX]), int64s("axes", [1], [1], false)],
        ...[int64s("steps", [1]), weight("w2", [4, 6, 1, 1]), weight("w3", [7, 10])],
        ...[weight("w4", [1, 3]), weight("w5", [7, 5])],
      ],
    });
    // 221184 + 6144 + 70 + 21 + 105 = 227524.
    expect(countMacs(bytes)).toEqual({
      total: 227524,
      byOpType: { Conv: 227328, Gemm: 70, MatMul: 126 },
      nodes: 17,
    });
  });

  it("reads axes from inputs in opset 18 and folds Shape/Gather/Concat into a Reshape target", () => {
    const bytes = model({
      opset: 18,
      inputs: [tensor("x", ["batch", 4, 6, 6])],
      outputs: ["mm", "g"],
      nodes: [
        node("ReduceMean", ["x", "last"], ["r"]), // keepdims: [1,4,6,1]
        node("Squeeze", ["r", "three"], ["q"]), // [1,4,6]
        node("MatMul", ["q", "w1"], ["mm"]), // [1,4,2]: 4 rows x K=6 x N=2 = 48
        // x.view(x.size(0), -1), as torch exports it:
        node("Shape", ["x"], ["shape"]), // [1,4,6,6]
        node("Gather", ["shape", "zero"], ["n"], { axis: 0 }), // 1
        node("Unsqueeze", ["n", "zeros"], ["n1"]), // [1]
        node("Concat", ["n1", "minus1"], ["target"], { axis: 0 }), // [1,-1]
        node("Reshape", ["x", "target"], ["flat"]), // [1,144]
        node("Gemm", ["flat", "w2"], ["g"], { transB: 1 }), // K=144 x N=3 = 432
      ],
      initializers: [
        ...[int64s("last", [-1]), int64s("three", [3]), int64s("zero", [0], []), int64s("zeros", [0])],
        ...[int64s("minus1", [-1], [1], false), weight("w1", [6, 2]), weight("w2", [3, 144])],
      ],
    });
    // 48 + 432 = 480.
    expect(countMacs(bytes)).toEqual({ total: 480, byOpType: { MatMul: 48, Gemm: 432 }, nodes: 9 });
  });

  it("reads ReduceMean axes from the attribute before opset 18", () => {
    // ReduceMean over [2,3] without keepdims: [1,4]; Gemm K=4 x N=3 = 12.
    const bytes = model({
      inputs: [tensor("x", ["batch", 4, 6, 6])],
      outputs: ["g"],
      nodes: [
        node("ReduceMean", ["x"], ["r"], { axes: [2, 3], keepdims: 0 }),
        node("Gemm", ["r", "w"], ["g"]),
      ],
      initializers: [weight("w", [4, 3])],
    });
    expect(countMacs(bytes).total).toBe(12);
  });
});

describe("countMacs on unsupported models", () => {
  const withFoo = (valueInfo: ReturnType<typeof tensor>[] = []) =>
    model({
      inputs: [tensor("x", ["batch", 3, 8, 8])],
      outputs: ["z"],
      nodes: [node("Foo", ["x"], ["y"]), node("Conv", ["y", "w"], ["z"])],
      initializers: [weight("w", [2, 3, 1, 1])],
      valueInfo,
    });

  it("names the unsupported op and its node when a counted node needs its output shape", () => {
    const msg = problem(() => countMacs(withFoo()));
    expect(msg).toContain('Conv node "Conv_z"');
    expect(msg).toContain('op Foo (Foo node "Foo_y") is not supported');
  });

  it("uses value_info for an op it cannot propagate through", () => {
    // y declared [1,3,8,8]; the 1x1 Conv gives [1,2,8,8] = 128 elements x 3 = 384.
    expect(countMacs(withFoo([tensor("y", ["batch", 3, 8, 8])])).total).toBe(384);
  });

  it("ignores unsupported ops whose shapes no counted node needs", () => {
    // 1x1 Conv: [1,2,8,8] = 128 x 3 = 384; Foo comes after it.
    const bytes = model({
      inputs: [tensor("x", ["batch", 3, 8, 8])],
      outputs: ["z"],
      nodes: [node("Conv", ["x", "w"], ["y"]), node("Foo", ["y"], ["z"])],
      initializers: [weight("w", [2, 3, 1, 1])],
    });
    expect(countMacs(bytes)).toEqual({ total: 384, byOpType: { Conv: 384 }, nodes: 2 });
  });

  it("rejects a Reshape target computed at run time when its output is needed", () => {
    const bytes = model({
      inputs: [tensor("x", ["batch", 12]), tensor("t", [2])],
      outputs: ["y"],
      nodes: [node("Reshape", ["x", "t"], ["r"]), node("MatMul", ["r", "w"], ["y"])],
      initializers: [weight("w", [4, 2])],
    });
    expect(problem(() => countMacs(bytes))).toContain(
      'Reshape node "Reshape_r": input "t" is not a constant',
    );
  });

  it("rejects dynamic dims other than the batch", () => {
    const bytes = model({
      inputs: [tensor("x", ["batch", 3, "height", "width"])],
      outputs: ["y"],
      nodes: [node("Conv", ["x", "w"], ["y"])],
      initializers: [weight("w", [2, 3, 1, 1])],
    });
    expect(problem(() => countMacs(bytes))).toContain('tensor "x" has a dynamic dim 2');
  });

  it("rejects bytes that are not an ONNX model, and a model without a graph", () => {
    const text = new TextEncoder().encode("definitely not an onnx model");
    expect(problem(() => countMacs(text))).toMatch(/^not an ONNX model: /);
    expect(problem(() => countMacs(new Uint8Array(0)))).toBe("the model has no graph");
  });

  it("rejects a file it cannot read, naming it", async () => {
    const err: unknown = await countMacsInFile("/nonexistent/model.onnx").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LayercacheError);
    expect((err as LayercacheError).code).toBe("MANIFEST_INVALID");
    expect((err as Error).message).toContain("/nonexistent/model.onnx");
  });
});

interface Manifest {
  full: { file: string; macs: number };
  segments: { index: number; file: string; macs: number }[];
}

describe("countMacsInFile on the exported fashion-resnet18", () => {
  const manifest = JSON.parse(readFileSync(join(MODEL_DIR, "manifest.json"), "utf8")) as Manifest;

  it.each(manifest.segments)("matches the manifest for segment $index", async (segment) => {
    const report = await countMacsInFile(join(MODEL_DIR, segment.file));
    expect(report.total).toBe(segment.macs);
    expect(Object.values(report.byOpType).reduce((a, b) => a + b, 0)).toBe(report.total);
  });

  it("matches the manifest for the full graph, which is the sum of the segments", async () => {
    const report = await countMacsInFile(join(MODEL_DIR, manifest.full.file));
    expect(report.total).toBe(manifest.full.macs);
    expect(report.total).toBe(manifest.segments.reduce((sum, s) => sum + s.macs, 0));
  });
});
