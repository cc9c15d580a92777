#!/usr/bin/env python3
"""Train the default layercache backbone: a ResNet-18-topology classifier on Fashion-MNIST.

Run with Debian's PyTorch (see tools/backbone/README.md):

    /usr/bin/python3 tools/backbone/train.py --out models/fashion-resnet18

Trains seeded, logs test accuracy per epoch, then hands the trained network to
export.py, which cuts it into ONNX segments and writes manifest.json.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import FashionResNet18

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
MEAN = 0.2860
STD = 0.3530


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"{stem}(.gz) not found in {data_dir}")


def load_split(data_dir: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - MEAN) / STD
    return x, torch.from_numpy(labels.astype(np.int64))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels (pad-and-crop)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = F.pad(x, (2, 2, 2, 2), value=-MEAN / STD)
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + 28, dx : dx + 28].contiguous()


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(DEFAULT_DATA))
    ap.add_argument("--out", type=Path, default=Path("models/fashion-resnet18"))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--limit-steps", type=int, default=0, help="stop each epoch after N steps (timing runs)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    print(f"train {tuple(x_train.shape)} test {tuple(x_test.shape)} threads {args.threads}", flush=True)

    net = FashionResNet18(width=args.width)
    steps_per_epoch = len(x_train) // args.batch
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )
    log = []
    started = time.time()
    for epoch in range(1, args.epochs + 1):
        net.train()
        t0 = time.time()
        perm = torch.randperm(len(x_train), generator=gen)
        seen, loss_sum = 0, 0.0
        for step in range(steps_per_epoch):
            if args.limit_steps and step >= args.limit_steps:
                break
            idx = perm[step * args.batch : (step + 1) * args.batch]
            xb = augment(x_train[idx], gen)
            loss = F.cross_entropy(net(xb), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        acc = evaluate(net, x_test, y_test)
        secs = time.time() - t0
        log.append({"epoch": epoch, "loss": loss_sum / max(seen, 1), "testAccuracy": acc, "seconds": round(secs, 1)})
        print(f"epoch {epoch:2d}  loss {loss_sum / max(seen, 1):.4f}  test acc {acc:.4f}  {secs:.0f}s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), args.out / "weights.pt")
    meta = {
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "width": args.width,
        "trainSeconds": round(time.time() - started, 1),
        "testAccuracy": log[-1]["testAccuracy"] if log else None,
        "log": log,
        "mean": MEAN,
        "std": STD,
    }
    (args.out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"done in {meta['trainSeconds']:.0f}s, final test accuracy {meta['testAccuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()
