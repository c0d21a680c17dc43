"""The processes and devices a job runs on: one process by default, or data-parallel training across processes with
PyTorch's own distributed stack (no process management of ours). The data loaders take a rank's share of each batch
from here, so this module sits below data/ (tests/test_layout.py).

A job runs as one process per GPU, started by `torchrun --nproc_per_node=N -m initbench ...` (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT in the environment) or as one Slurm task per GPU by Hydra's submitit launcher
(`hydra/launcher=slurm` with tasks_per_node > 1: submitit's TorchDistributedEnvironment turns the Slurm variables
into the same ones). Every rank composes the same config, builds and initialises the same model from the run's
seed (DistributedDataParallel also broadcasts rank 0's weights), and draws the same epoch permutation and
augmentation from the run's generator; rank r trains on slice r of every global batch of `batch_size` images. The
data order and augmentation therefore depend on the seed only, not on the world size: the gradient all-reduced
by DDP is the gradient of the combined batch, as one process would compute it (BN layers normalise over each
rank's slice, as DDP ImageNet recipes do). ImageNet streams from disk instead: every rank still draws the same
permutation, but loads only its slice of each batch, and its crops come from workers seeded per rank
(initbench/data/loaders.py FolderLoader). Under mixup each rank pairs the images of its own slice, with the λ all
ranks share. Step losses and epoch metrics are all-reduced, so every rank takes the
same divergence decision; evaluation is sharded over the ranks and summed. Rank 0 alone writes files and
checkpoints; every rank resumes from the one checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from initbench.errors import ConfigError, UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def launched_world_size() -> int:
    """The number of processes the launcher started for this job (1 outside a distributed launch)."""
    size = os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1"))
    return int(size) if size.isdigit() else 1


def launched_rank() -> int:
    """This process's rank as its launcher set it (0 outside a distributed launch), before any process group."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit() and launched_world_size() > 1:
            return int(os.environ[name])
    return 0


def join(device: str) -> World:
    """The world this process belongs to, joining the process group on first call (gloo on the CPU, NCCL on GPUs)."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:  # NCCL's collectives and DDP use the current device: this rank's own GPU
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"Process {local_rank} of this machine has no GPU of its own: "
                                  f"{torch.cuda.device_count()} are visible. Start at most that many processes per "
                                  "machine (torchrun --nproc_per_node, hydra.launcher.tasks_per_node).")
            torch.cuda.set_device(local_rank)
        # NCCL for the GPU tensors (gradients, metrics); gloo for the small CPU ones (rank 0's decisions).
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def device_setting(world: World, setting: str) -> str:
    """`device=auto` (or cuda) in a distributed job: the GPU of this process's local rank; one GPU for all: refused."""
    if world.active and setting.startswith("cuda:"):
        raise ConfigError(f"device={setting} would put every process of this distributed job on one GPU; use "
                          "device=auto (each process takes the GPU of its local rank) or device=cuda.")
    if world.active and setting in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return setting


def all_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor summed over the ranks (in place; itself in a single process)."""
    if world.active:
        dist.all_reduce(tensor)
    return tensor


def rank0_decides(world: World, value: bool) -> bool:
    """Rank 0's value of a flag, on every rank."""
    if not world.active:
        return value
    flag = torch.tensor([int(value)])
    dist.broadcast(flag, 0)
    return bool(flag.item())


def check_same_config(world: World, config: dict) -> None:
    """Every rank must run the same resolved config (a rank launched with other overrides would train another
    run); raise the same ConfigError on every rank if not."""
    if not world.active:
        return
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    digests: list[str] = [""] * world.size
    dist.all_gather_object(digests, digest)
    differing = [rank for rank, other in enumerate(digests) if other != digests[0]]
    if differing:
        raise ConfigError(f"The ranks of this distributed job see different configs (rank(s) {differing} differ "
                          "from rank 0): launch every rank with the same command and overrides.")


def resolve_device(name: str) -> torch.device:
    """The torch device named by the `device` setting (auto: CUDA when visible); a UserError if it is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r} is not a device. Use device=auto, device=cpu, device=cuda or "
                        "device=cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name} was requested but no CUDA GPU is visible. Use device=auto or device=cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device={name}: only {torch.cuda.device_count()} CUDA GPU(s) are visible. Use device=auto "
                        f"or an index below {torch.cuda.device_count()}.")
    return device
