"""Optional live sinks for a run's metrics rows: TensorBoard and MLflow (`logger=tensorboard`, `logger=mlflow`,
`logger=[tensorboard,mlflow]`; configs/logger/).

The tidy CSVs stay the record that tables are built from; a tracker only receives copies of the same rows, so
researchers can watch long sweeps in the tool they already use. Rows reach the trackers when the runner writes
`metrics.csv` (once per epoch), never from the training step, so a tracker adds no host sync.

Each run is one tracker run: TensorBoard's event files go to the run's own folder (so `tensorboard --logdir
results` names each run by its folder, grouped by sweep), an MLflow run is named by the run's id inside the
experiment named by `logger.mlflow.experiment` (the sweep's name by default). `trackers.json` in the run folder
keeps the MLflow run id and how many rows each tracker has received, so a resumed run continues its tracker run
and sends only the rows it has not sent yet.

A tracker that cannot start (package missing, store unreachable) stops the job before training with a
UserError; one that fails later (disk full, server gone) logs one warning and is dropped for the rest of the
job, and the run goes on with its CSVs untouched.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from initbench.errors import ConfigError, UserError
from initbench.results.files import SUMMARY_COLUMNS, TEXT_SUMMARY_COLUMNS, write_json

log = logging.getLogger("initbench")

TRACKERS_FILE = "trackers.json"
INSTALL = 'pip install -e ".[trackers]" -c constraints.txt'
# The package each logger needs, and how to install it alone.
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny"}
# The summary's leading columns restate the config (the trackers get the whole config as hyper-parameters); the
# columns from here on are the run's outcome.
OUTCOME_COLUMNS = SUMMARY_COLUMNS[SUMMARY_COLUMNS.index("epochs_done"):]
# MLflow's REST client retries a dead server for minutes by default; a tracker must not stall training that long.
# The user's own MLFLOW_HTTP_REQUEST_* variables win.
_MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                         "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def selected_loggers(cfg: DictConfig) -> list[str]:
    """The trackers `logger=` selected (their config sections that are set)."""
    return [name for name in PACKAGES if cfg.logger.get(name) is not None]


def check_installed(cfg: DictConfig) -> None:
    """Each selected tracker's package imports; otherwise a ConfigError that names the install command."""
    for name in selected_loggers(cfg):
        try:
            if name == "tensorboard":
                import torch.utils.tensorboard  # noqa: F401  (imports the tensorboard package)
            else:
                import mlflow  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                f"logger={name} needs the {PACKAGES[name]} package, which is not installed ({err}). Install the "
                f"trackers with `{INSTALL}` (or `pip install {PACKAGES[name]}`), or drop logger={name}."
            ) from None


def flat_params(config: dict, prefix: str = "") -> dict[str, Any]:
    """The resolved config as dotted keys -> scalar values (lists and empty sections as JSON, None as "null"),
    the form trackers store hyper-parameters in."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{name}."))
        elif isinstance(value, (dict, list)) or value is None:
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _first_line(err: Exception, limit: int = 240) -> str:
    """An exception in one short line: the trackers' own messages can span screens (a REST error with its URL)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _tag(row: dict) -> str:
    return f"{row['split']}/{row['metric']}"


def _outcome(summary: dict) -> tuple[dict[str, float], dict[str, str]]:
    """The summary's outcome columns: numbers (booleans as 0/1, NaN left out) and non-empty texts."""
    numbers, texts = {}, {}
    for key in OUTCOME_COLUMNS:
        value = summary.get(key)
        if isinstance(value, (bool, int, float)) and math.isfinite(value):
            numbers[f"outcome/{key}"] = float(value)
        elif isinstance(value, str) and value:
            texts[key] = value
    return numbers, texts


class TensorBoardSink:
    """Scalars `<split>/<metric>` at each row's step (float64, exactly the CSV's value), the config as hparams and
    text, the outcome as `outcome/*` scalars, all through torch's SummaryWriter into the run's folder."""

    def __init__(self, run_dir: Path, fresh: bool, params: dict[str, Any], config_yaml: str) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        if fresh:  # event files of an earlier tracker run of this folder (a forced re-run) would mix with ours
            for old in run_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.resumed = not fresh
        self.writer = SummaryWriter(log_dir=str(run_dir))
        if fresh:
            # The outcome scalars finish() writes, declared so the hparams dashboard shows them beside the config.
            metrics = {f"outcome/{column}": math.nan for column in OUTCOME_COLUMNS
                       if column == "diverged" or column not in TEXT_SUMMARY_COLUMNS}
            experiment, start, _ = hparams(params, metrics)
            self.writer.file_writer.add_summary(experiment)
            self.writer.file_writer.add_summary(start)
            self.writer.add_text("config", f"```yaml\n{config_yaml}```")
            self.writer.flush()

    def send(self, rows: list[dict]) -> None:
        for row in rows:
            self.writer.add_scalar(_tag(row), row["value"], row["step"], new_style=True, double_precision=True)
        self.writer.flush()  # a failing disk raises here (or at the next write), inside the runner's guard

    def finish(self, numbers: dict[str, float], texts: dict[str, str], step: int) -> None:
        from torch.utils.tensorboard.summary import hparams

        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step, new_style=True, double_precision=True)
        if texts:
            self.writer.add_text("outcome", "\n".join(f"- {key}: {value}" for key, value in texts.items()), step)
        _, _, end = hparams({}, {})  # the session-end record: the hparams dashboard shows the run as done
        self.writer.file_writer.add_summary(end, step)
        self.writer.flush()

    def state(self) -> dict:
        return {}

    def close(self) -> None:
        self.writer.close()


def mlflow_client(uri: str) -> Any:
    """An MlflowClient on `uri` that has answered one request: a ConfigError when the store cannot be reached."""
    from mlflow.tracking import MlflowClient

    for key, value in _MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if uri.startswith("sqlite:///"):  # the database's folder: sqlite creates the file, not the folders above it
        folder = Path(uri.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"logger.mlflow.tracking_uri={uri}: cannot create the folder {folder} "
                              f"({err.strerror or err}). Give a database in a folder you can write, e.g. "
                              "sqlite:///results/mlflow.db, or a tracking server's http:// URI.") from None
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # whatever the store's backend raises (connection, database, URI scheme)
        first_line = _first_line(err)
        raise ConfigError(
            f"logger.mlflow.tracking_uri={uri} cannot be reached ({first_line}). Start the tracking server, fix the "
            "URI (a local database is sqlite:///results/mlflow.db), or drop logger=mlflow."
        ) from None
    return client


def mlflow_experiment(client: Any, name: str) -> str:
    """The id of the experiment `name`, created when missing (another job of the sweep may create it first)."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except Exception:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"The MLflow experiment {name!r} is deleted (in the trash). Restore it "
                          "(`mlflow experiments restore`), or log to another one with logger.mlflow.experiment=NAME.")
    return found.experiment_id


class MlflowSink:
    """Metrics `<split>/<metric>` at each row's step, the config as params, the outcome as `outcome/*` metrics and
    tags, through MlflowClient; a resumed run reopens the MLflow run recorded in trackers.json."""

    def __init__(self, client: Any, experiment_id: str, run_name: str, previous: dict | None,
                 params: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow.entities import Param

        self.client = client
        self.resumed = previous is not None and self._reopen(previous["run_id"])
        if self.resumed:
            self.run_id = previous["run_id"]
            return
        self.run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        entries = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(entries), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(self.run_id, params=entries[start:start + 100], synchronous=True)

    def _reopen(self, run_id: str) -> bool:
        """Mark the recorded run as running again; False when the store no longer has it (deleted, or another
        tracking URI), and then a new run starts."""
        from mlflow.exceptions import MlflowException

        try:
            if self.client.get_run(run_id).info.lifecycle_stage == "deleted":
                return False
            self.client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return False
        return True

    def send(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_tag(row), float(row["value"]), now, int(row["step"])) for row in rows]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000], synchronous=True)

    def finish(self, numbers: dict[str, float], texts: dict[str, str], step: int) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in numbers.items()],
                              tags=[RunTag(f"outcome.{k}", v) for k, v in texts.items()], synchronous=True)
        self.client.set_terminated(self.run_id, status="FINISHED")

    def state(self) -> dict:
        return {"run_id": self.run_id}

    def close(self) -> None:
        """Nothing to release: every call was synchronous."""


class _RunSinks:
    """One run's tracker runs and how many of its rows each has received."""

    def __init__(self, run: Any, sinks: dict[str, Any], sent: dict[str, int], extra: dict[str, dict]) -> None:
        self.run, self.sinks, self.sent, self.extra = run, sinks, sent, extra

    def save(self) -> None:
        write_json(self.run.out_dir / TRACKERS_FILE, {
            name: {"sent_rows": self.sent[name], **sink.state(), **self.extra.get(name, {})}
            for name, sink in self.sinks.items()
        })


class Trackers:
    """The tracker runs of a job's runs. Every tracker call goes through `_guard`: the first failure of a tracker
    logs one warning and drops that tracker for the rest of the job; training and the CSVs go on."""

    def __init__(self, entries: list[_RunSinks]) -> None:
        self.entries = entries
        self.failed: set[str] = set()

    def _guard(self, name: str, action: Callable[[], None]) -> bool:
        if name in self.failed:
            return False
        try:
            action()
        except Exception as err:  # any failure of a tracker (I/O, network, its own checks) must not stop training
            self.failed.add(name)
            log.warning("logger=%s failed (%s); the job goes on without it, and metrics.csv and summary.csv "
                        "stay complete.", name, _first_line(err))
            return False
        return True

    def send(self) -> None:
        """Send each run's rows that its trackers have not received yet (called whenever metrics.csv is written)."""
        for entry in self.entries:
            sent_any = False
            for name, sink in entry.sinks.items():
                new = entry.run.rows[entry.sent[name]:]
                if new and self._guard(name, lambda sink=sink, new=new: sink.send(new)):
                    entry.sent[name] += len(new)
                    sent_any = True
            if sent_any:
                entry.save()

    def finish(self, summaries: list[dict]) -> None:
        """The outcome of each run (its summary row's result columns), then the tracker runs are closed."""
        self.send()
        for entry, summary in zip(self.entries, summaries):
            numbers, texts = _outcome(summary)
            for name, sink in entry.sinks.items():
                self._guard(name, lambda sink=sink: sink.finish(numbers, texts, entry.run.steps_done))
        self.close()

    def close(self) -> None:
        for entry in self.entries:
            for name, sink in entry.sinks.items():
                self._guard(name, sink.close)


def _read_state(run_dir: Path) -> dict:
    try:
        state = json.loads((run_dir / TRACKERS_FILE).read_text())
    except (OSError, ValueError):  # none yet, or damaged: the trackers start new runs
        return {}
    return state if isinstance(state, dict) else {}


def open_trackers(cfg: DictConfig, runs: list) -> Trackers:
    """Start (or, for a resumed run, reopen) the tracker runs of `runs` (RunState objects, checkpoint loaded).

    Called after every other check of the job and before its first file is written: a store that cannot be
    reached is a ConfigError here. A tracker run is continued when trackers.json records one that holds a prefix
    of the run's rows; force=true, or a run that restarted behind what was sent, starts a new one.
    """
    names = selected_loggers(cfg)
    if not names:
        return Trackers([])
    client = experiment_id = uri = None
    if "mlflow" in names:
        uri = str(cfg.logger.mlflow.tracking_uri)
        client = mlflow_client(uri)
        experiment_id = mlflow_experiment(client, str(cfg.logger.mlflow.experiment))
    entries = []
    for run in runs:
        state = {} if cfg.force else _read_state(run.out_dir)
        config = OmegaConf.to_container(OmegaConf.merge(cfg, {"seed": run.seed}), resolve=True)
        params = flat_params({k: v for k, v in config.items() if k not in ("logger", "hydra")})
        sinks, sent, extra = {}, {}, {}
        for name in sorted(names, key=lambda n: n != "mlflow"):  # MLflow first: it writes nothing in the run folder
            previous = state.get(name)
            if not isinstance(previous, dict) or not 0 <= previous.get("sent_rows", -1) <= len(run.rows) \
                    or previous.get("tracking_uri", uri) != uri:
                previous = None
            try:
                if name == "mlflow":
                    extra[name] = {"tracking_uri": uri}
                    sink = MlflowSink(client, experiment_id, run.run_id, previous, params, {
                        "initbench.run_dir": str(run.out_dir), "initbench.seed": str(run.seed)})
                else:
                    sink = TensorBoardSink(run.out_dir, previous is None, params,
                                           OmegaConf.to_yaml(OmegaConf.create(config)))
            except UserError:
                raise
            except Exception as err:
                raise ConfigError(f"logger={name} could not start the tracker run of {run.out_dir} "
                                  f"({_first_line(err)}). Fix the tracker's store, or drop logger={name}."
                                  ) from None
            sinks[name] = sink
            sent[name] = previous["sent_rows"] if sink.resumed else 0
        entries.append(_RunSinks(run, sinks, sent, extra))
    for entry in entries:  # recorded at once, so a run killed in its first epoch reopens the same tracker runs
        entry.save()
    return Trackers(entries)
