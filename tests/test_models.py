"""Model families: parameter counts against the papers, counted independently of the code."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from initbench.config.schema import CONFIG_DIR
from initbench.config.schema import ModelConfig
from initbench.errors import ConfigError
from initbench.models import build_model


def model_config(name: str, **changes):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(f"{CONFIG_DIR}/model/{name}.yaml"))
    return OmegaConf.merge(cfg, changes)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def basic_resnet_params(n: int, classes: int = 10) -> int:
    """He et al. CIFAR ResNet with BN and option-A shortcuts, counted by hand: 3x3 convs, BN (2 per channel), fc."""
    total = 3 * 16 * 9 + 2 * 16
    in_channels = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += in_channels * width * 9 + width * width * 9 + 2 * (2 * width)
            in_channels = width
    return total + 64 * classes + classes


@pytest.mark.parametrize(("name", "n"), [("resnet20", 3), ("resnet56", 9), ("resnet110", 18)])
def test_basic_resnets_match_hand_count(name, n):
    assert count(build_model(model_config(name), "batchnorm", 10)) == basic_resnet_params(n)


@pytest.mark.parametrize(
    ("name", "classes", "paper_millions"),
    [("resnet56", 10, 0.85), ("resnet110", 10, 1.7), ("resnet164", 100, 1.7), ("wrn40_10", 10, 55.8)],
)
def test_parameter_counts_match_the_papers(name, classes, paper_millions):
    # The papers round to 2-3 significant digits (He et al. 2016a/b, Zagoruyko & Komodakis 2016).
    millions = count(build_model(model_config(name), "batchnorm", classes)) / 1e6
    assert millions == pytest.approx(paper_millions, rel=0.025)


@pytest.mark.parametrize("name", ["resnet20", "resnet164", "wrn40_10"])
@pytest.mark.parametrize("norm", ["batchnorm", "none", "weightnorm"])
def test_forward_shapes(name, norm):
    cfg = model_config(name, depth={"resnet20": 20, "resnet164": 29, "wrn40_10": 10}[name], widen_factor=1)
    model = build_model(cfg, norm, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.features(torch.randn(2, 3, 32, 32)).shape[0] == 2


def test_option_a_shortcut_keeps_input_in_the_first_channels():
    model = build_model(model_config("resnet20"), "batchnorm", 10)
    shortcut = model.stages[1][0].shortcut
    x = torch.randn(2, 16, 32, 32)
    out = shortcut(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2]) and not out[:, 16:].any()


@pytest.mark.parametrize(("name", "depth"), [("resnet56", 57), ("resnet164", 165), ("wrn40_10", 41)])
def test_impossible_depths_are_rejected(name, depth):
    with pytest.raises(ConfigError, match="not a valid depth"):
        build_model(model_config(name, depth=depth), "batchnorm", 10)
