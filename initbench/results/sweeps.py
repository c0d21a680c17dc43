"""A sweep's jobs as Hydra launches them, and the recipe each job trains.

`configs/sweep/<name>.yaml` lists its grid under `hydra.sweeper.params`; Hydra's basic sweeper launches one job
per combination. Here the same split is made with Hydra's own parser and sweeper, with the seed set apart: the
seeds of a combination (one job per seed value, e.g. `seed: "[0,1,2],[3,4,5]"` = two fused jobs) train one
recipe. A job's recipe is its config composed by Hydra exactly as the launched job composes it, reduced to what
the run-folder hash is made of without the seed (`initbench.config.identity.recipe_digest`), so a run of any other
override never carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from initbench.config.identity import recipe_digest
from initbench.config.schema import CONFIG_DIR, compose
from initbench.errors import ConfigError

SWEEP_DIR = Path(CONFIG_DIR) / "sweep"
SEED = "seed"


@dataclass(frozen=True)
class SweepJob:
    """One combination of a sweep's parameters (the seed set apart) and the seed values it is launched with."""

    sweep: str
    params: dict[str, Any]  # parameter as the sweep file spells it (`+method`, `optim.lr`) -> this job's value
    overrides: tuple[str, ...]  # as Hydra passes them to the job, without the seed
    seeds: tuple[Any, ...]  # one entry per launched job: an int, or a list of seeds trained fused

    @property
    def runs(self) -> int:
        return sum(len(s) if isinstance(s, list) else 1 for s in self.seeds)

    def label(self) -> str:
        return " ".join(self.overrides) or "(the sweep's defaults)"


def sweep_names() -> list[str]:
    return sorted(path.stem for path in SWEEP_DIR.glob("*.yaml"))


def sweep_file(name: str) -> Path:
    return SWEEP_DIR / f"{name}.yaml"


def sweep_parameters(name: str) -> dict[str, str]:
    """`hydra.sweeper.params` of configs/sweep/<name>.yaml, as written (values are Hydra override strings)."""
    path = sweep_file(name)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: there is no sweep {name!r}. Sweeps: {', '.join(sweep_names())}.")
    tree = yaml.safe_load(path.read_text()) or {}
    params = ((tree.get("hydra") or {}).get("sweeper") or {}).get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path} has no hydra.sweeper.params: a sweep lists its grid there.")
    return {str(key): str(value) for key, value in params.items()}


def sweep_jobs(name: str) -> list[SweepJob]:
    """The sweep's combinations in Hydra's launch order, each with the seeds it is launched with."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    params = sweep_parameters(name)
    try:
        overrides = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    except Exception as err:  # Hydra's grammar error, in its words
        raise ConfigError(f"{sweep_file(name)}: a parameter is not a valid Hydra sweep ({err}).") from None
    jobs: dict[tuple[str, ...], SweepJob] = {}
    for launched in BasicSweeper.split_arguments(overrides, None)[0]:
        chosen, seed = {}, 0  # without a seed parameter, the config's default seed (0)
        for override in launched:
            key = override.split("=", 1)[0]
            value = parser.parse_override(override).value()
            if key.lstrip("+~") == SEED:
                seed = value
            else:
                chosen[override] = (key, value)
        identity = tuple(chosen)
        if identity not in jobs:
            jobs[identity] = SweepJob(name, {key: value for key, value in chosen.values()}, identity, ())
        job = jobs[identity]
        jobs[identity] = SweepJob(name, job.params, identity, (*job.seeds, seed))
    return list(jobs.values())


def compose_job(job: SweepJob, extra: tuple[str, ...] = ()) -> DictConfig:
    """The job's config as Hydra composes it when the sweep launches it (the sweep file's own body included),
    with `extra` overrides after the job's."""
    from hydra.errors import HydraException

    overrides = [*job.overrides, f"+sweep={job.sweep}", *extra]
    try:
        return compose(overrides)
    except (HydraException, ValueError) as err:  # a missing config file, a bad value: in Hydra's words
        raise ConfigError(f"{sweep_file(job.sweep)}: the job {' '.join(overrides)} does not compose: {err}") from None


def job_recipe(job: SweepJob, datasets: dict[str, str] | None = None) -> str:
    """The recipe digest of the job's runs; with `datasets` ({paper's: ours}), of the same job launched with
    `dataset=<ours>` in place of the paper's dataset."""
    cfg = compose_job(job)
    if datasets and cfg.dataset.name in datasets:
        cfg = compose_job(job, (f"dataset={datasets[cfg.dataset.name]}",))
    return recipe_digest(OmegaConf.to_container(cfg, resolve=True))
