"""Config composition, validation and the CLI's errors for bad overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from initbench.config.schema import CONFIG_DIR
from initbench.config.checks import validate
from initbench.config.identity import run_id
from initbench.config.schema import register_configs
from initbench.config.values import parse_warmup
from initbench.errors import ConfigError
from tests.conftest import TINY, run_cli

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def compose_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_config([f"+experiment={experiment}"])
    validate(cfg)
    assert cfg.experiment_name == experiment


def test_smoke_takes_overrides_of_model_init_norm_optim_seed():
    cfg = compose_config(["+experiment=smoke", "model=resnet110", "norm=none", "init=kaiming", "optim=adam", "seed=3"])
    validate(cfg)
    assert (cfg.model.depth, cfg.norm, cfg.init.name, cfg.optim.name, cfg.seed) == (110, "none", "kaiming", "adam", 3)
    assert cfg.model.name == "resnet110"


def test_run_id_depends_on_config_not_on_paths():
    base = compose_config(["+experiment=smoke"])
    moved = compose_config(["+experiment=smoke", "dataset.root=/elsewhere", "force=true"])
    other_lr = compose_config(["+experiment=smoke", "optim.lr=0.05"])
    assert run_id(base, 0) == run_id(moved, 0)
    assert run_id(base, 0) != run_id(other_lr, 0)
    assert run_id(base, 0) != run_id(base, 1)


@pytest.mark.parametrize(
    ("value", "epochs", "steps", "label"),
    [(0, 0.0, 0, "none"), ("none", 0.0, 0, "none"), (5, 5.0, 0, "5ep"), ("500st", 0.0, 500, "500st"),
     ("2.5ep", 2.5, 0, "2.5ep")],
)
def test_warmup_forms(value, epochs, steps, label):
    warmup = parse_warmup(value, "linear")
    assert (warmup.epochs, warmup.steps, warmup.label()) == (epochs, steps, label)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.depth=57"], "6n+2"),
        (["warmup=5"], "not shorter than training"),
        (["optim.lr=-1"], "optim.lr"),
        (["epochs=0"], "epochs"),
        (["warmup=soon"], "not a warmup length"),
        (["norm=groupnorm"], "Allowed values: batchnorm, none, weightnorm"),
        (["schedule.milestones=[50]"], "fractions of training"),
    ],
)
def test_validation_names_the_problem(overrides, message):
    cfg = compose_config(["+experiment=smoke", *overrides])
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        validate(cfg)


def test_cli_errors_are_short_and_leave_no_run_dir(workdir):
    wrong_depth = run_cli([*TINY, "model.depth=57"], workdir)
    assert wrong_depth.returncode == 2
    assert "model.depth=57" in wrong_depth.stderr and "6n+2" in wrong_depth.stderr
    assert "Traceback" not in wrong_depth.stderr
    unknown_init = run_cli([*TINY, "init=kaimingg"], workdir)
    assert unknown_init.returncode != 0
    assert "Could not find 'init/kaimingg'" in unknown_init.stderr and "kaiming" in unknown_init.stderr
    assert "Traceback" not in unknown_init.stderr
    runs = workdir / "results" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed start left a run directory behind"


def test_cfg_job_prints_the_composed_config_without_running(workdir):
    result = run_cli(["+experiment=cifar10_resnet110", "--cfg", "job"], workdir)
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.model.depth == 110 and printed.experiment_name == "cifar10_resnet110"
    assert not (workdir / "results").exists()
