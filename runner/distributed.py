"""Process-group set-up and tear-down for data-parallel training, and the few collectives the loop
needs to keep every rank's decisions identical.

The training itself is PyTorch's `DistributedDataParallel`: each family wraps what its
`training_step` runs (`RunnerModel.distribute`), and DDP broadcasts rank 0's weights once, then
all-reduces gradients bucket by bucket while backward still runs.

Processes come from `torchrun` (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...) or from a
multi-task submitit job (SLURM, or its local executor), whose environment submitit translates.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from runner.errors import RunnerError
from runner.search.resources import cpu_count

log = logging.getLogger(__name__)
T = TypeVar("T")

LAUNCH_HELP = (
    "Start one process per GPU (or CPU share) with torchrun: "
    "torchrun --standalone --nproc_per_node=<N> -m runner.train trainer.strategy=ddp "
    "hydra.run.dir=<folder> ...; several nodes: torchrun --nnodes=<M> --node_rank=<i> "
    "--rdzv_endpoint=<host>:29500 ... on each; on SLURM: python -m runner.train -m "
    "hydra/launcher=slurm_ddp hydra.launcher.nodes=<M> ..."
)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    """How many processes the launcher started for this run (1 when started plainly)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if os.environ.get("SUBMITIT_EXECUTOR"):
        import submitit

        return submitit.JobEnvironment().num_tasks
    return 1


def _export_submitit_environment() -> None:
    """A multi-task submitit job knows its ranks and hosts; torch's env:// init reads variables."""
    from submitit.helpers import TorchDistributedEnvironment

    # CUDA_VISIBLE_DEVICES stays as SLURM set it: init_distributed picks GPU `local_rank` itself.
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed(
    strategy: str, device_name: str, timeout_min: float = 60
) -> DistContext | None:
    """Join the process group of a launched multi-process run; None for a single process.

    `strategy`: `auto` (data-parallel exactly when a launcher started several processes),
    `ddp` (required) or `single`. Backend: nccl on CUDA, gloo on CPU.
    """
    processes = launched_world_size()
    if strategy == "single" and processes > 1:
        raise RunnerError(
            f"This run was launched as {processes} processes but trainer.strategy=single: each "
            "would train its own copy into the same folder. Use trainer.strategy=ddp (or auto), "
            "or start one process."
        )
    if (strategy == "auto" and processes == 1) or strategy == "single":
        return None
    if processes == 1 and "RANK" not in os.environ:
        raise RunnerError(f"trainer.strategy=ddp needs several processes. {LAUNCH_HELP}")
    if "RANK" not in os.environ:
        _export_submitit_environment()
    ctx = DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])),
    )
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        gpus = torch.cuda.device_count()
        if ctx.local_world_size > gpus:
            raise RunnerError(
                f"{ctx.local_world_size} processes on this node but {gpus} visible GPU(s): DDP "
                "needs one GPU per process. Start --nproc_per_node=<GPUs> processes, or train on "
                "CPUs with trainer.device=cpu."
            )
        torch.cuda.set_device(ctx.local_rank)  # "cuda" now means this rank's GPU
    else:
        torch.set_num_threads(max(1, cpu_count() // ctx.local_world_size))  # trainer.threads wins
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo", timeout=timedelta(minutes=timeout_min)
        )
    global _joined
    _joined = True
    if not ctx.is_main:
        _log_to_own_file(ctx.rank)
    log.info(
        "DDP rank %d of %d (local rank %d, %s).",
        ctx.rank,
        ctx.world_size,
        ctx.local_rank,
        dist.get_backend(),
    )
    return ctx


def _log_to_own_file(rank: int) -> None:
    """Rank r > 0 logs to train_rank<r>.log beside train.log and prints only warnings."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            path = Path(handler.baseFilename)
            if path.stem.endswith(f"_rank{rank}"):  # already moved (cross-validation's folds)
                continue
            own = logging.FileHandler(path.with_name(f"{path.stem}_rank{rank}{path.suffix}"))
            own.setFormatter(handler.formatter)
            own.setLevel(handler.level)
            root.removeHandler(handler)
            handler.close()
            root.addHandler(own)
        elif isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.WARNING)


def wrapper(ctx: DistContext, device: torch.device) -> Callable[[nn.Module], nn.Module]:
    """`wrap(module)`: the module in DistributedDataParallel on this rank's device."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index if device.index is not None else ctx.local_rank]

    def wrap(module: nn.Module) -> nn.Module:
        if device.type == "cuda":
            return DistributedDataParallel(module, device_ids=device_ids)
        return DistributedDataParallel(module)

    return wrap


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm (statistics over the global batch); same state_dict."""
    if device.type != "cuda":
        raise RunnerError(
            "trainer.sync_batchnorm=true needs CUDA GPUs: torch's SyncBatchNorm has no CPU "
            "kernels. On CPU keep trainer.sync_batchnorm=false (each rank normalises with its own "
            "batch, and running statistics follow rank 0 as DDP does), or use "
            "regularization.normalization=layer."
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (no-op in a single process)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (batch-norm statistics) on every rank.

    DDP broadcasts them at the start of each forward, so after an epoch every rank still holds the
    statistics of its own last batches; validation and checkpoints need the ones DDP would use.
    """
    if active():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def run_on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 alone and hand every rank its result, or raise its exception on every
    rank: whole-set metrics and decisions (pruning) are taken once and seen by all."""
    if not active():
        return fn()
    payload: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            payload[0] = ("ok", fn())
        except Exception as exc:  # every rank must leave together, with the same error
            payload[0] = ("error", exc)
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        raise value
    return value


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (a one-element list in a single process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def state_digests(module: nn.Module) -> list[str]:
    """SHA-256 of every rank's parameters and buffers, in rank order: equal when in sync."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return gather_objects(digest.hexdigest())


def check_same_run_folder(folder: Path) -> None:
    """Ranks must write one run folder; Hydra's default name holds the time each process started."""
    folders = gather_objects(str(Path(folder).resolve()))
    if len(set(folders)) > 1:
        raise RunnerError(
            "The processes of this data-parallel run disagree on their run folder ("
            + ", ".join(folders)
            + "). Pass the same hydra.run.dir=<folder> to every process (torchrun passes the "
            "command line to all of them)."
        )


def barrier() -> None:
    if active():
        dist.barrier()


def cleanup(finished: bool = False) -> None:
    """Leave the process group; safe to call on every exit path. After a run that `finished` on
    every rank, the ranks first wait for each other, so none tears down while another still
    talks to it; after a failure they cannot (a peer may be gone) and leave at once."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


# Set once this process has joined a process group (it may have left it by the time of asking).
_joined = False
# gloo reports a peer that exited as a plain RuntimeError raised from the collective.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote worker")


def is_peer_failure(exc: BaseException) -> bool:
    """A collective that failed because another rank stopped (its own error says why)."""
    if not _joined:
        return False
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _PEER_GONE)
