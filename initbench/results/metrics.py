"""What a table compares: our number per run, in the unit of the paper's reported metric.

A table file names one of `METRICS` (its `metric:` key); the reported.csv rows of its cells must report that
metric's `reported_metric`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Metric:
    """Our number per run, in the unit of the reported metric it is compared with."""

    reported_metric: str  # the `metric` of the reported.csv rows this is set beside
    label: str
    value: Callable[[pd.DataFrame], pd.Series]  # per run; NaN where the run gives no value (it diverged)
    diverged: Callable[[pd.DataFrame], pd.Series]  # runs that diverged before the metric was measured
    rate: bool = False  # a share over seeds (mean only: a std of 0/100 values says nothing more)
    digits: int = 2
    # A number for the whole cell from all its runs (a cell that aggregates `over` a sweep parameter), instead of a
    # value per run averaged over seeds.
    aggregate: Callable[[pd.DataFrame], float] | None = None


def _no_divergence(runs: pd.DataFrame) -> pd.Series:
    return pd.Series(False, index=runs.index)


def _diverged_by(epoch: int) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda runs: runs["diverged"] & (pd.to_numeric(runs["diverged_epoch"], errors="coerce") <= epoch)


def _max_stable_lr(runs: pd.DataFrame) -> float:
    """The largest LR whose runs mostly (more than half) did not diverge; NaN if there is none."""
    share = runs.assign(ok=~runs["diverged"]).groupby("lr")["ok"].mean()
    stable = share[share > 0.5]
    return float(stable.index.max()) if len(stable) else float("nan")


METRICS: dict[str, Metric] = {
    "final_test_error": Metric(
        "test_error_pct", "final test error (%)",
        lambda t: t["final_test_error"].where(~t["diverged"]), lambda t: t["diverged"]),
    "best_test_error": Metric(
        "test_error_pct", "best test error over the epochs (%)",
        lambda t: t["best_test_error"].where(~t["diverged"]), lambda t: t["diverged"]),
    "final_test_accuracy": Metric(
        "test_accuracy_pct", "final test accuracy (%)",
        lambda t: (100.0 - t["final_test_error"]).where(~t["diverged"]), lambda t: t["diverged"]),
    "best_test_accuracy": Metric(
        "test_accuracy_pct", "best test accuracy over the epochs (%)",
        lambda t: (100.0 - t["best_test_error"]).where(~t["diverged"]), lambda t: t["diverged"]),
    "first_epoch_accuracy_pct": Metric(
        "test_accuracy_pct_after_1_epoch", "test accuracy after the first epoch (%)",
        lambda t: (100.0 - t["first_epoch_test_error"]).where(~_diverged_by(1)(t)), _diverged_by(1)),
    "first_epoch_accuracy_fraction": Metric(
        "test_accuracy_after_1_epoch", "test accuracy after the first epoch (fraction)",
        lambda t: ((100.0 - t["first_epoch_test_error"]) / 100.0).where(~_diverged_by(1)(t)), _diverged_by(1),
        digits=3),
    "final_test_accuracy_fraction": Metric(
        "test_accuracy", "final test accuracy (fraction)",
        lambda t: ((100.0 - t["final_test_error"]) / 100.0).where(~t["diverged"]), lambda t: t["diverged"], digits=3),
    "hessian_lambda_max_at_init": Metric(
        "hessian_lambda_max_at_init", "λ1 of the loss Hessian at init",
        lambda t: t["init_hessian_lambda_max"], _no_divergence),
    "log_hessian_spectral_norm_at_init": Metric(
        "log_hessian_spectral_norm_at_init", "ln |λ| of the Hessian's largest-magnitude eigenvalue at init",
        lambda t: np.log(t["init_hessian_lambda_max"].abs()), _no_divergence),
    "max_hessian_lambda_max_x_lr": Metric(
        "max_hessian_lambda_max_x_lr", "largest η·λ1 measured (heavy-ball SGD is stable below 2 + 2β)",
        lambda t: t["max_hessian_lambda_max_x_lr"], _no_divergence),
    # Translation: the test BLEU of the epoch with the best valid bleu_sacre (initbench/tasks/decoding.py).
    "test_bleu_tok": Metric(
        "test_bleu", "test BLEU, tokenized (lowercased Moses tokens, BPE removed), best-valid epoch",
        lambda t: t["test_bleu_tok"].where(~t["diverged"]), lambda t: t["diverged"]),
    "test_bleu_sacre": Metric(
        "test_bleu_sacre", "test sacreBLEU (13a, detokenized), best-valid epoch",
        lambda t: t["test_bleu_sacre"].where(~t["diverged"]), lambda t: t["diverged"]),
    "pct_diverged": Metric(
        "pct_diverged", "% of seeds that diverged", lambda t: 100.0 * t["diverged"].astype(float), _no_divergence,
        rate=True, digits=0),
    "max_stable_lr": Metric(
        "max_stable_lr", "largest LR at which most seeds do not diverge", lambda t: t["lr"], _no_divergence,
        rate=True, digits=3, aggregate=_max_stable_lr),
    "pct_reaching_epoch_3": Metric(
        "pct_seeds_reaching_epoch_3", "% of seeds reaching epoch 3 without diverging",
        lambda t: 100.0 * (~_diverged_by(3)(t) & (t["epochs_done"] >= 3)).astype(float), _no_divergence,
        rate=True, digits=0),
}
