"""logger=tensorboard / logger=mlflow: the trackers hold exactly the rows of metrics.csv, read back with the
trackers' own readers (tensorboard's EventAccumulator, MlflowClient), the config as hyper-parameters and the
summary's outcome; fused seeds are separate tracker runs; a killed and resumed run stays one tracker run; a
tracker that fails mid-run leaves the CSVs as a run without trackers writes them."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from initbench.results.files import CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from initbench.results.trackers import TRACKERS_FILE
from tests.conftest import TINY, run_cli

pytest.importorskip("mlflow", reason="the trackers extra is not installed: pip install -e '.[trackers]'")
pytest.importorskip("tensorboard", reason="the trackers extra is not installed: pip install -e '.[trackers]'")

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402
from tensorboard.plugins.hparams import metadata as hparams_metadata  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

ARGS = [*TINY, "epochs=2"]
BOTH = "logger=[tensorboard,mlflow]"


def csv_rows(run_dir: Path) -> list[tuple[str, int, float]]:
    """metrics.csv as (split/metric, step, value), values parsed exactly as written."""
    with open(run_dir / METRICS_FILE, newline="") as handle:
        return sorted((f"{r['split']}/{r['metric']}", int(r["step"]), float(r["value"]))
                      for r in csv.DictReader(handle))


def summary(run_dir: Path) -> dict[str, str]:
    with open(run_dir / SUMMARY_FILE, newline="") as handle:
        return next(csv.DictReader(handle))


def expected_params(run_dir: Path) -> dict[str, str]:
    """The run's config.yaml (less the logger section) as dotted keys, each value as the trackers spell it."""
    def flat(tree: dict, prefix: str = "") -> dict[str, str]:
        out = {}
        for key, value in tree.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (dict, list)) or value is None \
                    else str(value)
        return out

    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    config.pop("logger")
    return flat(config)


def tensorboard_run(run_dir: Path) -> event_accumulator.EventAccumulator:
    # No purging: a row sent twice must show up twice rather than hide the first copy.
    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.TENSORS: 0},
                                                     purge_orphaned_data=False)
    accumulator.Reload()
    return accumulator


def tensorboard_rows(accumulator: event_accumulator.EventAccumulator) -> list[tuple[str, int, float]]:
    return sorted((tag, event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                  for tag in accumulator.Tags()["tensors"] if "/" in tag and not tag.startswith(("outcome/", "config/"))
                  for event in accumulator.Tensors(tag))


def tensorboard_hparams(accumulator: event_accumulator.EventAccumulator) -> list[dict]:
    """Each session-start record's hyper-parameters (protobuf Values)."""
    contents = accumulator.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    return [dict(hparams_metadata.parse_session_start_info_plugin_data(content).hparams)
            for tag, content in contents.items() if tag == hparams_metadata.SESSION_START_INFO_TAG]


def session_starts(run_dir: Path) -> int:
    """How many hparams session-start records the run's event files hold (one per tracker run)."""
    return sum(value.tag == hparams_metadata.SESSION_START_INFO_TAG for path in run_dir.glob("events.out.tfevents.*")
               for event in EventFileLoader(str(path)).Load() for value in event.summary.value)


def same_hparam(value, expected: str) -> bool:
    """A TensorBoard hparam (string or number) against the config value as the trackers spell it."""
    if value.WhichOneof("kind") == "string_value":
        return value.string_value == expected
    return value.number_value == float({"True": 1, "False": 0}.get(expected, expected))  # torch stores bools as 0/1


def mlflow_runs(workdir: Path, experiment: str) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{workdir}/results/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    return client, client.search_runs([found.experiment_id])


def mlflow_rows(client: MlflowClient, run) -> list[tuple[str, int, float]]:
    return sorted((key, metric.step, metric.value) for key in run.data.metrics if not key.startswith("outcome/")
                  for metric in client.get_metric_history(run.info.run_id, key))


def run_dir_of(workdir: Path) -> Path:
    (run_dir,) = (workdir / "results" / "runs").iterdir()
    return run_dir


def test_fused_seeds_are_two_tracker_runs_equal_to_their_csvs_and_config(cli_server, workdir: Path):
    """One fused job of two seeds with both trackers: each seed is its own tracker run, holding exactly its rows,
    its config and its outcome (the single-run path is the killed-and-resumed test's)."""
    result = cli_server.run([*ARGS, "seed=[0,1]", BOTH], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    job = run_dir_of(workdir)
    client, runs = mlflow_runs(workdir, "smoke")
    assert len(runs) == 2
    by_name = {run.info.run_name: run for run in runs}
    for seed in (0, 1):
        run_dir = job / f"seed_{seed}"
        rows, outcome, params = csv_rows(run_dir), summary(run_dir), expected_params(run_dir)
        assert {tag for tag, _, _ in rows} >= {"train/loss", "train/error", "train/lr", "test/loss", "test/error"}
        assert params["seed"] == str(seed)

        board = tensorboard_run(run_dir)
        assert tensorboard_rows(board) == rows  # every row, at its step, with its exact value (float64)
        (hparams,) = tensorboard_hparams(board)
        assert set(hparams) == set(params)
        assert all(same_hparam(hparams[key], params[key]) for key in params), hparams
        best = board.Tensors("outcome/best_test_error")
        assert float(tensor_util.make_ndarray(best[-1].tensor_proto)) == float(outcome["best_test_error"])

        run = by_name[outcome["run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["initbench.run_dir"] == str(run_dir)
        assert mlflow_rows(client, run) == rows
        assert run.data.params == params
        assert run.data.metrics["outcome/best_test_error"] == float(outcome["best_test_error"])
        assert run.data.metrics["outcome/diverged"] == (outcome["diverged"] == "True")
        assert json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["run_id"] == run.info.run_id
    assert not list(job.glob("events.out.tfevents.*"))  # the job folder itself is no tracker run


def sent_rows(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["sent_rows"]
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_and_resumed_run_is_one_tracker_run(workdir: Path, mlflow_database: Path):
    args = [*ARGS, "epochs=3", "dataset.train_size=192", BOTH]
    (workdir / "results").mkdir()
    shutil.copyfile(mlflow_database, workdir / "results" / "mlflow.db")
    env = {**os.environ, "INITBENCH_CACHE": str(workdir / ".cache"), "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen([sys.executable, "-m", "initbench", *args], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = workdir / "results" / "runs"
    deadline = time.monotonic() + 120
    while victim.poll() is None and time.monotonic() < deadline and \
            not any(sent_rows(run_dir) > 0 for run_dir in (runs.iterdir() if runs.is_dir() else [])):
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    run_dir = run_dir_of(workdir)
    assert sent_rows(run_dir) > 0 and not (run_dir / SUMMARY_FILE).exists(), "not killed after its first epoch"
    assert (run_dir / CHECKPOINT_FILE).is_file()

    resumed = run_cli(args, workdir, env={"OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed 1 run(s)" in resumed.stdout + resumed.stderr
    rows = csv_rows(run_dir)
    assert {step for _, step, _ in rows} == {6, 12, 18}  # 3 epochs of 6 steps

    client, runs_found = mlflow_runs(workdir, "smoke")
    (run,) = runs_found
    assert run.info.status == "FINISHED" and mlflow_rows(client, run) == rows  # each row once
    board = tensorboard_run(run_dir)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one event file per launch, one run folder
    assert tensorboard_rows(board) == rows and session_starts(run_dir) == 1


@pytest.fixture(scope="module")
def mlflow_database(tmp_path_factory) -> Path:
    """An MLflow sqlite database with MLflow's tables, created once (its schema migrations take seconds); tests
    copy it to results/mlflow.db, as a sweep's later jobs find it."""
    database = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{database}").search_experiments()
    return database


def fail_metric_inserts(workdir: Path, template: Path) -> None:
    """The MLflow database accepts the run and its params, then refuses every metric: a store that breaks after
    training has started (a full disk, a server gone), through the real client and database."""
    database = workdir / "results" / "mlflow.db"
    database.parent.mkdir(parents=True)
    shutil.copyfile(template, database)
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TRIGGER full_disk BEFORE INSERT ON metrics BEGIN "
                           "SELECT RAISE(ABORT, 'database or disk is full'); END")


def test_tracker_failing_mid_run_warns_once_and_leaves_the_csvs_as_without_it(cli_server, workdir: Path,
                                                                            mlflow_database: Path):
    fail_metric_inserts(workdir, mlflow_database)
    args = [*ARGS, "deterministic=true"]
    plain = cli_server.run([*args, f"hydra.run.dir={workdir}/plain"], workdir)
    assert plain.returncode == 0, plain.stderr[-3000:]
    tracked = cli_server.run([*args, "logger=mlflow", f"hydra.run.dir={workdir}/tracked"], workdir)
    assert tracked.returncode == 0, tracked.stderr[-3000:]
    log = tracked.stdout + tracked.stderr
    assert log.count("logger=mlflow failed (MlflowException") == 1, log[-3000:]
    assert (workdir / "tracked" / METRICS_FILE).read_bytes() == (workdir / "plain" / METRICS_FILE).read_bytes()
    timing = {"wall_time_s", "images_per_s", "init_seconds", "hessian_seconds"}
    assert {k: v for k, v in summary(workdir / "tracked").items() if k not in timing} == \
        {k: v for k, v in summary(workdir / "plain").items() if k not in timing}
    client, (run,) = mlflow_runs(workdir, "smoke")
    assert run.data.params["seed"] == "0" and not run.data.metrics  # started, then refused every row


def test_missing_tracker_package_stops_before_training_and_names_the_install(workdir: Path):
    """As on a machine without the extra: the packages cannot be imported (a None entry in sys.modules)."""
    site = workdir / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None\n")
    result = run_cli([*ARGS, "logger=tensorboard"], workdir, env={"PYTHONPATH": str(site)})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "logger=tensorboard needs the tensorboard package" in result.stderr
    assert 'pip install -e ".[trackers]"' in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "results" / "runs").exists() or not any((workdir / "results" / "runs").iterdir())


def test_logger_choice_is_not_part_of_a_run_identity():
    from initbench.config.identity import recipe_digest, run_id
    from tests.run_fixtures import compose_config

    plain = compose_config(["+experiment=smoke"])
    tracked = compose_config(["+experiment=smoke", BOTH])
    assert tracked.logger.tensorboard is not None and tracked.logger.mlflow.experiment == "smoke"
    assert plain.logger.tensorboard is None and plain.logger.mlflow is None
    assert run_id(plain, 0) == run_id(tracked, 0) and recipe_digest(plain) == recipe_digest(tracked)
