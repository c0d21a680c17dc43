"""What a run computes, as a digest: run ids, recipe digests and the job folder names Hydra uses.

A run's identity is its resolved config without what only says how or where to run (the schema's `control`
settings), without the keys its model family, dataset or schedule does not read (each registry declares the keys
only its entries read), and without the sections of other tasks (the schema's `task_section`). So adding a
setting, a model family or a dataset changes no existing run's id, and the runs of a recipe over several seeds,
solo or fused, share its recipe digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from initbench.config.schema import Config, is_control, section_task
from initbench.config.values import parse_seeds
from initbench.data import DATASETS
from initbench.errors import ConfigError
from initbench.models import ARCHS
from initbench.optim import SCHEDULES

# section -> (the registry whose entries declare their own keys, the setting that picks the entry)
_REGISTRIES = {"dataset": (DATASETS, "name"), "model": (ARCHS, "arch"), "schedule": (SCHEDULES, "name")}


def _own_keys(registry: dict, chosen: Any) -> set[str]:
    """The keys the registry's other entries declare as their own and the chosen entry does not read."""
    foreign = {key for name, entry in registry.items() if name != chosen for key in entry.keys}
    return foreign - set(registry[chosen].keys if chosen in registry else ())


def recipe_identity(cfg: DictConfig | dict) -> dict:
    """The config fields that define what a run computes, except its seed: the runs of one recipe over several
    seeds, solo or fused, share it."""
    tree = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    dataset = DATASETS.get(tree["dataset"].get("name"))
    task = dataset.task if dataset is not None else None
    tree = {key: value for key, value in tree.items() if key not in ("hydra", "seed") and not is_control(Config, key)
            and section_task(Config, key) in (None, task)}
    sections = typing.get_type_hints(Config)
    for section, value in tree.items():
        if not isinstance(value, dict) or not dataclasses.is_dataclass(sections.get(section)):
            continue
        registry, picked_by = _REGISTRIES.get(section, ({}, None))
        unread = _own_keys(registry, value.get(picked_by)) if registry else set()
        tree[section] = {key: v for key, v in value.items()
                         if not is_control(sections[section], key) and key not in unread}
    return tree


def _digest(tree: dict) -> str:
    return hashlib.sha1(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def recipe_digest(cfg: DictConfig | dict) -> str:
    """A fingerprint of `recipe_identity`: how a table finds the runs of a sweep job's recipe."""
    return _digest(recipe_identity(cfg))


def run_identity(cfg: DictConfig | dict, seed: int | list[int]) -> dict:
    """The config fields that define what a run computes: its recipe and its seed."""
    return {**recipe_identity(cfg), "seed": seed}


def run_id(cfg: DictConfig | dict, seed: int | list[int]) -> str:
    """Readable, stable id: same config and seed -> same id, so a re-launched sweep finds its runs.
    With a list of seeds it names the job that trains them fused (its folder, see `job_name`)."""
    identity = run_identity(cfg, seed)
    digest = _digest(identity)[:8]
    seed_label = "-".join(str(s) for s in seed) if isinstance(seed, list) else str(seed)
    return f"{identity['model']['name']}-{identity['norm']}-{identity['init']['name']}-s{seed_label}-{digest}"


def job_name(*, _root_: DictConfig) -> str:
    """Hydra resolver for run and sweep directory names (`${ib_job_name:}`)."""
    tree = OmegaConf.to_container(_root_, resolve=False)
    tree = {k: v for k, v in tree.items() if k != "hydra"}
    resolved = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    try:
        seeds = parse_seeds(resolved["seed"])
    except ConfigError:
        # An error raised inside Hydra's interpolation ends in a traceback; validate() reports it cleanly
        # once the job starts, and the job's folder is removed again.
        return "invalid-seed"
    name = run_id(resolved, seeds.setting)
    # `task` is not part of a run's identity, so a probe gets its own folder next to the training run's.
    return f"probe-{name}" if resolved.get("task") == "probe" else name
