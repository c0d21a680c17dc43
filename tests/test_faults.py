"""A sweep SIGKILLed again and again, and relaunched with the same command until it completes, ends exactly as an
uninterrupted sweep ends: one complete summary per run, no duplicate, no half-written file, no checkpoint left,
and every run's metrics byte-identical to those of the uninterrupted sweep (CPU, deterministic=true).

The kills follow a plan drawn from a seeded generator: right after a checkpoint or a summary is written (plus a
random delay), or at a random time after launch (start-up, Hydra's composition, data generation, ...).
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from initbench.results.collect import collect_summaries
from initbench.results.files import METRIC_COLUMNS, SUMMARY_COLUMNS
from tests.conftest import TINY

EPOCHS = 3
INITS, SEEDS = ("kaiming", "xavier"), (0, 1, 2, 3)  # 8 runs
SWEEP = ["-m", *TINY, "dataset.train_size=96", "dataset.test_size=32", f"epochs={EPOCHS}", "deterministic=true",
         f"init={','.join(INITS)}", f"seed={','.join(map(str, SEEDS))}"]
KILLS = 6
PLAN_SEED = 8
# Both sweeps train at the same time on two cores; one thread each keeps their arithmetic identical.
ENV = {"OMP_NUM_THREADS": "1"}
RESUMED = re.compile(r"resumed 1 run\(s\) from (\S+)/checkpoint\.pt after epoch (\d+)")
TIMING_COLUMNS = ("wall_time_s", "images_per_s", "init_seconds", "hessian_seconds")


@dataclass(frozen=True)
class Kill:
    """When to kill a launch: after its `count`-th write of `event` plus `delay` s, or `delay` s after launch."""

    event: str  # "checkpoint" | "summary" | "time"
    count: int
    delay: float


def kill_plan(rng: random.Random) -> list[Kill]:
    def draw(event: str) -> Kill:
        if event == "checkpoint":
            return Kill(event, rng.randint(1, 2 * EPOCHS), rng.uniform(0.0, 0.4))
        if event == "summary":  # a few ms later: between a summary and its checkpoint's removal, or just after
            return Kill(event, rng.randint(1, 2), rng.uniform(0.0, 0.01))
        return Kill(event, 0, rng.uniform(1.0, 9.0))

    later = [draw("summary"), draw("time")]
    later += [draw(rng.choice(["checkpoint", "checkpoint", "summary", "time"])) for _ in range(KILLS - 3)]
    rng.shuffle(later)
    # The first kill comes right after a run's first checkpoint: some run is surely resumed mid-training.
    return [Kill("checkpoint", 1, 0.0), *later]


def launch(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "INITBENCH_CACHE": str(cwd / ".cache"), **ENV}
    env.pop("HYDRA_FULL_ERROR", None)
    with open(log, "w") as handle:
        return subprocess.Popen([sys.executable, "-m", "initbench", *args], cwd=cwd, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def file_events(sweep: Path) -> tuple[set, set]:
    """Every checkpoint version (a new inode per atomic write) and every finished run now under `sweep`."""
    checkpoints, summaries = set(), set()
    if sweep.is_dir():
        for run in os.scandir(sweep):
            try:
                stat = os.stat(os.path.join(run.path, "checkpoint.pt"))
                checkpoints.add((run.name, stat.st_ino, stat.st_mtime_ns, stat.st_size))
            except OSError:
                pass
            if os.path.exists(os.path.join(run.path, "summary.csv")):
                summaries.add(run.name)
    return checkpoints, summaries


def run_until_killed(process: subprocess.Popen, sweep: Path, kill: Kill) -> str:
    """Watch the sweep's files, SIGKILL the launch when `kill` says; describe the moment it landed."""
    started = time.monotonic()
    seen_checkpoints, seen_summaries = file_events(sweep)
    checkpoints = summaries = 0
    fire_at = started + kill.delay if kill.event == "time" else None
    while process.poll() is None:
        now = time.monotonic()
        if fire_at is None:
            current_checkpoints, current_summaries = file_events(sweep)
            checkpoints += len(current_checkpoints - seen_checkpoints)
            summaries += len(current_summaries - seen_summaries)
            seen_checkpoints, seen_summaries = current_checkpoints, current_summaries
            if (kill.event == "checkpoint" and checkpoints >= kill.count) or (
                    kill.event == "summary" and summaries >= kill.count):
                fire_at = now + kill.delay
        if fire_at is not None and now >= fire_at:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            finished = len(file_events(sweep)[1])
            return f"killed {now - started:.2f} s after launch ({kill}; {finished} runs finished by then)"
        time.sleep(0.005)
    return f"exited {process.returncode} before its kill ({kill})"


def check_parses(path: Path) -> None:
    """Every file a sweep leaves must be whole: parse it by its kind."""
    name = path.name
    assert not name.endswith(".tmp"), f"{path}: the temporary file of an interrupted write was left behind"
    assert name != "checkpoint.pt", f"{path}: a finished run kept its checkpoint"
    if name.endswith(".csv"):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = {"summary.csv": SUMMARY_COLUMNS, "metrics.csv": METRIC_COLUMNS}[name]
        assert rows and tuple(rows[0]) == columns, f"{path}: wrong header"
        assert all(None not in row and None not in row.values() for row in rows), f"{path}: a truncated row"
        if name == "metrics.csv":
            [float(row["value"]) for row in rows]
        else:
            assert len(rows) == 1, f"{path}: {len(rows)} summary rows"
    elif name.endswith(".yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), (dict, list)), f"{path}: empty or cut YAML"
    elif name.endswith(".json"):
        assert isinstance(json.loads(path.read_text()), dict), f"{path}: not a JSON object"
    elif name.endswith(".log"):
        path.read_text(encoding="utf-8")
    else:
        raise AssertionError(f"{path}: a file no run should leave")


def test_sweep_killed_at_random_moments_completes_as_if_never_interrupted(tmp_path: Path):
    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    uninterrupted = launch([*SWEEP, f"hydra.sweep.dir={reference}"], tmp_path, tmp_path / "reference.log")

    moments, logs = [], []
    for number, kill in enumerate(kill_plan(random.Random(PLAN_SEED))):
        logs.append(tmp_path / f"launch_{number}.log")
        process = launch([*SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path, logs[-1])
        moments.append(run_until_killed(process, sweep, kill))
        if process.returncode == 0:
            break
    logs.append(tmp_path / "launch_final.log")
    final = launch([*SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path, logs[-1])
    assert final.wait(timeout=300) == 0, logs[-1].read_text()[-3000:]
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]

    landed = [moment for moment in moments if moment.startswith("killed")]
    resumed = [(Path(folder).name, int(epoch)) for log in logs for folder, epoch in RESUMED.findall(log.read_text())]
    print(f"\n{len(landed)} kills survived, {len(logs)} launches; resumed (run, after epoch): {resumed}")
    print("\n".join(moments))
    assert len(landed) >= KILLS - 1, moments
    assert any(1 <= epoch < EPOCHS for _, epoch in resumed), f"no kill landed mid-training: {moments}"

    # Every run once, complete, and nothing else.
    table = collect_summaries(sweep)
    assert len(table) == len(INITS) * len(SEEDS) and table["run_id"].is_unique
    assert sorted(zip(table["init"], table["seed"])) == sorted((i, s) for i in INITS for s in SEEDS)
    assert set(table["epochs_done"]) == {EPOCHS} and not table["diverged"].any()
    run_dirs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in run_dirs] == sorted(table["run_id"])
    for path in sweep.rglob("*"):
        if path.is_file():
            check_parses(path)
    print(f"{len(table)} runs completed, {sum(1 for p in sweep.rglob('*') if p.is_file())} files parsed")

    # The kills changed nothing: every run equals its uninterrupted twin, resumed ones included.
    expected = collect_summaries(reference).set_index("run_id").drop(columns=["run_dir", *TIMING_COLUMNS])
    got = table.set_index("run_id").drop(columns=["run_dir", *TIMING_COLUMNS])
    assert got.sort_index().equals(expected.sort_index())
    for run_dir in run_dirs:
        twin = reference / run_dir.name
        for name in ("metrics.csv", "config.yaml"):
            assert (run_dir / name).read_bytes() == (twin / name).read_bytes(), f"{run_dir.name}/{name} differs"
    assert {name for name, _ in resumed} <= {p.name for p in run_dirs}


def test_relaunch_clears_what_a_kill_left_in_a_finished_run(cli_server, tmp_path: Path):
    """A kill between a run's summary and its checkpoint's removal leaves the checkpoint; a kill inside an atomic
    write leaves its temporary file. The next launch skips the finished run and removes both."""
    args = [*TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    assert cli_server.run(args, tmp_path).returncode == 0
    run = tmp_path / "run"
    summary, metrics = (run / "summary.csv").read_bytes(), (run / "metrics.csv").read_bytes()
    (run / "checkpoint.pt").write_bytes(b"left by a kill")
    (run / ".metrics.csv.k1ll3d.tmp").write_text("run_id,epoch,st")
    again = cli_server.run(args, tmp_path)
    assert again.returncode == 0 and "skip" in again.stdout + again.stderr
    assert not (run / "checkpoint.pt").exists() and not list(run.glob(".*.tmp"))
    assert (run / "summary.csv").read_bytes() == summary and (run / "metrics.csv").read_bytes() == metrics
