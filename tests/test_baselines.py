"""The baselines the papers compare against, each against its defining property computed here: Zero-γ's branches
output 0, ZerO's weights are the Hadamard/identity rule and the same for every seed, stage-wise Hanin's gains
decay by 0.81 per block, LSUV's layers have unit output variance on the init batch with orthogonal directions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from initbench.errors import ConfigError
from initbench.inits import InitContext, apply_init, check_init
from initbench.inits.common import fans, residual_blocks, weight_layers
from initbench.models import build_model
from initbench.results.collect import collect_summaries
from tests.conftest import TINY, run_cli


def model_cfg(**changes) -> OmegaConf:
    base = dict(name="resnet20", arch="resnet", depth=20, width=4, widen_factor=1, block="basic", layout="postact",
                shortcut="A", branch_scalars="none")
    return OmegaConf.create({**base, **changes})


def initialised(init: dict, norm: str, seed: int = 0, batch: torch.Tensor | None = None, **changes):
    cfg = model_cfg(**changes)
    torch.manual_seed(seed)
    model = build_model(cfg, norm, 10)
    context = InitContext(cfg, norm, batch=(lambda: batch) if batch is not None else None)
    apply_init(model, OmegaConf.create(init), context)
    return model, context.report


def images(count: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- Zero-γ
@pytest.mark.parametrize("layout", ["postact", "preact"])
def test_zero_gamma_makes_every_block_its_shortcut(layout):
    model, _ = initialised({"name": "zero_gamma"}, "batchnorm", layout=layout)
    model.train()
    checked = 0
    for block in residual_blocks(model):
        x = torch.randn(8, block.branch_layers()[0].in_channels, 16, 16)
        identity = x if block.shortcut is None else block.shortcut(x)  # option A reads x in both layouts
        expected = F.relu(identity) if layout == "postact" else identity
        assert torch.equal(block(x), expected)
        checked += 1
    assert checked == 9
    assert all(layer.weight.abs().sum() > 0 for layer in weight_layers(model))  # the weights are Kaiming's


def test_zero_gamma_is_refused_without_bn_or_residual_branches():
    for cfg, norm in ((model_cfg(), "none"), (OmegaConf.create(dict(name="vgg19", arch="vgg", depth=19)), "batchnorm")):
        with pytest.raises(ConfigError, match="init=zero_gamma does not define .* residual nets with BN"):
            check_init(OmegaConf.create({"name": "zero_gamma"}), cfg, norm)


# ----------------------------------------------------------------------------------------------- ZerO
def sylvester(size: int) -> torch.Tensor:
    """Hadamard matrix by its closed form H[i, j] = (-1)^popcount(i & j)."""
    return torch.tensor([[(-1.0) ** bin(i & j).count("1") for j in range(size)] for i in range(size)])


def zero_rule(rows: int, cols: int) -> torch.Tensor:
    if rows <= cols:
        return torch.eye(rows, cols)
    size = 2 ** math.ceil(math.log2(rows))
    return sylvester(size)[:rows, :cols] / math.sqrt(size)  # I*(rows x 2^m) H I*(2^m x cols), scaled by 2^(-m/2)


def test_zero_hadamard_weights_follow_the_rule_and_ignore_the_seed():
    model, _ = initialised({"name": "zero_hadamard"}, "none")
    again, _ = initialised({"name": "zero_hadamard"}, "none", seed=7)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    last = {block.conv2 for block in residual_blocks(model)}
    seen_hadamard = 0
    for layer in weight_layers(model):
        weight = layer.weight.detach()
        if layer in last or layer is model.fc:
            assert not weight.any(), "the last conv of each branch and the classifier are 0"
            continue
        centre = weight[:, :, 1, 1]
        assert torch.allclose(centre, zero_rule(*centre.shape), atol=1e-7)
        off_centre = weight.clone()
        off_centre[:, :, 1, 1] = 0
        assert not off_centre.any()
        seen_hadamard += centre.shape[0] > centre.shape[1]
    assert seen_hadamard == 3  # the stem (3 -> 4) and the two widening convs (4 -> 8, 8 -> 16)
    assert set(torch.unique(model.stem.weight.detach().abs()).tolist()) == {0.0, 0.5}  # ±1 / sqrt(4)


# ----------------------------------------------------------------------------------------------- stage-wise Hanin
def test_wn_hanin_second_conv_gains_decay_by_0_81_per_block_position():
    model, _ = initialised({"name": "wn_hanin", "stem_gamma": None}, "weightnorm", layout="identity_stream",
                           shortcut="B", depth=14)
    for stage in model.stages:
        for position, block in enumerate(stage, start=1):
            for layer, gamma in ((block.conv1, 2.0), (block.conv2, 0.81**position)):
                g = layer.parametrizations.weight.original0.detach().flatten()
                fan_in, fan_out = fans(layer.weight)
                assert torch.allclose(g, torch.full_like(g, math.sqrt(gamma * fan_in / fan_out)), rtol=1e-6)
                v = layer.parametrizations.weight.original1.detach().flatten(1)
                gram = v @ v.T if v.shape[0] <= v.shape[1] else v.T @ v
                assert torch.allclose(gram, torch.eye(len(gram)), atol=1e-5)  # orthogonal directions
    with pytest.raises(ConfigError, match="init=wn_hanin does not define norm=batchnorm"):
        check_init(OmegaConf.create({"name": "wn_hanin"}), model_cfg(), "batchnorm")


# ----------------------------------------------------------------------------------------------- LSUV
@pytest.mark.parametrize("norm", ["none", "batchnorm"])
def test_lsuv_gives_every_layer_unit_output_variance_on_the_init_batch(norm):
    batch = images()
    model, report = initialised({"name": "lsuv"}, norm, batch=batch)
    assert not report.diverged
    variances, hooks = {}, []
    for layer in weight_layers(model):
        hooks.append(layer.register_forward_hook(
            lambda module, inputs, output: variances.__setitem__(module, output.var().item())))
    model.eval()
    with torch.no_grad():
        model(batch)
    for handle in hooks:
        handle.remove()
    assert len(variances) == len(weight_layers(model))
    assert all(abs(v - 1) <= 0.1 for v in variances.values()), sorted(variances.values())
    for layer in weight_layers(model):  # one scalar per layer on orthonormal rows (or columns)
        w = layer.weight.detach().flatten(1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(gram, gram[0, 0] * torch.eye(len(gram)), atol=1e-4 * gram[0, 0].item())


def test_lsuv_that_cannot_converge_ends_the_run_as_diverged_at_step_0(tmp_path: Path):
    done = run_cli([*TINY, "model.depth=8", "norm=none", "init=lsuv", "init.tolerance=1e-12",
                    "init.max_iterations=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = collect_summaries(tmp_path / "results").iloc[0]
    assert summary["diverged"] and summary["diverged_step"] == 0 and summary["epochs_done"] == 0
    assert "init=lsuv: layer stem still has output variance" in summary["diverged_reason"]


def test_lsuv_on_a_layer_with_no_signal_is_a_divergence_not_a_silent_half_init():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    context = InitContext(model_cfg(), "none", batch=lambda: torch.zeros(5, 4))  # every output is 0
    apply_init(model, OmegaConf.create({"name": "lsuv"}), context)
    assert context.report.diverged.startswith("init=lsuv: layer 0 has output variance 0")


def test_the_probe_compares_lsuv_with_the_other_schemes(tmp_path: Path):
    from initbench.train.runner import measure_job
    from tests.run_fixtures import compose_config

    cfg = compose_config([*TINY, "model.depth=8", "norm=none", "init=lsuv", "task=probe", "probe.batch_size=16",
                          "probe.hessian=false"])
    rows = measure_job(cfg, tmp_path)[0]
    assert any(r["quantity"] == "output_rms" and math.isfinite(r["value"]) for r in rows)
