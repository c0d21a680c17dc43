#!/usr/bin/env python3
"""10,000-layer nets: build + init time, training step time and peak memory, with and without checkpointing.

    python scripts/deep_nets.py                                # GPU: Fixup ResNet-9998 and plain CNN-10000, batch 128
    python scripts/deep_nets.py --quick                        # CPU: narrow nets (width 4/8), batch 8, 2 steps

Each net is built and initialised exactly as a training run does (the Trainer builds and initialises it on the
CPU, then moves it to the device: "setup s", of which "init s" is the init scheme), then trains --steps + 1 SGD
steps through `Trainer.train_epoch` (the real loop) on random images, once with model.checkpoint_segments=0 and
once with `auto` (about sqrt(units) segments, initbench/models/checkpointing.py). Printed per net and setting:
setup and init seconds, seconds per step (the mean over the epoch's steps, the first one included), peak device
memory (CUDA only), whether every gradient is finite, and the checkpointed/plain ratios of step time and memory.
A setting that runs out of memory is reported as such.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from initbench.config.checks import validate
from initbench.config.schema import compose
from initbench.data import ImageData
from initbench.data.loaders import data_generator
from initbench.distributed import resolve_device
from initbench.train.runner import build_trainer
from initbench.train.trainer import RunState

NETS = {
    "fixup_resnet9998": ["model=resnet110", "model.depth=9998", "init=fixup"],
    "plain_cnn10000_delta_orth": ["model=plain_cnn", "model.depth=10000", "init=delta_orthogonal", "norm=none"],
}
QUICK_WIDTH = {"fixup_resnet9998": 4, "plain_cnn10000_delta_orth": 8}


def compose_config(overrides: list[str]):
    cfg = compose(overrides)
    validate(cfg)
    return cfg


def random_split(count: int) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return ImageData("random", images, labels, images[:8], labels[:8], 10)


def measure(name: str, segments: str, args: argparse.Namespace, device: torch.device, scratch: Path) -> dict:
    overrides = [*NETS[name], f"model.checkpoint_segments={segments}", "dataset=synthetic", "epochs=1",
                 f"batch_size={args.batch}", "eval_batch_size=8", f"device={device}", "progress=false",
                 "divergence.check_every=1000000000", "divergence.loss_factor=1e30", "optim.lr=0.01"]
    if args.quick:
        overrides.append(f"model.width={QUICK_WIDTH[name]}")
    cfg = compose_config(overrides)
    data = random_split(args.batch * (args.steps + 1))
    row = {"net": name, "checkpoint_segments": segments, "setup_s": math.nan, "init_s": math.nan,
           "params_m": math.nan, "step_s": math.nan, "peak_gib": math.nan}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        run = RunState("deep", 0, scratch, data_generator(0, device))
        started = time.perf_counter()
        trainer = build_trainer(cfg, [run], data, device, scratch / f"{name}-{segments}.pt")  # build + init on the CPU
        row.update(setup_s=time.perf_counter() - started, init_s=run.init_seconds)
        parameters = list(trainer.model.parameters())
        row["params_m"] = sum(p.numel() for p in parameters) / 1e6
        started = time.perf_counter()
        trainer.train_epoch()  # steps + 1 steps; the epoch ends with a host read, so the clock is synced
        row["step_s"] = (time.perf_counter() - started) / (args.steps + 1)
        row["finite_grads"] = all(bool(torch.isfinite(p.grad).all()) for p in parameters if p.grad is not None)
        if device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    except torch.OutOfMemoryError:
        row["finite_grads"] = "out of memory"
    finally:
        trainer = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, of {', '.join(NETS)}")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128, --quick 8)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps after the first (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="narrow nets for a CPU")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 128)
    args.steps = args.steps if args.steps is not None else (1 if args.quick else 3)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {name}, batch {args.batch}, {args.steps + 1} steps per setting, torch {torch.__version__}")
    header = (f"{'net':<28} {'segments':>8} {'params M':>9} {'setup s':>8} {'init s':>7} {'s/step':>8} "
              f"{'peak GiB':>9} finite")
    print(header)
    with tempfile.TemporaryDirectory() as scratch:
        for net in args.nets.split(","):
            rows = [measure(net, segments, args, device, Path(scratch)) for segments in ("0", "auto")]
            for row in rows:
                print(f"{row['net']:<28} {row['checkpoint_segments']:>8} {row['params_m']:>9.1f} "
                      f"{row['setup_s']:>8.1f} {row['init_s']:>7.1f} {row['step_s']:>8.3f} {row['peak_gib']:>9.2f} "
                      f"{row['finite_grads']}", flush=True)
            plain, checkpointed = rows
            print(f"{'':<28} auto/0: step time x{checkpointed['step_s'] / plain['step_s']:.2f}, "
                  f"peak memory x{checkpointed['peak_gib'] / plain['peak_gib']:.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
