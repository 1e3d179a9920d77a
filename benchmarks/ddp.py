"""Data-parallel throughput: `cnn_mnist` trained by 1 process against N processes under torchrun.

Every configuration runs `runner.train` itself (the same loop, loaders and checkpoints) for the
same number of steps per process, with `trainer.batch_size` examples per process and step:

- `1 process`: a plain run (no process group), the baseline;
- `N processes (DDP)`: torchrun, gradients all-reduced by DistributedDataParallel;
- `N processes, no all-reduce`: the same with a DDP communication hook that skips the
  all-reduce, so the difference to the line above is the communication time that backward does
  not hide.

It prints steps/s and samples/s (all processes together) per configuration and the speed-up over
one process.

    python benchmarks/ddp.py --root /path/to/data                       # CPU, 1 vs 2 processes
    python benchmarks/ddp.py --root /path/to/data --device cuda --processes 1   # CUDA/nccl check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from data_root import require_root


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/*.gz")
    parser.add_argument("--processes", type=int, nargs="+", default=[2], help="N to compare")
    parser.add_argument("--steps", type=int, default=150, help="training steps per process")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per process")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser.parse_args()


def overrides(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        "experiment=cnn_mnist",
        f"dataset.root={args.root}",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={args.steps}",
        f"trainer.batch_size={args.batch_size}",
        f"trainer.device={args.device}",
        "trainer.progress_bar=false",
        "logger.tensorboard=false",
        f"hydra.run.dir={out}",
    ]


MODES = {
    "plain": "1 process",
    "ddp": "{n} processes (DDP)",
    "ddp-no-comm": "{n} processes, DDP without all-reduce",
}


def measure(args: argparse.Namespace, processes: int, mode: str, out: Path) -> dict:
    """Train once; steps/s and samples/s over the training passes (from metrics.json)."""
    if mode == "plain":
        cmd = [sys.executable, "-m", "runner.train", *overrides(args, out)]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        worker = [__file__, "--root", args.root, "--worker", mode]
        ddp = [*overrides(args, out), "trainer.strategy=ddp"]  # also for one rank (nccl check)
        cmd = [*launcher, f"--nproc_per_node={processes}", *worker, *ddp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "metrics.json").read_text())
    steps, seconds = summary["train_steps"], summary["train_time_s"]
    return {
        "steps/s": steps / seconds,
        "samples/s": steps * args.batch_size * processes / seconds,
        "seconds": seconds,
        "device": summary["device"],
    }


def worker(mode: str, run_overrides: list[str]) -> None:
    """One torchrun rank of `runner.train`; `ddp-no-comm` switches DDP's all-reduce off."""
    import torch

    from runner import distributed
    from runner.config import compose_run_config
    from runner.train import run

    # No annotations: DDP checks them, and this module's are strings (postponed evaluation).
    def skip_all_reduce(_, bucket):
        done = torch.futures.Future()
        done.set_result(bucket.buffer())  # this rank's own gradients; nothing is sent
        return done

    make_wrapper = distributed.wrapper

    def wrapper_without_comm(ctx, device):
        wrap = make_wrapper(ctx, device)

        def wrap_without_comm(module):
            ddp = wrap(module)
            ddp.register_comm_hook(None, skip_all_reduce)
            return ddp

        return wrap_without_comm

    if mode == "ddp-no-comm":
        distributed.wrapper = wrapper_without_comm
    out = next(o.split("=", 1)[1] for o in run_overrides if o.startswith("hydra.run.dir="))
    cfg = compose_run_config(out, [o for o in run_overrides if not o.startswith("hydra.run.dir=")])
    try:
        run(cfg)
    finally:
        distributed.cleanup()


def main() -> None:
    args = parse()
    if args.worker is not None:
        mode, *rest = args.worker
        return worker(mode, rest)
    require_root(args.root, "MNIST")
    configs = [(1, "plain")]
    for n in args.processes:  # n = 1: one DDP rank (over nccl on CUDA), a check of the path
        configs += [(n, "ddp")] + ([(n, "ddp-no-comm")] if n > 1 else [])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (n, mode) in enumerate(configs):
            name = MODES[mode].format(n=n)
            results[name] = measure(args, n, mode, Path(tmp) / str(i))
            print(f"{name}: {results[name]['samples/s']:.0f} samples/s", flush=True)
    base = results["1 process"]["samples/s"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"\ncnn_mnist, {args.steps} steps/process, batch {args.batch_size}/process, "
        f"{results['1 process']['device']}, {cores} CPU cores"
    )
    print(f"{'configuration':40s} {'steps/s':>8s} {'samples/s':>10s} {'vs 1 process':>13s}")
    for name, r in results.items():
        ratio = r["samples/s"] / base
        print(f"{name:40s} {r['steps/s']:8.2f} {r['samples/s']:10.0f} {ratio:12.2f}x")
    for n in args.processes:
        synced = results.get(MODES["ddp"].format(n=n))
        alone = results.get(MODES["ddp-no-comm"].format(n=n))
        if synced and alone and n > 1:
            exposed = (synced["seconds"] - alone["seconds"]) / args.steps * 1000
            step = synced["seconds"] / args.steps * 1000
            print(
                f"{n} processes: {step:.1f} ms/step, of which communication that backward does not "
                f"hide: {exposed:.1f} ms ({exposed / step:.0%})"
            )


if __name__ == "__main__":
    main()
