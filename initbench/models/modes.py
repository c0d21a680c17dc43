"""The modes a measurement or a learned init runs a model in, besides plain train and eval."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """GradInit's mode: BN normalises with the batch's statistics and leaves its running statistics alone
    (train mode with track_running_stats off, as the code's GradInitBatchNorm2d does); dropout off."""
    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    for module in norms:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module, value in zip(norms, tracked):
            module.track_running_stats = value
        model.train(was_training)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """model.eval() for the block, then the mode the model had: BN is the affine map of its running statistics
    (MetaInit's mode; LSUV's and the Hessian's eval bn_mode)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
