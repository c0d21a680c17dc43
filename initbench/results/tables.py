"""The papers' tables: which runs fill each cell, what the paper reported there, and the rendered table.

A table (`TableSpec`) is a list of cells. A cell names its place in the paper's table (column, row),
the runs that fill it (`where`: summary columns, or dotted config keys such as `model.layout`, that a run
must match) and the id of the paper's number in `results/reported.csv`. `build_table` aggregates the
matching runs over seeds (mean, std, n) and sets them beside the reported value; `render_markdown` /
`render_latex` / the tidy CSV show them. A cell without runs says "missing": nothing is ever filled in.
The sweep that produces a table's runs is `configs/sweep/<table name>.yaml`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from initbench.errors import UserError, choice_error

REPORTED_CSV = Path(__file__).resolve().parents[2] / "results" / "reported.csv"
REPORTED_COLUMNS = ("id", "paper", "table", "dataset", "architecture", "norm", "init", "recipe_notes", "metric",
                    "value", "std", "source", "status")
TABLE_COLUMNS = ("table", "column", "row", "metric", "ours_status", "ours_mean", "ours_std", "n", "n_diverged",
                 "seeds", "reported_value", "reported_std", "reported_status", "difference", "reported_id",
                 "reported_source", "note")
UNCONFIRMED_MARK = "†"
# ours_status of a cell: no run found yet / a row initbench does not run / every run diverged / a value
MISSING, NOT_RUN, DIVERGED, MEASURED = "missing", "not run", "diverged", "measured"


# ----------------------------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """Our number per run, in the unit of the reported metric it is compared with."""

    reported_metric: str  # the `metric` of the reported.csv rows this is set beside
    label: str
    value: Callable[[pd.DataFrame], pd.Series]  # per run; NaN where the run gives no value (it diverged)
    diverged: Callable[[pd.DataFrame], pd.Series]  # runs that diverged before the metric was measured
    rate: bool = False  # a share over seeds (mean only: a std of 0/100 values says nothing more)
    digits: int = 2


def _no_divergence(runs: pd.DataFrame) -> pd.Series:
    return pd.Series(False, index=runs.index)


def _diverged_by(epoch: int) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda runs: runs["diverged"] & (pd.to_numeric(runs["diverged_epoch"], errors="coerce") <= epoch)


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
    "first_epoch_accuracy_pct": Metric(
        "test_accuracy_pct_after_1_epoch", "test accuracy after the first epoch (%)",
        lambda t: (100.0 - t["first_epoch_test_error"]).where(~_diverged_by(1)(t)), _diverged_by(1)),
    "first_epoch_accuracy_fraction": Metric(
        "test_accuracy_after_1_epoch", "test accuracy after the first epoch (fraction)",
        lambda t: ((100.0 - t["first_epoch_test_error"]) / 100.0).where(~_diverged_by(1)(t)), _diverged_by(1),
        digits=3),
    "pct_reaching_epoch_3": Metric(
        "pct_seeds_reaching_epoch_3", "% of seeds reaching epoch 3 without diverging",
        lambda t: 100.0 * (~_diverged_by(3)(t) & (t["epochs_done"] >= 3)).astype(float), _no_divergence,
        rate=True, digits=0),
}


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class Cell:
    column: str
    row: str
    where: Mapping[str, Any] | None  # None: a row the paper has but initbench does not run
    reported: str | None = None  # id of the paper's number in reported.csv
    note: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str  # also the sweep: configs/sweep/<name>.yaml
    title: str
    metric: str  # key of METRICS
    column_label: str
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()
    unplaced_reported: tuple[str, ...] = ()  # reported ids whose cell the sources do not pin down


HE_LAYOUT = {"model.layout": "postact", "model.shortcut": "A", "model.block": "basic"}
ARPIT_WN_LAYOUT = {"model.layout": "identity_stream", "model.shortcut": "B", "model.block": "basic"}
FULL_DATA = {"dataset.train_size": 0, "dataset.test_size": 0, "dataset.augment": "crop_flip"}


def _recipe(optimizer: str, lr: float | None, weight_decay: float, epochs: int, schedule: str) -> dict[str, Any]:
    pins = {"optimizer": optimizer, "weight_decay": weight_decay, "epochs": epochs, "schedule": schedule,
            "batch_size": 128, "precision": "fp32", **FULL_DATA}
    if optimizer == "sgd":
        pins["optim.momentum"] = 0.9
    return pins if lr is None else {**pins, "lr": lr}


# What each experiment file (configs/experiment/<name>.yaml) pins: a run of the same experiment with another
# value (an ad-hoc override, a data subset) is another recipe and fills no cell. The smoke grid pins nothing, so
# tests may shrink it. tests/test_sweeps.py checks that every sweep job lands in exactly one cell.
RECIPES: dict[str, dict[str, Any]] = {
    "smoke": {},
    "cifar10_resnet56": _recipe("sgd", 0.1, 1e-4, 200, "step"),
    "cifar10_resnet110": _recipe("sgd", 0.1, 1e-4, 200, "step"),
    "fixup_cifar10_depth": _recipe("sgd", 0.1, 1e-4, 1, "constant"),
    "arpit_cifar10_resnet56": _recipe("sgd", 0.01, 1e-4, 200, "step"),
    "arpit_cifar10_resnet110": _recipe("sgd", 0.01, 1e-4, 200, "step"),
    "arpit_cifar10_wrn40_10": _recipe("sgd", 0.01, 5e-4, 200, "step"),
    "arpit_cifar100_resnet164": _recipe("sgd", 0.01, 5e-4, 200, "step"),
    "arpit_cifar10_wrn_depth": {**_recipe("sgd", 0.01, 5e-4, 1, "constant"), "model.widen_factor": 1},
    "arpit_cifar10_wrn40_10_robustness": _recipe("sgd", None, 5e-4, 3, "constant"),  # the LR is a column
    "idinit_cifar10_resnet56_adam": _recipe("adam", 1e-3, 0.0, 200, "step"),
    "idinit_cifar10_resnet110_adam": _recipe("adam", 1e-3, 0.0, 200, "step"),
}


def _cell(column: str, row: str, reported: str | None = None, **where: Any) -> Cell:
    """A cell of `experiment`'s recipe with no warmup unless `where` says otherwise (dotted keys as
    `model__layout`)."""
    where = {k.replace("__", "."): v for k, v in where.items()}
    return Cell(column, row, {**RECIPES[where["experiment"]], "warmup": "none", **where}, reported)


def _not_run(column: str, row: str, note: str, reported: str | None = None) -> Cell:
    return Cell(column, row, None, reported, note)


def _smoke() -> TableSpec:
    column = "ResNet-20, synthetic data, 1 epoch"
    cells = tuple(_cell(column, row, experiment="smoke", dataset="synthetic", init=init, norm="batchnorm")
                  for row, init in (("BN + Kaiming", "kaiming"), ("BN + orthogonal", "orthogonal")))
    return TableSpec("smoke", "Smoke grid (no paper): the tiny sweep tests and the notebook run",
                     "final_test_error", "setting", cells, ("The papers report nothing for this grid.",))


def _fixup_cifar10() -> TableSpec:
    column = "CIFAR-10 ResNet-110"
    common = dict(experiment="cifar10_resnet110", dataset="cifar10", model="resnet110", **_dotted(HE_LAYOUT))
    cells = (
        _cell(column, "BatchNorm (Kaiming init)", "fixup.cifar10.resnet110.bn", init="kaiming", norm="batchnorm",
              **common),
        _cell(column, "Fixup (no normalisation)", "fixup.cifar10.resnet110.fixup", init="fixup", norm="none",
              **common),
    )
    notes = ("Ours is the best test error over the epochs: the official script keeps the checkpoint with the best "
             "test accuracy.",
             "Recipe: the official CIFAR script's defaults without mixup (configs/experiment/cifar10_resnet110.yaml); "
             "the paper's exact recipe and seeds are unconfirmed.")
    return TableSpec("fixup_cifar10", "Fixup (Zhang et al. 2019): CIFAR-10 ResNet-110 test error, BN vs Fixup",
                     "best_test_error", "setting", cells, notes)


def _fixup_depth() -> TableSpec:
    rows = (("BN + Kaiming", dict(init="kaiming", norm="batchnorm")), ("Fixup", dict(init="fixup", norm="none")),
            ("no normalisation + Kaiming", dict(init="kaiming", norm="none")))
    cells = []
    for depth in (20, 110, 1202, 9998):
        for row, chosen in rows:
            reported = "fixup.depth.resnet_lt1000.fixup" if row == "Fixup" and depth < 1000 else None
            cells.append(_cell(f"{depth} layers", row, reported, experiment="fixup_cifar10_depth", dataset="cifar10",
                               depth=depth, **chosen, **_dotted(HE_LAYOUT)))
    notes = ("The paper's value is one reading of its Figure 3 ('about 50% below 1000 layers'), set beside every "
             "Fixup cell under 1000 layers.",
             "Depths, block type and compared methods of the figure are unconfirmed.")
    return TableSpec("fixup_depth", "Fixup (Zhang et al. 2019), Figure 3: CIFAR-10 test accuracy after the first "
                     "epoch vs depth", "first_epoch_accuracy_pct", "depth", tuple(cells), notes)


ARPIT_RECIPES = (
    ("CIFAR-10 ResNet-56", "arpit_cifar10_resnet56", "cifar10", "c10.resnet56"),
    ("CIFAR-10 ResNet-110", "arpit_cifar10_resnet110", "cifar10", "c10.resnet110"),
    ("CIFAR-10 WRN-40-10", "arpit_cifar10_wrn40_10", "cifar10", "c10.wrn40_10"),
    ("CIFAR-100 ResNet-164", "arpit_cifar100_resnet164", "cifar100", "c100.resnet164"),
)


def _arpit_test_error() -> TableSpec:
    cells = []
    for column, experiment, dataset, key in ARPIT_RECIPES:
        common = dict(experiment=experiment, dataset=dataset)
        wn = dict(norm="weightnorm", **common, **_dotted(ARPIT_WN_LAYOUT))
        cells += [
            _cell(column, "WN + data-dependent", f"arpit.test_error.{key}.wn_datadep", init="wn_datadep", **wn),
            _cell(column, "WN + proposed", f"arpit.test_error.{key}.wn_arpit", init="wn_arpit", **wn),
            _cell(column, "WN + proposed + warmup", f"arpit.test_error.{key}.wn_arpit_warmup", init="wn_arpit",
                  warmup="quadratic:5ep", **wn),
        ]
        if key == "c10.resnet110":
            cells.append(_not_run(column, "WN (Shang et al.)", "quoted by the paper from Shang et al.; not an "
                                  "init initbench runs", f"arpit.test_error.{key}.wn_shang"))
        cells.append(_cell(column, "BN", f"arpit.test_error.{key}.bn", init="orthogonal", norm="batchnorm",
                           **common))
    notes = ("Ours is the final test error; the paper selected hyper-parameters on a 10% validation split, which "
             "initbench does not hold out.",
             "BN row: the paper quotes He et al. (He init, post-activation) for ResNet-56/110 and ran BN + orthogonal "
             "itself for WRN-40-10 and ResNet-164; initbench runs BN + orthogonal on each recipe's BN model.",
             "WRN-40-10 and ResNet-164: the paper's rows use cutout, which initbench does not implement yet; ours "
             "train without it. The WN ResNet-164 is built from basic blocks (unconfirmed).",
             "Every optimiser value of these recipes is unconfirmed (configs/experiment/arpit_*.yaml).")
    return TableSpec("arpit_test_error", "Arpit et al. (2019): CIFAR test error (%), WeightNorm inits vs BN",
                     "final_test_error", "setting", tuple(cells), notes)


ARPIT_INITS = (  # row label, init, key in reported.csv
    ("data-dependent", "wn_datadep", "wn_datadep"),
    ("PyTorch default", "orthogonal", "wn_default"),
    ("proposed", "wn_arpit", "wn_arpit"),
)
HANIN_NOTE = "stage-wise Hanin is not an init initbench implements"


def _arpit_depth() -> TableSpec:
    cells = []
    for depth in (10, 100, 1000, 10000):
        column = f"{depth} layers"
        for row, init, key in ARPIT_INITS:
            cells.append(_cell(column, row, f"arpit.depth.wrn{depth}.{key}", experiment="arpit_cifar10_wrn_depth",
                               dataset="cifar10", depth=depth, init=init, norm="weightnorm",
                               **_dotted(ARPIT_WN_LAYOUT)))
        cells.append(_not_run(column, "stage-wise Hanin", HANIN_NOTE, f"arpit.depth.wrn{depth}.wn_hanin"))
    notes = ("Reported values were read off a plot (approximate). Widening factor of the paper's nets: unconfirmed "
             "(ours: 1).",)
    return TableSpec("arpit_depth", "Arpit et al. (2019): accuracy after one epoch of WN Wide ResNets vs depth",
                     "first_epoch_accuracy_fraction", "depth", tuple(cells), notes)


def _arpit_robustness() -> TableSpec:
    cells = []
    for lr in ("0.001", "0.005", "0.01", "0.05", "0.1"):
        for warm, label, key in (("none", "no warmup", "nowarmup"), ("quadratic:1ep", "warmup", "warmup")):
            column = f"lr {lr}, {label}"
            for row, init, init_key in ARPIT_INITS:
                cells.append(_cell(column, row, f"arpit.robustness.lr{lr}.{key}.{init_key}",
                                   experiment="arpit_cifar10_wrn40_10_robustness", dataset="cifar10", lr=float(lr),
                                   warmup=warm, init=init, norm="weightnorm", **_dotted(ARPIT_WN_LAYOUT)))
            cells.append(_not_run(column, "stage-wise Hanin", HANIN_NOTE, f"arpit.robustness.lr{lr}.{key}.wn_hanin"))
    notes = ("Reported values are bar heights read off a plot (approximate; 20 seeds per bar).",
             "Warmup: quadratic over 1 epoch in ours; the paper's length is unconfirmed.")
    return TableSpec("arpit_robustness", "Arpit et al. (2019): % of seeds of a WN WRN-40-10 reaching epoch 3 "
                     "without diverging", "pct_reaching_epoch_3", "LR and warmup", tuple(cells), notes)


IDINIT_RECIPES = (
    ("ResNet-56, SGD", "cifar10_resnet56", "resnet56"),
    ("ResNet-56, Adam", "idinit_cifar10_resnet56_adam", "resnet56"),
    ("ResNet-110, SGD", "cifar10_resnet110", "resnet110"),
    ("ResNet-110, Adam", "idinit_cifar10_resnet110_adam", "resnet110"),
)
IDINIT_ROWS = (  # row label, init, norm (None: not run, with the reason)
    ("BN: Kaiming", "kaiming", "batchnorm"),
    ("BN: Zero-γ", None, "Zero-γ (zero last BN gamma) is not implemented"),
    ("BN: ReZero", "rezero", "batchnorm"),
    ("BN: IDInit", "idinit", "batchnorm"),
    ("no BN: Kaiming", "kaiming", "none"),
    ("no BN: Fixup", "fixup", "none"),
    ("no BN: SkipInit", "skipinit", "none"),
    ("no BN: ReZero", "rezero", "none"),
    ("no BN: ZerO", None, "ZerO (Hadamard init) is not implemented"),
    ("no BN: IDInit", "idinit", "none"),
)


def _idinit_cifar10() -> TableSpec:
    cells = []
    for column, experiment, model in IDINIT_RECIPES:
        for row, init, norm in IDINIT_ROWS:
            if init is None:
                cells.append(_not_run(column, row, norm))
            else:
                cells.append(_cell(column, row, experiment=experiment, dataset="cifar10", model=model, init=init,
                                   norm=norm, model__shortcut="A", model__layout="postact"))
    notes = ("Ours is the final test accuracy. The paper's Table 2 numbers are not available; the only values "
             "seen (below) cannot be placed in a cell.",
             "Which baselines the paper ran with and without BN, and every recipe value, are unconfirmed.")
    unplaced = ("idinit.table2.settingA.kaiming", "idinit.table2.settingA.idinit", "idinit.table2.settingB.kaiming",
                "idinit.table2.settingB.idinit")
    return TableSpec("idinit_cifar10", "IDInit (Pan et al. 2025), Table 2: CIFAR-10 test accuracy (%)",
                     "final_test_accuracy", "setting", tuple(cells), notes, unplaced)


def _dotted(where: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted config keys as `_cell` keyword arguments (model.layout -> model__layout)."""
    return {k.replace(".", "__"): v for k, v in where.items()}


TABLES: dict[str, TableSpec] = {spec.name: spec for spec in (
    _smoke(), _fixup_cifar10(), _fixup_depth(), _arpit_test_error(), _arpit_depth(), _arpit_robustness(),
    _idinit_cifar10(),
)}


def get_table(name: str) -> TableSpec:
    if name not in TABLES:
        raise choice_error("table", name, tuple(TABLES))
    return TABLES[name]


# ----------------------------------------------------------------------------------------------- reported
def load_reported(path: Path = REPORTED_CSV) -> pd.DataFrame:
    """The papers' numbers, indexed by id (value/std numeric, NaN where the paper gives none)."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist: it holds the papers' reported numbers (results/reported.csv in "
                        "the initbench checkout). Pass --reported PATH.")
    reported = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REPORTED_COLUMNS if c not in reported.columns]
    if missing:
        raise UserError(f"{path} lacks the columns {missing}.")
    for column in ("value", "std"):
        reported[f"{column}_text"] = reported[column]  # as printed: 7.20 stays 7.20
        reported[column] = pd.to_numeric(reported[column].replace("", None), errors="coerce")
    return reported.set_index("id")


# ----------------------------------------------------------------------------------------------- matching
def _same(actual: Any, expected: Any) -> bool:
    if actual is None or (isinstance(actual, float) and math.isnan(actual)):
        return False
    if isinstance(expected, bool):
        return str(actual).lower() == str(expected).lower()
    if isinstance(expected, (int, float)):
        try:
            return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return str(actual) == str(expected)


def matching_runs(runs: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """The runs whose summary columns / dotted config keys equal every value in `where`."""
    mask = pd.Series(True, index=runs.index)
    for key, expected in where.items():
        if key not in runs.columns:
            return runs.iloc[0:0]
        mask &= runs[key].map(lambda actual, expected=expected: _same(actual, expected))
    return runs[mask].drop_duplicates("run_id")


def _with_datasets(where: Mapping[str, Any], datasets: Mapping[str, str]) -> dict[str, Any]:
    where = dict(where)
    if "dataset" in where:
        where["dataset"] = datasets.get(where["dataset"], where["dataset"])
    return where


def runs_of_table(spec: TableSpec, runs: pd.DataFrame, datasets: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every run that fills some cell of the table, with its cell's `column` and `row`."""
    frames = []
    for cell in spec.cells:
        if cell.where is None:
            continue
        matched = matching_runs(runs, _with_datasets(cell.where, datasets or {}))
        frames.append(matched.assign(column=cell.column, row=cell.row))
    return pd.concat(frames, ignore_index=True) if frames else runs.iloc[0:0].assign(column=[], row=[])


# ----------------------------------------------------------------------------------------------- building
@dataclass
class BuiltTable:
    spec: TableSpec
    cells: pd.DataFrame  # one row per cell, TABLE_COLUMNS
    reported: pd.DataFrame
    datasets: dict[str, str] = field(default_factory=dict)

    @property
    def metric(self) -> Metric:
        return METRICS[self.spec.metric]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def build_table(spec: TableSpec, runs: pd.DataFrame, reported: pd.DataFrame,
                datasets: Mapping[str, str] | None = None) -> BuiltTable:
    """Aggregate the runs of each cell over seeds and set the paper's number beside them."""
    metric = METRICS[spec.metric]
    rows = []
    for cell in spec.cells:
        entry = {"table": spec.name, "column": cell.column, "row": cell.row, "metric": metric.reported_metric,
                 "ours_status": MISSING, "ours_mean": math.nan, "ours_std": math.nan, "n": 0, "n_diverged": 0,
                 "seeds": "", "reported_value": math.nan, "reported_std": math.nan, "reported_status": "",
                 "difference": math.nan, "reported_id": cell.reported or "", "reported_source": "", "note": cell.note}
        if cell.where is not None:
            matched = matching_runs(runs, _with_datasets(cell.where, datasets or {}))
            if len(matched):
                values = metric.value(matched).astype(float).dropna()
                entry["n"] = len(values)
                entry["n_diverged"] = int(metric.diverged(matched).sum())
                entry["seeds"] = " ".join(str(int(s)) for s in sorted(matched["seed"].dropna()))
                entry["ours_status"] = MEASURED if len(values) else DIVERGED if entry["n_diverged"] else MISSING
                if len(values):
                    entry["ours_mean"] = float(values.mean())
                    entry["ours_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        else:
            entry["ours_status"] = NOT_RUN
        if cell.reported:
            if cell.reported not in reported.index:
                raise UserError(f"Table {spec.name}: reported id {cell.reported!r} is not in reported.csv.")
            paper = reported.loc[cell.reported]
            if paper["metric"] != metric.reported_metric:
                raise UserError(f"Table {spec.name}: {cell.reported} reports {paper['metric']}, but the table "
                                f"compares {metric.reported_metric}.")
            entry.update(reported_value=_number(paper["value"]), reported_std=_number(paper["std"]),
                         reported_status=paper["status"], reported_source=paper["source"])
            entry["difference"] = entry["ours_mean"] - entry["reported_value"]
        rows.append(entry)
    return BuiltTable(spec, pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), reported, dict(datasets or {}))


# ----------------------------------------------------------------------------------------------- rendering
def _fmt(value: float, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def ours_text(entry: Mapping[str, Any], metric: Metric, pm: str = "±") -> str:
    if entry["ours_status"] in (MISSING, NOT_RUN):
        return entry["ours_status"]
    if entry["ours_status"] == DIVERGED:
        return f"diverged ({entry['n_diverged']}/{entry['n_diverged']})"
    text = _fmt(entry["ours_mean"], metric.digits)
    if not metric.rate and not math.isnan(entry["ours_std"]):
        text += f" {pm} {_fmt(entry['ours_std'], metric.digits)}"
    if entry["n_diverged"] and not metric.rate:
        text += f" ({entry['n_diverged']} of {entry['n'] + entry['n_diverged']} diverged)"
    return text


def reported_text(entry: Mapping[str, Any], reported: pd.DataFrame, pm: str = "±") -> str:
    """The paper's number as printed, with the mark when it is unconfirmed."""
    if math.isnan(entry["reported_value"]):
        return "—" if not entry["reported_id"] else "— (no single value)"
    paper = reported.loc[entry["reported_id"]]
    text = paper["value_text"] + (f" {pm} {paper['std_text']}" if paper["std_text"] else "")
    return text + (UNCONFIRMED_MARK if entry["reported_status"] != "confirmed" else "")


def difference_text(entry: Mapping[str, Any], metric: Metric) -> str:
    return "—" if math.isnan(entry["difference"]) else _fmt(entry["difference"], metric.digits, signed=True)


def _footnotes(built: BuiltTable) -> list[str]:
    spec, metric = built.spec, built.metric
    lines = [f"Ours: {metric.label}, mean{'' if metric.rate else ' ± std'} over seeds; n = runs with a value. "
             f"Reported: the paper's number; {UNCONFIRMED_MARK} = UNCONFIRMED in the fact sheets (a candidate or "
             "approximate value, not a settled fact). Δ = ours − reported. "
             f"'{MISSING}' = no run yet; '{NOT_RUN}' = a row initbench does not run."]
    if built.datasets:
        swaps = ", ".join(f"{new} in place of {old}" for old, new in built.datasets.items())
        lines.append(f"Runs on {swaps}: not the paper's data.")
    lines += list(spec.notes)
    for rid in spec.unplaced_reported:
        paper = built.reported.loc[rid]
        mark = "" if paper["status"] == "confirmed" else UNCONFIRMED_MARK
        lines.append(f"Reported, cell unknown: {paper['init']} = {paper['value_text']}{mark} "
                     f"({paper['recipe_notes']}).")
    return lines


def render_markdown(built: BuiltTable) -> str:
    spec, metric = built.spec, built.metric
    header = f"| {spec.column_label} | row | ours | n | reported | Δ |"
    lines = [f"### {spec.title}", "", header, "|---|---|---|---:|---|---:|"]
    for entry in built.cells.to_dict("records"):
        lines.append(f"| {entry['column']} | {entry['row']} | {ours_text(entry, metric)} | {entry['n']} | "
                     f"{reported_text(entry, built.reported)} | {difference_text(entry, metric)} |")
    lines.append("")
    lines += [f"- {line}" for line in _footnotes(built)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "†": r"$^\dagger$", "Δ": r"$\Delta$", "γ": r"$\gamma$", "−": "--", "—": "---"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def render_latex(built: BuiltTable) -> str:
    spec, metric = built.spec, built.metric
    lines = [r"% " + latex_escape(spec.title) + " -- written by initbench table " + spec.name,
             r"\begin{tabular}{lllrlr}", r"\toprule",
             f"{latex_escape(spec.column_label)} & row & ours & $n$ & reported & $\\Delta$ \\\\", r"\midrule"]
    for entry in built.cells.to_dict("records"):
        cells = (entry["column"], entry["row"], ours_text(entry, metric), str(entry["n"]),
                 reported_text(entry, built.reported), difference_text(entry, metric))
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    lines += [f"% {latex_escape(line)}" for line in _footnotes(built)]
    return "\n".join(lines) + "\n"


def write_table(built: BuiltTable, out_dir: Path) -> dict[str, Path]:
    """`<name>.md`, `<name>.tex` and the tidy `<name>.csv` under `out_dir`."""
    from initbench.results.files import write_csv, write_text

    paths = {ext: Path(out_dir) / f"{built.spec.name}.{ext}" for ext in ("md", "tex", "csv")}
    write_text(paths["md"], render_markdown(built))
    write_text(paths["tex"], render_latex(built))
    write_csv(paths["csv"], built.cells.to_dict("records"), TABLE_COLUMNS)
    return paths


# ----------------------------------------------------------------------------------------------- command
def _parse_datasets(values: list[str]) -> dict[str, str]:
    swaps = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--dataset {value!r}: give PAPER_DATASET=RUN_DATASET, "
                            "e.g. --dataset cifar10=cifar10_jpeg.")
        swaps[old] = new
    return swaps


def main(argv: list[str]) -> None:
    """`initbench table NAME` / `scripts/make_tables.py NAME`: print the table, write .md/.tex/.csv."""
    import argparse

    from initbench.results.collect import collect_runs

    parser = argparse.ArgumentParser(prog="initbench table", description=main.__doc__)
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(TABLES)} (or 'all')")
    parser.add_argument("--root", default="results", help="folder searched for finished runs (default: results)")
    parser.add_argument("--out", default="results/tables", help="where the table files go (default: results/tables)")
    parser.add_argument("--dataset", action="append", default=[], metavar="PAPER=RUN",
                        help="runs trained on another dataset than the paper's, e.g. cifar10=cifar10_jpeg")
    parser.add_argument("--reported", default=str(REPORTED_CSV), help="the papers' numbers (results/reported.csv)")
    parser.add_argument("--list", action="store_true", help="list the tables and their sweeps")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for spec in TABLES.values():
            print(f"{spec.name:<18} {len(spec.cells):>3} cells  python -m initbench -m +sweep={spec.name}  "
                  f"# {spec.title}")
        return
    names = list(TABLES) if args.name == "all" else [get_table(args.name).name]
    if not Path(args.root).is_dir():
        raise UserError(f"--root {args.root} is not a folder. Give the folder that holds the finished runs, "
                        f"e.g. --root results/sweeps/{names[0]}.")
    reported = load_reported(Path(args.reported))
    runs = collect_runs(Path(args.root))
    datasets = _parse_datasets(args.dataset)
    for name in names:
        built = build_table(TABLES[name], runs, reported, datasets)
        paths = write_table(built, Path(args.out))
        print(render_markdown(built))
        print(f"written: {', '.join(str(p) for p in paths.values())}\n")
