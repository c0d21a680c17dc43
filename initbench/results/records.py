"""What a job leaves beside its results: where each run's files go, its resolved config and its environment."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import hydra
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf

from initbench.config.values import Seeds
from initbench.results.files import CONFIG_FILE, ENV_FILE, write_json, write_text


def run_dirs(seeds: Seeds, job_dir: Path) -> list[tuple[int, Path]]:
    """(seed, directory) of each run in the job: the job dir itself, or one subfolder per fused seed."""
    if not seeds.fused:
        return [(seeds.values[0], job_dir)]
    return [(seed, job_dir / f"seed_{seed}") for seed in seeds]


def git_commit() -> str:
    """The harness's git commit (with -dirty for uncommitted changes), or 'unknown' outside a checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict:
    return {
        "initbench_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hydra": hydra.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "host": platform.node(),
        "command": sys.argv,
    }


def write_run_record(directory: Path, cfg: DictConfig, seed: int, env: dict) -> None:
    """The run's resolved config (with its own seed, also for fused runs) and its environment, beside its results."""
    write_text(directory / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.merge(cfg, {"seed": seed}), resolve=True))
    write_json(directory / ENV_FILE, env)
