"""The probe: a network at initialization, one batch forward and backward, RMS of signals per layer.

`python -m initbench task=probe +experiment=... init=...` builds and initialises the model exactly as a
training run of that config and seed would (`build_initialized_model`), pushes one training batch of
`probe.batch_size` images (not augmented) through it in train mode, backpropagates the mean cross-entropy,
and writes `probe.csv` (tidy: `layer, index, kind, quantity, value`) in the run dir, or in seed_<s>/ per
seed when `seed=[...]`:
- every conv and linear layer (kind `conv` / `linear`): `act_rms` (RMS of its output), `grad_rms` (RMS of
  dLoss/d(output)) and `weight_grad_rms` (RMS of dLoss/d(weight); for a weight-normalised layer the
  gradient w.r.t. its effective weight g * v / ||v||);
- every residual block (kind `block`): `act_rms` and `grad_rms` of the block's output;
- `layer = net` (kind `net`, index -1): `input_rms` (the normalised images), `feature_rms` (the pooled
  representation fed to the classifier), `output_rms` (the logits) and `loss`.
`index` is the layer's position in depth: the order in which the forward pass enters the layers.
With `probe.hessian` (on by default) it adds `layer = net` `hessian_lambda_max`: λ1 of the training loss at init,
measured as `measure.hessian` says (initbench/measure/hessian.py) on the batches a training run would measure on.
A probe writes no summary.csv (it is not a training run) and runs in fp32 whatever `precision` says.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.utils import parametrize

from initbench.config import validate
from initbench.data import ImageData, load_dataset
from initbench.data.augment import Normalize
from initbench.data.sampler import TrainingSampler
from initbench.errors import ConfigError
from initbench.inits.common import residual_blocks
from initbench.results.files import write_csv
from initbench.train.runner import environment, run_dirs, write_run_record
from initbench.train.trainer import build_initialized_model, resolve_device

PROBE_FILE = "probe.csv"
PROBE_COLUMNS = ("layer", "index", "kind", "quantity", "value")
NET = "net"
SHOWN_BLOCKS = 12
PROBE_SEED_OFFSET = 20_000  # the probe batch's own stream (data/sampler.py lists the others)


def _rms(tensor: torch.Tensor) -> float:
    return tensor.detach().float().pow(2).mean().sqrt().item()


def probed_layers(model: nn.Module) -> dict[nn.Module, tuple[str, str]]:
    """module -> (name, kind) for every conv, linear and residual block of the model."""
    blocks = set(residual_blocks(model))
    layers = {}
    for name, module in model.named_modules():
        if module in blocks:
            layers[module] = (name, "block")
        elif isinstance(module, nn.Conv2d):
            layers[module] = (name, "conv")
        elif isinstance(module, nn.Linear):
            layers[module] = (name, "linear")
    return layers


def probe_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """One forward/backward pass in train mode; the probe's rows (see the module docstring)."""
    layers = probed_layers(model)
    order: dict[nn.Module, int] = {}  # module -> position in depth
    acts: dict[nn.Module, float] = {}
    grads: dict[nn.Module, float] = {}
    weights: dict[nn.Module, torch.Tensor] = {}
    captured: dict[str, torch.Tensor] = {}

    def enter(module: nn.Module, inputs: tuple) -> None:
        order.setdefault(module, len(order))

    def leave(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        acts[module] = _rms(output)
        if output.requires_grad:
            output.register_hook(lambda grad: grads.__setitem__(module, _rms(grad)))
        if layers[module][1] != "block":
            weight = module.weight  # inside parametrize.cached(): the very tensor this forward used
            if not weight.is_leaf:
                weight.retain_grad()
            weights[module] = weight

    def classifier_input(module: nn.Module, inputs: tuple) -> None:
        captured["features"] = inputs[0]

    handles = [module.register_forward_pre_hook(enter) for module in layers]
    handles += [module.register_forward_hook(leave) for module in layers]
    handles.append(model.fc.register_forward_pre_hook(classifier_input))
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        with parametrize.cached():
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
    finally:
        for handle in handles:
            handle.remove()

    rows = [
        {"layer": NET, "index": -1, "kind": NET, "quantity": quantity, "value": value}
        for quantity, value in (("input_rms", _rms(images)), ("feature_rms", _rms(captured["features"])),
                                ("output_rms", _rms(logits)), ("loss", loss.item()))
    ]
    for module, index in order.items():
        name, kind = layers[module]
        values = {"act_rms": acts.get(module), "grad_rms": grads.get(module)}
        if module in weights and weights[module].grad is not None:
            values["weight_grad_rms"] = _rms(weights[module].grad)
        rows += [{"layer": name, "index": index, "kind": kind, "quantity": quantity, "value": value}
                 for quantity, value in values.items() if value is not None]
    model.zero_grad(set_to_none=True)
    return rows


def probe_batch(data: ImageData, seed: int, size: int, normalize: Normalize) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` training images (normalised, not augmented) and labels, drawn by a generator of their own."""
    return TrainingSampler(data, seed, normalize, False, 0, torch.device("cpu"), PROBE_SEED_OFFSET)(size)


def format_probe(rows: list[dict]) -> str:
    """A short table: the net's quantities, then act/grad RMS of up to SHOWN_BLOCKS evenly spaced blocks."""
    net = {r["quantity"]: r["value"] for r in rows if r["layer"] == NET}
    lines = ["  ".join(f"{q} {net[q]:.4g}" for q in ("input_rms", "feature_rms", "output_rms", "loss"))]
    weight_grads = [r["value"] for r in sorted(rows, key=lambda r: r["index"])
                    if r["kind"] in ("conv", "linear") and r["quantity"] == "weight_grad_rms"]
    if weight_grads:  # how evenly the first step reaches the net: input and output ends
        lines.append(f"output/input rms {net['output_rms'] / net['input_rms']:.4g}  weight_grad_rms first layer "
                     f"{weight_grads[0]:.4g}  last layer {weight_grads[-1]:.4g}")
    blocks: dict[str, dict] = {}
    for r in rows:
        if r["kind"] == "block":
            blocks.setdefault(r["layer"], {"index": r["index"]})[r["quantity"]] = r["value"]
    names = list(blocks)
    if len(names) > SHOWN_BLOCKS:
        step = (len(names) - 1) / (SHOWN_BLOCKS - 1)
        names = [names[round(i * step)] for i in range(SHOWN_BLOCKS)]
    if names:
        lines.append(f"{'block':<14} {'index':>5} {'act_rms':>11} {'grad_rms':>11}")
        for name in names:
            b = blocks[name]
            lines.append(f"{name:<14} {b['index']:>5} {b.get('act_rms', float('nan')):>11.4g} "
                         f"{b.get('grad_rms', float('nan')):>11.4g}")
    return "\n".join(lines)


def hessian_at_init(cfg: DictConfig, model: nn.Module, data: ImageData, seed: int, device: torch.device) -> float:
    """λ1 at init, on the measurement batches of the training run of this config and seed."""
    from initbench.data.loaders import steps_per_epoch
    from initbench.measure.hessian import estimate, estimate_seed, settings_operator
    from initbench.train.curvature import measurement_batches

    batches = measurement_batches(cfg, data, seed, device, steps_per_epoch(len(data.train_labels), cfg.batch_size))
    operator = settings_operator(cfg.measure.hessian, model, dict(model.named_parameters()),
                                 dict(model.named_buffers()), batches)
    return estimate(operator, cfg.measure.hessian, estimate_seed(seed)).lambda_max


def probe_job(cfg: DictConfig, job_dir: Path) -> list[list[dict]]:
    """Probe the model of this config at init, once per seed; write probe.csv (+ config, env) per seed."""
    validate(cfg)
    size = cfg.probe.get("batch_size") if OmegaConf.is_dict(cfg.probe) else None
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"probe.batch_size={size!r} must be a whole number >= 1 (images in the probe batch).")
    device = resolve_device(cfg.device)
    data = load_dataset(cfg.dataset)
    normalize = Normalize(cfg.dataset.mean, cfg.dataset.std, torch.device("cpu"))
    env = environment(device)
    results = []
    # The hooks must see each layer once: no checkpointed recomputation (checkpointing changes no value).
    unsegmented = OmegaConf.merge(cfg, {"model": {"checkpoint_segments": 0}})
    for seed, directory in run_dirs(cfg, job_dir):
        model = build_initialized_model(unsegmented, seed, data, device).model.to(device)
        images, labels = probe_batch(data, seed, size, normalize)
        rows = probe_model(model, images.to(device), labels.to(device))
        if cfg.probe.get("hessian", True):
            rows.append({"layer": NET, "index": -1, "kind": NET, "quantity": "hessian_lambda_max",
                         "value": hessian_at_init(cfg, model, data, seed, device)})
        write_run_record(directory, cfg, seed, env)
        write_csv(directory / PROBE_FILE, rows, PROBE_COLUMNS)
        print(f"probe of {cfg.model.name} norm={cfg.norm} init={cfg.init.name} seed={seed} "
              f"({len(labels)} images, train mode)\n{format_probe(rows)}\nwritten: {directory / PROBE_FILE}")
        results.append(rows)
    return results
