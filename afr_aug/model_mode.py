"""Switching a model to eval mode and back: the one place afr-aug changes train/eval flags.

Why: afr-aug's functions are called in the middle of a user's training loop (a refresh, an
evaluation, an attack, a classifier re-training); each must leave the model exactly as it
found it, including a sub-module the user froze on purpose (a BatchNorm in eval mode inside a
training model). Every function that needs another mode goes through these two context
managers instead of calling ``model.eval()`` / ``model.train()`` itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode", "preserved_modes"]


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module's train/eval flag back as it was on exit (also on exceptions).

    Why per module: ``model.train(flag)`` would also flip a BatchNorm the user froze on purpose.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block, every module's own mode restored afterwards.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training
    True
    """
    with preserved_modes(model):
        model.eval()
        yield model
