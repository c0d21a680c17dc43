"""K runs of one architecture trained as one: the interface the training loop sees.

With K = 1 this is the plain module. With K > 1 the runs' parameters and buffers (BN running
statistics included) are stacked along a new leading axis and the forward is vmapped over
them (convs become grouped convs), so every run keeps its own weights and statistics and
the gradient of the summed losses w.r.t. run k is run k's own gradient. Either way the loop
feeds inputs [K, B, ...] and gets logits [K, B, classes].
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Replicas:
    def __init__(self, models: list[nn.Module], compile: bool = False, channels_last: bool = False):
        self.count = len(models)
        # channels_last applies to the single-run path; vmapped convs pick their own layout.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.template = models[0]
        if self.count == 1:
            self._params = dict(models[0].named_parameters())
            self._buffers = dict(models[0].named_buffers())
            forward = models[0]
            self._forward = torch.compile(forward) if compile else forward
        else:
            self._params, self._buffers = stack_module_state(models)
            # The stacked tensors hold the state; the template only supplies the code (no storage).
            self.template = copy.deepcopy(models[0]).to("meta")
            call = self._call_stacked
            self._forward = vmap(call, in_dims=(0, 0, 0), randomness="different")
            self._forward_shared = vmap(call, in_dims=(0, 0, None), randomness="different")
            if compile:
                self._forward = torch.compile(self._forward)
                self._forward_shared = torch.compile(self._forward_shared)

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
        if self.count == 1:
            return self._forward(x.contiguous(memory_format=self.memory_format)).unsqueeze(0)
        return self._forward_shared(self._params, self._buffers, x)

    def _pick(self, tensor: torch.Tensor, run: int) -> torch.Tensor:
        return tensor if self.count == 1 else tensor[run]

    def run_state(self, run: int) -> dict[str, torch.Tensor]:
        """Run `run`'s parameters and buffers as a plain state dict (CPU copies)."""
        state = {**self._params, **self._buffers}
        return {name: self._pick(t, run).detach().cpu().clone() for name, t in state.items()}

    def load_run_states(self, states: list[dict[str, torch.Tensor]]) -> None:
        with torch.no_grad():
            for name, tensor in {**self._params, **self._buffers}.items():
                values = [s[name] for s in states]
                tensor.copy_(values[0] if self.count == 1 else torch.stack(values))

    def module(self, run: int) -> nn.Module:
        """A standalone module holding run `run`'s current weights (for probes and measurements)."""
        if self.count == 1:
            return self.template
        module = copy.deepcopy(self.template).to_empty(device=next(iter(self._params.values())).device)
        module.load_state_dict(self.run_state(run))
        return module

    def optimizer_run_state(self, optimizer: torch.optim.Optimizer, run: int) -> dict[str, dict]:
        """Run `run`'s slice of the optimizer state (momentum buffers etc.), keyed by parameter name."""
        result = {}
        for name, param in self._params.items():
            state = optimizer.state.get(param, {})
            result[name] = {
                key: (self._pick(value, run) if value.dim() > 0 else value).detach().cpu().clone()
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
                elif self.count == 1:
                    merged[key] = values[0].to(param.device)
                else:
                    merged[key] = torch.stack(values).to(param.device)
            if merged:
                optimizer.state[param] = merged
