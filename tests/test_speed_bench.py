"""scripts/bench.py keeps working: its CPU quick mode times every variant and profiles a step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
# One thread: on a shared 2-core machine two OpenMP threads stall each other; this keeps the test short.
TINY = ["--quick", "--nets", "resnet20", "--steps", "1", "--batch", "4", "--threads", "1", "--workers", "0"]


def bench(args: list[str]) -> str:
    result = subprocess.run([sys.executable, str(BENCH), *TINY, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_quick_bench_times_reference_and_ours_single_and_fused_and_projects_fixups_row():
    out = bench(["--repeats", "1", "--projection-runs", "2", "--eval-images", "16"])
    rows = {}
    for line in out.splitlines():
        if line.startswith("resnet20 "):
            runs, batch, images_per_s, *_ = line[33:].split()
            rows[(line[11:33].strip(), int(runs))] = float(images_per_s)
    assert set(rows) == {("reference", 1), ("ours fp32", 1), ("ours bf16+cl", 1), ("ours fp32", 2),
                         ("ours bf16+cl", 2)}
    assert all(value > 0 for value in rows.values())
    assert "x ref" in out and "x single" in out
    assert "Fixup ResNet-110 row: 5 seeds x 200 epochs" in out and out.count(" min (") == 2


def test_profile_splits_the_step_into_op_groups_data_and_overhead():
    out = bench(["--profile", "--profile-variants", "ours fp32"])
    assert out.count("profile: resnet20, ours fp32") == 2  # single and fused
    for part in ("wall per step", "host time outside ops", "conv/matmul", "data", "optimizer"):
        assert part in out


def test_regulariser_rows_time_cutout_and_mixup_against_crop_flip_alone():
    out = bench(["--repeats", "1", "--runs", "2", "--no-projection", "--regularisers"])
    for runs in (1, 2):
        assert re.search(rf"resnet20\s+ours \+cutout\+mixup\s+{runs}\s", out)
    ratios = [line.split() for line in out.split("(epoch throughput ratio):")[1].splitlines() if line.strip()]
    assert [r[:2] for r in ratios] == [["resnet20", "x1"], ["resnet20", "x2"]] and all(float(r[2]) > 0 for r in ratios)


def test_hessian_line_times_one_lambda_estimate_against_a_training_step():
    out = bench(["--repeats", "1", "--no-projection", "--hessian"])
    line = next(line for line in out.splitlines() if "one λ1 estimate" in line)
    assert line.split()[0] == "resnet20" and float(line.split("ratio")[1].split()[0]) > 1


def test_imagenet_loader_bench_times_ours_against_the_official_pipeline():
    result = subprocess.run([sys.executable, str(BENCH.parent / "bench_imagenet_loader.py"), "--images", "24",
                             "--batch", "8", "--workers", "1", "--repeats", "1", "--device", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == {"reference", "ours"} and "x ref 1.00" in lines["reference"]
    assert float(lines["ours"].split()[1]) > 0
