"""The benchmarks read real MNIST-family files from `--root`, laid out as torchvision expects."""

from __future__ import annotations

import sys
from pathlib import Path

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def require_root(root: str, *names: str) -> str:
    """`root` if it holds <root>/<name>/raw/ for every name; else exit with what to put where."""
    for name in names:
        raw = Path(root) / name / "raw"
        if not raw.is_dir():
            sys.exit(
                f"--root {root}: {raw} does not exist. Put the four original files "
                f"({', '.join(FILES)}) in <root>/{name}/raw/, or pass the folder that holds "
                f"{name}/ (torchvision's layout: python -c \"import torchvision; "
                f"torchvision.datasets.{name}('<root>', download=True)\" fetches them online)."
            )
    return root
