"""K runs of one architecture trained as one: the interface the training loop sees.

With K = 1 this is the plain module. With K > 1 the runs' parameters and buffers (BN running
statistics included) are stacked along a new leading axis and the forward is vmapped over
them (convs become grouped convs), so every run keeps its own weights and statistics and
the gradient of the summed losses w.r.t. run k is run k's own gradient. Either way the loop
feeds inputs [K, B, ...] and gets logits [K, B, classes].

Under vmap the K runs' activations live as [B, K*C, H, W] (the grouped-conv layout, HFTA's trick),
and BN runs as one batch_norm over K*C channels followed by each run's affine (an extra multiply
and add per BN layer: torch's batching rule). With `compile_mode` set, torch.compile traces the
vmapped function itself (works on torch 2.14; `CompiledOrEager` falls back to eager if not).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger("initbench")


class CompiledOrEager:
    """`torch.compile(fn)`, or `fn` itself when compiling fails on the first call.

    Whether dynamo can trace a vmapped `functional_call` depends on the torch version (torch 2.14
    can); if it cannot, training goes on eagerly with a warning instead of stopping. The buffers
    (BN running statistics) are restored before the eager retry, so a failed attempt leaves no trace.
    """

    def __init__(self, fn: Callable, mode: str, buffers: dict[str, torch.Tensor], what: str):
        self.eager, self.what, self.buffers = fn, what, buffers
        self.fn = torch.compile(fn, mode=mode)
        self.checked = False
        # Modes that replay CUDA graphs: each call starts a new step, whose outputs the caller
        # consumes before the next call (the training step and the evaluation loop both do).
        self.graphs = mode in ("reduce-overhead", "max-autotune")

    def __call__(self, *args):
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        if self.checked:
            return self.fn(*args)
        saved = {name: buffer.clone() for name, buffer in self.buffers.items()}
        try:
            out = self.fn(*args)
        except Exception as err:  # dynamo and inductor raise many types
            with torch.no_grad():
                for name, buffer in self.buffers.items():
                    buffer.copy_(saved[name])
            log.warning("torch.compile failed for %s (%s: %s); running it eagerly", self.what,
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            self.fn = self.eager
            out = self.fn(*args)
        self.checked = True
        return out


def _channels_last_stacked(param: torch.Tensor) -> torch.Tensor:
    """A stacked conv weight [K, Cout, Cin, kh, kw] stored as [K, Cout, kh, kw, Cin]: the [K*Cout, Cin, kh, kw]
    weight of the grouped conv vmap runs is then a channels_last view, like the model's inputs, and cuDNN
    needs no layout conversion. Other parameters are returned as they are."""
    if param.dim() != 5:
        return param
    runs, c_out, c_in, kh, kw = param.shape
    strides = (c_out * kh * kw * c_in, kh * kw * c_in, 1, kw * c_in, c_in)
    stored = torch.empty_strided(param.shape, strides, dtype=param.dtype, device=param.device)
    with torch.no_grad():
        stored.copy_(param)
    return stored.requires_grad_(param.requires_grad)


class Replicas:
    """K models run as one: parameters and buffers stacked along a leading run dimension, the forward vmapped
    over it, so one kernel launch serves all K runs. K = 1 is the plain module, with no stacking or vmap."""

    def __init__(self, models: list[nn.Module], compile_mode: str | None = None, channels_last: bool = False,
                 data_parallel: torch.device | None = None):
        """`compile_mode`: None runs eagerly; otherwise a torch.compile mode ("default", "reduce-overhead", ...).
        `data_parallel`: this process's device in a distributed job (initbench/distributed.py); the training
        forward of the (single) model then runs through DistributedDataParallel, which all-reduces its gradients."""
        self.count = len(models)
        # Inputs arrive channels_last from the loader (evaluation batches are converted here); K = 1 models
        # come in channels_last, K > 1 conv weights are stacked so that their grouped form is channels_last.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.template = models[0]
        if self.count == 1:
            self._params = dict(models[0].named_parameters())
            self._buffers = dict(models[0].named_buffers())
            self._forward = self._forward_shared = models[0]
            if data_parallel is not None:
                device_ids = [data_parallel] if data_parallel.type == "cuda" else None
                self._forward = DistributedDataParallel(models[0], device_ids=device_ids)
        else:
            self._params, self._buffers = stack_module_state(models)
            if channels_last:
                self._params = {name: _channels_last_stacked(p) for name, p in self._params.items()}
            # The stacked tensors hold the state; the template only supplies the code (no storage).
            self.template = copy.deepcopy(models[0]).to("meta")
            call = self._call_stacked
            self._forward = vmap(call, in_dims=(0, 0, 0), randomness="different")
            self._forward_shared = vmap(call, in_dims=(0, 0, None), randomness="different")
        if compile_mode is not None:
            what = "the model" if self.count == 1 else f"{self.count} vmapped runs"
            self._forward = CompiledOrEager(self._forward, compile_mode, self._buffers, what)
            self._forward_shared = CompiledOrEager(self._forward_shared, compile_mode, self._buffers,
                                                   f"{what} (evaluation)")

    def _call_stacked(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), (x,))

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        return list(self._params.items())

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs [K, B, ...], one batch per run -> logits [K, B, classes]."""
        if self.count == 1:
            return self._forward(x[0].contiguous(memory_format=self.memory_format)).unsqueeze(0)
        return self._forward(self._params, self._buffers, x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """The same inputs [B, ...] for every run (evaluation) -> logits [K, B, classes]."""
        x = x.contiguous(memory_format=self.memory_format)
        if self.count == 1:
            return self._forward_shared(x).unsqueeze(0)
        return self._forward_shared(self._params, self._buffers, x)

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale each run's gradient so that its global L2 norm (over all its parameters) is at most `max_norm`,
        as torch.nn.utils.clip_grad_norm_ does for one model; each run by its own norm. Returns the norms [K]."""
        grads = [p.grad for p in self._params.values() if p.grad is not None]
        if self.count == 1:
            norms = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).unsqueeze(0)
        else:
            per_tensor = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [T, K]
            norms = torch.linalg.vector_norm(per_tensor, dim=0)
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        if self.count == 1:
            torch._foreach_mul_(grads, scale[0])
        else:
            for grad in grads:
                grad.mul_(scale.view(-1, *([1] * (grad.dim() - 1))))
        return norms

    def run_tensors(self, run: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Run `run`'s parameters and buffers as views on the device (no copy), for `functional_call` on
        `template`, whose own storage (meta for K > 1) is never read."""
        return ({name: self._pick(t, run) for name, t in self._params.items()},
                {name: self._pick(t, run) for name, t in self._buffers.items()})

    def _pick(self, tensor: torch.Tensor, run: int) -> torch.Tensor:
        return tensor if self.count == 1 else tensor[run]

    def run_state(self, run: int) -> dict[str, torch.Tensor]:
        """Run `run`'s parameters and buffers as a plain state dict (CPU copies)."""
        state = {**self._params, **self._buffers}
        # copy=True: one copy whether the tensor is on the GPU (.cpu() alone copies) or already on the CPU.
        return {name: self._pick(t, run).detach().to("cpu", copy=True) for name, t in state.items()}

    def load_run_states(self, states: list[dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, tensor in {**self._params, **self._buffers}.items():
                values = [s[name] for s in states]
                tensor.copy_(values[0] if self.count == 1 else torch.stack(values))

    def optimizer_run_state(self, optimizer: torch.optim.Optimizer, run: int) -> dict[str, dict]:
        """Run `run`'s slice of the optimizer state (momentum buffers etc.), keyed by parameter name."""
        result = {}
        for name, param in self._params.items():
            state = optimizer.state.get(param, {})
            result[name] = {
                key: (self._pick(value, run) if value.dim() > 0 else value).detach().to("cpu", copy=True)
                for key, value in state.items()
            }
        return result

    def load_optimizer_run_states(self, optimizer: torch.optim.Optimizer, states: list[dict[str, dict]]) -> None:
        # Step counters stay on the CPU unless the optimizer runs fused/capturable kernels.
        counters_on_device = any(g.get("fused") or g.get("capturable") for g in optimizer.param_groups)
        for name, param in self._params.items():
            merged = {}
            for key in states[0][name]:
                values = [s[name][key] for s in states]
                if values[0].dim() == 0:
                    merged[key] = values[0].to(param.device if counters_on_device else "cpu")
                else:
                    # In the parameter's own memory layout: fused kernels want state and parameter alike.
                    stacked = values[0] if self.count == 1 else torch.stack(values)
                    merged[key] = torch.empty_like(param).copy_(stacked)
            if merged:
                optimizer.state[param] = merged
