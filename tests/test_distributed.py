"""Data-parallel training with PyTorch's own stack (torchrun, DistributedDataParallel, gloo on the CPU): two ranks
train exactly what one process trains on the combined batch; only rank 0 writes; a killed 2-rank job resumes on
both ranks; a checkpoint of another world size and a batch the world size does not divide are clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from initbench.results.files import CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE
from initbench.train.job_lock import LOCK_FILE
from initbench.errors import ConfigError
from initbench.distributed import World, device_setting
from initbench.tasks.mixup import draw_epoch_mixing
from tests.conftest import TINY, write_fake_imagenet
from tests.ddp_worker import OVERRIDES as WORKER

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def torchrun(args: list[str], cwd: Path, processes: int = 2, **popen) -> subprocess.Popen:
    env = {**os.environ, **ONE_THREAD, "INITBENCH_CACHE": str(cwd / ".cache"), "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                             "--standalone", *args], cwd=cwd, env=env, text=True, **popen)


def kill_all(marker: str) -> None:
    """SIGKILL every process whose command line holds `marker`: torchrun and its workers (in sessions of their own)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def finished(process: subprocess.Popen, timeout: int = 240) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output or ""


def train_worker(folder: Path, overrides: list[str], processes: int) -> tuple[dict, ...]:
    """tests/ddp_worker.py on `processes` ranks (1: a plain process); each rank's saved parameters and rows."""
    folder.mkdir()
    if processes == 1:
        single = subprocess.run([sys.executable, "-m", "tests.ddp_worker", str(folder), *overrides], cwd=REPO,
                                capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, timeout=240)
        assert single.returncode == 0, single.stderr[-3000:]
    else:
        with open(folder / "ranks.log", "w") as log:
            ranks = torchrun(["-m", "tests.ddp_worker", str(folder), *overrides], REPO, processes, stdout=log,
                             stderr=subprocess.STDOUT)
            assert ranks.wait(timeout=240) == 0, (folder / "ranks.log").read_text()[-3000:]
    return tuple(torch.load(folder / f"rank{rank}.pt") for rank in range(processes))


def assert_same_training(ranks: tuple[dict, ...], alone: dict) -> None:
    """Tolerance: the ranks agree exactly (DDP all-reduces one gradient); against one process, float32 sums in
    another order: parameters within 1e-5 (relative) and metrics rows within 1e-6."""
    rank0 = ranks[0]
    assert rank0["params"].keys() == alone["params"].keys()
    for name, value in rank0["params"].items():
        assert all(torch.equal(value, other["params"][name]) for other in ranks[1:]), name
        assert torch.allclose(value, alone["params"][name], rtol=1e-5, atol=1e-7), name
    assert not torch.equal(rank0["params"]["fc.weight"], torch.zeros_like(rank0["params"]["fc.weight"]))  # trained
    pd.testing.assert_frame_equal(pd.DataFrame(rank0["rows"]), pd.DataFrame(alone["rows"]), rtol=1e-6)


def test_two_ranks_end_with_the_parameters_of_one_process_on_the_combined_batch(tmp_path: Path):
    two, one = tmp_path / "two", tmp_path / "one"
    assert_same_training(train_worker(two, [], 2), train_worker(one, [], 1)[0])
    assert (two / "checkpoint-2.pt").is_file() and not list(two.glob("checkpoint-1.pt"))  # rank 0 wrote it


def test_two_ranks_streaming_imagenet_folders_train_what_one_process_trains(tmp_path: Path):
    """Each rank loads only its share of every batch from the folders (workers on), the last batch uneven."""
    root = write_fake_imagenet(tmp_path, train_per_class=5, val_per_class=3)
    overrides = ["+experiment=imagenet_resnet50", f"dataset.root={root}", "dataset.num_classes=3",
                 "dataset.crop_size=16", "dataset.resize_size=20", "dataset.augment=none", "model.width=4",
                 "init=fixup", "batch_size=6", "eval_batch_size=4", "epochs=2", "data.num_workers=1", "device=cpu",
                 "progress=false"]
    assert_same_training(train_worker(tmp_path / "two", overrides, 2), train_worker(tmp_path / "one", overrides, 1)[0])


def test_mixup_under_two_ranks_keeps_them_identical(tmp_path: Path):
    """Each rank pairs the images of its own share with the λ they share: the ranks still take one step."""
    overrides = [*(a for a in WORKER if not a.startswith("epochs=")), "epochs=1", "train.mixup_alpha=0.7"]
    rank0, rank1 = train_worker(tmp_path / "two", overrides, 2)
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    rows = pd.DataFrame(rank0["rows"])
    assert set(rows.metric[rows.split == "train"]) >= {"mixup_loss", "mixup_error"}
    assert rows.value.notna().all()


ARGS = [*(a for a in TINY if not a.startswith("dataset.train_size")), "dataset.train_size=384", "epochs=2",
        "model.width=4", "init=fixup", "device=cpu"]


def test_a_killed_two_rank_job_resumes_on_both_ranks_and_only_rank_0_writes(tmp_path: Path):
    run = tmp_path / "run"
    job = torchrun(["-m", "initbench", *ARGS, f"hydra.run.dir={run}"], tmp_path, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (run / METRICS_FILE).is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_all(f"hydra.run.dir={run}")
    job.wait()
    assert (run / CHECKPOINT_FILE).is_file() and not (run / SUMMARY_FILE).exists(), "not killed in epoch 2"

    # The checkpoint belongs to a 2-process job: one process refuses it and changes nothing.
    before = sorted(p.name for p in run.iterdir() if p.name != LOCK_FILE)  # the dead job's lock file may go
    alone = subprocess.run([sys.executable, "-m", "initbench", *ARGS, f"hydra.run.dir={run}"], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, **ONE_THREAD}, timeout=240)
    assert alone.returncode == 2 and "was written by a job of 2 process(es); this one has 1" in alone.stderr
    assert sorted(p.name for p in run.iterdir()) == before

    code, output = finished(torchrun(["-m", "initbench", *ARGS, f"hydra.run.dir={run}"], tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code == 0, output[-3000:]
    assert output.count("resumed 1 run(s) from") == 2  # both ranks
    metrics = pd.read_csv(run / METRICS_FILE)
    assert len(metrics) == len(metrics.drop_duplicates(["epoch", "split", "metric"])) == 10  # written once
    summary = pd.read_csv(run / SUMMARY_FILE)
    assert len(summary) == 1 and summary.loc[0, "epochs_done"] == 2 and summary.loc[0, "device"] == "2 x cpu"
    assert output.count(f"results: {run}") == 1 and not (run / CHECKPOINT_FILE).exists()


def test_a_batch_the_world_size_does_not_divide_is_one_error_and_writes_nothing(tmp_path: Path):
    code, output = finished(torchrun(["-m", "initbench", *ARGS, "batch_size=31", f"hydra.run.dir={tmp_path / 'r'}"],
                                     tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code != 0
    assert output.count("initbench: error:") == 1 and "batch_size=31 is the recipe's global batch" in output
    assert not (tmp_path / "r").exists()


def test_ranks_that_see_different_configs_are_one_error(tmp_path: Path):
    rank_dependent = "+probe.rank=${oc.env:LOCAL_RANK}"  # a value each rank resolves differently
    code, output = finished(torchrun(["-m", "initbench", *ARGS, rank_dependent, f"hydra.run.dir={tmp_path / 'r'}"],
                                     tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    assert code != 0
    assert output.count("initbench: error:") == 1 and "see different configs (rank(s) [1] differ" in output
    assert not (tmp_path / "r").exists()


def test_under_ranks_mixup_pairs_images_within_each_rank_share_with_the_lambda_they_share():
    mixing = draw_epoch_mixing(0.7, [torch.Generator().manual_seed(0)], steps=1, batch_size=10)
    whole, alone = mixing.step(0, 7), mixing.step(0, 7, rank=0, world_size=1)
    assert torch.equal(whole.partner, alone.partner) and torch.equal(whole.lam, alone.lam)
    shares = [mixing.step(0, 7, rank, 2) for rank in range(2)]
    assert [share.partner.shape[1] for share in shares] == [4, 3]  # torch.tensor_split's shares of the batch
    for share in shares:
        assert sorted(share.partner[0].tolist()) == list(range(share.partner.shape[1]))  # a permutation of the share
        assert torch.equal(share.lam, whole.lam)
    assert any(not torch.equal(share.partner[0], torch.arange(share.partner.shape[1])) for share in shares)


def test_one_named_gpu_for_every_rank_is_refused():
    with pytest.raises(ConfigError, match="device=cuda:1 would put every process"):
        device_setting(World(rank=1, size=2, local_rank=1), "cuda:1")
    assert device_setting(World(), "cuda:1") == "cuda:1" and device_setting(World(1, 2, 1), "cpu") == "cpu"
