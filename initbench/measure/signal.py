"""Signal propagation at init: one batch forward and backward in train mode, the RMS of signals per layer.

`probe_model` returns tidy rows (`layer, index, kind, quantity, value`):
- every conv and linear layer (kind `conv` / `linear`): `act_rms` (RMS of its output), `grad_rms` (RMS of
  dLoss/d(output)) and `weight_grad_rms` (RMS of dLoss/d(weight); for a weight-normalised layer the
  gradient w.r.t. its effective weight g * v / ||v||);
- every residual block (kind `block`): `act_rms` and `grad_rms` of the block's output;
- `layer = net` (kind `net`, index -1): `input_rms` (the normalised images), `feature_rms` (the pooled
  representation fed to the classifier), `output_rms` (the logits) and `loss` (mean cross-entropy).
`index` is the layer's position in depth: the order in which the forward pass enters the layers.
The probe task (initbench/tasks/probe.py) runs it on the model a training run would start from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from initbench.inits.common import residual_blocks

PROBE_COLUMNS = ("layer", "index", "kind", "quantity", "value")
NET = "net"
SHOWN_BLOCKS = 12


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
