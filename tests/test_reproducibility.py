"""The same config and seed, run twice in two processes on the CPU, give the same metrics row for row; each run
records what a table needs to be traced back to the code and config that made it (env.json, config.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from initbench.config.checks import validate
from initbench.config.identity import run_id
from initbench.config.schema import Config
from initbench.results.files import METRIC_COLUMNS
from tests.conftest import TINY

ARGS = [*TINY, "epochs=2", "seed=7"]
REPO = Path(__file__).resolve().parent.parent


def keys(tree: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in tree.items():
        found.add(f"{prefix}{key}")
        if isinstance(value, dict) and key not in ("init", "probe"):
            found |= keys(value, f"{prefix}{key}.")
    return found


def test_same_config_and_seed_twice_give_identical_metrics_and_a_traceable_record(tmp_path: Path):
    env = {**os.environ, "INITBENCH_CACHE": str(tmp_path / ".cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    runs = [tmp_path / "first", tmp_path / "second"]
    processes = [subprocess.Popen([sys.executable, "-m", "initbench", *ARGS, f"hydra.run.dir={run}"], cwd=tmp_path,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for run in runs]
    for process in processes:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 0, output[-3000:]

    first, second = ((run / "metrics.csv").read_text() for run in runs)
    assert not {"wall_time_s", "time", "seconds"} & set(METRIC_COLUMNS)  # nothing timing-dependent in there
    assert len(first.splitlines()) > 1 + 2 * 3 and first == second

    record = json.loads((runs[0] / "env.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert record["initbench_commit"].removesuffix("-dirty") == commit and len(commit) == 40
    assert (record["torch"], record["cuda"]) == (torch.__version__, torch.version.cuda)
    assert {"python", "torchvision", "hydra", "cudnn", "device", "device_name", "host", "command"} <= set(record)
    assert record["device"] == "cpu" and "seed=7" in record["command"]

    config = yaml.safe_load((runs[0] / "config.yaml").read_text())
    assert "${" not in (runs[0] / "config.yaml").read_text()  # resolved: no interpolation left to re-evaluate
    schema = OmegaConf.to_container(OmegaConf.structured(Config))
    assert keys(config) == keys({k: v for k, v in schema.items() if k != "defaults"})  # every setting recorded
    restored = OmegaConf.merge(OmegaConf.structured(Config), config)  # types fit the schema
    validate(restored)
    summary = (runs[0] / "summary.csv").read_text().splitlines()[1]
    assert summary.startswith(run_id(config, 7) + ",")  # the record reproduces the run's identity
