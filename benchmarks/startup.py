"""Start-up and whole-run time: `python -m runner.train` against a bare PyTorch script.

Both train the same small classifier (a cnn with one block of 16 channels and a 64-wide hidden
layer) on the same in-memory MNIST tensors (the runner's decoded cache) for the same epochs with
Adam at batch 128: the runner with its checkpoints, TensorBoard and test pass, the script with a
checkpoint per epoch, a validation pass and a test pass. Each runs as a fresh process; the
times are measured from the moment it is launched to its first optimiser step and to its exit,
with the CPU seconds (user, system) each process used.

On glibc, freed blocks of a few MB go back to the kernel and are faulted in again at the next
step; where page faults are dear (virtual machines) that system time varies several-fold from one
launch to the next, for both processes alike. `--steady-malloc` fixes glibc's thresholds
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) for both, to compare the two programs without it.

    python benchmarks/startup.py --root /path/to/data            # 3 epochs, 5 repeats, CPU
    python benchmarks/startup.py --root /path/to/data --steady-malloc
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_root import require_root

RUNNER_ARGS = (
    "model=cnn",
    "model.channels=[16]",
    "model.hidden_dim=64",
    "dataset=mnist",
    "trainer.batch_size=128",
    "trainer.device=cpu",
    "trainer.progress_bar=false",
    "logger.log_images=false",
)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding MNIST/raw/*.gz")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--steady-malloc", action="store_true", help="fix glibc's mmap and trim thresholds"
    )
    parser.add_argument("--child", choices=["runner", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    return parser.parse_args()


def mark_first_step() -> None:
    """Write the seconds since launch to $FIRST_STEP_FILE, once."""
    path = os.environ.pop("FIRST_STEP_FILE", None)
    if path:
        Path(path).write_text(str(time.time() - float(os.environ["LAUNCHED_AT"])))


def runner_child(args: argparse.Namespace) -> None:
    from runner.training.step import OptimizerStep

    step = OptimizerStep.__call__

    def first_step_marked(self, *a, **k):
        step(self, *a, **k)
        mark_first_step()  # after the step, as the bare script marks it

    OptimizerStep.__call__ = first_step_marked
    from runner.train import main

    sys.argv = [
        "runner.train",
        *RUNNER_ARGS,
        f"dataset.root={args.root}",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.run.dir={args.out}",
    ]
    main()


def bare_child(args: argparse.Namespace) -> None:
    """What a student writes by hand: the same network, data, optimiser and epochs."""
    import torch
    from torch import nn

    cache = Path(args.cache)
    train = torch.load(cache / "train-uint8.pt", weights_only=True)
    test = torch.load(cache / "test-uint8.pt", weights_only=True)
    torch.manual_seed(42)
    order = torch.randperm(len(train["labels"]))
    val_idx, train_idx = order[:6000], order[6000:]
    x_train, y_train = train["images"][train_idx], train["labels"][train_idx]
    x_val, y_val = train["images"][val_idx], train["labels"][val_idx]
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def evaluate(images: torch.Tensor, labels: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(b.float() / 255 * 2 - 1) for b in images.split(512)])
        return (logits.argmax(1) == labels).float().mean().item()

    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(y_train))
        for start in range(0, len(perm) - 127, 128):
            index = perm[start : start + 128]
            x = x_train[index].float() / 255 * 2 - 1
            loss = nn.functional.cross_entropy(model(x), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mark_first_step()
        evaluate(x_val, y_val)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, args.out)
    print(f"test accuracy {evaluate(test['images'], test['labels']):.4f}")


def mnist_cache(root: str) -> Path:
    """Where the runner keeps MNIST's decoded tensors (beside the files, or the user's cache)."""
    from runner.data.datasets import cache_dir_for

    return cache_dir_for(Path(root).expanduser() / "MNIST" / "cache", "MNIST")


STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def launch(kind: str, args: argparse.Namespace, folder: Path) -> tuple[float, ...]:
    """(seconds to the first optimiser step, seconds to exit, user CPU s, system CPU s) of one
    fresh process."""
    mark = folder / f"{kind}.first"
    out = folder / (f"{kind}.pt" if kind == "bare" else f"{kind}-run")
    cmd = [sys.executable, __file__, "--child", kind, "--root", args.root, "--out", str(out)]
    cmd += ["--epochs", str(args.epochs), "--cache", str(mnist_cache(args.root))]
    started = time.time()
    env = {**os.environ, "FIRST_STEP_FILE": str(mark), "LAUNCHED_AT": repr(started)}
    if args.steady_malloc:
        env.update(STEADY_MALLOC)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True)
    total = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr.decode()[-3000:]}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return float(mark.read_text()), total, user, system


def main() -> None:
    args = parse()
    if args.child == "runner":
        return runner_child(args)
    if args.child == "bare":
        return bare_child(args)
    require_root(args.root, "MNIST")
    results: dict[str, list[tuple[float, ...]]] = {"bare": [], "runner": []}
    header = (
        f"{'launch':10s} {'first step (s)':>15s} {'whole run (s)':>14s} {'user, sys CPU (s)':>18s}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        launch("runner", args, Path(tmp))  # decodes and caches MNIST once; not counted
        for i in range(args.repeats):
            for kind in ("bare", "runner"):  # alternate, so both see the same machine state
                first_step, whole, user, system = launch(kind, args, Path(tmp))
                results[kind].append((first_step, whole))
                print(
                    f"{kind} {i + 1:<{9 - len(kind)}d} {first_step:15.2f} {whole:14.2f} "
                    f"{user:10.1f}, {system:5.1f}",
                    flush=True,
                )
    first = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    total = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    allocator = "steady glibc thresholds" if args.steady_malloc else "default allocator"
    print(
        f"\n{args.epochs} epochs of a small cnn on MNIST, CPU ({cores} cores), {allocator}, "
        f"median of {args.repeats} launches each"
    )
    print(f"{'':10s} {'first step (s)':>15s} {'whole run (s)':>14s}")
    for kind in ("bare", "runner"):
        print(f"{kind:10s} {first[kind]:15.2f} {total[kind]:14.2f}")
    print(
        f"runner - bare: first step {first['runner'] - first['bare']:+.2f} s (target <= +0.3 s); "
        f"whole run x{total['runner'] / total['bare']:.3f} (target <= 1.15)"
    )


if __name__ == "__main__":
    main()
