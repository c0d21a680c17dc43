"""Each reading of IDInit's unconfirmed rules (init.conv, init.idiz, init.classifier, init.tau, init.noise_on)
against the property the reading states, computed here."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from initbench.errors import ConfigError
from initbench.inits import InitContext, apply_init, check_init
from initbench.models import build_model


def resnet20(norm: str = "none") -> nn.Module:
    cfg = OmegaConf.create(dict(name="resnet20", arch="resnet", depth=20, width=16, widen_factor=1, block="basic",
                                layout="postact", shortcut="A", branch_scalars="none"))
    torch.manual_seed(0)
    return build_model(cfg, norm, 10)


def idinit(model: nn.Module, **options) -> nn.Module:
    apply_init(model, OmegaConf.create({"name": "idinit", **options}),
               InitContext(OmegaConf.create({"arch": "resnet"}), "none"))
    return model


def reads(weight: torch.Tensor) -> list[tuple[int, int, int]]:
    """For each output channel, the (input channel, kernel row, kernel column) of its single non-zero entry."""
    found = []
    for out in range(weight.shape[0]):
        nonzero = weight[out].nonzero().tolist()
        assert len(nonzero) == 1, f"output {out} reads {len(nonzero)} entries"
        found.append(tuple(nonzero[0]))
    return found


def test_the_flattening_order_decides_which_input_and_kernel_position_each_output_reads():
    stem = lambda conv: idinit(resnet20(), conv=conv).stem.weight.detach()  # noqa: E731  (3 -> 16 channels, 3x3)
    # c_in fastest: output m reads input m mod 3 at kernel position m // 3 (row-major over the 3x3 window)
    assert reads(stem("patch_cin_fastest")) == [(m % 3, (m // 3) // 3, (m // 3) % 3) for m in range(16)]
    # PyTorch's order (c_in slowest): output m reads input m // 9 at position m mod 9
    assert reads(stem("patch_torch")) == [(m // 9, (m % 9) // 3, (m % 9) % 3) for m in range(16)]
    # channel-maintain: output m reads input m mod 3 at the kernel centre
    assert reads(stem("channel")) == [(m % 3, 1, 1) for m in range(16)]


def test_channel_maintain_square_convs_are_exactly_the_identity():
    model = idinit(resnet20(), conv="channel")
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.stages[0][0].conv1(x), x)


@pytest.mark.parametrize("form", ["shift", "pad"])
def test_idiz_branch_outputs_are_epsilon_sized_with_the_stated_pattern(form):
    model = idinit(resnet20(), idiz=form, epsilon=1e-6)
    last = model.stages[0][0].conv2.weight.detach().flatten(1)  # patch-maintain matrix order: kh, kw, c_in
    matrix = model.stages[0][0].conv2.weight.detach().permute(0, 2, 3, 1).reshape(16, -1)
    rows, cols = matrix.shape  # 16 x 144: fewer outputs than inputs
    for m in range(rows):
        plus = (matrix[m] == 1e-6).nonzero().flatten().tolist()
        minus = (matrix[m] == -1e-6).nonzero().flatten().tolist()
        assert plus == [m]
        assert minus == ([m + 1] if form == "shift" else [j for j in range(rows, cols) if j % rows == m])
    assert last.abs().max() == pytest.approx(1e-6)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = model.stages[0][0].conv2(x)
    assert 0 < out.abs().max() < 1e-4  # O(eps) for inputs of order 1


@pytest.mark.parametrize(("classifier", "expected"), [("identity", "first features"), ("zero", "zero"),
                                                        ("default", "PyTorch")])
def test_the_classifier_reading(classifier, expected):
    untouched = resnet20().fc.weight.detach().clone()
    fc = idinit(resnet20(), classifier=classifier).fc
    features = torch.randn(5, fc.in_features)
    with torch.no_grad():
        if expected == "first features":
            assert torch.equal(fc(features), features[:, :10])
        elif expected == "zero":
            assert not fc.weight.any() and not fc.bias.any()
        else:
            assert torch.equal(fc.weight.detach(), untouched) and not fc.bias.any()


def test_tau_scales_the_identity_like_layers():
    model = idinit(resnet20(), tau=0.5, conv="channel")
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.stages[0][0].conv1(x), 0.5 * x)


def test_the_loose_condition_jitters_only_the_identity_entries_unless_told_otherwise():
    torch.manual_seed(1)
    on_identity = idinit(resnet20(), noise=1e-3, noise_on="identity").stages[0][0].conv1.weight.detach()
    torch.manual_seed(1)
    on_all = idinit(resnet20(), noise=1e-3, noise_on="all").stages[0][0].conv1.weight.detach()
    assert (on_identity != 0).sum() == 16  # one entry per output channel, jittered around tau
    assert ((on_identity[on_identity != 0] - 1).abs() < 1e-2).all()
    assert (on_all != 0).sum() == on_all.numel()


@pytest.mark.parametrize(("options", "message"), [({"tau": 0.0}, r"init\.tau=0\.0 must be > 0"),
                                                  ({"conv": "diagonal"}, r"init\.conv='diagonal' is not supported"),
                                                  ({"idiz": "zero"}, r"init\.idiz='zero' is not supported")])
def test_readings_the_rule_does_not_define_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        check_init(OmegaConf.create({"name": "idinit", **options}), OmegaConf.create({"arch": "resnet"}), "none")


def test_shortcut_b_replaces_option_a_zero_channels_with_repeated_identity():
    """Option A pads a width change with zero channels; with model.shortcut=B the identity-like 1x1 projection
    feeds every output channel: channel m and m + 16 both carry input channel m (at the stride-2 positions)."""
    cfg = OmegaConf.create(dict(name="resnet20", arch="resnet", depth=20, width=16, widen_factor=1, block="basic",
                                layout="postact", shortcut="B", branch_scalars="none"))
    block = idinit(build_model(cfg, "none", 10)).stages[1][0]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and torch.equal(out[:, 16:], x[:, :, ::2, ::2])
