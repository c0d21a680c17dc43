"""The optional features a run may use, named once: tasks and datasets declare which of them they support
(initbench/tasks, initbench/data), and `initbench.config.checks` refuses, in one place, a config that uses one its
task or dataset does not support, or two that no task can combine.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from initbench.config.values import Seeds, parse_hessian_every


@dataclass(frozen=True)
class Feature:
    setting: str  # how a config turns it on, as the refusal names it
    off: str  # how to do without it


FEATURES = {
    "fused": Feature("fused seeds (seed=[...])",
                     "launch the seeds as separate jobs (python -m initbench -m ... seed=0,1,2)"),
    "compile": Feature("compile", "leave compile=false"),
    "hessian": Feature("measure.hessian_every", "leave measure.hessian_every=null"),
    "mixup": Feature("train.mixup_alpha", "leave train.mixup_alpha=0"),
    "cutout": Feature("dataset.cutout", "leave dataset.cutout=0"),
    "torch_loader": Feature("data.loader=torch", "use data.loader=resident"),
    "streamed": Feature("a dataset streamed from disk", "use a dataset held in memory (e.g. cifar10)"),
    "ddp": Feature("a distributed job (several processes)", "run it in one process"),
    "probe": Feature("task=probe", "use task=train"),
}

# Pairs no task supports together, and why.
CONFLICTS = {
    frozenset({"fused", "torch_loader"}): "the torch loader feeds one run",
    frozenset({"fused", "streamed"}): "a dataset streamed from disk feeds one run per job",
    frozenset({"hessian", "streamed"}): "λ1's measurement batches need the data in memory",
    frozenset({"probe", "streamed"}): "the probe's batch needs the data in memory",
    frozenset({"cutout", "streamed"}): "the official ImageNet recipe has no cutout",
    frozenset({"fused", "ddp"}): "a distributed job trains one run",
    frozenset({"hessian", "ddp"}): "λ1 is measured in one process",
}


def features_used(cfg: DictConfig, seeds: Seeds, streamed: bool, world_size: int) -> dict[str, str]:
    """feature -> the setting that turns it on in this config (as a refusal names it)."""
    used = {
        "fused": seeds.fused and f"fused seeds (seed={list(seeds)})",
        "compile": cfg.compile is not False and f"compile={cfg.compile}",
        "hessian": parse_hessian_every(cfg.measure.hessian_every).enabled and "measure.hessian_every",
        "mixup": bool(cfg.train.mixup_alpha) and f"train.mixup_alpha={cfg.train.mixup_alpha}",
        "cutout": cfg.dataset.cutout > 0 and f"dataset.cutout={cfg.dataset.cutout}",
        "torch_loader": cfg.data.loader == "torch" and "data.loader=torch",
        "streamed": streamed and f"dataset={cfg.dataset.name} (streamed from disk)",
        "ddp": world_size > 1 and f"a distributed job ({world_size} processes)",
        "probe": cfg.task == "probe" and "task=probe",
    }
    return {name: setting for name, setting in used.items() if setting}
