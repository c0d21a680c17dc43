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
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from initbench.config import job_name, register_configs
from initbench.errors import UserError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("ib_job_name"):
        OmegaConf.register_new_resolver("ib_job_name", job_name)


# At import, not only in main(): submitit's job processes unpickle run_task and compose the job's config
# (whose directory name calls the resolver) without ever running main().
register_resolvers()


def _fail(err: UserError, job_dir: Path | None) -> None:
    from initbench.train.runner import remove_if_empty

    if job_dir is not None:
        remove_if_empty(job_dir)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"initbench: error: {err}", file=sys.stderr)
    sys.exit(2)


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
    _pin_submitit_local_gpu(cfg)
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


def table_main(argv: list[str]) -> None:
    from initbench.results.tables import main as tables

    try:
        tables(argv)
    except UserError as err:
        _fail(err, None)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "collect":
        collect_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        table_main(sys.argv[2:])
        return
    register_configs()
    hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")(run_task)()
