"""The probe at initialization (task=probe): its file, its numbers, and the depth behaviour the papers claim."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from initbench.config.schema import compose
from initbench.data import load_dataset
from initbench.measure.signal import PROBE_COLUMNS, probe_model
from initbench.tasks.probe import ProbeTask
from tests.conftest import TINY, run_cli
from tests.run_fixtures import initialized_model


def composed(overrides: list[str]):
    return compose(overrides)


def probe(overrides: list[str], batch_size: int) -> dict[tuple[str, str], float]:
    """The probe's code path without the CLI: (layer, quantity) -> value."""
    cfg = composed(["+experiment=smoke", "dataset.train_size=64", *overrides])
    data = load_dataset(cfg.dataset)
    model = initialized_model(cfg, 0, data).model
    images, labels = probe_batch(cfg, data, batch_size)
    return {(r["layer"], r["quantity"]): r["value"] for r in probe_model(model, images, labels)}


def probe_batch(cfg, data, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch the probe of seed 0 pushes through the model."""
    return ProbeTask(OmegaConf.merge(cfg, {"probe": {"batch_size": size}}), data, torch.device("cpu")).batch(0)


def rms(tensor: torch.Tensor) -> float:
    return tensor.detach().pow(2).mean().sqrt().item()


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == PROBE_COLUMNS
        return list(reader)


def test_probe_cli_writes_probe_csv_in_its_own_dir_and_leaves_training_runs_alone(workdir):
    trained = run_cli([*TINY, "init=fixup"], workdir)
    assert trained.returncode == 0, trained.stderr
    probed = run_cli([*TINY, "init=fixup", "task=probe", "probe.batch_size=8", "probe.hessian=false"], workdir)
    assert probed.returncode == 0, probed.stderr
    assert "feature_rms" in probed.stdout and "probe.csv" in probed.stdout
    assert "weight_grad_rms first layer 0  last layer" in probed.stdout  # Fixup: only the classifier learns

    runs = sorted((workdir / "results" / "runs").iterdir())
    assert len(runs) == 2, "a probe and a training run of the same config must not share a folder"
    probe_dir, train_dir = (runs[0], runs[1]) if runs[0].name.startswith("probe-") else (runs[1], runs[0])
    assert probe_dir.name == "probe-" + train_dir.name
    assert not (probe_dir / "summary.csv").exists() and (train_dir / "summary.csv").exists()
    assert not (train_dir / "probe.csv").exists()

    rows = read_rows(probe_dir / "probe.csv")
    net = {r["quantity"]: float(r["value"]) for r in rows if r["layer"] == "net"}
    assert set(net) == {"input_rms", "feature_rms", "output_rms", "loss"}
    assert net["output_rms"] == 0.0 and net["loss"] == pytest.approx(math.log(10), abs=1e-6)  # Fixup's zero logits
    kinds = {(r["kind"], r["quantity"]) for r in rows if r["layer"] != "net"}
    assert kinds == {("conv", "act_rms"), ("conv", "grad_rms"), ("conv", "weight_grad_rms"), ("linear", "act_rms"),
                     ("linear", "grad_rms"), ("linear", "weight_grad_rms"), ("block", "act_rms"), ("block", "grad_rms")}
    assert len({r["layer"] for r in rows if r["kind"] == "block"}) == 9
    # The zero classifier (Zhang et al. 2019) blocks every gradient behind it: only fc's weight gradient is non-zero.
    weight_grads = {r["layer"]: float(r["value"]) for r in rows if r["quantity"] == "weight_grad_rms"}
    assert weight_grads.pop("fc") > 0 and not any(weight_grads.values())

    again = run_cli([*TINY, "init=fixup"], workdir)
    assert again.returncode == 0 and "finished earlier" in again.stderr + again.stdout


def test_probe_numbers_match_a_hand_computation():
    cfg = composed(["+experiment=smoke", "dataset.train_size=64", "norm=none", "init=kaiming"])
    data = load_dataset(cfg.dataset)
    images, labels = probe_batch(cfg, data, 8)
    rows = probe_model(initialized_model(cfg, 0, data).model, images, labels)
    values = {(r["layer"], r["quantity"]): r["value"] for r in rows}
    index = {r["layer"]: r["index"] for r in rows}

    model = initialized_model(cfg, 0, data).model
    stem = model.stem(images)
    features = model.features(images)
    logits = model.fc(features)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    expected_logit_grad = (F.softmax(logits.detach(), dim=1) - F.one_hot(labels, 10)) / len(labels)
    assert values[("net", "input_rms")] == pytest.approx(rms(images), rel=1e-6)
    assert values[("net", "feature_rms")] == pytest.approx(rms(features), rel=1e-5)
    assert values[("net", "output_rms")] == pytest.approx(rms(logits), rel=1e-5)
    assert values[("net", "loss")] == pytest.approx(loss.item(), rel=1e-5)
    assert values[("stem", "act_rms")] == pytest.approx(rms(stem), rel=1e-5)
    assert values[("fc", "grad_rms")] == pytest.approx(rms(expected_logit_grad), rel=1e-5)
    assert values[("fc", "weight_grad_rms")] == pytest.approx(rms(model.fc.weight.grad), rel=1e-5)
    assert values[("stem", "weight_grad_rms")] == pytest.approx(rms(model.stem.weight.grad), rel=1e-4)
    # Position in depth: the order the forward pass enters the layers.
    assert index["stem"] == 0 < index["stages.0.0"] < index["stages.0.0.conv1"] < index["stages.0.0.conv2"]
    assert index["stages.0.0.conv2"] < index["stages.0.1"] < index["stages.2.2"] < index["fc"]


def test_probe_of_a_weight_normalised_net_reports_the_effective_weight_gradient():
    values = probe(["init=wn_arpit", "model=resnet56_arpit", "model.depth=20"], batch_size=8)
    conv_grads = [v for (layer, q), v in values.items() if q == "weight_grad_rms" and layer != "fc"]
    assert len(conv_grads) == 19 + 2 and all(math.isfinite(v) and v > 0 for v in conv_grads)


DEPTHS = (20, 56, 110)


@pytest.mark.parametrize("init", ["kaiming", "fixup", "idinit", "rezero"])
def test_signal_over_depth_explodes_for_kaiming_and_stays_bounded_for_identity_inits(init):
    ratios, logit_ratios = [], []
    for depth in DEPTHS:
        values = probe([f"init={init}", "norm=none", "model=resnet110", f"model.depth={depth}"], batch_size=16)
        ratios.append(values[("net", "feature_rms")] / values[("net", "input_rms")])
        logit_ratios.append(values[("net", "output_rms")] / values[("net", "input_rms")])
    if init == "kaiming":  # post-activation ResNet without BN: the variance roughly doubles per block
        assert ratios[0] < ratios[1] < ratios[2] and ratios[2] / ratios[0] > 1e3
        assert logit_ratios[0] < logit_ratios[1] < logit_ratios[2] and logit_ratios[2] / logit_ratios[0] > 1e3
    else:  # identity blocks: depth changes nothing but the sampled stem/classifier (rezero re-draws them)
        assert 0.05 < min(ratios) and max(ratios) < 5 and max(ratios) / min(ratios) < 2
        if init == "fixup":
            assert logit_ratios == [0.0, 0.0, 0.0]
        else:
            assert 0.05 < min(logit_ratios) and max(logit_ratios) < 5 and max(logit_ratios) / min(logit_ratios) < 2
