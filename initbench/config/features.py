"""The optional features a run may use, named once: each task declares which of them it supports (initbench/tasks),
each dataset whether it streams from disk (initbench/data), and `initbench.config.checks.check_features` refuses, in
one place, a config that uses a feature its task does not support, or two that no task can combine.
"""

from __future__ import annotations

from omegaconf import DictConfig

from initbench.config.values import HessianEvery, Seeds

# feature -> how to do without it, as a refusal advises
FEATURES = {
    "fused": "launch the seeds as separate jobs (python -m initbench -m ... seed=0,1,2)",
    "compile": "leave compile=false",
    "hessian": "leave measure.hessian_every=null",
    "mixup": "leave train.mixup_alpha=0",
    "cutout": "leave dataset.cutout=0",
    "torch_loader": "use data.loader=resident",
    "streamed": "use a dataset held in memory (e.g. cifar10)",
    "ddp": "run it in one process",
    "probe": "use task=train",
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


def features_used(cfg: DictConfig, seeds: Seeds, hessian_every: HessianEvery, streamed: bool,
                  world_size: int) -> dict[str, str]:
    """feature -> the setting that turns it on in this config, as a refusal names it."""
    used = {
        "fused": seeds.fused and f"fused seeds (seed={list(seeds)})",
        "compile": cfg.compile is not False and f"compile={cfg.compile}",
        "hessian": hessian_every.enabled and "measure.hessian_every",
        "mixup": bool(cfg.train.mixup_alpha) and f"train.mixup_alpha={cfg.train.mixup_alpha}",
        "cutout": cfg.dataset.cutout > 0 and f"dataset.cutout={cfg.dataset.cutout}",
        "torch_loader": cfg.data.loader == "torch" and "data.loader=torch",
        "streamed": streamed and f"dataset={cfg.dataset.name} (streamed from disk)",
        "ddp": world_size > 1 and f"a distributed job ({world_size} processes)",
        "probe": cfg.task == "probe" and "task=probe",
    }
    return {name: setting for name, setting in used.items() if setting}
