"""A paper's table from finished runs: gather, match runs to cells, aggregate over seeds, render.

What a table shows is declared in `configs/table/<name>.yaml` (`initbench.results.table_spec`): each cell is one
job of the table's sweep, and its runs are the finished runs of that job's recipe — the `recipe` digest
`collect_runs` reads from each run's `config.yaml`, the run-folder hash without the seed. A run of any other
override, solo or fused, fills no cell. `build_table` aggregates each cell's runs over seeds (mean, std, n) and
sets the paper's number from `results/reported.csv` beside them; `render_markdown` / `render_latex` / the tidy
CSV show the result. A cell without runs says "missing": nothing is ever filled in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from initbench.errors import UserError
from initbench.results.metrics import METRICS, Metric
from initbench.results.table_spec import TableSpec, cell_recipes, load_table, table_names

REPORTED_CSV = Path(__file__).resolve().parents[2] / "results" / "reported.csv"
REPORTED_COLUMNS = ("id", "paper", "table", "dataset", "architecture", "norm", "init", "recipe_notes", "metric",
                    "value", "std", "source", "status")
TABLE_COLUMNS = ("table", "column", "row", "metric", "ours_status", "ours_mean", "ours_std", "n", "n_diverged",
                 "seeds", "reported_value", "reported_std", "reported_status", "difference", "reported_id",
                 "reported_source", "note")
UNCONFIRMED_MARK = "†"
# ours_status of a cell: no run found yet / a row initbench does not run / every run diverged / a value
MISSING, NOT_RUN, DIVERGED, MEASURED = "missing", "not run", "diverged", "measured"


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


def check_reported(spec: TableSpec, reported: pd.DataFrame) -> None:
    """Every id the table file names is a row of reported.csv that reports one of the table's metrics."""
    expected = {METRICS[metric].reported_metric: metric for metric in spec.metrics}
    named = [(f"reported.{cell.column!r}.{cell.row!r}", cell.reported) for cell in spec.cells if cell.reported]
    named += [("unplaced_reported", rid) for rid in spec.unplaced_reported]
    for key, rid in named:
        if rid not in reported.index:
            raise UserError(f"{spec.path}: {key} = {rid!r} is not an id of results/reported.csv. Fix the id, or "
                            "add the paper's number as a row of reported.csv (id, paper, table, ..., source, status).")
        if key != "unplaced_reported" and reported.loc[rid, "metric"] not in expected:
            raise UserError(f"{spec.path}: {key} = {rid!r} reports {reported.loc[rid, 'metric']}, but the table's "
                            f"metrics {', '.join(spec.metrics)} compare {', '.join(expected)}. Place it in a table "
                            "of its metric.")


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
    """The runs whose summary columns / dotted config keys equal every value in `where` (the plots' --where)."""
    mask = pd.Series(True, index=runs.index)
    for key, expected in where.items():
        if key not in runs.columns:
            return runs.iloc[0:0]
        mask &= runs[key].map(lambda actual, expected=expected: _same(actual, expected))
    return runs[mask].drop_duplicates("run_id")


def runs_of_cells(spec: TableSpec, runs: pd.DataFrame, datasets: Mapping[str, str] | None = None) -> list:
    """Per cell, its runs (None for a row not run): the runs of its job's recipe, each run once."""
    recipes = cell_recipes(spec, dict(datasets or {}))
    return [None if digests is None else runs[runs["recipe"].isin(digests)].drop_duplicates("run_id")
            for digests in recipes]


def runs_of_table(spec: TableSpec, runs: pd.DataFrame, datasets: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every run that fills some cell of the table, with its cell's `column` and `row`."""
    frames = [matched.assign(column=cell.column, row=cell.row)
              for cell, matched in zip(spec.cells, runs_of_cells(spec, runs, datasets)) if matched is not None]
    return pd.concat(frames, ignore_index=True) if frames else runs.iloc[0:0].assign(column=[], row=[])


# ----------------------------------------------------------------------------------------------- building
@dataclass
class BuiltTable:
    spec: TableSpec
    cells: pd.DataFrame  # one row per cell, TABLE_COLUMNS
    reported: pd.DataFrame
    datasets: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[Metric]:
        return [METRICS[metric] for metric in self.spec.metrics]

    def metric_of(self, entry: Mapping[str, Any]) -> Metric:
        """The metric a line of the table shows (lines carry the reported metric they compare with)."""
        return next(m for m in self.metrics if m.reported_metric == entry["metric"])


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def build_table(spec: TableSpec, runs: pd.DataFrame, reported: pd.DataFrame,
                datasets: Mapping[str, str] | None = None) -> BuiltTable:
    """Aggregate the runs of each cell over seeds and set the paper's number beside them: one line per cell and
    metric, the reported number on the line of the metric it reports."""
    check_reported(spec, reported)
    rows = []
    for cell, matched in zip(spec.cells, runs_of_cells(spec, runs, datasets)):
        for metric in (METRICS[name] for name in spec.metrics):
            rows.append(_cell_line(spec, cell, matched, metric, reported))
    return BuiltTable(spec, pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), reported, dict(datasets or {}))


def _cell_line(spec: TableSpec, cell: Any, matched: pd.DataFrame | None, metric: Metric,
               reported: pd.DataFrame) -> dict:
    placed = cell.reported if cell.reported and reported.loc[cell.reported, "metric"] == metric.reported_metric \
        else None
    entry = {"table": spec.name, "column": cell.column, "row": cell.row, "metric": metric.reported_metric,
             "ours_status": MISSING, "ours_mean": math.nan, "ours_std": math.nan, "n": 0, "n_diverged": 0,
             "seeds": "", "reported_value": math.nan, "reported_std": math.nan, "reported_status": "",
             "difference": math.nan, "reported_id": placed or "", "reported_source": "", "note": cell.note}
    if matched is None:
        entry["ours_status"] = NOT_RUN
    elif len(matched) and metric.aggregate is not None:  # one number for the whole cell
        value = metric.aggregate(matched)
        entry.update(n=len(matched), seeds=" ".join(str(int(s)) for s in sorted(set(matched["seed"].dropna()))))
        entry["ours_status"] = MEASURED if math.isfinite(value) else MISSING
        entry["ours_mean"] = value
    elif len(matched):
        values = metric.value(matched).astype(float).dropna()
        entry["n"] = len(values)
        entry["n_diverged"] = int(metric.diverged(matched).sum())
        entry["seeds"] = " ".join(str(int(s)) for s in sorted(matched["seed"].dropna()))
        entry["ours_status"] = MEASURED if len(values) else DIVERGED if entry["n_diverged"] else MISSING
        if len(values):
            entry["ours_mean"] = float(values.mean())
            entry["ours_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    if placed:
        paper = reported.loc[placed]
        entry.update(reported_value=_number(paper["value"]), reported_std=_number(paper["std"]),
                     reported_status=paper["status"], reported_source=paper["source"])
        entry["difference"] = entry["ours_mean"] - entry["reported_value"]
    return entry


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
    spec, metrics = built.spec, built.metrics
    labels, spread = "; ".join(m.label for m in metrics), "" if all(m.rate for m in metrics) else " ± std"
    lines = [f"Ours: {labels}, mean{spread} over seeds; n = runs with a value. "
             f"Reported: the paper's number; {UNCONFIRMED_MARK} = UNCONFIRMED by a primary source (a candidate or "
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


def _displayed(built: BuiltTable, pm: str = "±") -> tuple[list[str], list[list[str]]]:
    """Header and text of every line; a table of several metrics gets a metric column."""
    several = len(built.metrics) > 1
    header = [built.spec.column_label, "row", *(["metric"] if several else []), "ours", "n", "reported", "Δ"]
    lines = []
    for entry in built.cells.to_dict("records"):
        metric = built.metric_of(entry)
        lines.append([entry["column"], entry["row"], *([metric.label] if several else []),
                      ours_text(entry, metric, pm), str(entry["n"]), reported_text(entry, built.reported, pm),
                      difference_text(entry, metric)])
    return header, lines


def render_markdown(built: BuiltTable) -> str:
    header, rows = _displayed(built)
    align = ["---"] * (len(header) - 4) + ["---", "---:", "---", "---:"]
    lines = [f"### {built.spec.title}", "", f"| {' | '.join(header)} |", f"|{'|'.join(align)}|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines.append("")
    lines += [f"- {line}" for line in _footnotes(built)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "†": r"$^\dagger$", "Δ": r"$\Delta$", "γ": r"$\gamma$", "−": "--", "—": "---"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def render_latex(built: BuiltTable) -> str:
    spec = built.spec
    header, rows = _displayed(built)
    names = [latex_escape(h) for h in header[:-3]] + ["$n$", "reported", "$\\Delta$"]
    lines = [r"% " + latex_escape(spec.title) + " -- written by initbench table " + spec.name,
             r"\begin{tabular}{" + "l" * (len(header) - 4) + "lrlr}", r"\toprule",
             " & ".join(names) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
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
    from initbench.config.schema import CONFIG_DIR

    known = sorted(path.stem for path in (Path(CONFIG_DIR) / "dataset").glob("*.yaml"))
    swaps = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--dataset {value!r}: give PAPER_DATASET=RUN_DATASET, "
                            "e.g. --dataset cifar10=cifar10_jpeg.")
        if new not in known:
            raise UserError(f"--dataset {value!r}: {new!r} is not a dataset config. Datasets: {', '.join(known)}.")
        swaps[old] = new
    return swaps


def _jobs(spec: TableSpec) -> list:
    return [job for cell in spec.cells for job in cell.jobs]


def _launch(spec: TableSpec) -> str:
    return " && ".join(f"python -m initbench -m +sweep={sweep}" for sweep in spec.sweeps)


def _list_tables() -> None:
    from initbench.results.table_spec import TABLE_DIR

    print(f"Tables (one file each in {TABLE_DIR}; their sweeps in configs/sweep/):")
    for name in table_names():
        spec = load_table(name)
        jobs = _jobs(spec)
        print(f"  {name:<18} {len(spec.cells):>3} cells {sum(len(j.seeds) for j in jobs):>4} jobs "
              f"{sum(j.runs for j in jobs):>4} runs  {_launch(spec)}  # {spec.title}")
    print("Add a table: a sweep file (configs/sweep/<name>.yaml), a table file (configs/table/<name>.yaml) and the "
          "paper's numbers as rows of results/reported.csv; no Python (README: \"Regenerating the papers' tables\").")


def _list_cells(spec: TableSpec) -> None:
    jobs = _jobs(spec)
    print(f"{spec.path}: {spec.title}")
    sweeps = ", ".join(f"configs/sweep/{sweep}.yaml" for sweep in spec.sweeps)
    print(f"sweep {sweeps}: {sum(len(j.seeds) for j in jobs)} jobs, {sum(j.runs for j in jobs)} runs   "
          f"{_launch(spec)}")
    for cell in spec.cells:
        what = (f"not run: {cell.note}" if not cell.jobs else
                f"{sum(len(j.seeds) for j in cell.jobs)} job(s), {sum(j.runs for j in cell.jobs)} run(s): "
                f"{'; '.join(j.label() for j in cell.jobs)}")
        print(f"  {cell.column} | {cell.row} | {what}")


def main(argv: list[str]) -> None:
    """`initbench table NAME` / `scripts/make_tables.py NAME`: print the table, write .md/.tex/.csv."""
    import argparse

    from initbench.results.collect import collect_runs

    parser = argparse.ArgumentParser(prog="initbench table", description=main.__doc__)
    parser.add_argument("name", nargs="?", help=f"one of: {', '.join(table_names())}, 'all', or a table file's path")
    parser.add_argument("--root", default="results", help="folder searched for finished runs (default: results)")
    parser.add_argument("--out", default="results/tables", help="where the table files go (default: results/tables)")
    parser.add_argument("--dataset", action="append", default=[], metavar="PAPER=RUN",
                        help="runs trained on another dataset than the paper's, e.g. cifar10=cifar10_jpeg")
    parser.add_argument("--reported", default=str(REPORTED_CSV), help="the papers' numbers (results/reported.csv)")
    parser.add_argument("--list", action="store_true",
                        help="list the tables and their files; with NAME, the table's cells and their sweep jobs")
    args = parser.parse_args(argv)
    if not args.name or (args.list and args.name == "all"):
        _list_tables()
        return
    specs = [load_table(name) for name in (table_names() if args.name == "all" else [args.name])]
    if args.list:
        _list_cells(specs[0])
        return
    if not Path(args.root).is_dir():
        raise UserError(f"--root {args.root} is not a folder. Give the folder that holds the finished runs, "
                        f"e.g. --root results/sweeps/{specs[0].sweeps[0]}.")
    reported = load_reported(Path(args.reported))
    datasets = _parse_datasets(args.dataset)
    runs = collect_runs(Path(args.root))
    for spec in specs:
        built = build_table(spec, runs, reported, datasets)
        paths = write_table(built, Path(args.out))
        print(render_markdown(built))
        print(f"written: {', '.join(str(p) for p in paths.values())}\n")
