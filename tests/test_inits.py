"""The init schemes of issue 5: each scheme's defining property, computed independently of its implementation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from initbench.config.schema import CONFIG_DIR
from initbench.config.schema import ModelConfig, register_configs
from initbench.errors import ConfigError
from initbench.inits import InitContext, apply_init, check_init
from initbench.models import build_model
from initbench.optim import build_optimizer
from tests.conftest import TINY, run_cli


def model_config(name: str, **changes):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(f"{CONFIG_DIR}/model/{name}.yaml"))
    return OmegaConf.merge(cfg, changes)


def initialised(model_cfg, norm: str, init: str, batch: torch.Tensor | None = None, seed: int = 0, **options):
    torch.manual_seed(seed)
    model = build_model(model_cfg, norm, 10)
    context = InitContext(model_cfg, norm, batch=(lambda: batch) if batch is not None else None)
    apply_init(model, OmegaConf.create({"name": init, **options}), context)
    return model


def composed(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def block_io(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """(block, its input, its output) for every residual block on the batch x."""
    seen = []
    handles = [block.register_forward_hook(lambda m, i, o: seen.append((m, i[0], o)))
               for stage in model.stages for block in stage]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return seen


def option_a(x: torch.Tensor, out_channels: int) -> torch.Tensor:
    """He et al.'s option-A shortcut, written out: every second pixel, then all-zero channels."""
    sub = x[:, :, ::2, ::2]
    return torch.cat([sub, sub.new_zeros(sub.shape[0], out_channels - sub.shape[1], *sub.shape[2:])], dim=1)


def expected_shortcut(block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return x if x.shape == out.shape else option_a(x, out.shape[1])


def he_fan_out_std(weight: torch.Tensor) -> float:
    c_out, _, kh, kw = weight.shape
    return math.sqrt(2.0 / (c_out * kh * kw))


# ----------------------------------------------------------------------------------------------------- fixup
def test_fixup_blocks_are_identity_and_logits_are_zero():
    model = initialised(model_config("resnet56", branch_scalars="fixup"), "none", "fixup")
    x = torch.randn(4, 3, 32, 32)
    io = block_io(model, x)
    assert len(io) == 27
    for block, block_in, block_out in io:
        # Block inputs are post-ReLU (>= 0), so ReLU(0 + shortcut(x)) is the shortcut itself, exactly.
        assert torch.equal(block_out, expected_shortcut(block, block_in, block_out))
    logits = model(x)
    assert not logits.any()
    assert F.cross_entropy(logits, torch.arange(4)).item() == pytest.approx(math.log(10), abs=1e-6)


@pytest.mark.parametrize(
    ("name", "changes", "blocks", "layers_per_branch"),
    [
        ("resnet110", {}, 3 * (110 - 2) // 6, 2),  # Fixup's CIFAR ResNet-110: L = 54, m = 2
        ("resnet164", {"depth": 56, "layout": "postact"}, 3 * (56 - 2) // 9, 3),  # bottlenecks: L = 18, m = 3
    ],
)
def test_fixup_rescales_the_other_branch_layers_by_L_to_the_minus_1_over_2m_minus_2(
        name, changes, blocks, layers_per_branch):
    cfg = model_config(name, branch_scalars="fixup", **changes)
    model = initialised(cfg, "none", "fixup", seed=3)
    torch.manual_seed(3)
    untouched = build_model(cfg, "none", 10)
    expected = blocks ** (-1.0 / (2 * layers_per_branch - 2))
    ratios, shortcut_ratios = [], []
    for stage in model.stages:
        for block in stage:
            convs = [block.conv1, block.conv2] + ([block.conv3] if layers_per_branch == 3 else [])
            assert len(convs) == layers_per_branch
            ratios += [conv.weight.std().item() / he_fan_out_std(conv.weight) for conv in convs[:-1]]
            assert not convs[-1].weight.any(), "the last layer of every branch is zero"
            if isinstance(block.shortcut, nn.Conv2d):
                shortcut_ratios.append(block.shortcut.weight.std().item() / he_fan_out_std(block.shortcut.weight))
    assert len(ratios) == blocks * (layers_per_branch - 1)
    assert sum(ratios) / len(ratios) == pytest.approx(expected, rel=0.02)
    assert min(ratios) > 0.85 * expected and max(ratios) < 1.15 * expected
    if shortcut_ratios:  # projections get plain He fan_out (official ImageNet code)
        assert sum(shortcut_ratios) / len(shortcut_ratios) == pytest.approx(1.0, rel=0.05)
    assert torch.equal(model.stem.weight, untouched.stem.weight), "the stem keeps PyTorch's default init"
    assert not model.fc.weight.any() and not model.fc.bias.any()


def test_fixup_resnet110_matches_the_official_parameter_count_scalars_and_optimizer_groups():
    cfg = composed(["+experiment=cifar10_resnet110", "init=fixup"])
    assert (cfg.norm, cfg.model.branch_scalars) == ("none", "fixup")
    model = initialised(cfg.model, cfg.norm, "fixup")
    # The official FixupResNet(FixupBasicBlock, [18, 18, 18]) counted by hand: bias-free 3x3 convs, option-A
    # shortcuts (no parameters), Linear(64, 10), and scalars: 4 biases + 1 scale per block, bias1 and bias2.
    n, widths = 18, (16, 32, 64)
    convs, in_channels = 3 * 16 * 9, 16
    for width in widths:
        convs += in_channels * width * 9 + width * width * 9 + (n - 1) * 2 * width * width * 9
        in_channels = width
    scalars = 5 * 3 * n + 2
    assert scalars == 272
    assert convs + 64 * 10 + 10 + scalars == 1_720_138
    assert sum(p.numel() for p in model.parameters()) == 1_720_138

    params = dict(model.named_parameters())
    official_scalar_names = {"bias1", "bias2"} | {
        f"layer{stage + 1}.{index}.{scalar}" for stage in range(3) for index in range(n)
        for scalar in ("bias1a", "bias1b", "bias2a", "bias2b", "scale")
    }
    ours_as_official = {
        {"stem_bias.bias": "bias1", "head_bias.bias": "bias2"}.get(name) or
        "layer{}.{}.{}".format(int(name.split(".")[1]) + 1, name.split(".")[2], name.split(".")[3])
        for name, p in params.items() if p.numel() == 1
    }
    assert ours_as_official == official_scalar_names
    assert all(p.shape == (1,) for p in params.values() if p.numel() == 1)
    assert all(p.item() == (1.0 if name.endswith("scale.scale") else 0.0)
               for name, p in params.items() if p.numel() == 1)

    # Official optimizer: names containing "bias" (216 block biases, bias1, bias2, fc.bias) or "scale" (54)
    # at lr/10, the rest (108 block convs, stem, fc weight) at lr; one weight decay for all.
    optimizer = build_optimizer(list(params.items()), cfg.optim)
    groups = {round(g["lr"] / cfg.optim.lr, 6): g for g in optimizer.param_groups}
    assert sorted(groups) == [0.1, 1.0]
    scalar_group = groups[0.1]["params"]
    assert (len(scalar_group), sum(p.numel() for p in scalar_group)) == (219 + 54, 228 + 54)
    assert len(groups[1.0]["params"]) == 110
    assert {g["weight_decay"] for g in optimizer.param_groups} == {cfg.optim.weight_decay}
    assert {g["momentum"] for g in optimizer.param_groups} == {cfg.optim.momentum}


# ------------------------------------------------------------------------------------------- rezero / skipinit
@pytest.mark.parametrize(("init", "norm"), [("rezero", "batchnorm"), ("rezero", "none"), ("skipinit", "none")])
def test_gates_start_at_zero_and_blocks_are_identity(init, norm):
    cfg = composed(["+experiment=smoke", f"init={init}"])
    expected_norm = "none" if init == "skipinit" else "batchnorm"  # SkipInit removes BN, ReZero keeps it
    assert cfg.norm == expected_norm
    model = initialised(cfg.model, norm, init)
    gates = [block.gate.scale for stage in model.stages for block in stage]
    assert len(gates) == 9 and all(g.item() == 0.0 for g in gates)
    x = torch.randn(4, 3, 32, 32)
    for block, block_in, block_out in block_io(model, x):
        assert torch.equal(block_out, expected_shortcut(block, block_in, block_out))


def test_rezero_gates_the_branch_after_its_relu():
    # ReZero's ResNet: x + a * ReLU(F(x)), no ReLU on the stream. With a = 1, out - x = ReLU(...) >= 0 everywhere
    # and some entries of the output are negative (a post-activation block would clip them).
    cfg = model_config("resnet20", branch_scalars="rezero")
    model = initialised(cfg, "batchnorm", "rezero", alpha=1.0)
    block = model.stages[0][1]
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        out = block(x)
    assert (out - x).min() >= 0 and (out - x).max() > 0 and out.min() < 0


# ----------------------------------------------------------------------------------------------------- wn_arpit
def wn_parts(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.parametrizations.weight.original0.flatten(), layer.parametrizations.weight.original1


@pytest.mark.parametrize(
    ("name", "changes", "stem_gamma"),
    [("resnet56_arpit", {"depth": 20}, 2.0), ("wrn40_10", {"depth": 10, "widen_factor": 2}, 1.0)],
)
def test_wn_arpit_gains_follow_the_formula_per_position(name, changes, stem_gamma):
    cfg = model_config(name, **changes)
    assert composed(["+experiment=smoke", "init=wn_arpit"]).norm == "weightnorm"
    model = initialised(cfg, "weightnorm", "wn_arpit")
    torch.manual_seed(0)
    untouched = build_model(cfg, "weightnorm", 10)
    per_stage = (cfg.depth - (4 if cfg.arch == "wrn" else 2)) // 6

    def expected_g(layer: nn.Module, gamma: float) -> float:
        return math.sqrt(gamma * layer.in_channels / layer.out_channels)

    positions = [(model.stem, stem_gamma)]
    for stage in model.stages:
        assert len(stage) == per_stage
        for block in stage:
            positions += [(block.conv1, 2.0), (block.conv2, 1.0 / per_stage)]
            if isinstance(block.shortcut, nn.Conv2d):
                positions.append((block.shortcut, 1.0))
    for layer, gamma in positions:
        g, v = wn_parts(layer)
        assert torch.allclose(g, torch.full_like(g, expected_g(layer, gamma)), rtol=1e-6)
        row_norms = layer.weight.flatten(1).norm(dim=1)  # the effective weight g * v / ||v||
        assert torch.allclose(row_norms, g, rtol=1e-5)
        assert not layer.bias.any()
        rows = v.flatten(1) / v.flatten(1).norm(dim=1, keepdim=True)
        if rows.shape[0] <= rows.shape[1]:
            assert torch.allclose(rows @ rows.T, torch.eye(rows.shape[0]), atol=1e-5), "orthogonal directions"
    assert any(isinstance(block.shortcut, nn.Conv2d) for stage in model.stages for block in stage)
    assert torch.equal(model.fc.weight, untouched.fc.weight), "the plain classifier keeps PyTorch's default"


def test_wn_arpit_feedforward_layers_get_gamma_2():
    torch.manual_seed(0)
    mlp = nn.Sequential(weight_norm(nn.Linear(20, 50)), nn.ReLU(), weight_norm(nn.Linear(50, 30)))
    context = InitContext(OmegaConf.create({"arch": "mlp"}), "weightnorm")
    apply_init(mlp, OmegaConf.create({"name": "wn_arpit"}), context)
    for layer in (mlp[0], mlp[2]):
        g, _ = wn_parts(layer)
        assert torch.allclose(g, torch.full_like(g, math.sqrt(2 * layer.in_features / layer.out_features)))


# --------------------------------------------------------------------------------------------------- wn_datadep
@pytest.mark.parametrize(
    ("name", "changes"),
    [("resnet56_arpit", {"depth": 20}), ("resnet20", {}), ("resnet164", {"depth": 29})],
)
def test_wn_datadep_normalises_every_preactivation_of_the_init_batch(name, changes):
    cfg = model_config(name, **changes)
    assert composed(["+experiment=smoke", "init=wn_datadep"]).norm == "weightnorm"
    batch = torch.randn(32, 3, 32, 32) * 0.7 + 0.2
    model = initialised(cfg, "weightnorm", "wn_datadep", batch=batch)
    outputs = {}
    wn_layers = [m for m in model.modules() if isinstance(m, nn.Conv2d) and hasattr(m, "parametrizations")]
    handles = [m.register_forward_hook(lambda m, i, o: outputs.__setitem__(m, o)) for m in wn_layers]
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    assert len(outputs) == len(wn_layers) >= 19
    for out in outputs.values():
        per_channel = out.transpose(0, 1).flatten(1)
        assert per_channel.mean(dim=1).abs().max() < 1e-4
        assert (per_channel.std(dim=1, unbiased=False) - 1).abs().max() < 1e-4


# ------------------------------------------------------------------------------------------------------ idinit
def test_idinit_square_layers_are_identity_and_non_square_layers_keep_the_variance():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 80), nn.Linear(80, 20))
    apply_init(mlp, OmegaConf.create({"name": "idinit"}), InitContext(OmegaConf.create({"arch": "mlp"}), "none"))
    x = torch.randn(4096, 32)
    with torch.no_grad():
        square, wide = mlp[0](x), mlp[1](x)
        narrow = mlp[2](torch.randn(4096, 80))
    assert torch.equal(square, x)
    assert wide.var().item() == pytest.approx(x.var().item(), rel=0.02)
    assert narrow.var().item() == pytest.approx(1.0, rel=0.05)
    assert torch.allclose(wide.var(dim=0), x.var(dim=0).repeat(3)[:80]), "each output copies one input"

    # In a ResNet: the square 1x1 conv of a bottleneck is the identity; a 1x1 projection to more channels
    # tiles its (subsampled) input; the classifier keeps the first `classes` features.
    model = initialised(model_config("resnet164", depth=29, shortcut="B"), "none", "idinit")
    first = model.stages[0][0]
    h = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert first.conv1.in_channels == first.conv1.out_channels == 16
        assert torch.equal(first.conv1(h), h)
        projected = model.stages[1][0].shortcut(torch.randn(2, 64, 8, 8))
        assert torch.equal(projected[:, :64], projected[:, 64:])
        features = torch.randn(5, model.fc.in_features)
        assert torch.equal(model.fc(features), features[:, :10])


def test_idinit_resnet_block_is_identity_up_to_epsilon_terms():
    model = initialised(model_config("resnet20"), "none", "idinit")
    x = torch.randn(4, 3, 32, 32)
    for block, block_in, block_out in block_io(model, x):
        reference = expected_shortcut(block, block_in, block_out)
        relative = ((block_out - reference).norm() / reference.norm()).item()
        assert 0 < relative < 1e-4, f"block is not identity + eps-size terms: {relative}"
    # Unlike an exactly zero last layer, the eps entries let gradients reach every branch's first conv.
    F.cross_entropy(model(x), torch.arange(4)).backward()
    assert all(block.conv1.weight.grad.abs().sum() > 0 for stage in model.stages for block in stage)


# ---------------------------------------------------------------------------------------- baselines, bad combos
@pytest.mark.parametrize("init", ["default", "kaiming", "xavier", "orthogonal"])
def test_baselines_run_on_resnets_without_normalisation(init):
    model = initialised(model_config("resnet20"), "none", init)
    assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


@pytest.mark.parametrize(
    ("init", "model_changes", "norm", "message"),
    [
        ("fixup", {"arch": "mlp"}, "none", "no residual branches"),
        ("fixup", {"branch_scalars": "none"}, "none", "model.branch_scalars=fixup"),
        ("skipinit", {"branch_scalars": "gate"}, "batchnorm", "norm=none"),
        ("wn_arpit", {"block": "bottleneck", "depth": 29, "layout": "preact"}, "weightnorm", "model.block=basic"),
        ("wn_datadep", {}, "none", "norm=weightnorm"),
        ("idinit", {}, "weightnorm", "norm=none or norm=batchnorm"),
    ],
)
def test_undefined_combinations_name_the_defined_ones(init, model_changes, norm, message):
    with pytest.raises(ConfigError, match=message):
        check_init(OmegaConf.create({"name": init}), model_config("resnet20", **model_changes), norm)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["init=fixup", "norm=batchnorm"], "norm=none"), (["init=wn_arpit", "norm=batchnorm"], "norm=weightnorm")],
)
def test_bad_combinations_fail_through_the_cli_before_training(workdir, overrides, message):
    result = run_cli([*TINY, *overrides], workdir)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    runs = workdir / "results" / "runs"
    assert not runs.exists() or not any(runs.iterdir())
