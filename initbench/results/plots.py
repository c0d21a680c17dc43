"""Figures from the tidy results: curves per method, a metric against depth, divergence against the LR, the
loss Hessian's λ1 along training against the stability limits 2/η and (2 + 2β)/η, and the signal at init (from
the probe's probe.csv files) against depth.

Every figure is written as PNG and PDF beside the tidy CSV it was drawn from (`<out>/<name>.{png,pdf,csv}`).
Figures are drawn on a bare `matplotlib.figure.Figure` (Agg canvas), never through pyplot's global state, so
they work the same in scripts, tests and notebooks. Runs are chosen by a table (the runs of its cells, its row
labels as the methods: configs/table/<name>.yaml) and/or by `--where KEY=VALUE` filters; without a table a run's
method is the combination of the config fields that vary between the chosen runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from initbench.errors import UserError
from initbench.results.collect import collect_runs
from initbench.results.metrics import METRICS
from initbench.results.table_spec import load_table
from initbench.results.tables import matching_runs, runs_of_table

# Fields that tell methods apart when no table names them (the first ones that vary are used).
METHOD_FIELDS = ("experiment", "dataset", "model", "norm", "init", "optimizer", "lr", "warmup", "model.layout",
                 "model.shortcut", "batch_size", "epochs")
CURVE_COLUMNS = ("method", "split", "metric", "epoch", "mean", "std", "n")
DEPTH_COLUMNS = ("method", "depth", "metric", "mean", "std", "n", "n_diverged")
DIVERGENCE_COLUMNS = ("method", "warmup", "lr", "pct_diverged", "n")
CURVATURE_COLUMNS = ("method", "step", "lr", "momentum", "mean", "std", "n")
SIGNAL_COLUMNS = ("method", "depth", "quantity", "mean", "log10_std", "n")
# The two ratios of the signal figure, from the rows of one probe.csv (initbench/measure/signal.py).
SIGNAL_QUANTITIES = {
    "output_over_input_rms": "output RMS / input RMS",
    "first_over_last_weight_grad_rms": "weight-gradient RMS, first layer / last layer",
}


# ----------------------------------------------------------------------------------------------- selection
def parse_where(items: list[str]) -> dict[str, Any]:
    """`["init=kaiming", "lr=0.1"]` -> {"init": "kaiming", "lr": 0.1} (numbers compare as numbers)."""
    where = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--where {item!r}: give KEY=VALUE, e.g. --where init=kaiming or --where model.depth=56.")
        try:
            where[key] = float(value) if value.strip().lower() not in ("nan", "inf", "-inf") else value
        except ValueError:
            where[key] = value
    return where


def select_runs(root: Path, table: str | None = None, where: Mapping[str, Any] | None = None,
                by: list[str] | None = None, axes: tuple[str, ...] = ()) -> pd.DataFrame:
    """The chosen runs with a `method` column: the table's row label, the `by` fields, or the fields that vary
    (except `axes`, the figure's own axes such as depth)."""
    # The same run found in two folders (an ad-hoc run and a sweep of one config) counts once, as in tables.
    runs = collect_runs(Path(root)).drop_duplicates("run_id")
    if table:
        runs = runs_of_table(load_table(table), runs)
    if where:
        runs = matching_runs(runs, where)
    if runs.empty:
        return runs.assign(method=pd.Series(dtype=str))
    if by:
        missing = [field for field in by if field not in runs.columns]
        if missing:
            raise UserError(f"--by {missing}: not a summary column or config key of these runs.")
        fields = by
    elif table:
        return runs.assign(method=runs["row"])
    else:
        fields = [f for f in METHOD_FIELDS
                  if f not in axes and f in runs.columns and runs[f].astype(str).nunique() > 1] or ["init"]
    def name(row: pd.Series) -> str:  # a table's own labels read as they are; config fields as key=value
        return ", ".join(str(v) if k in ("column", "row") else f"{k}={v}" for k, v in row.items())

    return runs.assign(method=runs[fields].astype(str).apply(name, axis=1))


def _mean_std(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=True)[value]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


# ----------------------------------------------------------------------------------------------- data
def curves_data(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str = "error",
                splits: tuple[str, ...] = ("train", "test")) -> pd.DataFrame:
    """Mean and std over seeds of `metric` per method, split and epoch (from the runs' metrics.csv)."""
    rows = metrics[metrics["metric"].eq(metric) & metrics["split"].isin(splits)]
    rows = rows.drop_duplicates(["run_id", "epoch", "split", "metric"])  # a run found in two folders counts once
    rows = rows.merge(runs[["run_id", "method"]].drop_duplicates("run_id"), on="run_id")
    rows = rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"))
    data = _mean_std(rows, ["method", "split", "epoch"], "value").assign(metric=metric)
    return data[list(CURVE_COLUMNS)]


def depth_data(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over seeds of a table metric (tables.METRICS) per method and depth."""
    chosen = METRICS[metric]
    frame = runs.assign(value=chosen.value(runs).astype(float), failed=chosen.diverged(runs).astype(int))
    data = _mean_std(frame, ["method", "depth"], "value")
    failed = frame.groupby(["method", "depth"])["failed"].sum().reset_index(name="n_diverged")
    data = data.merge(failed, on=["method", "depth"]).assign(metric=metric)
    return data[list(DEPTH_COLUMNS)]


def divergence_data(runs: pd.DataFrame) -> pd.DataFrame:
    """Share of runs (%) that diverged, per method, warmup and LR."""
    frame = runs.assign(diverged_pct=100.0 * runs["diverged"].astype(float))
    grouped = frame.groupby(["method", "warmup", "lr"], sort=True)["diverged_pct"]
    data = grouped.agg(pct_diverged="mean", n="count").reset_index()
    return data[list(DIVERGENCE_COLUMNS)]


def curvature_data(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of λ1 (metrics.csv `hessian_lambda_max`) per method and step, with the method's
    LR and momentum (for the stability limits). A run's NaN measurements (non-finite λ1) are left out."""
    rows = metrics[metrics["metric"].eq("hessian_lambda_max")].drop_duplicates(["run_id", "step"])
    rows = rows[["run_id", "step", "value"]]
    keep = runs[["run_id", "method", "lr", "optim.momentum"]].drop_duplicates("run_id")
    rows = rows.merge(keep, on="run_id").assign(value=lambda t: pd.to_numeric(t["value"], errors="coerce"))
    data = _mean_std(rows.dropna(subset=["value"]), ["method", "step", "lr", "optim.momentum"], "value")
    return data.rename(columns={"optim.momentum": "momentum"})[list(CURVATURE_COLUMNS)]


# ----------------------------------------------------------------------------------------------- drawing
def save_figure(figure: Figure, data: pd.DataFrame, out_dir: Path, name: str) -> dict[str, Path]:
    """PNG, PDF and the tidy CSV the figure was drawn from."""
    from initbench.results.files import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("png", "pdf", "csv")}
    FigureCanvasAgg(figure)
    figure.savefig(paths["png"], dpi=150, bbox_inches="tight")
    figure.savefig(paths["pdf"], bbox_inches="tight")
    write_text(paths["csv"], data.to_csv(index=False))
    return paths


def _empty(what: str) -> UserError:
    return UserError(f"No finished runs to draw {what} from: check --root, --table and --where "
                     "(`initbench collect ROOT` lists what is there).")


def plot_curves(data: pd.DataFrame, ylabel: str) -> Figure:
    figure = Figure(figsize=(7, 4.2))
    axes = figure.add_subplot()
    colors = {method: f"C{i % 10}" for i, method in enumerate(sorted(data["method"].unique()))}
    styles = {"train": "--", "test": "-"}
    for (method, split), curve in data.groupby(["method", "split"], sort=True):
        curve = curve.sort_values("epoch")
        axes.plot(curve["epoch"], curve["mean"], styles.get(split, ":"), color=colors[method], marker=".",
                  label=f"{method} ({split})")
        spread = curve["std"].fillna(0.0)
        axes.fill_between(curve["epoch"], curve["mean"] - spread, curve["mean"] + spread, color=colors[method],
                          alpha=0.2, linewidth=0)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title("mean over seeds, band = ±1 std")
    return figure


def plot_depth(data: pd.DataFrame, ylabel: str) -> Figure:
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for method, points in data.groupby("method", sort=True):
        points = points.sort_values("depth")
        axes.errorbar(points["depth"], points["mean"], yerr=points["std"].fillna(0.0), marker="o", capsize=3,
                      label=method)
    axes.set_xscale("log")
    axes.set_xlabel("depth (layers)")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def plot_curvature(data: pd.DataFrame) -> Figure:
    """λ1 against the step (step + 1 on a log axis, so that step 0 shows), per method, with the limits 2/η (GD) and
    (2 + 2β)/η (heavy-ball momentum β) of every LR and momentum drawn."""
    figure = Figure(figsize=(7, 4.2))
    axes = figure.add_subplot()
    for method, curve in data.groupby("method", sort=True):
        curve = curve.sort_values("step")
        axes.errorbar(curve["step"] + 1, curve["mean"], yerr=curve["std"].fillna(0.0), marker=".", capsize=2,
                      label=method)
    for (lr, momentum), _ in data.groupby(["lr", "momentum"]):
        axes.axhline(2 / lr, color="black", linestyle=":", linewidth=1, label=f"2/η (η = {lr:g})")
        if momentum:
            axes.axhline((2 + 2 * momentum) / lr, color="grey", linestyle="--", linewidth=1,
                         label=f"(2 + 2β)/η (β = {momentum:g})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("optimizer step + 1")
    axes.set_ylabel("λ1 of the loss Hessian")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title("mean over seeds, bars = ±1 std")
    return figure


def plot_divergence(data: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for (method, warmup), points in data.groupby(["method", "warmup"], sort=True):
        points = points.sort_values("lr")
        axes.plot(points["lr"], points["pct_diverged"], "o-" if warmup == "none" else "s--",
                  label=f"{method}, warmup {warmup}")
    axes.set_xscale("log")
    axes.set_ylim(-5, 105)
    axes.set_xlabel("learning rate")
    axes.set_ylabel("runs diverged (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return figure


# ----------------------------------------------------------------------------------------------- commands
def _parser(description: str, name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default="results", help="folder searched for finished runs (default: results)")
    parser.add_argument("--out", default="results/figures", help="where figures go (default: results/figures)")
    parser.add_argument("--table", help="draw the runs of this table (its row labels name the methods)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs whose summary column or dotted config key has this value (repeatable)")
    parser.add_argument("--by", action="append", default=None, metavar="FIELD",
                        help="fields that name a method (repeatable; default: the table's rows, or what varies)")
    parser.add_argument("--name", default=name, help=f"file name stem (default: {name}[_<table>])")
    return parser


def _stem(args: argparse.Namespace, default: str) -> str:
    return f"{default}_{args.table}" if args.name == default and args.table else args.name


def main_curves(argv: list[str]) -> dict[str, Path]:
    """Training and test curves per method: mean over seeds with a ±1 std band."""
    from initbench.results.collect import collect_metrics

    parser = _parser(main_curves.__doc__, "curves")
    parser.add_argument("--metric", default="error", choices=("error", "loss"), help="metrics.csv metric")
    args = parser.parse_args(argv)
    by = args.by
    if by is None and args.table and len({cell.column for cell in load_table(args.table).cells}) > 1:
        by = ["column", "row"]  # the same row of different columns (recipes) are different curves
    runs = select_runs(Path(args.root), args.table, parse_where(args.where), by)
    if runs.empty:
        raise _empty("curves")
    data = curves_data(runs, collect_metrics(Path(args.root)), args.metric)
    unit = " (%)" if args.metric == "error" else ""
    paths = save_figure(plot_curves(data, f"{args.metric}{unit}"), data, Path(args.out), _stem(args, "curves"))
    print(f"{len(runs)} run(s), {data['method'].nunique()} method(s): {', '.join(map(str, paths.values()))}")
    return paths


def main_depth(argv: list[str]) -> dict[str, Path]:
    """A table metric (default: test accuracy after the first epoch) against depth, per method."""
    parser = _parser(main_depth.__doc__, "depth")
    parser.add_argument("--metric", default="first_epoch_accuracy_pct", choices=tuple(METRICS))
    args = parser.parse_args(argv)
    runs = select_runs(Path(args.root), args.table, parse_where(args.where), args.by, axes=("model", "depth"))
    if runs.empty:
        raise _empty("a depth plot")
    data = depth_data(runs, args.metric)
    paths = save_figure(plot_depth(data, METRICS[args.metric].label), data, Path(args.out), _stem(args, "depth"))
    print(f"{len(runs)} run(s), {data['method'].nunique()} method(s): {', '.join(map(str, paths.values()))}")
    return paths


def main_divergence(argv: list[str]) -> dict[str, Path]:
    """Share of diverged runs against the learning rate, per method and warmup."""
    parser = _parser(main_divergence.__doc__, "divergence")
    args = parser.parse_args(argv)
    runs = select_runs(Path(args.root), args.table, parse_where(args.where), args.by, axes=("lr", "warmup"))
    if runs.empty:
        raise _empty("a divergence plot")
    data = divergence_data(runs)
    paths = save_figure(plot_divergence(data), data, Path(args.out), _stem(args, "divergence"))
    print(f"{len(runs)} run(s), {data['method'].nunique()} method(s): {', '.join(map(str, paths.values()))}")
    return paths


def main_curvature(argv: list[str]) -> dict[str, Path]:
    """λ1 of the loss Hessian along training per method, against the stability limits (runs that measured it:
    measure.hessian_every)."""
    from initbench.results.collect import collect_metrics

    parser = _parser(main_curvature.__doc__, "curvature")
    args = parser.parse_args(argv)
    runs = select_runs(Path(args.root), args.table, parse_where(args.where), args.by, axes=("lr",))
    data = curvature_data(runs, collect_metrics(Path(args.root))) if not runs.empty else pd.DataFrame()
    if data.empty:
        raise UserError("No λ1 measurements to draw: the runs need measure.hessian_every (e.g. "
                        "+experiment=curvature_cifar10_resnet20), and check --root, --table and --where.")
    paths = save_figure(plot_curvature(data), data, Path(args.out), _stem(args, "curvature"))
    print(f"{len(runs)} run(s), {data['method'].nunique()} method(s): {', '.join(map(str, paths.values()))}")
    return paths


def probe_ratios(rows: pd.DataFrame) -> dict[str, float]:
    """Output/input RMS and the first/last weight layer's weight-gradient RMS of one probe (its probe.csv rows)."""
    net = rows[rows["layer"].eq("net")].set_index("quantity")["value"]
    grads = rows[rows["kind"].isin(["conv", "linear"]) & rows["quantity"].eq("weight_grad_rms")].sort_values("index")
    first, last = (grads["value"].iloc[0], grads["value"].iloc[-1]) if len(grads) else (float("nan"),) * 2
    return {"output_over_input_rms": net["output_rms"] / net["input_rms"],
            "first_over_last_weight_grad_rms": first / last}


def signal_data(root: Path) -> pd.DataFrame:
    """Geometric mean (and the std of log10) over seeds of each probe ratio, per method and depth: every
    probe.csv under `root`, its method the init and norm of the config.yaml beside it."""
    import numpy as np
    from omegaconf import OmegaConf

    points = []
    for probe in sorted(Path(root).rglob("probe.csv")):
        config_file = probe.parent / "config.yaml"
        if not config_file.is_file():
            continue
        cfg = OmegaConf.load(config_file)
        method = f"{cfg.init.name}, norm={cfg.norm}"
        for quantity, value in probe_ratios(pd.read_csv(probe)).items():
            points.append({"method": method, "depth": int(cfg.model.depth), "quantity": quantity,
                           "log10": float(np.log10(value)) if value > 0 else float("nan")})
    if not points:
        return pd.DataFrame(columns=SIGNAL_COLUMNS)
    grouped = pd.DataFrame(points).groupby(["method", "depth", "quantity"], sort=True)["log10"]
    data = grouped.agg(["mean", "std", "count"]).reset_index()
    return pd.DataFrame({"method": data["method"], "depth": data["depth"], "quantity": data["quantity"],
                         "mean": 10.0 ** data["mean"], "log10_std": data["std"], "n": data["count"]})


def plot_signal(data: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(11, 4))
    for column, (quantity, label) in enumerate(SIGNAL_QUANTITIES.items()):
        axes = figure.add_subplot(1, 2, column + 1)
        for method, points in data[data["quantity"].eq(quantity)].groupby("method", sort=True):
            points = points.sort_values("depth")
            axes.plot(points["depth"], points["mean"], marker="o", label=method)
        axes.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("depth (layers)")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3, which="both")
    figure.axes[0].legend(fontsize="small")
    figure.suptitle("signal at init (one probe batch; geometric mean over seeds)")
    return figure


def main_signal(argv: list[str]) -> dict[str, Path]:
    """Signal propagation at init against depth, per init: output/input RMS and first/last-layer weight-gradient
    RMS, from the probe.csv files under --root (run the sweep with task=probe)."""
    parser = argparse.ArgumentParser(description=main_signal.__doc__)
    parser.add_argument("--root", default="results", help="folder searched for probe.csv files (default: results)")
    parser.add_argument("--out", default="results/figures", help="where figures go (default: results/figures)")
    parser.add_argument("--name", default="signal", help="file name stem (default: signal)")
    args = parser.parse_args(argv)
    data = signal_data(Path(args.root))
    if data.empty:
        raise UserError(f"No probe.csv under {args.root}: probe the sweep first, e.g. python -m initbench -m "
                        "+sweep=plain_depth task=probe, then give its folder as --root.")
    paths = save_figure(plot_signal(data), data, Path(args.out), args.name)
    print(f"{data['method'].nunique()} method(s), depths {sorted(data['depth'].unique())}: "
          f"{', '.join(map(str, paths.values()))}")
    return paths


def run_script(main: Any, argv: list[str]) -> None:
    """Entry of the scripts/ wrappers: a UserError is one line on stderr and exit status 2."""
    import sys

    try:
        main(argv)
    except UserError as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        sys.exit(2)
