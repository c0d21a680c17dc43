"""A run SIGKILLed after its first epoch resumes from its checkpoint at epoch 2 and ends exactly where an
uninterrupted run of the same config ends (CPU, deterministic=true). While it trains, a second launch of the same
run finds it locked and leaves it alone; the lock file the killed process leaves does not block the relaunch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from initbench.results.files import CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE
from initbench.train.job_lock import LOCK_FILE
from tests.conftest import TINY, run_cli

ARGS = [*TINY, "dataset.train_size=192", "epochs=2", "deterministic=true"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the two runs train at the same time on two cores


def metrics_epochs(run_dir: Path) -> set[int]:
    try:
        return set(pd.read_csv(run_dir / METRICS_FILE)["epoch"])
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return set()


def test_run_killed_after_epoch_1_resumes_at_epoch_2_with_identical_metrics(tmp_path: Path):
    env = {**os.environ, "INITBENCH_CACHE": str(tmp_path / ".cache"), **ONE_THREAD}
    reference_dir, killed_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = subprocess.Popen([sys.executable, "-m", "initbench", *ARGS, f"hydra.run.dir={reference_dir}"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = subprocess.Popen([sys.executable, "-m", "initbench", *ARGS, f"hydra.run.dir={killed_dir}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while 1 not in metrics_epochs(killed_dir) and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGSTOP)  # frozen mid-training, still holding its lock
    twin = run_cli([*ARGS, f"hydra.run.dir={killed_dir}"], tmp_path, env=ONE_THREAD)
    assert twin.returncode == 0, twin.stderr[-3000:]
    assert f"it is being trained by process {victim.pid} on " in twin.stdout + twin.stderr
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert metrics_epochs(killed_dir) == {1}, "the run was not stopped during its second epoch"
    assert (killed_dir / CHECKPOINT_FILE).is_file() and not (killed_dir / SUMMARY_FILE).exists()
    assert (killed_dir / LOCK_FILE).is_file()  # left by the killed process; the kernel released its lock

    resumed = run_cli([*ARGS, f"hydra.run.dir={killed_dir}"], tmp_path, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f"resumed 1 run(s) from {killed_dir / CHECKPOINT_FILE} after epoch 1" in log
    assert "epoch 1/2" not in log and "epoch 2/2" in log  # starts at epoch 2
    assert reference.wait(timeout=180) == 0, reference.stdout.read()[-3000:]

    expected = pd.read_csv(reference_dir / METRICS_FILE)
    got = pd.read_csv(killed_dir / METRICS_FILE)
    assert set(got["epoch"]) == {1, 2}
    pd.testing.assert_frame_equal(got, expected)  # same rows, same values: the kill changed nothing
    summary = pd.read_csv(killed_dir / SUMMARY_FILE)
    assert summary.loc[0, "epochs_done"] == 2 and not (killed_dir / CHECKPOINT_FILE).exists()
    assert not (killed_dir / LOCK_FILE).exists()
