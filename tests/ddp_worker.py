"""One rank of a data-parallel run, started by torchrun in the DDP tests.

`python ddp_worker.py <run dir> <overrides...>` composes the config as `runner.train` would,
trains, and writes what this rank ended with to `<run dir>/rank<r>.json`, so a test can compare
ranks with each other (only rank 0 writes the run folder itself).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from runner import distributed
from runner.config import compose_run_config
from runner.train import run


def main() -> None:
    out, *overrides = sys.argv[1:]
    cfg = compose_run_config(out, overrides)
    try:
        metrics = run(cfg)
    except BaseException:
        distributed.cleanup()
        raise
    distributed.cleanup(finished=True)
    rank = int(os.environ.get("RANK", 0))
    ended = {"metrics": metrics, "initial_seed": torch.initial_seed()}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(ended, indent=1))


if __name__ == "__main__":
    main()
