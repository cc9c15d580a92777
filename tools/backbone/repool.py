#!/usr/bin/env python3
"""Change the pooling grid of exits of an exported model, in place, without its training weights.

    /usr/bin/python3 tools/backbone/repool.py --model models/fashion-resnet18

Sets each exit's pooled features `feat` to the pooling of pooling.py (POOLING_GRID): the global average
of every channel, then the averages over a G x G grid of equal cells, row by row, for all
channels. Only the nodes computing `feat` change (GlobalAveragePool, AveragePool, Transpose,
Flatten and Concat replace the old ones); the weights and `act` stay as they are, so
`weights.bin` and `full.onnx` are untouched. The manifest gets the new sizes and poolings, and a
new model id (the files changed), so state learned for the old features is not taken for the
new ones.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
from onnx import helper

from pooling import model_digest, pooling_grid, pooling_name


def needed_for(graph: onnx.GraphProto, outputs: list[str]) -> set[int]:
    """Indices of the nodes the named outputs depend on."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    needed: set[int] = set()
    pending = list(outputs)
    while pending:
        i = producer.get(pending.pop())
        if i is None or i in needed:
            continue
        needed.add(i)
        pending.extend(graph.node[i].input)
    return needed


def repool(path: Path, activation: list[int], grid: int) -> int:
    """Rewrites one segment's `feat`; returns its new length."""
    channels, h, w = activation
    if h % grid or w % grid:
        raise SystemExit(f"{path.name}: a {grid}x{grid} grid does not divide {h}x{w}")
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    keep = needed_for(g, ["act"])
    nodes = [n for i, n in enumerate(g.node) if i in keep]
    t = lambda name: f"pool/{name}"  # noqa: E731
    nodes += [
        helper.make_node("GlobalAveragePool", ["act"], [t("global4d")]),
        helper.make_node("Flatten", [t("global4d")], [t("global")], axis=1),
        helper.make_node("AveragePool", ["act"], [t("cells4d")], kernel_shape=[h // grid, w // grid],
                         strides=[h // grid, w // grid]),
        helper.make_node("Transpose", [t("cells4d")], [t("cellsLast")], perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", [t("cellsLast")], [t("cells")], axis=1),
        helper.make_node("Concat", [t("global"), t("cells")], ["feat"], axis=1),
    ]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept_inits = [init for init in g.initializer if init.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.value_info[:]
    size = channels * (1 + grid * grid)
    feat = next(o for o in g.output if o.name == "feat")
    feat.type.tensor_type.shape.dim[1].Clear()
    feat.type.tensor_type.shape.dim[1].dim_value = size
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))  # by path: the weights are external data
    return size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="folder with manifest.json")
    args = ap.parse_args()
    manifest_path = args.model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for exit_spec in manifest["exits"]:
        grid = pooling_grid(exit_spec["index"])
        if exit_spec["pooling"] == pooling_name(grid):
            continue
        segment = manifest["segments"][exit_spec["afterSegment"]]
        size = repool(args.model / segment["file"], exit_spec["activation"], grid)
        next(o for o in segment["outputs"] if o["name"] == "feat")["shape"] = [size]
        exit_spec.update(size=size, pooling=pooling_name(grid))
        print(f"exit {exit_spec['index']}: {pooling_name(grid)}, {size} features")
    files = [args.model / s["file"] for s in manifest["segments"]]
    files += [args.model / manifest["full"]["file"], args.model / manifest["weights"]]
    manifest["modelId"] = f"{manifest['name']}-{model_digest(files)}"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"model {manifest['modelId']}")


if __name__ == "__main__":
    main()
