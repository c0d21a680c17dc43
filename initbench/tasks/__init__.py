"""The task registry: what is learned, behind one interface (base.py), one module per task.

`task=train` (the default) trains the task its dataset declares (initbench/data: images -> classification,
parallel text -> translation); `task=probe` measures the classification model at init instead. A new task is one
module with a `Task` subclass, registered here, and the datasets that feed it.
"""

from __future__ import annotations

from omegaconf import DictConfig

from initbench.data import DATASETS
from initbench.tasks.base import InitializedModel, Task
from initbench.tasks.classification import ClassificationTask
from initbench.tasks.probe import ProbeTask
from initbench.tasks.translation import TranslationTask

TASKS: dict[str, type[Task]] = {task.name: task for task in (ClassificationTask, TranslationTask, ProbeTask)}
TASK_SETTINGS = ("train", "probe")  # the values of the `task` setting


def training_task(cfg: DictConfig) -> type[Task]:
    """The task that trains on the config's dataset."""
    return TASKS[DATASETS[cfg.dataset.name].task]


def task_for(cfg: DictConfig) -> type[Task]:
    """The task a job of this (checked) config runs."""
    return TASKS["probe"] if cfg.task == "probe" else training_task(cfg)


__all__ = ["TASKS", "TASK_SETTINGS", "InitializedModel", "Task", "task_for", "training_task"]
