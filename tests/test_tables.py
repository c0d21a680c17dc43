"""The papers' tables: which runs fill a cell (the recipe of its sweep job, nothing else), aggregation over seeds,
the reported column, missing cells, the table files themselves and reported.csv.

Fixture runs are written by the runner's own writers from configs Hydra composes for the overrides a user would
type (tests/run_fixtures.py), so a cell is found the way it is for real runs."""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from initbench.cli import table_main
from initbench.results.collect import collect_runs
from initbench.results.metrics import METRICS
from initbench.results.sweeps import sweep_jobs
from initbench.results.table_spec import TABLE_DIR, load_table, table_names
from initbench.results.tables import (
    REPORTED_COLUMNS, REPORTED_CSV, build_table, load_reported, render_latex, render_markdown, runs_of_table,
    write_table,
)
from tests.run_fixtures import compose_config, write_finished_run

REPO = Path(__file__).resolve().parents[1]
BN_ERRORS = {0: 6.5, 1: 6.7, 2: 7.0}  # best test error per seed of the BN cell of fixup_cifar10
FIXUP_BN = ["+experiment=cifar10_resnet110", "+method=bn_kaiming"]  # what a user types for that cell's recipe


def by_row(built, column: str = "CIFAR-10 ResNet-110") -> dict[str, dict]:
    return {entry["row"]: entry for entry in built.cells.to_dict("records") if entry["column"] == column}


def run_of(root: Path, overrides: list[str], seed: int, errors: list[float], **kwargs) -> Path:
    return write_finished_run(root, compose_config([*overrides, f"seed={seed}"]), seed, errors, **kwargs)


@pytest.fixture(scope="module")
def fixup_runs(tmp_path_factory) -> Path:
    """Three seeds of the BN cell of fixup_cifar10 (the Fixup cell has no run), plus runs that must not count:
    the same recipe with one more override each."""
    root = tmp_path_factory.mktemp("fixup") / "results"
    for seed, error in BN_ERRORS.items():
        run_of(root / "sweeps" / f"bn-s{seed}", FIXUP_BN, seed, [error + 5, error, error + 0.2])
    # Same seed and config found twice (an ad-hoc run and a sweep cell): counted once.
    run_of(root / "runs" / "bn-s0", FIXUP_BN, 0, [BN_ERRORS[0] + 5, BN_ERRORS[0], BN_ERRORS[0] + 0.2])
    for name, extra in (("other-lr", "optim.lr=0.05"), ("other-shortcut", "model.shortcut=B"),
                        ("data-subset", "dataset.train_size=5000"), ("other-epochs", "epochs=20"),
                        ("other-batch", "batch_size=64"), ("bf16", "precision=bf16")):
        run_of(root / name, [*FIXUP_BN, extra], 3, [1.0])
    run_of(root / "other-data", [*FIXUP_BN, "dataset=cifar10_jpeg"], 5, [2.0])
    return root


def test_mean_std_n_and_reported_column(fixup_runs: Path):
    built = build_table(load_table("fixup_cifar10"), collect_runs(fixup_runs), load_reported())
    bn = by_row(built)["BatchNorm (Kaiming init)"]
    errors = list(BN_ERRORS.values())
    assert bn["n"] == 3 and bn["seeds"] == "0 1 2" and bn["ours_status"] == "measured"
    assert bn["ours_mean"] == pytest.approx(statistics.mean(errors))
    assert bn["ours_std"] == pytest.approx(statistics.stdev(errors))  # sample std over seeds
    assert bn["reported_value"] == 6.61 and bn["reported_status"] == "unconfirmed"
    assert bn["difference"] == pytest.approx(statistics.mean(errors) - 6.61)

    markdown = render_markdown(built)
    line = next(line for line in markdown.splitlines() if "BatchNorm" in line)
    assert "6.73 ± 0.25" in line and "| 3 |" in line and "6.61†" in line and "+0.12" in line
    assert "UNCONFIRMED" in markdown  # the mark is explained under the table


def test_a_run_with_one_more_override_fills_no_cell(fixup_runs: Path):
    runs = collect_runs(fixup_runs)
    filled = runs_of_table(load_table("fixup_cifar10"), runs)
    assert sorted(filled["run_dir"].map(lambda d: Path(d).name)) == ["bn-s0", "bn-s1", "bn-s2"]
    assert len(runs) == 11  # the extra-override runs were collected, and left out


def test_missing_cell_is_shown_as_missing(fixup_runs: Path):
    built = build_table(load_table("fixup_cifar10"), collect_runs(fixup_runs), load_reported())
    fixup = by_row(built)["Fixup (no normalisation)"]
    assert fixup["ours_status"] == "missing" and fixup["n"] == 0 and math.isnan(fixup["ours_mean"])
    assert math.isnan(fixup["difference"]) and fixup["reported_value"] == 7.24
    line = next(line for line in render_markdown(built).splitlines() if "Fixup (no" in line)
    assert "| missing | 0 | 7.24† | — |" in line
    mixup = by_row(built, "CIFAR-10 ResNet-110, mixup α = 1")["BatchNorm (Kaiming init)"]
    assert mixup["n"] == 0 and mixup["reported_value"] == 6.61  # the recipe without mixup fills no mixup cell


def test_files_written_and_latex_escaped(fixup_runs: Path, tmp_path: Path):
    built = build_table(load_table("fixup_cifar10"), collect_runs(fixup_runs), load_reported())
    paths = write_table(built, tmp_path / "tables")
    assert paths["md"].read_text() == render_markdown(built)
    latex = paths["tex"].read_text()
    assert latex == render_latex(built)
    assert r"6.73 $\pm$ 0.25" in latex and r"6.61$^\dagger$" in latex and r"\bottomrule" in latex
    written = pd.read_csv(paths["csv"])
    assert list(written["row"]) == ["BatchNorm (Kaiming init)", "Fixup (no normalisation)"] * 2
    assert list(written["n"]) == [3, 0, 0, 0] and written.loc[1, "ours_status"] == "missing"


def test_runs_on_another_dataset_only_with_a_swap(fixup_runs: Path):
    runs = collect_runs(fixup_runs)
    swapped = build_table(load_table("fixup_cifar10"), runs, load_reported(), {"cifar10": "cifar10_jpeg"})
    bn = by_row(swapped)["BatchNorm (Kaiming init)"]
    assert bn["n"] == 1 and bn["ours_mean"] == pytest.approx(2.0)
    assert "cifar10_jpeg in place of cifar10" in render_markdown(swapped)


def test_confirmed_values_unmarked_diverged_runs_counted_and_rows_not_run(tmp_path: Path):
    datadep = ["+experiment=arpit_cifar10_resnet56", "+method=arpit_wn_datadep"]
    run_of(tmp_path / "dd-s0", datadep, 0, [9.0])
    run_of(tmp_path / "dd-s1", datadep, 1, [9.4])
    run_of(tmp_path / "dd-s2", datadep, 2, [12.0, 11.0], diverged=True)
    for seed in (0, 1):  # every run of the proposed row diverged in its first epoch
        run_of(tmp_path / f"p-s{seed}", ["+experiment=arpit_cifar10_resnet56", "+method=arpit_wn_proposed"], seed, [],
               diverged=True)
    built = build_table(load_table("arpit_test_error"), collect_runs(tmp_path), load_reported())
    rows = {(e["column"], e["row"]): e for e in built.cells.to_dict("records")}
    cell = rows[("CIFAR-10 ResNet-56", "WN + data-dependent")]
    assert cell["n"] == 2 and cell["n_diverged"] == 1 and cell["ours_mean"] == pytest.approx(9.2)
    proposed = rows[("CIFAR-10 ResNet-56", "WN + proposed")]
    assert proposed["ours_status"] == "diverged" and proposed["n"] == 0 and proposed["n_diverged"] == 2
    markdown = render_markdown(built)
    assert "| 9.20 ± 0.28 (1 of 3 diverged) | 2 | 9.19 ± 0.24 | +0.01 |" in markdown  # confirmed: no mark
    assert "| diverged (2/2) | 0 | 7.87 ± 0.14 |" in markdown
    assert "| CIFAR-10 ResNet-110 | WN (Shang et al.) | not run | 0 | 7.46 | — |" in markdown
    assert "WN (Shang et al.)" not in {e["row"] for e in built.cells.to_dict("records")
                                       if e["column"] != "CIFAR-10 ResNet-110"}  # only_in


def test_rate_metric_is_a_share_of_seeds(tmp_path: Path):
    cell = ["+experiment=arpit_cifar10_wrn40_10_robustness", "+method=arpit_wn_proposed", "optim.lr=0.05", "warmup=0"]
    for seed in range(3):
        run_of(tmp_path / f"ok-{seed}", cell, seed, [80.0, 70.0, 60.0])
    run_of(tmp_path / "bad", cell, 3, [80.0], diverged=True)
    built = build_table(load_table("arpit_robustness"), collect_runs(tmp_path), load_reported())
    entry = next(e for e in built.cells.to_dict("records")
                 if e["column"] == "lr 0.05, no warmup" and e["row"] == "proposed")
    assert entry["n"] == 4 and entry["ours_mean"] == pytest.approx(75.0)
    assert entry["reported_value"] == 80 and entry["difference"] == pytest.approx(-5.0)
    line = next(line for line in render_markdown(built).splitlines()
                if "lr 0.05, no warmup | proposed" in line)
    assert "| 75 | 4 | 80† | -5 |" in line  # no std for a share


def test_reported_csv_is_tidy_and_every_table_cell_points_into_it():
    reported = pd.read_csv(REPORTED_CSV, dtype=str, keep_default_na=False)
    assert tuple(reported.columns) == REPORTED_COLUMNS
    assert reported["id"].is_unique
    assert set(reported["status"]) == {"confirmed", "unconfirmed"}
    assert set(reported["paper"]) == {"arpit2019", "fixup2019", "gradinit2021", "idinit2025", "gilmer2022"}
    numbers = pd.to_numeric(reported["value"].replace("", None), errors="coerce")
    blank = reported["value"].eq("")
    assert numbers[~blank].notna().all()
    assert reported.loc[blank, "recipe_notes"].str.contains("range").all()  # only ranges have no single value
    approximate = reported["recipe_notes"].str.contains("plot")
    assert (reported.loc[approximate, "status"] == "unconfirmed").all()  # read off a plot => unconfirmed
    empty = collect_runs(Path("/nonexistent"))
    for name in table_names():  # raises on an unknown id or a metric mismatch
        spec = load_table(name)
        ids = [cell.reported for cell in spec.cells if cell.reported] + list(spec.unplaced_reported)
        assert set(ids) <= set(reported["id"])
        built = build_table(spec, empty, load_reported())
        assert set(built.cells["ours_status"]) <= {"missing", "not run"}
        assert set(spec.metrics) <= set(METRICS)


@pytest.mark.parametrize("name", table_names())
def test_every_table_file_maps_its_sweep_jobs_one_to_one_onto_cells(name: str):
    spec = load_table(name)
    jobs = [job.overrides for cell in spec.cells for job in cell.jobs]
    assert sorted(jobs) == sorted(job.overrides for sweep in spec.sweeps for job in sweep_jobs(sweep))  # one cell each
    labels = [(cell.column, cell.row) for cell in spec.cells]
    assert len(labels) == len(set(labels))
    assert all(cell.note for cell in spec.cells if not cell.jobs)  # a row not run says why


def test_table_code_names_no_paper():
    """The table machinery is generic: every paper lives in configs/ and results/reported.csv."""
    config = REPO / "configs"
    names = {p.stem for group in ("experiment", "sweep", "table", "method") for p in (config / group).glob("*.yaml")}
    names -= {"smoke"}  # also an ordinary word
    patterns = [rf"(?<![\w.]){re.escape(name)}(?!\w)" for name in names]
    patterns += [rf"(?<![\w.]){re.escape(rid.split('.')[0])}\." for rid in load_reported().index]  # fixup.cifar10...
    code = {p.name: p.read_text() for p in (REPO / "initbench" / "results").glob("*.py")
            if p.name in ("tables.py", "table_spec.py", "sweeps.py", "metrics.py")}
    assert len(code) == 4
    for file, text in code.items():
        found = sorted({match.group(0) for pattern in patterns for match in re.finditer(pattern, text)})
        assert not found, f"initbench/results/{file} names {found}"


def test_table_command_and_script(fixup_runs: Path, tmp_path: Path):
    out = tmp_path / "tables"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_tables.py"), "fixup_cifar10", "--root",
                           str(fixup_runs), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| CIFAR-10 ResNet-110 | BatchNorm (Kaiming init) | 6.73 ± 0.25 | 3 | 6.61† | +0.12 |" in done.stdout
    assert {p.name for p in out.iterdir()} == {"fixup_cifar10.md", "fixup_cifar10.tex", "fixup_cifar10.csv"}


def test_list_says_where_each_table_lives_and_its_jobs(capsys):
    table_main(["--list"])
    listing = capsys.readouterr().out
    assert str(TABLE_DIR) in listing and "configs/sweep/" in listing and "no Python" in listing
    line = next(line for line in listing.splitlines() if line.strip().startswith("arpit_robustness"))
    assert re.search(r"40 cells\s+160 jobs\s+800 runs", line)  # 40 cells run, 4 fused jobs of 5 seeds each
    fixup = next(line for line in listing.splitlines() if line.strip().startswith("fixup_cifar10"))
    assert re.search(r"4 cells\s+4 jobs\s+20 runs", fixup)  # with and without mixup
    table_main(["arpit_test_error", "--list"])
    cells = capsys.readouterr().out
    assert "configs/table/arpit_test_error.yaml" in cells
    assert "CIFAR-10 ResNet-110 | WN (Shang et al.) | not run: quoted by the paper" in cells
    assert ("CIFAR-10 ResNet-56 | BN | 1 job(s), 5 run(s): +experiment=arpit_cifar10_resnet56 "
            "+method=bn_orthogonal") in cells


def test_unknown_table_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        table_main(["fixup_cifar"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "table='fixup_cifar' is not supported" in error and "fixup_cifar10" in error and "Traceback" not in error


def test_a_table_of_two_metrics_shows_a_line_per_metric_and_places_a_reported_value_by_its_metric(tmp_path: Path):
    cell = ["+experiment=gradinit_cifar10_vgg19_bn", "+method=gradinit"]
    for seed, errors in ((0, [60.0, 10.0, 12.0]), (1, [58.0, 8.0, 9.0])):
        run_of(tmp_path / f"s{seed}", cell, seed, errors)
    built = build_table(load_table("gradinit_cifar10"), collect_runs(tmp_path), load_reported())
    lines = built.cells[(built.cells["column"] == "VGG-19 + BN") & (built.cells["row"] == "GradInit")]
    first, best = (lines.set_index("metric").loc[m] for m in ("test_accuracy_pct_after_1_epoch", "test_accuracy_pct"))
    assert first["ours_mean"] == pytest.approx(41.0) and best["ours_mean"] == pytest.approx(91.0)
    assert first["reported_id"] == "" and best["reported_value"] == 94.71  # 94.71 is a best accuracy
    markdown = render_markdown(built)
    assert "| setting | row | metric | ours | n | reported | Δ |" in markdown
    assert "| VGG-19 + BN | GradInit | best test accuracy over the epochs (%) | 91.00 ± 1.41 | 2 | 94.71† | -3.71 |" \
        in markdown
    assert "| ResNet-110 | Fixup | test accuracy after the first epoch (%) | missing | 0 | — | — |" in markdown
    assert "VGG-19 | Fixup" not in markdown  # only_in: the Fixup row exists in the no-BN ResNet column only


def test_the_largest_stable_lr_reduces_a_cell_over_its_lr_jobs(tmp_path: Path):
    recipe = ["+experiment=curvature_cifar10_resnet20_stability", "+method=nonorm_kaiming", "warmup=0"]
    diverged = {0.01: (False, False, False), 0.1: (False, True, False), 0.3: (True, False, True), 1.0: (True,) * 3}
    for lr, outcomes in diverged.items():
        for seed, blew_up in enumerate(outcomes):
            run_of(tmp_path / f"lr{lr}-s{seed}", [*recipe, f"optim.lr={lr}"], seed, [] if blew_up else [50.0, 40.0],
                   diverged=blew_up)
    built = build_table(load_table("curvature_stable_lr"), collect_runs(tmp_path), load_reported())
    cell = by_row(built, "no warmup")["no normalisation + Kaiming"]
    assert cell["ours_mean"] == pytest.approx(0.1) and cell["n"] == 12  # 0.3: 2 of 3 diverged, 0.1: 1 of 3
    assert "| no warmup | no normalisation + Kaiming | 0.100 | 12 | — | — |" in render_markdown(built)
    assert by_row(built, "no warmup")["Fixup"]["ours_status"] == "missing"


@pytest.mark.parametrize("name", ["curvature_trajectory", "curvature_stable_lr", "arpit_hessian"])
def test_the_curvature_tables_print(name: str, fixup_runs: Path, tmp_path: Path, capsys):
    table_main([name, "--root", str(fixup_runs), "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert printed.startswith("### ") and f"{name}.md" in printed and "| missing |" in printed
