"""The papers' regularisers and optimiser details, each checked against a property the test computes itself:
cutout's hole placement and area, mixup's λ distribution and loss, per-run gradient clipping, weight-decay
exclusions, and the LR schedule stepped per iteration or per epoch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from initbench.config.values import Warmup
from initbench.data.augment import Normalize
from initbench.data.loaders import ResidentLoader, TorchLoader, data_generator
from initbench.errors import ConfigError
from initbench.models import build_model
from initbench.tasks.mixup import EpochMixing, draw_epoch_mixing
from initbench.optim import LRSchedule, build_optimizer
from initbench.models.replicas import Replicas

CPU = torch.device("cpu")
SIZE, HOLE = 32, 16
Z_999 = 3.0902  # standard normal quantile at 0.999: each statistical test below has a 1e-3 false-alarm rate
KS_999 = 1.9495  # Kolmogorov distribution quantile at 0.999


def chi_square_limit(dof: int) -> float:
    """Upper 1e-3 quantile of chi-square(dof) (Wilson-Hilferty)."""
    return dof * (1 - 2 / (9 * dof) + Z_999 * math.sqrt(2 / (9 * dof))) ** 3


# ----------------------------------------------------------------------------------------------- cutout
def flat_images(count: int) -> torch.Tensor:
    """Grey images: every pixel normalises to a non-zero value, so the only zeros are cutout's."""
    return torch.full((count, 3, SIZE, SIZE), 200, dtype=torch.uint8)


def decode_hole(zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hole centre (row, column) from each image's zero mask [N, H, W]: a 16-px hole clipped at the borders
    keeps at least one unclipped edge, which places its centre exactly."""
    def centre(along: torch.Tensor) -> torch.Tensor:  # along: [N, L] bool, which rows (columns) hold zeros
        first = along.float().argmax(dim=1)
        last = SIZE - 1 - along.flip(1).float().argmax(dim=1)
        return torch.where(first > 0, first + HOLE // 2, last + 1 - HOLE // 2)
    return centre(zero.any(dim=2)), centre(zero.any(dim=1))


def expected_zero_fraction() -> float:
    """E[hole area] / image area for a centre uniform over the 32x32 pixels, the hole [c-8, c+8) clipped."""
    side = sum(min(c + HOLE // 2, SIZE) - max(c - HOLE // 2, 0) for c in range(SIZE)) / SIZE
    return side * side / (SIZE * SIZE)


def test_cutout_holes_are_squares_centred_uniformly_and_zero_after_normalisation():
    count = 20 * SIZE * SIZE  # 20 images per centre
    loader = ResidentLoader(flat_images(count), torch.zeros(count, dtype=torch.long), 4096,
                            Normalize([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010], CPU), augment=False,
                            generators=[data_generator(0, CPU)], cutout=HOLE)
    batches = torch.cat([images[0] for images, _ in loader.epoch()])
    zero = batches == 0
    assert (zero.all(dim=1) == zero.any(dim=1)).all()  # every channel of a hole pixel is 0, nothing else is
    zero = zero[:, 0]
    rows, cols = decode_hole(zero)
    # The zeros are exactly the clipped square around the decoded centre.
    grid = torch.arange(SIZE)
    in_rows = (grid >= rows[:, None] - HOLE // 2) & (grid < rows[:, None] + HOLE // 2)
    in_cols = (grid >= cols[:, None] - HOLE // 2) & (grid < cols[:, None] + HOLE // 2)
    assert torch.equal(zero, in_rows[:, :, None] & in_cols[:, None, :])
    counts = torch.bincount(rows * SIZE + cols, minlength=SIZE * SIZE).double()
    expected = count / (SIZE * SIZE)
    assert ((counts - expected) ** 2 / expected).sum() < chi_square_limit(SIZE * SIZE - 1)
    fractions = zero.double().mean(dim=(1, 2))
    assert abs(fractions.mean() - expected_zero_fraction()) < Z_999 * fractions.std() / math.sqrt(count)


def test_reference_loader_cuts_the_same_holes():
    count = 2048
    torch.manual_seed(0)
    loader = TorchLoader(flat_images(count), torch.zeros(count, dtype=torch.long), 512, [0.4914, 0.4822, 0.4465],
                         [0.2023, 0.1994, 0.2010], augment=False, seed=0, num_workers=0, device=CPU, cutout=HOLE)
    zero = torch.cat([images[0] for images, _ in loader.epoch()])[:, 0] == 0
    rows, cols = decode_hole(zero)
    grid = torch.arange(SIZE)
    in_rows = (grid >= rows[:, None] - HOLE // 2) & (grid < rows[:, None] + HOLE // 2)
    in_cols = (grid >= cols[:, None] - HOLE // 2) & (grid < cols[:, None] + HOLE // 2)
    assert torch.equal(zero, in_rows[:, :, None] & in_cols[:, None, :])
    fractions = zero.double().mean(dim=(1, 2))
    assert abs(fractions.mean() - expected_zero_fraction()) < Z_999 * fractions.std() / math.sqrt(count)


# ----------------------------------------------------------------------------------------------- mixup
def kolmogorov_distance(samples: torch.Tensor, cdf) -> float:
    x, _ = samples.double().sort()
    n = len(x)
    theory = cdf(x)
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - theory
    below = theory - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


@pytest.mark.parametrize(("alpha", "cdf"), [
    (1.0, lambda x: x),  # Beta(1, 1) = uniform
    (0.5, lambda x: 2 / math.pi * torch.asin(torch.sqrt(x))),  # Beta(1/2, 1/2) = arcsine law
])
def test_mixup_lambda_follows_beta(alpha, cdf):
    steps = 5000
    lams = draw_epoch_mixing(alpha, [data_generator(0, CPU)], steps, 4).lams[0]
    assert kolmogorov_distance(lams, cdf) < KS_999 / math.sqrt(steps)


def test_mixup_partners_are_uniform_permutations_even_for_a_short_batch():
    steps = 6000
    mixing = draw_epoch_mixing(1.0, [data_generator(1, CPU)], steps, 8)
    seen = {}
    for step in range(steps):
        partner = mixing.step(step, 3).partner[0]  # a short last batch of 3 out of 8
        assert sorted(partner.tolist()) == [0, 1, 2]
        seen[tuple(partner.tolist())] = seen.get(tuple(partner.tolist()), 0) + 1
    assert len(seen) == 6
    expected = steps / 6
    assert sum((c - expected) ** 2 / expected for c in seen.values()) < chi_square_limit(5)


def test_mixup_step_trains_on_the_mixed_batch_with_the_lambda_combined_loss(tmp_path):
    from tests.test_fused import make_trainer

    trainer = make_trainer([0], tmp_path, ["train.mixup_alpha=1"])
    images, labels = next(iter(trainer.task.loader.epoch()))
    lam, partner = torch.tensor([0.3]), torch.randperm(labels.shape[1], generator=torch.Generator().manual_seed(5))
    # The epoch's mixing with this λ and partner at step 0 (the partner is the argsort of the keys).
    trainer.task.mixing = EpochMixing(lam[:, None], partner.argsort().float()[None, None])
    assert torch.equal(trainer.task.mixing.step(0, labels.shape[1]).partner[0], partner)
    model = copy.deepcopy(trainer.replicas.template)  # the weights before the step
    loss, hits, _ = trainer._train_step((images, labels), 0, 0)

    x, y = images[0], labels[0]
    logits = model(0.3 * x + 0.7 * x[partner])
    expected = 0.3 * F.cross_entropy(logits, y) + 0.7 * F.cross_entropy(logits, y[partner])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    predicted = logits.argmax(dim=1)
    expected_hits = 0.3 * (predicted == y).sum() + 0.7 * (predicted == y[partner]).sum()
    assert hits.item() == pytest.approx(expected_hits.item(), abs=1e-4)


# ----------------------------------------------------------------------------------------------- clipping
def tiny_models(count: int) -> list[nn.Module]:
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)))
    return models


def grads_of(x: torch.Tensor, models: list[nn.Module]) -> list[list[torch.Tensor]]:
    """Each model's gradient (unclipped) of the mean squared output on its own inputs."""
    return [torch.autograd.grad(model(inputs).pow(2).mean(), list(model.parameters()))
            for model, inputs in zip(models, x)]


def test_fused_clipping_clips_each_run_by_its_own_norm():
    x = torch.randn(3, 10, 6, generator=torch.Generator().manual_seed(0))
    x[2] *= 1e3  # run 2's gradient is huge
    norms = [torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])) for grads in grads_of(x, tiny_models(3))]
    bound = 2.0 * float(max(norms[0], norms[1]))
    assert norms[2] > 100 * bound

    replicas = Replicas(tiny_models(3))
    replicas(x).pow(2).mean(dim=(1, 2)).sum().backward()
    before = {name: p.grad.clone() for name, p in replicas.named_parameters()}
    reported = replicas.clip_grad_norm_(bound)
    assert torch.allclose(reported, torch.stack(norms).float(), rtol=1e-5)
    for run in range(3):
        clipped = [p.grad[run] for _, p in replicas.named_parameters()]
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in clipped]))
        assert norm <= bound * (1 + 1e-5)
        # The reference: torch.nn.utils.clip_grad_norm_ on this run alone.
        reference = tiny_models(3)[run]
        for param, grad in zip(reference.parameters(), [before[name][run] for name, _ in replicas.named_parameters()]):
            param.grad = grad.clone()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), bound)
        for ours, theirs in zip(clipped, reference.parameters()):
            assert torch.allclose(ours, theirs.grad, rtol=1e-5, atol=1e-8)
    for name, p in replicas.named_parameters():  # runs under the bound are left exactly as they were
        assert torch.equal(p.grad[:2], before[name][:2])


def test_single_run_clipping_matches_torch():
    model, reference = tiny_models(1)[0], tiny_models(1)[0]
    x = torch.randn(1, 10, 6, generator=torch.Generator().manual_seed(1)) * 100
    replicas = Replicas([model])
    replicas(x).pow(2).mean().backward()
    reference(x[0]).pow(2).mean().backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    replicas.clip_grad_norm_(0.5)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(ours.grad, theirs.grad, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------------------------- weight decay
def optim_cfg(**values):
    base = dict(name="sgd", lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.1, betas=[0.9, 0.999], eps=1e-8,
                lr_multipliers={}, no_weight_decay="", clip_grad_norm=0.0)
    return OmegaConf.create({**base, **values})


def bn_resnet() -> nn.Module:
    model_cfg = OmegaConf.create(dict(name="resnet8", arch="resnet", depth=8, width=4, widen_factor=1, block="basic",
                                      layout="postact", shortcut="A", branch_scalars="none"))
    return build_model(model_cfg, "batchnorm", 10)


def test_parameters_matched_by_no_weight_decay_do_not_decay():
    model = bn_resnet()
    named = list(model.named_parameters())
    before = {name: p.detach().clone() for name, p in named}
    optimizer = build_optimizer(named, optim_cfg(no_weight_decay="bn|norm"))
    for _, param in named:
        param.grad = torch.zeros_like(param)
    optimizer.step()  # pure weight decay: p <- p - lr * wd * p
    exempt = [name for name, _ in named if "bn" in name or "norm" in name]
    assert exempt and len(exempt) < len(named)
    for name, param in named:
        expected = before[name] if name in exempt else before[name] * (1 - 1.0 * 0.1)
        assert torch.allclose(param.detach(), expected, rtol=1e-6, atol=0), name


def test_a_no_weight_decay_regex_that_matches_nothing_is_an_error():
    with pytest.raises(ConfigError, match=r"no_weight_decay='batchnorm' matches no parameter .*stem\.weight"):
        build_optimizer(list(bn_resnet().named_parameters()), optim_cfg(no_weight_decay="batchnorm"))


# ----------------------------------------------------------------------------------------------- schedules
def schedule(name: str, interval: str, **extra) -> LRSchedule:
    cfg = OmegaConf.create(dict(name=name, milestones=extra.get("milestones", []), gamma=extra.get("gamma", 0.1),
                                interval=interval))
    return LRSchedule(cfg, Warmup(), steps_per_epoch=7, epochs=3)


def test_cosine_moves_every_step_by_default_and_per_epoch_on_request():
    total = 21
    per_step, per_epoch = schedule("cosine", "step"), schedule("cosine", "epoch")
    for t in range(total):
        assert per_step.factor(t) == pytest.approx(0.5 * (1 + math.cos(math.pi * t / total)), abs=1e-12)
        assert per_epoch.factor(t) == pytest.approx(0.5 * (1 + math.cos(math.pi * (t // 7) * 7 / total)), abs=1e-12)


def test_wrn_milestones_divide_by_five_at_their_steps():
    wrn = schedule("step", "step", milestones=[0.3, 0.6, 0.8], gamma=0.2)
    changes = [t for t in range(1, 21) if wrn.factor(t) != wrn.factor(t - 1)]
    assert changes == [round(0.3 * 21), round(0.6 * 21), round(0.8 * 21)]
    assert wrn.factor(20) == pytest.approx(0.2 ** 3)
