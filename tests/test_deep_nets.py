"""Deep plain and residual nets (issue: 10,000 layers): they build and train fast, each init does to depth what
its paper says (computed here, not copied from the inits), and checkpointing changes memory, not gradients."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from initbench.inits import InitContext, apply_init
from initbench.models import build_model
from tests.conftest import TINY, run_cli, write_idx_mnist
from tests.run_fixtures import compose_config


def built(overrides: list[str], input_shape: tuple[int, int, int] = (3, 32, 32), seed: int = 0,
          ) -> tuple[torch.nn.Module, DictConfig]:
    """The model and init of `python -m initbench OVERRIDES`, built and initialised as a run does."""
    cfg = compose_config(overrides)
    torch.manual_seed(seed)
    model = build_model(cfg.model, cfg.norm, 10, input_shape)
    apply_init(model, cfg.init, InitContext(cfg.model, cfg.norm))
    return model, cfg


def rms(tensor: torch.Tensor) -> float:
    return tensor.pow(2).mean().sqrt().item()


@pytest.mark.parametrize("overrides", [
    ["model=plain_cnn", "model.depth=1000", "model.width=4", "init=delta_orthogonal", "norm=none"],
    ["model=resnet110", "model.depth=998", "model.width=4", "init=fixup"],
], ids=["plain_cnn1000", "fixup_resnet998"])
def test_thousand_layer_nets_build_initialise_and_train_in_seconds(overrides: list[str]):
    started = time.perf_counter()
    model, _ = built(overrides)
    model(torch.randn(8, 3, 16, 16)).logsumexp(dim=1).mean().backward()
    assert time.perf_counter() - started < 60
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) >= 997


def test_delta_orthogonal_plain_cnn_is_dynamically_isometric():
    """Xiao et al.: tanh linearised at 0 (tanh'(0) = 1), centre-tap orthogonal kernels -> every singular value of
    the input-output Jacobian is 1. Kaiming's random kernels on the same net are far from it."""
    net = ["model=plain_cnn", "model.depth=24", "model.width=6", "model.downsample_at=[]", "norm=none"]
    image = torch.zeros(1, 3, 4, 4)

    def singular_values(init: str) -> torch.Tensor:
        model, _ = built([*net, f"init={init}"])
        jacobian = torch.autograd.functional.jacobian(model.body, image)
        return torch.linalg.svdvals(jacobian.reshape(6 * 16, 3 * 16))

    isometric = singular_values("delta_orthogonal")
    assert torch.allclose(isometric, torch.ones_like(isometric), atol=1e-4)
    spread = singular_values("kaiming")
    assert spread.max() / spread.min() > 10


def test_kaiming_keeps_a_plain_net_s_scale_and_explodes_a_residual_one():
    """He et al.'s variance argument holds layer by layer in a plain ReLU net; in a residual net without
    normalisation every block adds its own variance, so the output grows exponentially with depth."""
    images = torch.randn(64, 3, 8, 8)
    plain = [rms(built(["model=mlp", f"model.depth={depth}", "model.width=1024", "init=kaiming", "norm=none"],
                       (3, 8, 8))[0].body(images).detach()) for depth in (2, 32)]
    assert 0.5 < plain[1] / plain[0] < 2
    cifar = torch.randn(8, 3, 32, 32)
    residual = [rms(built(["model=resnet20", f"model.depth={depth}", "model.width=4", "init=kaiming",
                           "norm=none"])[0].features(cifar).detach()) for depth in (20, 110)]
    assert residual[1] / residual[0] > 1e4


def test_idinit_makes_a_plain_net_the_identity_where_shapes_allow():
    """IDInit: square layers are the identity, so past the first layer the net passes the first layer's output
    through unchanged (ReLU of a ReLU output is itself); the first layer keeps the first inputs (MLP: the
    truncated identity) or repeats the input channels (channel-maintain conv: output channel m reads m mod 3)."""
    images = torch.randn(4, 3, 4, 4)
    mlp, _ = built(["model=mlp", "model.depth=6", "model.width=16", "init=idinit", "norm=none"], (3, 4, 4))
    assert torch.equal(mlp.body(images), F.relu(images.flatten(1)[:, :16]))
    cnn, _ = built(["model=plain_cnn", "model.depth=6", "model.width=8", "model.downsample_at=[]",
                    "model.activation=relu", "init=idinit", "init.conv=channel", "norm=none"])
    assert torch.equal(cnn.body(images), F.relu(images[:, [m % 3 for m in range(8)]]))


@pytest.mark.parametrize("overrides", [
    ["model=plain_cnn", "model.depth=12", "model.width=4", "init=delta_orthogonal", "norm=none",
     "model.activation=relu"],
    ["model=resnet20", "model.width=4", "init=kaiming", "norm=batchnorm"],
    ["model=resnet20", "model.width=4", "init=fixup"],
], ids=["plain_cnn", "resnet_bn", "fixup"])
def test_checkpointing_changes_no_gradient_and_no_bn_statistic(overrides: list[str]):
    images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    results, saved = [], []
    for segments in (0, 3):
        model, _ = built([*overrides, f"model.checkpoint_segments={segments}"])
        counted = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: counted.append(t.numel()) or t, lambda t: t):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        saved.append(sum(counted))
        results.append(({n: p.grad for n, p in model.named_parameters()}, dict(model.named_buffers())))
    assert saved[1] < 0.6 * saved[0]  # the checkpointed forward keeps far fewer activations
    (plain_grads, plain_buffers), (checkpointed_grads, checkpointed_buffers) = results
    assert plain_grads.keys() == checkpointed_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, checkpointed_grads[name], rtol=1e-5, atol=1e-7), name
    for name, buffer in plain_buffers.items():
        assert torch.equal(buffer, checkpointed_buffers[name]), name


def test_mnist_mlp_with_weight_norm_trains_through_the_real_loader(tmp_path: Path):
    write_idx_mnist(tmp_path / "data" / "MNIST" / "raw")
    result = run_cli([*TINY, "dataset=mnist", f"dataset.root={tmp_path / 'data'}", "dataset.download=false",
                      "model=mlp", "model.depth=3", "model.width=32", "init=wn_arpit", "epochs=2", "optim.lr=0.05",
                      f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stderr
    summary = (tmp_path / "run" / "summary.csv").read_text()
    assert "mnist" in summary and "mlp3" in summary
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "norm: weightnorm" in config


def test_plot_signal_draws_the_probe_ratios_against_depth(tmp_path: Path):
    from initbench.results.plots import main_signal

    result = run_cli(["-m", *TINY, "task=probe", "probe.hessian=false", "probe.batch_size=64", "model=mlp",
                      "model.width=256", "model.depth=2,8", "init=kaiming,xavier", "norm=none",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert result.returncode == 0, result.stderr
    probes = sorted((tmp_path / "sweep").rglob("probe.csv"))
    assert len(probes) == 4
    paths = main_signal(["--root", str(tmp_path / "sweep"), "--out", str(tmp_path / "figures")])
    assert paths["png"].stat().st_size > 0
    import pandas as pd

    drawn = pd.read_csv(paths["csv"]).set_index(["method", "depth", "quantity"])["mean"]
    for probe in probes:  # each point is the probe's own output/input RMS ratio (one seed)
        rows = pd.read_csv(probe)
        net = rows[rows["layer"] == "net"].set_index("quantity")["value"]
        config = (probe.parent / "config.yaml").read_text()
        init = "kaiming" if "name: kaiming" in config else "xavier"
        depth = 8 if "depth: 8" in config else 2
        expected = net["output_rms"] / net["input_rms"]
        assert drawn[(f"{init}, norm=none", depth, "output_over_input_rms")] == pytest.approx(expected, rel=1e-9)
    ratio = {init: drawn[(f"{init}, norm=none", 8, "output_over_input_rms")]
             / drawn[(f"{init}, norm=none", 2, "output_over_input_rms")] for init in ("kaiming", "xavier")}
    assert 0.5 < ratio["kaiming"] < 2 and ratio["xavier"] < 0.3  # ReLU halves the variance per layer at gain 1


@pytest.mark.parametrize("model", ["plain_cnn", "mlp"])
def test_every_init_either_initialises_a_plain_net_or_refuses_it_clearly(model: str):
    from initbench.config.checks import validate
    from initbench.errors import ConfigError
    from initbench.inits import INIT_SCHEMES

    learned = {"gradinit", "metainit"}  # need training batches; tests/test_learned_inits.py covers them
    refused = {}
    for init in sorted(set(INIT_SCHEMES) - learned):
        overrides = [*TINY, f"model={model}", "model.depth=4", "model.width=8", f"init={init}"]
        try:
            validate(compose_config(overrides))
        except ConfigError as err:
            refused[init] = str(err)
            continue
        if init in ("lsuv", "wn_datadep"):  # data-dependent: checked end to end by the runs of the sweeps' tests
            continue
        net, _ = built(overrides, (3, 8, 8))
        assert torch.isfinite(net(torch.randn(2, 3, 8, 8))).all(), init
    assert set(refused) >= {"fixup", "rezero", "skipinit", "zero_gamma", "wn_hanin"}
    assert "delta_orthogonal" not in refused and "idinit" not in refused
    for init, message in refused.items():  # each names the scheme (or the scalars it set) and what it is defined for
        assert f"init={init}" in message or "needs residual branches" in message, (init, message)
        assert "defined for" in message, (init, message)
