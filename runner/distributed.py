"""Data-parallel training over processes started by `torchrun` (`trainer.strategy=ddp`).

What DistributedDataParallel does, spelled out for models that call their submodules directly:
every rank starts from rank 0's weights, trains on its slice of each global batch, and averages
gradients before each optimiser step, so all ranks keep identical weights. Only rank 0 writes logs,
checkpoints and metrics.json.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runner.errors import RunnerError

log = logging.getLogger(__name__)


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(strategy: str, device_name: str) -> DistContext | None:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); None for `single`."""
    if strategy != "ddp":
        return None
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RunnerError(
            "trainer.strategy=ddp needs the processes torchrun starts: "
            "torchrun --nproc_per_node=<GPUs> -m runner.train trainer.strategy=ddp "
            "hydra.run.dir=<folder> ..."
        )
    ctx = DistContext(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(ctx.local_rank)  # "cuda" now means this rank's GPU
    else:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    log.info("DDP rank %d of %d (%s).", ctx.rank, ctx.world_size, dist.get_backend())
    return ctx


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """All-reduce the mean gradient of the optimiser's parameters, in one flat buffer."""
    grads = [
        p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None
    ]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class ShardedBatches:
    """Rank r's slice of every global batch of a loader: every rank draws the same seeded
    permutation, so together they see each global batch exactly once per step."""

    def __init__(self, loader, ctx: DistContext) -> None:
        self.loader = loader
        self.ctx = ctx
        self.generator = getattr(loader, "generator", None)  # checkpoints save the shuffle state

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            per_rank = len(labels) // self.ctx.world_size
            part = slice(self.ctx.rank * per_rank, (self.ctx.rank + 1) * per_rank)
            yield images[part], labels[part]
