"""Command line: `python -m initbench [hydra overrides]` trains (or probes); `initbench collect ROOT` gathers;
`initbench table NAME` writes a paper's table (initbench.results.tables).

Mistakes a user can fix (a bad override, missing data) end with a one-paragraph message and
exit status 2; set HYDRA_FULL_ERROR=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from initbench.config.schema import CONFIG_DIR, register_configs, unknown_setting
from initbench.errors import ConfigError, UserError


def _job_name(*, _root_: DictConfig) -> str:
    from initbench.config.identity import job_name  # imports the registries (and torch) only when a job is named

    return job_name(_root_=_root_)


# At import, not only in main(): submitit's job processes unpickle run_task and compose the job's config
# (whose directory name calls the resolver) without ever running main().
if not OmegaConf.has_resolver("ib_job_name"):
    OmegaConf.register_new_resolver("ib_job_name", _job_name)


def _fail(err: UserError, job_dir: Path | None) -> NoReturn:
    from initbench.distributed import launched_rank
    from initbench.train.runner import remove_if_empty

    if launched_rank() != 0:
        sys.exit(2)  # every rank of a distributed job meets the same error; rank 0 reports it and cleans up
    if job_dir is not None:
        remove_if_empty(job_dir)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"initbench: error: {err}", file=sys.stderr)
    sys.exit(2)


def _check_override_keys(argv: list[str]) -> None:
    """Hydra answers a mistyped key with "To append to your config use +key=value", which would only add a
    setting nothing reads: name the key and the settings near it instead, before Hydra composes anything."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        args, _ = get_args_parser().parse_known_args(argv)
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # a malformed override: Hydra reports it in its own words
        return
    groups = {path.name for path in Path(CONFIG_DIR).iterdir() if path.is_dir()}
    chosen_loggers = " ".join(o.get_value_element_as_str() for o in overrides if o.key_or_group == "logger")
    for override in overrides:
        key = override.key_or_group
        tracker = key.split(".")[1] if key.startswith("logger.") and key.count(".") >= 2 else None
        if tracker in ("tensorboard", "mlflow") and tracker not in chosen_loggers:
            # Hydra would fail on the unset section with a bare AssertionError
            _fail(ConfigError(f"{key} is an option of logger={tracker}, which this command does not select. Add "
                              f"logger={tracker} (or logger=[tensorboard,mlflow]) to the command."), None)
        if override.is_delete() or override.package is not None or key in groups or key.startswith("hydra") \
                or "/" in key:
            continue
        problem = unknown_setting(key)
        if problem:
            _fail(ConfigError(problem), None)


class ResultsFolderCheck(Callback):
    """Hydra creates the run (or sweep) folder before the task starts and reports a failure with a traceback:
    check it first and say which setting to change. Registered in configs/config.yaml (hydra.callbacks)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(folder: Path, key: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            _fail(UserError(
                f"Cannot write results to {folder} ({err.strerror or err}: {err.filename or folder}). Set {key} "
                "to a folder you can write; every part of the path must be a folder, not a file."
            ), None)


def _pin_submitit_local_gpu(cfg: DictConfig) -> None:
    """submitit_local starts every job with the same CUDA_VISIBLE_DEVICES (the first gpus_per_node GPUs).
    Job k keeps only GPU k mod that count, so the jobs of a batch of hydra.sweeper.max_batch_size = #GPUs
    each see their own device. Runs before anything initialises CUDA in this process."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or cfg.get("device", "auto") != "auto":
        return
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(visible) > 1:
        hydra_cfg, log = HydraConfig.get(), logging.getLogger("initbench")
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[hydra_cfg.job.num % len(visible)]
        log.info("submitit_local job %d: CUDA_VISIBLE_DEVICES=%s", hydra_cfg.job.num,
                 os.environ["CUDA_VISIBLE_DEVICES"])
        batch = hydra_cfg.sweeper.get("max_batch_size")
        if batch is None or batch > len(visible):
            log.warning("hydra.sweeper.max_batch_size=%s: more jobs than GPUs run at once (GPUs shared round-robin); "
                        "set it to %d for one job per GPU.", batch, len(visible))


def run_task(cfg: DictConfig) -> None:
    """The Hydra task: one job of a run or sweep."""
    from initbench.distributed import launched_rank
    from initbench.train.runner import print_summary, run_job

    _pin_submitit_local_gpu(cfg)
    if launched_rank() != 0:  # one job log, rank 0's: the other ranks of a distributed job keep their console
        for handler in [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]:
            logging.getLogger().removeHandler(handler)
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summaries = run_job(cfg, job_dir)
        if summaries is not None and launched_rank() == 0:
            print_summary(summaries, job_dir)
    except UserError as err:
        _fail(err, job_dir)
    except RuntimeError as err:  # torch.OutOfMemoryError (CUDA) is one; the CPU allocator raises a plain one
        if not _out_of_memory(err):
            raise
        _fail(UserError(_memory_advice(cfg, err)), job_dir)


def _out_of_memory(err: RuntimeError) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "can't allocate memory" in str(err)


def _memory_advice(cfg: DictConfig, err: RuntimeError) -> str:
    """What to change when a net does not fit the device: checkpointing, the batch, fused seeds."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    model = cfg.model
    return (
        f"Out of memory ({first_line[:200]}) for {model.name} (model.depth={model.depth}, "
        f"batch_size={cfg.batch_size}, model.checkpoint_segments={model.get('checkpoint_segments', 0)}, "
        f"seed={cfg.seed}). Keep fewer activations with model.checkpoint_segments=auto (or a number of segments, "
        "about the square root of the depth), lower batch_size, or launch fused seeds as separate jobs. Finished "
        "epochs are kept: the run resumes from its checkpoint."
    )


def _path_error(err: OSError, options: str) -> UserError:
    return UserError(f"{err.filename}: {err.strerror or err}. Check {options}: files must be written to a folder "
                     "you can write (every part of the path a folder, not a file).")


def collect_main(argv: list[str]) -> None:
    from initbench.results.collect import collect_summaries

    parser = argparse.ArgumentParser(prog="initbench collect", description="Gather run summaries into one table.")
    parser.add_argument("root", nargs="?", default="results", help="folder searched for summary.csv files")
    parser.add_argument("--out", help="write the table to this CSV file")
    args = parser.parse_args(argv)
    try:
        if not Path(args.root).is_dir():
            raise UserError(f"{args.root} is not a folder. Give the folder that holds the runs, e.g. "
                            "`initbench collect results` or `initbench collect results/sweeps/<name>`.")
        table = collect_summaries(Path(args.root))
        if args.out:
            from initbench.results.files import write_text

            write_text(Path(args.out), table.to_csv(index=False))
    except UserError as err:
        _fail(err, None)
    except OSError as err:
        _fail(_path_error(err, "--out"), None)
    shown = ["run_id", "dataset", "model", "norm", "init", "lr", "warmup", "seed", "epochs_done", "diverged",
             "final_test_error", "best_test_error", "images_per_s"]
    print(f"{len(table)} finished run(s) under {args.root}")
    if len(table):
        print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.2f}"))


def table_main(argv: list[str]) -> None:
    from initbench.results.tables import main as tables

    try:
        tables(argv)
    except UserError as err:
        _fail(err, None)
    except OSError as err:
        _fail(_path_error(err, "--out, --root and --reported"), None)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "collect":
        collect_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        table_main(sys.argv[2:])
        return
    _check_override_keys(sys.argv[1:])
    register_configs()
    hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")(run_task)()
