"""Training throughput: our in-memory device loader against a plain torchvision DataLoader.

Both paths train the same `deep_ae` (same init, optimiser and batch size) for the same number of
steps on MNIST-shaped data; the script prints samples/s for each and the ratio.

    python benchmarks/throughput.py                         # synthetic MNIST-shaped data
    python benchmarks/throughput.py --root /path/to/data    # real MNIST files
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision.transforms as T
from data_root import require_root
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from runner.data import BatchPreprocessor, DeviceLoader, TensorSplit
from runner.models import Autoencoder
from runner.training.device import resolve_precision, select_device
from runner.training.step import OptimizerStep


class PILImages(Dataset):
    """What torchvision's MNIST hands a DataLoader: a PIL image per index, then transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images.squeeze(1).numpy()
        self.labels = labels.numpy()
        self.transform = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def load_images(root: str | None, n: int) -> TensorSplit:
    if root:
        from runner.data.datasets import torchvision_images

        train = torchvision_images("MNIST", root, download=False).train
        return TensorSplit(train.images[:n], train.labels[:n])
    rng = np.random.default_rng(0)
    return TensorSplit(
        torch.from_numpy(rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)),
        torch.from_numpy(rng.integers(0, 10, n)),
    )


def train_steps(batches, model, step, optimizer, steps: int, prepare, device) -> float:
    """Run `steps` optimisation steps (after 5 warm-up steps); return seconds."""
    done, started = 0, None
    while done < steps + 5:
        for batch in batches:
            if done == 5:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            x, y = prepare(batch)
            model.training_step((x, y), {"model": optimizer}, step)
            done += 1
            if done == steps + 5:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default=None, help="data root holding MNIST/raw (default: synthetic data)"
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers for the baseline"
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.root is not None:
        require_root(args.root, "MNIST")

    device = select_device(args.device)
    precision = resolve_precision("auto", device)
    data = load_images(args.root, args.examples)
    results = {}
    for name in ("baseline DataLoader(ToTensor, Normalize)", "runner DeviceLoader"):
        torch.manual_seed(0)
        model = Autoencoder((1, 28, 28), latent_dim=16, arch="conv").to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = OptimizerStep(device, precision)
        if name.startswith("runner"):
            batches = DeviceLoader(data, args.batch_size, device, shuffle=True, drop_last=True)
            preprocess = BatchPreprocessor()

            def prepare(batch, preprocess=preprocess):
                return preprocess(batch, train=True)
        else:
            batches = DataLoader(
                PILImages(data.images, data.labels),
                batch_size=args.batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=args.workers,
                pin_memory=device.type == "cuda",
                persistent_workers=args.workers > 0,
                generator=torch.Generator().manual_seed(0),
            )

            def prepare(batch):
                x, y = batch
                return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

        seconds = train_steps(batches, model, step, optimizer, args.steps, prepare, device)
        results[name] = args.steps * args.batch_size / seconds

    source = f"MNIST from {args.root}" if args.root else "synthetic MNIST-shaped data"
    print(
        f"deep_ae, batch {args.batch_size}, {args.steps} steps, {source}, device {device}, "
        f"precision {precision}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("| path | samples/s |\n|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:,.0f} |")
    baseline, ours = results.values()
    print(f"ratio (runner / baseline): {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
