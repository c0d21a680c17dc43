"""The probe: a network at initialization, one batch forward and backward, RMS of signals per layer.

`python -m initbench task=probe +experiment=... init=...` builds and initialises the model exactly as a training
run of that config and seed would (the classification task's `build_model`), pushes one training batch of
`probe.batch_size` images (not augmented) through it in train mode, backpropagates the mean cross-entropy, and
writes `probe.csv` (tidy: `layer, index, kind, quantity, value`; initbench/measure/signal.py says what each row
is) in the run dir, or in seed_<s>/ per seed when `seed=[...]`. With `probe.hessian` (on by default) it adds
`layer = net` `hessian_lambda_max`: λ1 of the training loss at init, measured as `measure.hessian` says
(initbench/measure/hessian.py) on the batches a training run would measure on. A probe writes no summary.csv (it
is not a training run) and runs in fp32 whatever `precision` says.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from initbench.config.values import Seeds
from initbench.data.augment import Normalize
from initbench.data.loaders import steps_per_epoch
from initbench.data.sampler import PROBE_OFFSET, TrainingSampler
from initbench.distributed import SINGLE, World
from initbench.errors import ConfigError
from initbench.measure.hessian import estimate, estimate_seed, settings_operator
from initbench.measure.signal import NET, PROBE_COLUMNS, format_probe, probe_model
from initbench.results.files import write_csv
from initbench.results.records import environment, run_dirs, write_run_record
from initbench.tasks.classification import ClassificationTask

PROBE_FILE = "probe.csv"


class ProbeTask(ClassificationTask):
    """The classification task's data and models, measured at init instead of trained."""

    name = "probe"
    trains = False

    def __init__(self, cfg: DictConfig, data, device: torch.device, world: World = SINGLE):
        # The hooks must see each layer once: no checkpointed recomputation (checkpointing changes no value).
        super().__init__(OmegaConf.merge(cfg, {"model": {"checkpoint_segments": 0}}), data, device, world)
        self.run_cfg = cfg  # as given, for the run record

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        size = cfg.probe.get("batch_size") if OmegaConf.is_dict(cfg.probe) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"probe.batch_size={size!r} must be a whole number >= 1 (images in the probe batch).")

    def batch(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`probe.batch_size` training images (normalised, not augmented) and labels, drawn by a generator of their
        own."""
        normalize = Normalize(self.cfg.dataset.mean, self.cfg.dataset.std, torch.device("cpu"))
        sampler = TrainingSampler(self.data, seed, normalize, False, 0, torch.device("cpu"), PROBE_OFFSET)
        return sampler(self.cfg.probe.batch_size)

    def hessian_at_init(self, model: torch.nn.Module, seed: int) -> float:
        """λ1 at init, on the measurement batches of the training run of this config and seed."""
        steps = steps_per_epoch(len(self.data.train_labels), self.cfg.batch_size)
        operator = settings_operator(self.cfg.measure.hessian, model, dict(model.named_parameters()),
                                     dict(model.named_buffers()), self.measurement_batches(seed, steps))
        return estimate(operator, self.cfg.measure.hessian, estimate_seed(seed)).lambda_max

    def run(self, seeds: Seeds, job_dir: Path) -> list[list[dict]]:
        """Probe the model of each seed at init; write probe.csv (+ config, env) per seed."""
        cfg, device = self.run_cfg, self.device
        env = environment(device)
        results = []
        for seed, directory in run_dirs(seeds, job_dir):
            model = self.build_model(seed).model.to(device)
            images, labels = self.batch(seed)
            rows = probe_model(model, images.to(device), labels.to(device))
            if cfg.probe.get("hessian", True):
                rows.append({"layer": NET, "index": -1, "kind": NET, "quantity": "hessian_lambda_max",
                             "value": self.hessian_at_init(model, seed)})
            write_run_record(directory, cfg, seed, env)
            write_csv(directory / PROBE_FILE, rows, PROBE_COLUMNS)
            print(f"probe of {cfg.model.name} norm={cfg.norm} init={cfg.init.name} seed={seed} "
                  f"({len(labels)} images, train mode)\n{format_probe(rows)}\nwritten: {directory / PROBE_FILE}")
            results.append(rows)
        return results
