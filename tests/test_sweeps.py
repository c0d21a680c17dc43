"""Sweeps end to end: the smoke grid killed halfway and launched again, submitit_local, the notebook on the smoke
results, and every paper sweep's jobs, composed and written as runs, against the cells of its table."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from nbclient import NotebookClient
from omegaconf import OmegaConf

from initbench.config.schema import CONFIG_DIR
from initbench.config.checks import validate
from initbench.config.identity import recipe_digest, run_id
from initbench.config.schema import register_configs
from initbench.config.values import parse_seeds
from initbench.results.collect import collect_runs
from initbench.results.files import CHECKPOINT_FILE, SUMMARY_FILE
from initbench.results.table_spec import load_table, table_names
from initbench.results.tables import build_table, load_reported, runs_of_table
from tests.conftest import run_cli
from tests.run_fixtures import write_finished_run

REPO = Path(__file__).resolve().parents[1]
# The smoke grid as its sweep file declares it (two epochs: a job killed in its second has a checkpoint).
SMOKE = ["-m", "+sweep=smoke", "progress=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two processes on two cores without oversubscription
SWEEPS = sorted(p.stem for p in (Path(CONFIG_DIR) / "sweep").glob("*.yaml"))


def summaries(root: Path) -> dict[Path, float]:
    return {path.parent: path.stat().st_mtime_ns for path in root.rglob(SUMMARY_FILE)}


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory) -> dict:
    """The smoke sweep, SIGKILLed once two cells are finished and a third is mid-training, then launched again."""
    workdir = tmp_path_factory.mktemp("sweep")
    sweep_dir = workdir / "sweeps" / "smoke"
    args = [*SMOKE, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "INITBENCH_CACHE": str(workdir / ".cache"), **ONE_THREAD}
    with open(workdir / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "initbench", *args], cwd=workdir, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        finished = summaries(sweep_dir)
        started = [p for p in sweep_dir.glob("*/" + CHECKPOINT_FILE) if p.parent not in finished]
        if len(finished) >= 2 and started:
            break
        time.sleep(0.02)
    assert first.poll() is None, "the first launch finished before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed = {"finished": summaries(sweep_dir),
              "checkpointed": [p.parent for p in sweep_dir.glob("*/" + CHECKPOINT_FILE)]}
    again = run_cli(args, workdir, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"dir": sweep_dir, "killed": killed, "relaunch": again.stdout + again.stderr}


def test_smoke_sweep_runs_every_cell_and_fills_its_table(smoke_sweep):
    runs = collect_runs(smoke_sweep["dir"])
    assert sorted(zip(runs["init"], runs["seed"])) == [("kaiming", 0), ("kaiming", 1), ("orthogonal", 0),
                                                        ("orthogonal", 1)]
    assert (runs["epochs_done"] == 2).all() and not runs["diverged"].any()
    built = build_table(load_table("smoke"), runs, load_reported())
    assert list(built.cells["n"]) == [2, 2] and list(built.cells["seeds"]) == ["0 1", "0 1"]


def test_fused_runs_fill_the_cell_like_solo_runs(tmp_path: Path):
    """One job of the smoke grid launched with its two seeds fused: each run lands in the cell of its recipe."""
    done = run_cli(["+experiment=smoke", "init=orthogonal", "dataset.train_size=192", "dataset.test_size=64",
                    "batch_size=32", "epochs=2", "seed=[4,5]", "progress=false"], tmp_path, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = collect_runs(tmp_path / "results")
    assert sorted(runs["fused_runs"]) == [2, 2]
    built = build_table(load_table("smoke"), runs, load_reported())
    assert list(built.cells["n"]) == [0, 2] and list(built.cells["seeds"]) == ["", "4 5"]


def test_killed_sweep_relaunch_runs_only_the_missing_cells(smoke_sweep):
    killed, after = smoke_sweep["killed"], summaries(smoke_sweep["dir"])
    assert len(killed["finished"]) >= 2 and len(after) == 4
    for run_dir, mtime in killed["finished"].items():  # finished cells were skipped, not trained again
        assert after[run_dir] == mtime
    log = smoke_sweep["relaunch"]
    assert log.count("skip ") == len(killed["finished"])
    assert killed["checkpointed"], "no job was mid-training when the sweep was killed"
    assert log.count("resumed 1 run(s)") == len(killed["checkpointed"]) and "after epoch 1" in log
    assert not list(smoke_sweep["dir"].glob("*/" + CHECKPOINT_FILE))  # finished runs drop their checkpoint


def test_notebook_runs_top_to_bottom_on_the_smoke_results(smoke_sweep, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("INITBENCH_RESULTS", str(smoke_sweep["dir"]))
    monkeypatch.setenv("INITBENCH_TABLE", "smoke")
    monkeypatch.setenv("INITBENCH_OUT", str(tmp_path))
    notebook = nbformat.read(REPO / "notebooks" / "reproduce.ipynb", as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "4 finished run(s)" in outputs
    table = pd.read_csv(tmp_path / "tables" / "smoke.csv")
    assert list(table["n"]) == [2, 2]
    assert (tmp_path / "figures" / "curves_smoke.png").stat().st_size > 5000
    curves = pd.read_csv(tmp_path / "figures" / "curves_smoke.csv")
    assert set(curves["epoch"]) == {1, 2} and set(curves["n"]) == {2}


def test_submitit_local_runs_two_jobs_each_on_its_own_device(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    done = run_cli(["-m", "+sweep=smoke", "init=kaiming", "epochs=1", "dataset.train_size=64",
                    "dataset.test_size=64", "batch_size=32", "progress=false", f"hydra.sweep.dir={sweep_dir}",
                    "hydra/launcher=submitit_local", "hydra.launcher.gpus_per_node=2",
                    "hydra.sweeper.max_batch_size=2"], tmp_path, env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = collect_runs(sweep_dir)
    assert sorted(runs["seed"]) == [0, 1] and (runs["init"] == "kaiming").all()
    assert list(sweep_dir.glob(".submitit/*/*_log.out"))  # the jobs ran as submitit jobs
    # submitit_local hands both jobs CUDA_VISIBLE_DEVICES=0,1; each job keeps only its own GPU.
    pinned = sorted(line.split("CUDA_VISIBLE_DEVICES=")[1].strip()
                    for log in sweep_dir.glob("*/initbench.log") for line in log.read_text().splitlines()
                    if "CUDA_VISIBLE_DEVICES=" in line)
    assert pinned == ["0", "1"]


@pytest.mark.parametrize("preset, lines", [
    ("slurm", ("--gpus-per-task=1", "--partition=gpu", "--time=720", "--cpus-per-task=8", "--mem=64GB",
               "--ntasks-per-node=1")),
    ("slurm_ddp", ("--gpus-per-task=1", "--partition=gpu", "--ntasks-per-node=8", "--nodes=1", "--mem=480GB")),
])
def test_slurm_presets_ask_for_one_gpu_per_task(tmp_path: Path, monkeypatch, preset: str, lines: tuple[str, ...]):
    """The sbatch script submitit writes for hydra/launcher=slurm (one task per sweep job) and slurm_ddp (one task
    per GPU of a data-parallel job); a stand-in `srun` lets submitit build it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=["+sweep=fixup_cifar10", f"hydra/launcher={preset}", "hydra.launcher.partition=gpu"])
    params = OmegaConf.to_container(cfg.hydra.launcher)
    assert params["max_num_timeout"] == 3  # re-queued after a timeout: the run resumes from its checkpoint
    # What the launcher plugin passes to submitit: shared keys as they are, Slurm ones prefixed.
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in shared else f"slurm_{k}": v for k, v in params.items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout", "name")}
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(name="initbench", **params)
    sbatch = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in lines:
        assert f"#SBATCH {line}" in sbatch


# ------------------------------------------------------------------------------- sweep grids vs table cells
def sweep_jobs(name: str) -> list[list[str]]:
    """The override list of every job the basic sweeper launches for `+sweep=name` (seeds collapsed)."""
    params = yaml.safe_load((Path(CONFIG_DIR) / "sweep" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    params = {k: v for k, v in params.items() if k != "seed"}
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(overrides, None)[0]


def compose_job(job: list[str], sweep: str, composed: dict):
    """The job's config. Composition (~0.1 s) runs once per combination of config-group choices; value
    overrides (optim.lr=0.1) are then set on a copy, as Hydra sets them after composing the defaults."""
    overrides = OverridesParser.create().parse_overrides(job)
    is_group = [o.is_add() or (Path(CONFIG_DIR) / o.key_or_group).is_dir() for o in overrides]
    groups = tuple(o.input_line for o, group in zip(overrides, is_group) if group)
    if groups not in composed:
        composed[groups] = compose(config_name="config", overrides=[*groups, f"+sweep={sweep}"])
    cfg = copy.deepcopy(composed[groups])
    for override, group in zip(overrides, is_group):
        if not group:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
    return cfg


def test_every_sweep_has_its_table():
    assert {sweep for name in table_names() for sweep in load_table(name).sweeps} == set(SWEEPS)


def frozen_identities() -> dict[tuple[str, tuple[str, ...]], list[dict]]:
    """(sweep, job overrides) -> each launched job's seed, recipe digest, job folder and run ids, as they were before
    the refactoring of the config (issue 25). A run id changes only with what the run computes; a job added to a
    sweep later is simply not in the file, and a job whose runs compute something else on purpose gets its entry
    rewritten."""
    frozen: dict[tuple[str, tuple[str, ...]], list[dict]] = {}
    for entry in json.loads((REPO / "tests" / "data" / "sweep_identities.json").read_text()):
        frozen.setdefault((entry["sweep"], tuple(entry["overrides"])), []).append(entry)
    return frozen


def test_the_frozen_identities_cover_every_sweep():
    assert {sweep for sweep, _ in frozen_identities()} == set(SWEEPS)


@pytest.mark.parametrize("name", table_names())
def test_every_sweep_job_lands_in_exactly_one_cell_of_its_table(name, tmp_path: Path):
    """Each job of the table's sweeps, composed here (not by the table code) and written as a finished run the way
    the runner writes one, fills exactly one cell, and every cell that is run gets exactly one job's run. Every job
    keeps the run ids and recipe digest it had (`frozen_identities`)."""
    spec, composed, frozen = load_table(name), {}, frozen_identities()
    jobs = [(sweep, job) for sweep in spec.sweeps for job in sweep_jobs(sweep)]
    checked = 0
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for index, (sweep, job) in enumerate(jobs):
            cfg = compose_job(job, sweep, composed)
            validate(cfg)
            resolved = OmegaConf.to_container(cfg, resolve=True)
            for launched in frozen.get((sweep, tuple(job)), []):
                seeds = parse_seeds(launched["seed"])
                assert (recipe_digest(resolved), run_id(resolved, seeds.setting),
                        [run_id(resolved, seed) for seed in seeds]) == \
                    (launched["recipe_digest"], launched["job"], launched["runs"]), f"{sweep}: {job} changed identity"
                checked += 1
            write_finished_run(tmp_path / f"job{index}", cfg, 0, [50.0])
    assert checked == sum(len(v) for (sweep, _), v in frozen.items() if sweep in spec.sweeps), "a frozen job is gone"
    filled = runs_of_table(spec, collect_runs(tmp_path))
    assert filled["run_id"].is_unique and len(filled) == len(jobs), "a job's run fills no cell, or two"
    cells_run = [(cell.column, cell.row) for cell in spec.cells for _ in cell.jobs]
    assert sorted(zip(filled["column"], filled["row"])) == sorted(cells_run), "a cell gets no job's run, or two"
