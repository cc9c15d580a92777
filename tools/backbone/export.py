#!/usr/bin/env python3
"""Cut the trained backbone into ONNX segments and write manifest.json.

    /usr/bin/python3 tools/backbone/export.py --weights models/fashion-resnet18/weights.pt \
        --out models/fashion-resnet18

Writes, into --out:
  segment-0.onnx ... segment-7.onnx  one per basic block; segment 0 also holds the stem and
                                     segment 7 the pooling and the classifier. Segments 0-6
                                     output the block activation `act` (input of the next
                                     segment) and the pooled features `feat` an exit head reads.
  full.onnx                          the whole network, for the cache-off baseline.
  manifest.json                      see docs/model-manifest.md.

Pooled features at an exit, for an activation with C channels: the global average (C values),
then the averages over a G x G grid of cells, row by row, each for all channels (G*G*C values).
G is 2 (the quadrants, split as adaptive pooling does: rows [0, ceil(H/2)) and [floor(H/2), H))
except where POOLING_GRID (pooling.py) says otherwise: exit 0 takes a 7x7 grid of 4x4 cells, whose heads
answer far more frames than the quadrants' (docs/cache.md, "Exit features").
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper, shape_inference

from model import FashionResNet18
from pooling import model_digest, pooling_grid, pooling_name
from train import MEAN, STD, evaluate, load_split

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
OPSET = 13


def pooled_features(x: torch.Tensor, grid: int = 2) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    if grid != 2:
        assert h % grid == 0 and w % grid == 0, f"a {grid}x{grid} grid does not divide {h}x{w}"
        cells = F.avg_pool2d(x, (h // grid, w // grid))
        return torch.cat([x.mean(dim=(2, 3)), cells.permute(0, 2, 3, 1).flatten(1)], dim=1)
    rows = [(0, (h + 1) // 2), (h // 2, h)]
    cols = [(0, (w + 1) // 2), (w // 2, w)]
    parts = [x.mean(dim=(2, 3))]
    for r0, r1 in rows:
        for c0, c1 in cols:
            parts.append(x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)))
    return torch.cat(parts, dim=1)


class Segment(nn.Module):
    """Blocks [start, end) of the backbone; the first also runs the stem, the last the classifier."""

    def __init__(self, net: FashionResNet18, index: int, count: int) -> None:
        super().__init__()
        self.net = net
        self.index = index
        self.last = index == count - 1
        self.block = net.blocks()[index]

    def forward(self, x: torch.Tensor):
        if self.index == 0:
            x = self.net.stem(x)
        x = self.block(x)
        if self.last:
            return self.net.head(x)
        return x, pooled_features(x, pooling_grid(self.index))


def export(module: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=["x"],
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in ["x", *outputs]},
        opset_version=OPSET,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)


def share_weights(paths: list[Path], out: Path, name: str = "weights.bin") -> None:
    """Move every initializer into one external-data file, storing identical tensors once.

    After Conv+BatchNorm folding, the segments and full.onnx hold the same folded weights under
    different names; sharing them halves what is committed and loaded.
    """
    stored: dict[bytes, tuple[int, int]] = {}
    with open(out / name, "wb") as blob:
        for path in paths:
            model = onnx.load(str(path))
            for t in model.graph.initializer:
                raw = numpy_helper.to_array(t).tobytes()
                if len(raw) < 1024:
                    continue  # small tensors stay inline: not worth an indirection
                key = hashlib.sha256(str(t.data_type).encode() + str(list(t.dims)).encode() + raw).digest()
                if key not in stored:
                    pad = (-blob.tell()) % 64
                    blob.write(b"\0" * pad)
                    stored[key] = (blob.tell(), len(raw))
                    blob.write(raw)
                offset, length = stored[key]
                t.ClearField("raw_data")
                t.ClearField("float_data")
                t.data_location = onnx.TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", name), ("offset", str(offset)), ("length", str(length))):
                    entry = t.external_data.add()
                    entry.key, entry.value = k, v
            onnx.save(model, str(path))


def dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def count_macs(path: Path) -> int:
    """Multiply-accumulates per frame of Conv, Gemm and MatMul nodes (batch axis taken as 1)."""
    model = shape_inference.infer_shapes(onnx.load(str(path)))
    g = model.graph
    shapes = {vi.name: dims(vi) for vi in list(g.value_info) + list(g.input) + list(g.output)}
    inits = {t.name: list(t.dims) for t in g.initializer}
    shape = lambda name: shapes.get(name) or inits[name]  # noqa: E731
    total = 0
    for node in g.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]  # [Cout, Cin/groups, kh, kw]
            out = shape(node.output[0])  # [N, Cout, H, W]
            total += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            a, b = shape(node.input[0]), shape(node.input[1])
            trans_b = next((a_.i for a_ in node.attribute if a_.name == "transB"), 0)
            k = a[-1]
            n = b[0] if trans_b else b[1]
            total += int(k) * int(n)
        elif node.op_type == "MatMul":
            a, b = shape(node.input[0]), shape(node.input[1])
            rows = int(np.prod([d for d in a[1:-1]])) if len(a) > 2 else 1
            total += rows * int(a[-1]) * int(b[-1])
    return total


def io_spec(inp: torch.Tensor, outputs: dict[str, torch.Tensor]) -> tuple[dict, list[dict]]:
    """Names and per-frame shapes (batch axis left out), read off a traced run."""
    shape = lambda t: [int(d) for d in t.shape[1:]]  # noqa: E731
    return {"name": "x", "shape": shape(inp)}, [{"name": n, "shape": shape(t)} for n, t in outputs.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--name", default="fashion-resnet18")
    args = ap.parse_args()

    net = FashionResNet18(width=args.width)
    net.load_state_dict(torch.load(args.weights, map_location="cpu"))
    net.eval()
    args.out.mkdir(parents=True, exist_ok=True)

    x_test, y_test = load_split(args.data, "t10k")
    accuracy = evaluate(net, x_test, y_test)
    print(f"test accuracy {accuracy:.4f}")

    count = len(net.blocks())
    x = x_test[:2]
    segments = []
    files = []
    with torch.no_grad():
        for i in range(count):
            seg = Segment(net, i, count).eval()
            path = args.out / f"segment-{i}.onnx"
            outputs = ["logits"] if seg.last else ["act", "feat"]
            export(seg, x, path, outputs)
            result = seg(x)
            values = dict(zip(outputs, [result] if seg.last else result))
            inp, outs = io_spec(x, values)
            segments.append({"index": i, "file": path.name, "input": inp, "outputs": outs, "macs": 0})
            files.append(path)
            x = values["logits"] if seg.last else values["act"]
        full = args.out / "full.onnx"
        export(net, x_test[:2], full, ["logits"])
        files.append(full)
        full_in, full_out = io_spec(x_test[:2], {"logits": net(x_test[:2])})

    macs = {f.name: count_macs(f) for f in files}
    share_weights(files, args.out)
    files.append(args.out / "weights.bin")
    digest = model_digest(files)
    for s in segments:
        s["macs"] = macs[s["file"]]
    exits = []
    for s in segments[:-1]:
        feat = next(o for o in s["outputs"] if o["name"] == "feat")
        act = next(o for o in s["outputs"] if o["name"] == "act")
        exits.append({
            "index": s["index"],
            "afterSegment": s["index"],
            "feature": "feat",
            "size": feat["shape"][0],
            "pooling": pooling_name(pooling_grid(s["index"])),
            "activation": act["shape"],
        })
    manifest = {
        "format": 1,
        "name": args.name,
        "modelId": f"{args.name}-{digest}",
        "input": {
            "name": "x",
            "shape": [1, 28, 28],
            "dtype": "float32",
            "layout": "NCHW",
            "normalisation": {"scale": 1 / 255, "mean": [MEAN], "std": [STD]},
        },
        "weights": "weights.bin",
        "classes": CLASSES,
        "testAccuracy": accuracy,
        "full": {"file": full.name, "input": full_in, "outputs": full_out, "macs": macs[full.name]},
        "segments": segments,
        "exits": exits,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(s["macs"] for s in segments)
    print(f"model {manifest['modelId']}: {count} segments, {total:,} MACs per frame (full graph {manifest['full']['macs']:,})")
    for s in segments:
        print(f"  segment {s['index']}: {s['macs']:>12,} MACs  outputs {[o['shape'] for o in s['outputs']]}")


if __name__ == "__main__":
    main()
