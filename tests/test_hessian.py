"""λ1 of the loss Hessian (as Gilmer et al. 2022 use it): Lanczos and the products against exact answers the test
builds, the properties of the measurement (scaling, BN statistics, fused runs, Adam's preconditioning), the stability
limit it is compared with, and the runs, probe and errors around it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call

from initbench.config.values import parse_hessian_every
from initbench.errors import ConfigError
from initbench.measure.hessian import HessianOperator, estimate, lanczos, power_iteration
from initbench.models import build_model
from initbench.results.collect import collect_summaries
from initbench.optim import build_optimizer
from tests.conftest import TINY, run_cli

GILMER = OmegaConf.create(dict(method="lanczos", steps=20, batches=1, batch_fraction=0.0, batch_size=8, bn_mode="train",
                               augment=False, resample=False, arpit_quirks=False, trace_samples=0, ad="auto"))


def quadratic(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """A symmetric matrix with eigenvalues evenly spaced in 0.1..10, in a random basis (float64)."""
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    eigenvalues = torch.linspace(0.1, 10.0, n, dtype=torch.float64)
    return basis @ torch.diag(eigenvalues) @ basis.T, eigenvalues


def test_lanczos_finds_the_top_eigenvalue_of_a_known_spectrum():
    matrix, eigenvalues = quadratic()
    ritz = lanczos(lambda v: matrix @ v, 50, 20, torch.Generator().manual_seed(1), torch.float64, torch.device("cpu"))
    assert float(ritz[-1]) == pytest.approx(float(eigenvalues[-1]), rel=1e-4)
    assert float(ritz[-1]) <= float(eigenvalues[-1]) + 1e-9  # Ritz values never exceed λ1
    full = lanczos(lambda v: matrix @ v, 50, 50, torch.Generator().manual_seed(1), torch.float64, torch.device("cpu"))
    assert torch.allclose(full, eigenvalues, rtol=1e-8)  # k = n: the whole spectrum
    power = power_iteration(lambda v: matrix @ v, 50, 100, torch.Generator().manual_seed(1), torch.float64,
                            torch.device("cpu"))
    assert power == pytest.approx(10.0, rel=5e-3)  # slower than Lanczos: ~9.98 after 100 products


def tiny_mlp() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    return model, (x, torch.tensor([0, 1, 1, 0, 1, 0, 0, 1]))


def operator_of(model: nn.Module, batch, ad: str = "auto", cls: type = HessianOperator) -> HessianOperator:
    return cls(model, dict(model.named_parameters()), dict(model.named_buffers()), lambda: [batch], "train", ad)


def dense_hessian(model: nn.Module, batch) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces = dict(zip(names, (t.view(s) for t, s in zip(torch.split(theta, [s.numel() for s in shapes]), shapes))))
        return F.cross_entropy(functional_call(model, pieces, (batch[0],)), batch[1])

    return torch.autograd.functional.hessian(loss, flat)


def test_lambda_max_of_a_tiny_mlp_is_the_top_eigenvalue_of_its_built_hessian():
    model, batch = tiny_mlp()
    expected = torch.linalg.eigvalsh(dense_hessian(model, batch))[-1]
    ours = estimate(operator_of(model, batch), OmegaConf.merge(GILMER, {"steps": 26}), seed=0)  # 26 parameters
    assert ours.lambda_max == pytest.approx(float(expected), rel=1e-9)


def test_products_match_finite_differences_and_both_ad_modes_agree():
    model, batch = tiny_mlp()
    forward, reverse = operator_of(model, batch, "forward"), operator_of(model, batch, "reverse")
    v = torch.randn(forward.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(forward(v), reverse(v), rtol=1e-10, atol=1e-12)
    theta = forward.flat(list(forward.params.values()))

    def gradient(at: torch.Tensor) -> torch.Tensor:
        leaves = {n: t.clone().requires_grad_(True) for n, t in forward.unflat(at).items()}
        loss = F.cross_entropy(functional_call(model, leaves, (batch[0],)), batch[1])
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(leaves.values()))])

    numeric = (gradient(theta + 1e-4 * v) - gradient(theta - 1e-4 * v)) / 2e-4
    assert torch.allclose(forward(v), numeric, rtol=1e-6, atol=1e-8)


def test_scaling_the_loss_by_c_scales_lambda_max_by_c():
    class Scaled(HessianOperator):
        def _loss(self, params, images, labels):
            return 3.5 * super()._loss(params, images, labels)

    model, batch = tiny_mlp()
    plain = estimate(operator_of(model, batch), GILMER, seed=0).lambda_max
    scaled = estimate(operator_of(model, batch, cls=Scaled), GILMER, seed=0).lambda_max
    assert scaled == pytest.approx(3.5 * plain, rel=1e-8)


def test_the_preconditioned_value_equals_a_dense_computation():
    model, batch = tiny_mlp()
    denominator = torch.linspace(0.5, 3.0, 26, dtype=torch.float64)
    dense = torch.linalg.eigvals(torch.diag(1 / denominator) @ dense_hessian(model, batch)).real.max()
    ours = estimate(operator_of(model, batch), OmegaConf.merge(GILMER, {"steps": 26}), seed=0, denominator=denominator)
    assert ours.lambda_max == pytest.approx(float(dense), rel=1e-8)


def test_a_train_mode_measurement_leaves_bn_running_statistics_bit_identical():
    cfg = OmegaConf.create(dict(name="resnet8", arch="resnet", depth=8, width=4, widen_factor=1, block="basic",
                                layout="postact", shortcut="A", branch_scalars="none"))
    model = build_model(cfg, "batchnorm", 10)
    with torch.no_grad():  # running statistics that a batch would move
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    before = {n: b.clone() for n, b in model.named_buffers()}
    batch = (torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    value = estimate(operator_of(model, batch), OmegaConf.merge(GILMER, {"steps": 5}), seed=0).lambda_max
    assert math.isfinite(value) and value > 0
    assert all(torch.equal(before[n], b) for n, b in model.named_buffers())
    assert model.training  # the mode it was in


def test_heavy_ball_momentum_diverges_above_eta_lambda_3_8_and_not_below():
    """SGD with momentum 0.9, as the harness builds it, on a quadratic whose λ1 our Lanczos measures."""
    matrix, _ = quadratic(20)
    top = float(lanczos(lambda v: matrix @ v, 20, 20, torch.Generator().manual_seed(3), torch.float64,
                        torch.device("cpu"))[-1])
    outcomes = {}
    for product in (3.7, 3.9):
        theta = torch.nn.Parameter(torch.ones(20, dtype=torch.float64))
        optim = OmegaConf.create(dict(name="sgd", lr=product / top, momentum=0.9, nesterov=False, weight_decay=0.0,
                                      betas=[0.9, 0.999], eps=1e-8, lr_multipliers={}, no_weight_decay="",
                                      clip_grad_norm=0.0))
        optimizer = build_optimizer([("theta", theta)], optim)
        first = None
        for _ in range(400):
            loss = 0.5 * theta @ matrix @ theta
            first = loss.item() if first is None else first
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        outcomes[product] = not float(0.5 * theta @ matrix @ theta) <= 10 * first  # the runner's divergence rule
    assert outcomes == {3.7: False, 3.9: True}


def test_fused_runs_each_get_their_solo_lambda_max(tmp_path: Path):
    from tests.test_fused import finished, make_trainer

    measure = ["measure.hessian_every=[0,2]", "measure.hessian.batches=1", "measure.hessian.batch_size=8",
               "measure.hessian.steps=5", "epochs=1"]
    fused = make_trainer([0, 1], tmp_path / "fused", measure)
    fused.fit()
    for index, seed in enumerate((0, 1)):
        solo = make_trainer([seed], tmp_path / f"solo{seed}", measure)
        solo.fit()
        ours = [r for r in finished(fused, index)["run"].rows if r["metric"] == "hessian_lambda_max"]
        alone = [r for r in solo.runs[0].rows if r["metric"] == "hessian_lambda_max"]
        assert [r["step"] for r in ours] == [0, 2] == [r["step"] for r in alone]
        assert ours[0]["value"] == pytest.approx(alone[0]["value"], rel=1e-5)  # at init: the same parameters
        assert ours[1]["value"] == pytest.approx(alone[1]["value"], rel=1e-2)  # after 2 fused steps


def test_a_smoke_run_records_lambda_max_rows_and_the_probe_reports_it_at_init(tmp_path: Path):
    measure = ["model.depth=8", "measure.hessian.batches=1", "measure.hessian.batch_size=8", "measure.hessian.steps=4"]
    done = run_cli([*TINY, *measure, "measure.hessian_every=[0,epoch]"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = collect_summaries(tmp_path / "results").iloc[0]
    metrics = (Path(summary["run_dir"]) / "metrics.csv").read_text()
    assert metrics.count(",train,hessian_lambda_max,") == 2 and ",train,hessian_lambda_max_x_lr," in metrics
    assert summary["init_hessian_lambda_max"] > 0 and summary["max_hessian_lambda_max_x_lr"] > 0
    from initbench.results.plots import main_curvature

    figure = main_curvature(["--root", str(tmp_path / "results"), "--out", str(tmp_path / "figures")])
    assert figure["png"].stat().st_size > 5000
    drawn = figure["csv"].read_text().splitlines()
    assert drawn[0] == "method,step,lr,momentum,mean,std,n" and [line.split(",")[1] for line in drawn[1:]] == ["0", "4"]
    probed = run_cli([*TINY, *measure, "task=probe", "probe.batch_size=8"], tmp_path)
    assert probed.returncode == 0, probed.stderr[-3000:]
    probe = next((tmp_path / "results" / "runs").glob("probe-*/probe.csv")).read_text()
    assert "net,-1,net,hessian_lambda_max," in probe


def test_a_model_without_second_derivatives_is_refused_before_training():
    from initbench.measure.curvature import HessianMonitor
    from initbench.models.replicas import Replicas

    class NoSecondDerivative(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clamp(min=0)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            return grad.clone()  # no forward AD (no jvp), and its backward cannot be differentiated again

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    model.register_forward_hook(lambda module, inputs, output: NoSecondDerivative.apply(output))
    batch = (torch.randn(8, 3, 2, 2), torch.randint(0, 2, (8,)))
    cfg = OmegaConf.create({"measure": {"hessian": GILMER, "hessian_every": [0]}, "optim": {"name": "sgd"}})
    with pytest.raises(ConfigError, match="work in neither AD mode"):
        HessianMonitor(cfg, parse_hessian_every([0]), Replicas([model]), [0], [lambda: [batch]], 4, 1)


def test_adam_runs_also_get_the_preconditioned_value_after_their_first_step(tmp_path: Path):
    from tests.test_fused import make_trainer

    trainer = make_trainer([0], tmp_path, ["optim=adam", "optim.lr=0.001", "measure.hessian_every=[0,1]",
                                           "measure.hessian.batches=1", "measure.hessian.batch_size=8",
                                           "measure.hessian.steps=4", "epochs=1"])
    trainer.fit()
    rows = {(r["step"], r["metric"]): r["value"] for r in trainer.runs[0].rows if r["split"] == "train"}
    assert (0, "preconditioned_lambda_max") not in rows  # Adam has no denominator before its first step
    assert rows[(1, "preconditioned_lambda_max")] > rows[(1, "hessian_lambda_max")]  # P = sqrt(v) + eps is small
    assert rows[(1, "hessian_lambda_max_x_lr")] == pytest.approx(0.001 * rows[(1, "hessian_lambda_max")])


def test_a_non_finite_product_gives_nan_not_an_error():
    generator = torch.Generator().manual_seed(0)
    blown = lanczos(lambda v: v * math.inf, 5, 3, generator, torch.float64, torch.device("cpu"))
    assert math.isnan(float(blown[-1]))
    assert math.isnan(power_iteration(lambda v: v * math.nan, 5, 3, generator, torch.float64, torch.device("cpu")))


@pytest.mark.parametrize(("every", "steps"), [(4, [0, 4, 8]), ([0, 3, "epoch"], [0, 3, 5, 10]), ("epoch", [5, 10]),
                                              (None, [])])
def test_hessian_every_gives_the_measured_steps_for_a_period_a_list_or_one_entry(every, steps):
    schedule = parse_hessian_every(every).schedule(steps_per_epoch=5, epochs=2)
    assert schedule == steps  # measure.hessian_every=epoch: one entry
