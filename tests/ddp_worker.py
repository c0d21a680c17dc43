"""Trains one tiny run through the real Trainer in this process, distributed when torchrun started it, and saves
this rank's final parameters to OUT/rank<rank>.pt (tests/test_distributed.py compares them).

    python -m tests.ddp_worker OUT [OVERRIDE ...]     (no overrides: the tiny smoke run below)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from initbench.data import load_dataset
from initbench.data.loaders import data_generator
from initbench.distributed import join
from initbench.train.runner import build_trainer
from initbench.train.trainer import RunState
from tests.run_fixtures import compose_config

OVERRIDES = ["+experiment=smoke", "dataset.train_size=96", "dataset.test_size=32", "batch_size=32", "epochs=2",
             "model.width=4", "init=fixup", "device=cpu", "progress=false"]


def main(out: Path, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = compose_config(overrides or OVERRIDES)
    world = join(cfg.device)
    data = load_dataset(cfg.dataset)
    device = torch.device("cpu")
    run = RunState("ddp", 0, out, data_generator(0, device))
    trainer = build_trainer(cfg, [run], data, device, out / f"checkpoint-{world.size}.pt", world)
    trainer.fit()
    torch.save({"params": trainer.replicas.run_state(0), "rows": run.rows}, out / f"rank{world.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
