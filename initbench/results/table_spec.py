"""A paper's table, declared in one YAML file as a view of its sweep: `configs/table/<name>.yaml`.

The file says which of the sweep's parameters pick each column and each row; a cell is the one sweep job whose
parameters match both, and its runs are the runs of that job's recipe (`initbench.results.sweeps`). Nothing of
the recipe is written twice: LR, epochs, layout... live in the experiment and method files the sweep combines.

    title: "Author et al. (2020), Table 1: CIFAR-10 test error"
    sweep: my_sweep             # configs/sweep/<sweep>.yaml (or a list); default: the table's own name
    metric: best_test_error     # a key of initbench.results.metrics.METRICS (or a list: one line per metric)
    column_header: setting      # heading of the column labels (default: setting)
    columns:                    # label: the sweep parameters (spelled as in the sweep file) that pick it
      ResNet-56: {+experiment: my_recipe_resnet56}
      ResNet-110: {+experiment: my_recipe_resnet110}
    rows:
      BN + Kaiming: {+method: my_bn_method}
      Scheme X: {not_run: "not an init initbench implements", only_in: [ResNet-110]}
    reported:                   # column label: {row label: id in results/reported.csv}
      ResNet-56: {BN + Kaiming: author2020.table1.resnet56.bn}
    notes: ["printed under the table, one line each"]
    unplaced_reported: [ids the sources report but do not let us place in a cell]

A row (or column) with `not_run: <reason>` is one the paper has and initbench does not run; `only_in: [labels]`
limits a row to some columns. A table whose grid is not a full product (a row that only some columns have) views
several sweeps, each a full grid: `sweep: [main_grid, extra_row]`. With several metrics, each cell shows one
line per metric, and a reported id stands on the line of the metric it reports. `over: [optim.lr]` names sweep
parameters a cell aggregates over, as it does over seeds: the cell holds one job per value, and a metric that
reduces a whole cell (the largest stable LR) reads all of their runs. Cells are listed column by
column, rows in file order. Loading checks that every cell is produced by exactly one job and every job lands in
exactly one cell, and says which file and key to change when not.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from initbench.config.schema import CONFIG_DIR
from initbench.config.values import as_list
from initbench.errors import ConfigError, choice_error
from initbench.results.sweeps import SEED, SweepJob, job_recipe, sweep_file, sweep_jobs, sweep_parameters

TABLE_DIR = Path(CONFIG_DIR) / "table"
NOT_RUN, ONLY_IN = "not_run", "only_in"
_REQUIRED = ("title", "metric", "columns", "rows")
_OPTIONAL = ("sweep", "column_header", "reported", "notes", "unplaced_reported", "over")


@dataclass(frozen=True)
class Cell:
    column: str
    row: str
    jobs: tuple[SweepJob, ...]  # one, or one per value of the table's `over` parameters; () for a row not run
    reported: str | None = None  # id of the paper's number in results/reported.csv
    note: str = ""


@dataclass(frozen=True, eq=False)  # identity: one object per loaded file (the recipe cache's key)
class TableSpec:
    name: str
    path: Path  # the table file
    sweeps: tuple[str, ...]  # configs/sweep/<sweep>.yaml, each a full grid
    title: str
    metrics: tuple[str, ...]  # keys of METRICS: one line per cell and metric
    column_label: str
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()
    unplaced_reported: tuple[str, ...] = ()  # reported ids whose cell the sources do not pin down


def table_names() -> list[str]:
    return sorted(path.stem for path in TABLE_DIR.glob("*.yaml"))


def table_path(name: str) -> Path:
    """configs/table/<name>.yaml, or `name` itself when it is the path of a table file."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise ConfigError(f"{name} does not exist: give a table file, or one of: {', '.join(table_names())}.")
        return Path(name).resolve()
    if name not in table_names():
        raise choice_error("table", name, table_names())
    return TABLE_DIR / f"{name}.yaml"


def load_table(name: str) -> TableSpec:
    """The table `name` (or the table file at that path), checked against its sweep's jobs."""
    path = table_path(name)
    return _load(path, path.stat().st_mtime_ns)


def cell_recipes(spec: TableSpec, datasets: dict[str, str] | None = None) -> list[set[str] | None]:
    """Per cell, the recipe digests of its jobs' runs (None for a row not run); `datasets` as in `job_recipe`."""
    return _recipes(spec, tuple(sorted((datasets or {}).items())))


@functools.lru_cache(maxsize=64)
def _recipes(spec: TableSpec, datasets: tuple[tuple[str, str], ...]) -> list[set[str] | None]:
    return [None if not cell.jobs else {job_recipe(job, dict(datasets)) for job in cell.jobs} for cell in spec.cells]


# ----------------------------------------------------------------------------------------------- reading
class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice (plain YAML keeps the last one silently: a lost row)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: {key!r} is given twice. Each label (and each "
                              "key) appears once: rename one, or merge the two entries.")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> TableSpec:
    name = path.stem

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}")

    try:
        tree = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise fail(str(err)) from None
    except yaml.YAMLError as err:
        raise fail(f"not valid YAML ({err}).") from None
    if not isinstance(tree, dict):
        raise fail(f"a table file is a mapping with the keys {', '.join(_REQUIRED + _OPTIONAL)}.")
    unknown = [k for k in tree if k not in _REQUIRED + _OPTIONAL]
    missing = [k for k in _REQUIRED if k not in tree]
    if unknown or missing:
        raise fail(f"{'unknown keys ' + str(unknown) if unknown else 'missing keys ' + str(missing)}; a table file "
                   f"has {', '.join(_REQUIRED)} and optionally {', '.join(_OPTIONAL)}.")
    from initbench.results.metrics import METRICS

    metrics = tuple(as_list(tree["metric"]))
    for metric in metrics:
        if metric not in METRICS:
            raise fail(f"metric={metric!r} is not one of: {', '.join(METRICS)}.")
    sweeps = tuple(str(sweep) for sweep in as_list(tree.get("sweep", name)))
    for sweep in sweeps:
        if not sweep_file(sweep).is_file():
            raise fail(f"sweep={sweep!r}: {sweep_file(sweep)} does not exist. Name the sweeps that produce this "
                       "table's runs (the `sweep:` key; default: the table's own name).")
    params = list(dict.fromkeys(p for sweep in sweeps for p in sweep_parameters(sweep) if p.lstrip("+~") != SEED))
    where = " and ".join(str(sweep_file(sweep)) for sweep in sweeps)
    over = [str(p) for p in as_list(tree.get("over") or [])]
    unknown = [p for p in over if p not in params]
    if unknown:
        raise fail(f"over names {unknown}, which are not parameters of {where} (its parameters: {', '.join(params)}).")
    columns = _selectors(tree, "columns", params, where, fail)
    rows = _selectors(tree, "rows", params, where, fail)
    reported = _reported(tree.get("reported") or {}, columns, rows, fail)
    jobs = [job for sweep in sweeps for job in sweep_jobs(sweep)]
    cells = _cells(columns, rows, reported, jobs, over, where, fail)
    placed = {cell.reported for cell in cells if cell.reported}
    unplaced = tuple(str(rid) for rid in tree.get("unplaced_reported") or ())
    if placed & set(unplaced):
        raise fail(f"unplaced_reported lists {sorted(placed & set(unplaced))}, which `reported` places in a cell.")
    notes = tree.get("notes") or ()
    if isinstance(notes, str) or not all(isinstance(n, str) for n in notes):
        raise fail("notes: give a list of strings (one line each under the table).")
    return TableSpec(name, path, sweeps, str(tree["title"]), metrics, str(tree.get("column_header", "setting")),
                     cells, tuple(notes), unplaced)


def _selectors(tree: dict, key: str, params: list[str], where: str, fail: Any) -> dict[str, dict[str, Any]]:
    """`columns` / `rows`: label -> {sweep parameter: value} (or {not_run: reason, only_in: [...]})."""
    entries = tree[key]
    if not isinstance(entries, dict) or not entries:
        raise fail(f"{key}: give a mapping of label: {{sweep parameter: value}}, e.g. "
                   f"'{key}: {{My label: {{{params[0] if params else '+method'}: value}}}}'.")
    chosen = {}
    for label, selector in entries.items():
        label_key = f"{key}.{label!r}"
        if not isinstance(selector, dict):
            raise fail(f"{label_key}: give a mapping of sweep parameters to values (or not_run: <reason>), "
                       f"not {selector!r}.")
        if key == "columns" and ONLY_IN in selector:
            raise fail(f"{label_key}: only_in limits a row to some columns; a column has no such key.")
        for parameter in selector:
            if parameter not in (NOT_RUN, ONLY_IN) and parameter not in params:
                raise fail(f"{label_key} names {parameter!r}, which is not a parameter of {where} "
                           f"(its parameters: {', '.join(params)}; the seed is never a row or column: a cell "
                           "aggregates its seeds). Use one of them, or add it to the sweep.")
        if NOT_RUN in selector and set(selector) - {NOT_RUN, ONLY_IN}:
            raise fail(f"{label_key}: a not_run entry names no sweep parameters (it has no runs).")
        chosen[str(label)] = selector
    return chosen


def _reported(tree: Any, columns: dict, rows: dict, fail: Any) -> dict[tuple[str, str], str]:
    if not isinstance(tree, dict):
        raise fail("reported: give a mapping of column label: {row label: reported id}.")
    placed = {}
    for column, by_row in tree.items():
        if column not in columns:
            raise fail(f"reported.{column!r} is not a column label. The columns: {', '.join(map(repr, columns))}.")
        if not isinstance(by_row, dict):
            raise fail(f"reported.{column!r}: give a mapping of row label: reported id.")
        for row, rid in by_row.items():
            if row not in rows:
                raise fail(f"reported.{column!r}.{row!r} is not a row label. The rows: {', '.join(map(repr, rows))}.")
            placed[(str(column), str(row))] = str(rid)
    return placed


def _same(value: Any, declared: Any) -> bool:
    """A job's parameter value (parsed by Hydra) against a table file's (parsed by YAML): numbers as numbers."""
    if isinstance(value, bool) or isinstance(declared, bool):
        return str(value).lower() == str(declared).lower()
    try:
        return float(value) == float(declared)
    except (TypeError, ValueError):
        return str(value) == str(declared)


def _describe(selector: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in selector.items()) or "(any job)"


def _cells(columns: dict, rows: dict, reported: dict, jobs: list[SweepJob], over: list[str], where: str,
           fail: Any) -> tuple[Cell, ...]:
    cells, filled_by = [], {}
    for column, column_selector in columns.items():
        for row, row_selector in rows.items():
            only_in = row_selector.get(ONLY_IN)
            if only_in is not None:
                unknown = [c for c in only_in if c not in columns]
                if unknown:
                    raise fail(f"rows.{row!r}.only_in names {unknown}, which are not column labels.")
                if column not in only_in:
                    continue
            rid = reported.get((column, row))
            reason = column_selector.get(NOT_RUN) or row_selector.get(NOT_RUN)
            if reason:
                cells.append(Cell(column, row, (), rid, str(reason)))
                continue
            conflict = [k for k in column_selector if k in row_selector and
                        not _same(row_selector[k], column_selector[k])]
            if conflict:
                raise fail(f"cell ({column!r}, {row!r}): the column and the row set {conflict} to different values.")
            selector = {**column_selector, **row_selector}
            selector.pop(ONLY_IN, None)
            found = [job for job in jobs
                     if all(k in job.params and _same(job.params[k], v) for k, v in selector.items())]
            if not found:
                values = {k: sorted({str(job.params.get(k)) for job in jobs}) for k in selector}
                raise fail(f"no job of {where} produces the cell ({column!r}, {row!r}) "
                           f"({_describe(selector)}); the sweep's values: {values}. Fix the value, add it to the "
                           "sweep, or mark the row not_run: <reason>.")
            fixed = {tuple((k, str(v)) for k, v in job.params.items() if k not in over) for job in found}
            if len(fixed) > 1:
                raise fail(f"the cell ({column!r}, {row!r}) ({_describe(selector)}) would be filled by "
                           f"{len(found)} jobs of {where}: {'; '.join(j.label() for j in found)}. Add "
                           "the parameter that tells them apart to the rows or the columns (or to `over`).")
            for job in found:
                if job.overrides in filled_by:
                    raise fail(f"the job {job.label()} would fill two cells, {filled_by[job.overrides]} and "
                               f"({column!r}, {row!r}): make their parameters differ.")
                filled_by[job.overrides] = f"({column!r}, {row!r})"
            cells.append(Cell(column, row, tuple(found), rid))
    left = [job.label() for job in jobs if job.overrides not in filled_by]
    if left:
        raise fail(f"{len(left)} job(s) of {where} land in no cell, e.g. {left[0]}. Add the row or column "
                   "they belong to (or drop them from the sweep).")
    placed = {(cell.column, cell.row) for cell in cells}
    for column, row in reported:
        if (column, row) not in placed:
            raise fail(f"reported.{column!r}.{row!r}: the row {row!r} is not in the column {column!r} (only_in).")
    return tuple(cells)
