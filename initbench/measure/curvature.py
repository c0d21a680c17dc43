"""λ1 of every run along training (`measure.hessian_every`), for the curvature study.

At each scheduled optimizer step (0 = at init, before the first update) every run still training gets its own λ1
on its own fixed measurement batches, read from its slice of the fused parameters, so a fused run's value is its
solo value. Rows go to the run's metrics.csv (split `train`, at that step): `hessian_lambda_max`,
`hessian_lambda_max_x_lr` (η·λ1 with the LR of that step: the number the study compares with 2, and heavy-ball
SGD's limit 2 + 2β), `preconditioned_lambda_max` for Adam after its first step (compared with
(2 + 2β1)/((1 − β1)η)) and `hessian_trace` when asked. The measurements' wall time goes to the summary
(`hessian_seconds`), not into the training throughput. A non-finite λ1 is recorded as NaN and training goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig

from initbench.config.values import HessianEvery
from initbench.errors import ConfigError
from initbench.measure.hessian import Batch, HessianOperator, estimate, estimate_seed, settings_operator
from initbench.models.replicas import Replicas


class HessianMonitor:
    """λ1 of each run at the scheduled steps, on the measurement batches its task draws (`batches[k]` for run k)."""

    def __init__(self, cfg: DictConfig, every: HessianEvery, replicas: Replicas, seeds: list[int],
                 batches: list[Callable[[], list[Batch]]], steps_per_epoch: int, epochs: int):
        self.cfg, self.replicas = cfg, replicas
        self.steps = set(every.schedule(steps_per_epoch, epochs))
        total = steps_per_epoch * epochs
        beyond = sorted(s for s in self.steps if s > total)
        if beyond:
            raise ConfigError(f"measure.hessian_every asks for steps {beyond[:5]}{' ...' if len(beyond) > 5 else ''} "
                              f"that this run never reaches: it takes {total} steps ({epochs} epoch(s) x "
                              f"{steps_per_epoch}). Drop them, or train longer.")
        self.operators = [settings_operator(cfg.measure.hessian, replicas.template, *replicas.run_tensors(index),
                                            batches[index]) for index in range(len(seeds))]
        self.seeds = seeds
        self._check_ad()

    def _check_ad(self) -> None:
        """One product on two images: a model neither AD mode can differentiate twice fails here, not mid-run."""
        operator = self.operators[0]
        batches = operator.batches
        first = batches()[0]
        operator.batches = lambda: [(first[0][:2], first[1][:2])]
        try:
            with torch.no_grad():
                operator(torch.zeros(operator.dim, dtype=operator.dtype, device=operator.device))
        except (NotImplementedError, RuntimeError) as err:
            raise ConfigError(f"measure.hessian: this model's Hessian-vector products work in neither AD mode "
                              f"(forward-over-reverse nor double backward): {str(err).splitlines()[0]}. Set "
                              "measure.hessian_every=null to train without the measurement.") from None
        finally:
            operator.batches = batches
        for other in self.operators[1:]:
            other.ad = operator.ad

    def due(self, step: int) -> bool:
        return step in self.steps

    def measure(self, step: int, lr: float, alive: list[bool],
                optimizer: torch.optim.Optimizer) -> list[tuple[dict, float]]:
        """Each live run's rows at this step ({} for a run that has diverged) and the seconds they took."""
        results = []
        for index, (operator, seed, live) in enumerate(zip(self.operators, self.seeds, alive)):
            if not live:
                results.append(({}, 0.0))
                continue
            started = time.perf_counter()
            operator.params = {n: t.detach() for n, t in self.replicas.run_tensors(index)[0].items()}
            value = estimate(operator, self.cfg.measure.hessian, estimate_seed(seed, step))
            rows = {"hessian_lambda_max": value.lambda_max, "hessian_lambda_max_x_lr": lr * value.lambda_max}
            if not math.isnan(value.trace):
                rows["hessian_trace"] = value.trace
            denominator = self._adam_denominator(optimizer, index, operator)
            if denominator is not None:
                rows["preconditioned_lambda_max"] = estimate(operator, self.cfg.measure.hessian,
                                                             estimate_seed(seed, step), denominator).lambda_max
            if operator.device.type == "cuda":
                torch.cuda.synchronize(operator.device)
            results.append((rows, time.perf_counter() - started))
        return results

    def _adam_denominator(self, optimizer: torch.optim.Optimizer, index: int,
                          operator: HessianOperator) -> torch.Tensor | None:
        """sqrt(v̂) + ε of run `index`, in the operator's parameter order; None before Adam's first step."""
        if self.cfg.optim.name != "adam":
            return None
        params = dict(self.replicas.named_parameters())
        states = [optimizer.state.get(params[name], {}) for name in operator.names]
        if not all("exp_avg_sq" in s for s in states):
            return None
        beta2, eps = self.cfg.optim.betas[1], self.cfg.optim.eps
        pieces = []
        for state in states:
            second = state["exp_avg_sq"] if self.replicas.count == 1 else state["exp_avg_sq"][index]
            corrected = second / (1 - beta2 ** float(state["step"]))
            pieces.append((corrected.sqrt() + eps).reshape(-1))
        return torch.cat(pieces).to(operator.dtype)
