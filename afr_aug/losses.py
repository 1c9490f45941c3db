"""Long-tail losses: Balanced Softmax, logit adjustment, LDAM and the DRW re-weighting schedule.

All three take the per-class training counts ``class_counts`` (a plain
sequence of positive ints, e.g. ``[5000, 2997, ..., 50]``) because each one
corrects the bias that a long-tailed label distribution puts into the
classifier. Everything runs on CPU and CUDA: the count-derived tensors are
registered as buffers, so ``loss.to(device)`` moves them together with the
model.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_class_counts, check_int, check_number

__all__ = ["BalancedSoftmaxLoss", "LogitAdjustedLoss", "adjust_logits", "LDAMLoss", "drw_weights"]

_REDUCTIONS = ("mean", "sum", "none")


def _like(t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``t`` on ``logits``' device and dtype; no ``Tensor.to`` call when it is already there
    (a loss moved with ``.to(device)`` then costs no copy per step)."""
    if t.device == logits.device and t.dtype == logits.dtype:
        return t
    return t.to(device=logits.device, dtype=logits.dtype)


def _check_inputs(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Validate ``(logits, targets)`` against the number of classes; return long targets."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(
            f"logits must be a floating-point tensor of shape [N, C], got "
            f"{logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__}"
        )
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape [N, C], got shape {tuple(logits.shape)}")
    if logits.shape[1] != num_classes:
        raise ValueError(
            f"class_counts has {num_classes} entries but logits have {logits.shape[1]} classes"
        )
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be an int64 tensor of class indices, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(
            f"targets must be hard integer class indices (int64), got dtype {targets.dtype}; "
            "soft/one-hot targets are not supported"
        )
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [N] = [{logits.shape[0]}] to match logits, got shape {tuple(targets.shape)}"
        )
    targets = targets.long()
    if targets.numel() > 0 and bool(((targets < 0) | (targets >= num_classes)).any()):
        lo, hi = int(targets.min()), int(targets.max())
        raise ValueError(
            f"targets must lie in [0, {num_classes - 1}] for {num_classes} classes, got values in [{lo}, {hi}]"
        )
    return targets


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class BalancedSoftmaxLoss(nn.Module):
    """Balanced Softmax cross-entropy (Ren et al., NeurIPS 2020).

    Why: on long-tailed data plain softmax learns the training label prior, so
    head classes win at test time. Adding ``log(n_c)`` to the logits *during
    training only* makes the network learn label-prior-free logits, so the raw
    ``model(x).argmax(1)`` is balanced at test time. Loss:
    ``cross_entropy(logits + log(class_counts), targets)``.

    Args:
        class_counts: training samples per class (positive ints), length C.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Targets must be hard integer class indices (int64; other integer dtypes
    are cast). Soft targets are rejected.

    >>> import torch
    >>> loss_fn = BalancedSoftmaxLoss([100, 10, 1])
    >>> logits = torch.zeros(2, 3, requires_grad=True)
    >>> loss = loss_fn(logits, torch.tensor([0, 2]))
    >>> round(loss.item(), 4)  # mean of -log(100/111) and -log(1/111)
    2.4069
    >>> loss.backward()
    """

    def __init__(self, class_counts: Sequence[int], reduction: str = "mean") -> None:
        super().__init__()
        counts = check_class_counts(class_counts)
        self.reduction = _check_reduction(reduction)
        self.num_classes = int(counts.numel())
        self.register_buffer("log_prior", counts.log().float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the balanced-softmax loss of ``logits`` [N, C] for ``targets`` [N]."""
        targets = _check_inputs(logits, targets, self.num_classes)
        prior = _like(self.log_prior, logits)
        return F.cross_entropy(logits + prior, targets, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"


def _log_prior(class_counts) -> torch.Tensor:
    counts = check_class_counts(class_counts)
    return (counts / counts.sum()).log()


class LogitAdjustedLoss(nn.Module):
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021), the training-time form.

    Why: like Balanced Softmax it makes the raw ``model(x).argmax(1)`` balanced at test time,
    with a temperature: ``cross_entropy(logits + tau * log(prior), targets)`` where
    ``prior = class_counts / sum(class_counts)``. ``tau = 1`` is Balanced Softmax (the log of
    the sum is a constant per row, which softmax ignores); Menon et al. report ``tau = 1``
    best on CIFAR-LT. Counts may be fractional, e.g. :func:`afr_aug.mixing.effective_class_counts`.

    >>> import torch
    >>> loss_fn = LogitAdjustedLoss([3, 1], tau=1.0)
    >>> round(loss_fn(torch.zeros(1, 2), torch.tensor([1])).item(), 4)   # -log(1/4)
    1.3863
    """

    def __init__(self, class_counts: Sequence[float], tau: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.tau = check_number(tau, "tau", minimum=0)
        self.reduction = _check_reduction(reduction)
        prior = _log_prior(class_counts)
        self.num_classes = int(prior.numel())
        self.register_buffer("log_prior", prior.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the logit-adjusted loss of ``logits`` [N, C] for ``targets`` [N]."""
        targets = _check_inputs(logits, targets, self.num_classes)
        prior = _like(self.log_prior, logits)
        return F.cross_entropy(logits + self.tau * prior, targets, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, tau={self.tau}, reduction={self.reduction!r}"


def adjust_logits(logits: torch.Tensor, class_counts: Sequence[float], tau: float = 1.0) -> torch.Tensor:
    """Post-hoc logit adjustment: ``logits - tau * log(prior)`` (Menon et al., ICLR 2021).

    Why: a model trained with plain cross-entropy on long-tailed data learns the label prior;
    subtracting it at test time removes the head-class bias with no retraining. It also corrects
    a model whose *training* prior differs from the one its loss assumed (e.g. CMO's mixed
    stream: pass :func:`afr_aug.mixing.effective_class_counts` divided by the counts the loss
    used). Works on any device and dtype; returns a new tensor.

    >>> import torch
    >>> adjust_logits(torch.zeros(1, 2), [3, 1]).exp().tolist()      # 1 / prior
    [[1.3333333730697632, 4.0]]
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError("logits must be a floating-point tensor [..., C]")
    prior = _log_prior(class_counts)
    if logits.shape[-1] != prior.numel():
        raise ValueError(f"class_counts has {prior.numel()} entries but logits have "
                         f"{logits.shape[-1]} classes")
    tau = check_number(tau, "tau", minimum=0)
    return logits - tau * prior.to(device=logits.device, dtype=logits.dtype)


class LDAMLoss(nn.Module):
    """Label-Distribution-Aware Margin loss (Cao et al., NeurIPS 2019).

    Why: rare classes get larger margins (``m_c ∝ n_c^(-1/4)``), which tightens
    their generalisation bound; with DRW (see :func:`drw_weights`) it is a strong
    long-tail baseline. The true-class logit is reduced by ``m_y``, all logits
    are scaled by ``s`` and a (optionally class-weighted) cross-entropy is taken.
    Margins are scaled so the rarest class gets exactly ``max_m``.

    Unlike the reference code this runs on CPU and CUDA (the margin is applied
    with a one-hot on the logits' device).

    Args:
        class_counts: training samples per class (positive ints), length C.
        max_m: largest margin (given to the rarest class), > 0.
        s: logit scale, > 0.
        weight: optional per-class weight tensor [C] for the cross-entropy. It
            is a buffer, so it can be replaced later (``loss.weight = w``, as DRW
            does) and moves with ``.to(device)``; set ``None`` for no weighting.
        reduction: ``"mean"`` (default; weighted mean when ``weight`` is set,
            as in ``F.cross_entropy``), ``"sum"`` or ``"none"``.

    >>> import torch
    >>> loss_fn = LDAMLoss([100, 10, 1], max_m=0.5, s=30)
    >>> [round(m, 3) for m in loss_fn.margins.tolist()]
    [0.158, 0.281, 0.5]
    >>> loss = loss_fn(torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 2]))
    >>> loss.backward()
    >>> loss_fn.weight = drw_weights([100, 10, 1], epoch=160)  # switch on DRW
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        max_m: float = 0.5,
        s: float = 30,
        weight: Optional[torch.Tensor] = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        counts = check_class_counts(class_counts)
        if not isinstance(max_m, (int, float)) or isinstance(max_m, bool) or not max_m > 0:
            raise ValueError(f"max_m must be a positive number, got {max_m!r}")
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not s > 0:
            raise ValueError(f"s must be a positive number, got {s!r}")
        self.num_classes = int(counts.numel())
        self.max_m = float(max_m)
        self.s = float(s)
        self.reduction = _check_reduction(reduction)
        margins = counts.pow(-0.25)
        margins = margins * (self.max_m / margins.max())
        self.register_buffer("margins", margins.float())
        self.register_buffer("weight", self._check_weight(weight))

    def _check_weight(self, weight) -> Optional[torch.Tensor]:
        if weight is None:
            return None
        if not isinstance(weight, torch.Tensor):
            try:
                weight = torch.as_tensor(weight, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"weight must be a float tensor of shape [C] or None, got {type(weight).__name__}") from exc
        if weight.dim() != 1 or weight.numel() != self.num_classes:
            raise ValueError(
                f"weight must have shape [{self.num_classes}] (one entry per class), got shape {tuple(weight.shape)}"
            )
        return weight.float() if not weight.is_floating_point() else weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the LDAM loss of ``logits`` [N, C] for ``targets`` [N]."""
        targets = _check_inputs(logits, targets, self.num_classes)
        weight = self.weight
        if weight is not None:
            weight = _like(self._check_weight(weight), logits)
        margins = _like(self.margins, logits)
        one_hot = F.one_hot(targets, self.num_classes).to(logits.dtype)
        adjusted = logits - one_hot * margins[targets].unsqueeze(1)
        return F.cross_entropy(self.s * adjusted, targets, weight=weight, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, max_m={self.max_m}, s={self.s}, reduction={self.reduction!r}"


def drw_weights(
    class_counts: Sequence[int],
    epoch: int,
    start_epoch: int = 160,
    beta: float = 0.9999,
) -> torch.Tensor:
    """Deferred Re-Weighting schedule (Cao et al. 2019) as per-class weights.

    Why: re-weighting from the start hurts representation learning, so DRW
    trains unweighted and only from ``start_epoch`` on uses the class-balanced
    "effective number" weights ``(1 - beta) / (1 - beta**n_c)`` (Cui et al.
    2019), normalised to sum to C. Before ``start_epoch`` all weights are 1.
    Returns a float32 CPU tensor [C]; pass it to ``LDAMLoss.weight`` (or any
    ``weight=`` argument).

    >>> drw_weights([100, 10, 1], epoch=0)
    tensor([1., 1., 1.])
    >>> w = drw_weights([100, 10, 1], epoch=160)
    >>> round(w.sum().item(), 4), bool(w[0] < w[1] < w[2])
    (3.0, True)
    """
    counts = check_class_counts(class_counts)
    epoch, start_epoch = check_int(epoch, "epoch"), check_int(start_epoch, "start_epoch")
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not (0.0 <= beta < 1.0):
        raise ValueError(f"beta must be a number in [0, 1), got {beta!r}")
    num_classes = counts.numel()
    if epoch < start_epoch:
        return torch.ones(num_classes, dtype=torch.float32)
    # 1 - beta**n computed as -expm1(n * log(beta)) keeps precision for beta close to 1.
    if beta == 0.0:
        effective = torch.ones_like(counts)
    else:
        effective = -torch.expm1(counts * math.log(beta))
    weights = (1.0 - beta) / effective
    weights = weights / weights.sum() * num_classes
    return weights.float()
