"""CPU threads and GPUs for trials that run side by side under a parallel launcher."""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """Cores this process may use (the affinity mask on Linux, e.g. under SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parallel_jobs() -> int:
    """How many jobs the Hydra launcher runs at once (1 outside a parallel launcher)."""
    if not HydraConfig.initialized():
        return 1
    n = HydraConfig.get().launcher.get("n_jobs")
    if not isinstance(n, int) or n == 0:
        return 1
    return cpu_count() if n < 0 else n


def share_resources(cfg: DictConfig) -> None:
    """`trainer.threads`, or cores / parallel jobs so trials do not fight over cores; with several
    GPUs and parallel jobs, job k trains on GPU k mod (number of GPUs)."""
    jobs = parallel_jobs()
    threads = cfg.trainer.get("threads") or (max(1, cpu_count() // jobs) if jobs > 1 else None)
    if threads:
        torch.set_num_threads(threads)
        log.info("Using %d CPU threads.", threads)
    if jobs > 1 and torch.cuda.device_count() > 1 and cfg.trainer.device in ("auto", "cuda"):
        gpu = HydraConfig.get().job.num % torch.cuda.device_count()
        torch.cuda.set_device(gpu)  # "cuda" now means this GPU for the rest of the job
        log.info("Job %d trains on GPU %d.", HydraConfig.get().job.num, gpu)
