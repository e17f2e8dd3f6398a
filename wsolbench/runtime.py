"""Devices, seeding and torch.distributed set-up: everything that depends on where a run runs."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from wsolbench.errors import UsageError


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its device and its place in a distributed job."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available: use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None


def init_runtime(device_name: str) -> Runtime:
    """Set up this process; under ``torchrun`` (``WORLD_SIZE`` > 1) join the process group.

    The backend is NCCL on CUDA and gloo on CPU; each rank uses ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_name)
    if world_size == 1:
        return Runtime(device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank=rank, world_size=world_size)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision when asked for: bf16 on CPU, fp16 on CUDA (with a grad scaler)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def shutdown(runtime: Runtime) -> None:
    """Leave the process group, if any."""
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


#: Loader processes per GPU process when ``train.workers`` is null on CUDA.
MAX_AUTO_WORKERS = 8


def loader_workers(requested: int | None, runtime: Runtime) -> int:
    """DataLoader worker processes: ``requested``, or when it is None, 0 on CPU (deterministic
    and fastest for the tiny CPU configs) and on CUDA the CPU cores shared among this machine's
    processes, at most :data:`MAX_AUTO_WORKERS` (decoding JPEGs is what feeds a GPU)."""
    if requested is not None:
        return requested
    if runtime.device.type != "cuda":
        return 0
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 1) // local_processes - 1))
