"""ImageNet ResNet-50/101 (torchvision's layout) and Fixup's ImageNet variant, checked against torchvision and
against Fixup's rule (hongyi-zhang/Fixup@f3fa449 imagenet/models/fixup_resnet_imagenet.py), computed here."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from initbench.inits import InitContext, apply_init
from initbench.models import build_model
from tests.run_fixtures import compose_config


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [50, 101])
def test_imagenet_resnet_has_torchvision_s_parameters(depth: int):
    cfg = compose_config([f"model=resnet{depth}", "init=kaiming"])
    ours = build_model(cfg.model, cfg.norm, 1000, (3, 224, 224))
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    assert count(ours) == count(reference)
    assert sorted(p.shape for p in ours.parameters()) == sorted(p.shape for p in reference.parameters())


def test_fixup_imagenet_resnet50_follows_the_rule():
    cfg = compose_config(["model=resnet50", "model.width=8", "init=fixup"])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.norm, 10, (3, 64, 64))
    apply_init(model, cfg.init, InitContext(cfg.model, cfg.norm))
    blocks = model.residual_blocks()
    assert len(blocks) == 16 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    scale = 16 ** (-1 / 4)  # L^(-1/(2m-2)) with m = 3 layers per branch
    first_two = [layer.weight for block in blocks for layer in block.branch_layers()[:2]]
    for weight in first_two:
        fan_out = weight.shape[0] * weight[0, 0].numel()
        expected = math.sqrt(2 / fan_out) * scale
        assert weight.std().item() == pytest.approx(expected, rel=0.35)
    pooled = torch.cat([w.flatten() / (math.sqrt(2 / (w.shape[0] * w[0, 0].numel())) * scale) for w in first_two])
    assert pooled.std().item() == pytest.approx(1.0, rel=0.03)  # all of them together: He fan_out x L^(-1/4)
    assert all(torch.count_nonzero(block.branch_layers()[-1].weight) == 0 for block in blocks)
    assert torch.count_nonzero(model.fc.weight) == 0 and torch.count_nonzero(model.fc.bias) == 0
    images = torch.randn(2, 3, 64, 64)
    assert torch.count_nonzero(model(images)) == 0  # zero classifier: logits 0 at init
    # every block is the identity on its stream except through the shortcut projections: a zero last conv
    block = blocks[1]
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    assert torch.equal(block(x), torch.relu(x))


def test_fixup_scalars_keep_bf16_activations_in_bf16_under_autocast():
    """A float32 scalar parameter would promote every activation after it to float32 (the GPU bench found Fixup's
    bf16 ResNet-50 at 0.67x the BN net's speed that way)."""
    cfg = compose_config(["model=resnet50", "model.width=4", "init=fixup"])
    model = build_model(cfg.model, cfg.norm, 10, (3, 32, 32))
    apply_init(model, cfg.init, InitContext(cfg.model, cfg.norm))
    seen = []
    for module in model.modules():
        if type(module).__name__ in ("ScalarBias", "ScalarScale"):
            module.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32)).float().sum().backward()
    assert len(seen) == 16 * 7 + 2 and set(seen) == {torch.bfloat16}  # 7 per block, the stem and classifier biases
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.numel() == 1)
