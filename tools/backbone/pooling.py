"""The exits' pooling and the model id's hash, shared by export.py and repool.py (no torch needed)."""
from __future__ import annotations

import hashlib
from pathlib import Path

# Cells per side of the pooling grid at an exit, where it is not 2; a finer grid must divide
# the activation's height and width.
POOLING_GRID = {0: 7}


def pooling_grid(exit_index: int) -> int:
    return POOLING_GRID.get(exit_index, 2)


def pooling_name(grid: int) -> str:
    """The manifest's name of the pooling (src/model/spans.ts rebuilds it from the name)."""
    return f"global-average+{grid}x{grid}-average"


def model_digest(files: list[Path]) -> str:
    """The model id's hash: the segments, full.onnx and weights.bin, in that order."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]
