"""K runs fused on one device train exactly as each would alone, and a run that blows up touches no other.

Everything goes through the real Trainer (config composition, init from the seed, ResidentLoader with
each run's generator, vmapped Replicas, fused SGD, divergence flags, the metric rows the CSVs are
written from). Tolerance, fp32 on CPU: a fused conv is a grouped conv whose sums are ordered
differently from the solo conv, so results are not bitwise equal, and this tiny BN net at lr 0.1 on
batches of 32 amplifies rounding quickly (a few ReLU inputs near 0 flip sign). After 4 steps every
tensor (weights, BN statistics, momentum buffers) must match the solo run's to a norm-wise relative
error ||fused - alone|| / ||alone|| <= 1e-2; seen: 2e-5..3e-3. A real mix-up is far outside it:
giving a run another data order gives 0.6..0.85. Losses agree to 1e-3 relative; an error rate may
differ by one image (a near-tie prediction).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from initbench.config.schema import CONFIG_DIR
from initbench.config.identity import run_id
from initbench.config.schema import register_configs
from initbench.data import load_dataset
from initbench.data.loaders import data_generator
from initbench.train.runner import build_trainer
from initbench.train.trainer import RunState, Trainer

SEEDS = (0, 1, 2)
CPU = torch.device("cpu")
RELATIVE_TOLERANCE = 1e-2
# A tiny ResNet-8 with BN, 2 epochs of 2 steps (64 images, batch 32): two permutations, BN statistics, momentum.
OVERRIDES = ["+experiment=smoke", "model.depth=8", "dataset.train_size=64", "dataset.test_size=32", "batch_size=32",
             "eval_batch_size=32", "epochs=2", "progress=false", "device=cpu"]


def compose_config(seed: int | list[int], extra: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[*OVERRIDES, *extra, f"seed={seed}"])


def make_trainer(seeds: list[int], out: Path, extra: list[str] = ()) -> Trainer:
    cfg = compose_config(seeds if len(seeds) > 1 else seeds[0], list(extra))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    runs = [RunState(run_id(resolved, s), s, out / f"seed_{s}", data_generator(s, CPU)) for s in seeds]
    return build_trainer(cfg, runs, load_dataset(cfg.dataset), CPU, out / "checkpoint.pt")


def finished(trainer: Trainer, run: int) -> dict:
    """What a run ends with: weights and BN statistics, momentum buffers, and its metric rows."""
    return {"state": trainer.replicas.run_state(run),
            "momentum": trainer.replicas.optimizer_run_state(trainer.optimizer, run),
            "run": trainer.runs[run]}


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict[int, dict]:
    results = {}
    for seed in SEEDS:
        trainer = make_trainer([seed], tmp_path_factory.mktemp(f"alone{seed}"))
        trainer.fit()
        results[seed] = finished(trainer, 0)
    return results


def assert_close_normwise(fused: torch.Tensor, solo: torch.Tensor, name: str) -> None:
    assert torch.isfinite(fused).all(), name
    gap = (fused - solo).norm() / solo.norm().clamp_min(1e-12)
    assert gap <= RELATIVE_TOLERANCE, f"{name}: relative gap {gap:.2e}"


def assert_same_run(fused: dict, solo: dict, train_images: int = 64) -> None:
    assert fused["state"].keys() == solo["state"].keys()
    for name, value in fused["state"].items():
        if value.is_floating_point():
            assert_close_normwise(value, solo["state"][name], name)
        else:
            assert torch.equal(value, solo["state"][name]), name  # BN's num_batches_tracked
    for name, slots in fused["momentum"].items():
        assert_close_normwise(slots["momentum_buffer"], solo["momentum"][name]["momentum_buffer"], name)
    fused_rows, solo_rows = fused["run"].rows, solo["run"].rows
    key = ("epoch", "step", "split", "metric")
    assert [tuple(r[k] for k in key) for r in fused_rows] == [tuple(r[k] for k in key) for r in solo_rows]
    for f, s in zip(fused_rows, solo_rows):
        one_image = 100 / (train_images if f["split"] == "train" else 32)
        slack = one_image + 1e-9 if f["metric"].endswith("error") else 0.0
        assert math.isclose(f["value"], s["value"], rel_tol=1e-3, abs_tol=slack), (f, s)
    assert not fused["run"].diverged and not solo["run"].diverged


def test_fused_seeds_end_with_the_parameters_and_rows_of_each_seed_alone(alone, tmp_path):
    trainer = make_trainer(list(SEEDS), tmp_path)
    trainer.fit()
    for index, seed in enumerate(SEEDS):
        assert_same_run(finished(trainer, index), alone[seed])
        assert {r["run_id"] for r in trainer.runs[index].rows} == {alone[seed]["run"].run_id}  # same CSV identity
    assert trainer.runs[0].steps_done == 4


def test_a_nan_in_one_fused_run_leaves_the_others_as_if_alone(alone, tmp_path):
    trainer = make_trainer(list(SEEDS), tmp_path)
    states = [trainer.replicas.run_state(run) for run in range(len(SEEDS))]
    states[1]["stem.weight"][0, 0, 0, 0] = math.nan
    trainer.replicas.load_run_states(states)
    trainer.fit()
    broken = trainer.runs[1]
    assert broken.diverged and (broken.diverged_epoch, broken.diverged_step) == (1, 1)
    assert {(r["split"], r["epoch"]) for r in broken.rows} == {("train", 1)}  # no rows after it diverged
    for index in (0, 2):
        assert_same_run(finished(trainer, index), alone[SEEDS[index]])


def test_channels_last_fused_runs_take_the_same_first_step_as_each_seed_alone(tmp_path):
    """channels_last stores K>1 conv weights so the grouped conv is NHWC; one step must match NCHW solo runs."""
    one_step = ["dataset.train_size=32", "epochs=1"]
    fused = make_trainer([0, 1], tmp_path / "fused", [*one_step, "channels_last=true"])
    fused.fit()
    for index, seed in enumerate((0, 1)):
        solo = make_trainer([seed], tmp_path / f"alone{seed}", one_step)
        solo.fit()
        assert_same_run(finished(fused, index), finished(solo, 0), train_images=32)


def test_fused_runs_with_mixup_cutout_and_clipping_equal_each_seed_alone(tmp_path):
    """Each run draws its own mixing and holes and is clipped by its own gradient norm (0.5 clips every step: the
    three runs' norms are 1.5 to 3, each different). Drawing every run's mixing from run 0's generator gives 0.4."""
    recipe = ["train.mixup_alpha=1", "dataset.cutout=16", "optim.clip_grad_norm=0.5",
              "optim.lr=0.05"]  # lr 0.05: mixup makes this tiny net amplify rounding more than at 0.1
    fused = make_trainer(list(SEEDS), tmp_path / "fused", recipe)
    fused.fit()
    for index, seed in enumerate(SEEDS):
        solo = make_trainer([seed], tmp_path / f"alone{seed}", recipe)
        solo.fit()
        assert_same_run(finished(fused, index), finished(solo, 0))
        assert {r["metric"] for r in solo.runs[0].rows if r["split"] == "train"} == {"mixup_loss", "mixup_error", "lr"}
