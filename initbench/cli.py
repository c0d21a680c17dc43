"""Command line: `python -m initbench [hydra overrides]` trains (or probes); `initbench collect ROOT` gathers.

Mistakes a user can fix (a bad override, missing data) end with a one-paragraph message and
exit status 2; set HYDRA_FULL_ERROR=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from initbench.config import job_name, register_configs
from initbench.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def _fail(err: UserError, job_dir: Path | None) -> None:
    from initbench.train.runner import remove_if_empty

    if job_dir is not None:
        remove_if_empty(job_dir)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"initbench: error: {err}", file=sys.stderr)
    sys.exit(2)


def run_task(cfg: DictConfig) -> None:
    """The Hydra task: one job of a run or sweep."""
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.task == "probe":
            from initbench.measure.probe import probe_job

            probe_job(cfg, job_dir)
        elif cfg.task == "train":
            from initbench.train.runner import print_summary, train_job

            print_summary(train_job(cfg, job_dir), job_dir)
        else:
            from initbench.config import TASKS
            from initbench.errors import choice_error

            raise choice_error("task", cfg.task, TASKS)
    except UserError as err:
        _fail(err, job_dir)


def collect_main(argv: list[str]) -> None:
    from initbench.results.collect import collect_summaries

    parser = argparse.ArgumentParser(prog="initbench collect", description="Gather run summaries into one table.")
    parser.add_argument("root", nargs="?", default="results", help="folder searched for summary.csv files")
    parser.add_argument("--out", help="write the table to this CSV file")
    args = parser.parse_args(argv)
    try:
        table = collect_summaries(Path(args.root))
    except UserError as err:
        _fail(err, None)
    if args.out:
        from initbench.results.files import write_text

        write_text(Path(args.out), table.to_csv(index=False))
    shown = ["run_id", "dataset", "model", "norm", "init", "lr", "warmup", "seed", "epochs_done", "diverged",
             "final_test_error", "best_test_error", "images_per_s"]
    with_pandas_width = table[shown].to_string(index=False, float_format=lambda v: f"{v:.2f}")
    print(f"{len(table)} finished run(s) under {args.root}")
    if len(table):
        print(with_pandas_width)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "collect":
        collect_main(sys.argv[2:])
        return
    register_configs()
    if not OmegaConf.has_resolver("ib_job_name"):
        OmegaConf.register_new_resolver("ib_job_name", job_name)
    hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")(run_task)()
