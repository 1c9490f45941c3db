"""Long-tail losses: Balanced Softmax, logit adjustment, LDAM, the DRW re-weighting schedule,
the influence-balanced loss (IB) and label-aware smoothing (MiSLAS).

All three take the per-class training counts ``class_counts`` (a plain
sequence of positive ints, e.g. ``[5000, 2997, ..., 50]``) because each one
corrects the bias that a long-tailed label distribution puts into the
classifier. Everything runs on CPU and CUDA: the count-derived tensors are
registered as buffers, so ``loss.to(device)`` moves them together with the
model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_class_counts, check_int, check_number, check_probability

__all__ = [
    "BalancedSoftmaxLoss",
    "IBLoss",
    "LDAMLoss",
    "LabelAwareSmoothingLoss",
    "LogitAdjustedLoss",
    "adjust_logits",
    "class_weights",
    "drw_weights",
]

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
        raise TypeError(
            f"targets must be an int64 tensor of class indices, got {type(targets).__name__}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(
            f"targets must be hard integer class indices (int64), got dtype {targets.dtype}; "
            "soft/one-hot targets are not supported"
        )
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets must have shape [N] = [{logits.shape[0]}] to match logits, "
            f"got shape {tuple(targets.shape)}"
        )
    targets = targets.long()
    if targets.numel() > 0 and bool(((targets < 0) | (targets >= num_classes)).any()):
        lo, hi = int(targets.min()), int(targets.max())
        raise ValueError(
            f"targets must lie in [0, {num_classes - 1}] for {num_classes} classes, "
            f"got values in [{lo}, {hi}]"
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

    log_prior: torch.Tensor  # buffer

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, reduction: str = "mean") -> None:
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

    log_prior: torch.Tensor  # buffer

    def __init__(
        self,
        class_counts: Sequence[float] | torch.Tensor,
        tau: float = 1.0,
        reduction: str = "mean",
    ) -> None:
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


def adjust_logits(
    logits: torch.Tensor, class_counts: Sequence[float], tau: float = 1.0
) -> torch.Tensor:
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
        raise ValueError(
            f"class_counts has {prior.numel()} entries but logits have {logits.shape[-1]} classes"
        )
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

    margins: torch.Tensor  # buffers
    weight: torch.Tensor | None

    def __init__(
        self,
        class_counts: Sequence[int] | torch.Tensor,
        max_m: float = 0.5,
        s: float = 30,
        weight: torch.Tensor | None = None,
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

    def _check_weight(self, weight) -> torch.Tensor | None:
        return None if weight is None else self._weight_tensor(weight)

    def _weight_tensor(self, weight) -> torch.Tensor:
        if not isinstance(weight, torch.Tensor):
            try:
                weight = torch.as_tensor(weight, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(
                    "weight must be a float tensor of shape [C] or None, "
                    f"got {type(weight).__name__}"
                ) from exc
        if weight.dim() != 1 or weight.numel() != self.num_classes:
            raise ValueError(
                f"weight must have shape [{self.num_classes}] (one entry per class), "
                f"got shape {tuple(weight.shape)}"
            )
        return weight.float() if not weight.is_floating_point() else weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return the LDAM loss of ``logits`` [N, C] for ``targets`` [N]."""
        targets = _check_inputs(logits, targets, self.num_classes)
        weight = self.weight
        if weight is not None:
            weight = _like(self._weight_tensor(weight), logits)
        margins = _like(self.margins, logits)
        one_hot = F.one_hot(targets, self.num_classes).to(logits.dtype)
        adjusted = logits - one_hot * margins[targets].unsqueeze(1)
        return F.cross_entropy(self.s * adjusted, targets, weight=weight, reduction=self.reduction)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, max_m={self.max_m}, s={self.s}, "
            f"reduction={self.reduction!r}"
        )


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
    if epoch < start_epoch:
        _check_beta(beta)
        return torch.ones(counts.numel(), dtype=torch.float32)
    return class_weights(counts, "effective", beta)


def _check_beta(beta) -> float:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not (0.0 <= beta < 1.0):
        raise ValueError(f"beta must be a number in [0, 1), got {beta!r}")
    return float(beta)


_WEIGHT_RULES = ("effective", "inverse")


def class_weights(
    class_counts: Sequence[float] | torch.Tensor, rule: str = "effective", beta: float = 0.9999
) -> torch.Tensor:
    """Per-class loss weights that up-weight the rare classes, normalised to sum to C.

    Why: re-weighting is the other half of most long-tail recipes (DRW, IB). Two rules:

    - ``"effective"``: Cui et al.'s class-balanced weights ``(1 - beta) / (1 - beta ** n_c)``
      ("effective number" of samples; what DRW switches on, and IB's ``CBReweight``);
    - ``"inverse"``: ``1 / n_c`` (IB's ``IBReweight``, the weighting of the IB rows).

    Returns a float32 CPU tensor [C] for any ``weight=`` argument.

    >>> class_weights([100, 10, 1], "inverse").tolist()          # 3 * (1/n) / sum(1/n)
    [0.027027027681469917, 0.2702702581882477, 2.702702760696411]
    >>> round(float(class_weights([100, 10, 1]).sum()), 4)
    3.0
    >>> class_weights([3, 1], "median")
    Traceback (most recent call last):
    ...
    ValueError: rule must be one of ('effective', 'inverse'), got 'median'
    """
    counts = check_class_counts(class_counts)
    if rule not in _WEIGHT_RULES:
        raise ValueError(f"rule must be one of {_WEIGHT_RULES}, got {rule!r}")
    if rule == "inverse":
        weights = 1.0 / counts
    else:
        beta = _check_beta(beta)
        # 1 - beta**n computed as -expm1(n * log(beta)) keeps precision for beta close to 1.
        effective = (
            torch.ones_like(counts) if beta == 0.0 else -torch.expm1(counts * math.log(beta))
        )
        weights = (1.0 - beta) / effective
    return (weights / weights.sum() * counts.numel()).float()


class IBLoss(nn.Module):
    """Influence-balanced loss (Park et al., ICCV 2021), switched on part-way through training.

    Why: on long-tailed data a few head-class samples near the decision boundary have a large
    influence on it and over-fit it. IB down-weights each sample by its influence, approximated
    by ``||softmax(z) - onehot(y)||_1 * ||h||_1`` with ``h`` the sample's embedding (the input of
    the classifier): ``loss_i = w_y * CE_i * alpha / (influence_i + eps)``, averaged over the
    batch. As in the authors' code the influence stays in the graph, the class weights ``w``
    default to ``1 / n_c`` (``weighting="inverse"``; ``"effective"`` gives their IB + CB
    variant, ``None`` none), ``gamma > 0`` gives IB + Focal (``(1 - e^-CE)^gamma`` times the
    weighted CE), and before ``start_epoch`` the loss is plain, unweighted cross-entropy: the
    authors train 100 of 200 epochs with CE and only then switch IB on (their code also drops
    the learning rate to a hundredth there: that is the schedule's business, not the loss's).

    Call it with the embedding: ``loss_fn(logits, targets, embedding)``; get both from one
    forward with :class:`afr_aug.Embedder` (any classifier). ``needs_embedding`` tells a
    generic loop so. Advance it with ``set_epoch(epoch)`` each epoch.

    Args:
        class_counts: training samples per class (needed for ``weighting``).
        alpha: the scale of the influence weight (1000 in the authors' CIFAR runs).
        eps: added to the influence before dividing (1e-3 in the paper).
        gamma: focal exponent; 0 is plain IB.
        weighting: ``"inverse"`` (default), ``"effective"`` or ``None`` (see :func:`class_weights`).
        start_epoch: the first epoch (0-based) of IB; earlier epochs use plain cross-entropy.

    >>> import torch
    >>> loss_fn = IBLoss([100, 10, 1], start_epoch=1)
    >>> logits, emb = torch.randn(4, 3, requires_grad=True), torch.rand(4, 8)
    >>> y = torch.tensor([0, 1, 2, 2])
    >>> bool(torch.isclose(loss_fn(logits, y, emb), torch.nn.functional.cross_entropy(logits, y)))
    True
    >>> loss_fn.set_epoch(1); loss_fn.active          # from now on: influence-balanced
    True
    >>> loss_fn(logits, y, emb).backward()
    >>> loss_fn(logits, y, emb[:2])
    Traceback (most recent call last):
    ...
    ValueError: embedding must have shape [4, D] (one row per logit row), got (2, 8)
    """

    needs_embedding = True

    weight: torch.Tensor | None  # buffer

    def __init__(
        self,
        class_counts: Sequence[int] | torch.Tensor | None = None,
        alpha: float = 1000.0,
        eps: float = 1e-3,
        gamma: float = 0.0,
        weighting: str | None = "inverse",
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.alpha = check_number(alpha, "alpha", minimum=0, strict=True)
        self.eps = check_number(eps, "eps", minimum=0, strict=True)
        self.gamma = check_number(gamma, "gamma", minimum=0)
        self.start_epoch = check_int(start_epoch, "start_epoch", minimum=0)
        if weighting is not None and class_counts is None:
            raise ValueError(f"weighting={weighting!r} needs class_counts (or pass weighting=None)")
        self.num_classes = None if class_counts is None else len(check_class_counts(class_counts))
        self.weighting = weighting
        # (class_counts is given whenever weighting is: checked above)
        weight = (
            None
            if weighting is None or class_counts is None
            else class_weights(class_counts, weighting)
        )
        self.register_buffer("weight", weight)
        self.epoch = 0

    @property
    def active(self) -> bool:
        """Whether the influence-balanced term is on (``epoch >= start_epoch``)."""
        return self.epoch >= self.start_epoch

    def set_epoch(self, epoch: int) -> None:
        """The 0-based epoch about to be trained: IB is on from ``start_epoch``."""
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, embedding: torch.Tensor
    ) -> torch.Tensor:
        """The loss of ``logits`` [N, C] for ``targets`` [N], given the embedding [N, D]."""
        targets = _check_inputs(logits, targets, self.num_classes or logits.shape[1])
        if (
            not isinstance(embedding, torch.Tensor)
            or embedding.ndim != 2
            or embedding.shape[0] != logits.shape[0]
        ):
            got = (
                tuple(embedding.shape)
                if isinstance(embedding, torch.Tensor)
                else type(embedding).__name__
            )
            raise ValueError(
                f"embedding must have shape [{logits.shape[0]}, D] (one row per "
                f"logit row), got {got}"
            )
        if not self.active:
            return F.cross_entropy(logits, targets)
        one_hot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        influence = (logits.softmax(1) - one_hot).abs().sum(1) * embedding.abs().sum(1)
        weight = None if self.weight is None else _like(self.weight, logits)
        ce = F.cross_entropy(logits, targets, weight=weight, reduction="none")
        if self.gamma > 0:
            ce = (1.0 - torch.exp(-ce)) ** self.gamma * ce
        return (ce * (self.alpha / (influence + self.eps))).mean()

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, eps={self.eps}, gamma={self.gamma}, "
            f"weighting={self.weighting!r}, start_epoch={self.start_epoch}"
        )


_SHAPES = ("concave", "linear", "convex", "exp")


class LabelAwareSmoothingLoss(nn.Module):
    """Label-aware smoothing (Zhong et al., CVPR 2021, MiSLAS): cross-entropy with a label
    smoothing that is strong for the head classes and weak for the tail.

    Why: a long-tailed model is over-confident on the head; smoothing every class alike also
    flattens the tail, whose predictions are under-confident already. MiSLAS gives class ``y``
    the smoothing ``eps_y`` between ``smooth_head`` (the largest class) and ``smooth_tail``
    (the smallest), along ``shape`` over the counts (``"concave"``: a sine, the authors'
    default; ``"linear"``, ``"convex"``, ``"exp"`` with ``power``), and the loss
    ``(1 - eps_y) * (-log p_y) + eps_y * mean_k(-log p_k)``, averaged over the batch. Used in
    MiSLAS's classifier re-training (:func:`afr_aug.decouple.retrain_mislas`); the authors'
    settings at imbalance 100 are 0.3 / 0.0 on CIFAR-10 and 0.4 / 0.1 on CIFAR-100.

    >>> import torch
    >>> loss_fn = LabelAwareSmoothingLoss([100, 10, 1], smooth_head=0.3, smooth_tail=0.0,
    ...                                   shape="linear")
    >>> [round(e, 4) for e in loss_fn.smoothing.tolist()]       # 0.3 * (n - 1) / 99
    [0.3, 0.0273, 0.0]
    >>> loss = loss_fn(torch.zeros(2, 3), torch.tensor([0, 2]))   # uniform logits: log 3
    >>> round(loss.item(), 4)
    1.0986
    """

    smoothing: torch.Tensor  # buffer

    def __init__(
        self,
        class_counts: Sequence[int] | torch.Tensor,
        smooth_head: float = 0.3,
        smooth_tail: float = 0.0,
        shape: str = "concave",
        power: float | None = None,
    ) -> None:
        super().__init__()
        counts = check_class_counts(class_counts)
        head = check_probability(smooth_head, "smooth_head")
        tail = check_probability(smooth_tail, "smooth_tail")
        if shape not in _SHAPES:
            raise ValueError(f"shape must be one of {_SHAPES}, got {shape!r}")
        if shape == "exp":
            power = check_number(power, "power", minimum=0, strict=True)
        self.num_classes, self.shape = int(counts.numel()), shape
        span = counts.max() - counts.min()
        t = (counts - counts.min()) / span if span > 0 else torch.ones_like(counts)
        if shape == "concave":
            smoothing = tail + (head - tail) * torch.sin(t * math.pi / 2)
        elif shape == "linear":
            smoothing = tail + (head - tail) * t
        elif shape == "convex":
            smoothing = head + (head - tail) * torch.sin(1.5 * math.pi + t * math.pi / 2)
        else:
            assert power is not None  # shape "exp": checked above
            smoothing = tail + (head - tail) * t.pow(power)
        self.register_buffer("smoothing", smoothing.float())

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of ``logits`` [N, C] for ``targets`` [N] (mean over the batch)."""
        targets = _check_inputs(logits, targets, self.num_classes)
        log_p = F.log_softmax(logits, dim=1)
        eps = _like(self.smoothing, logits)[targets]
        nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
        return ((1.0 - eps) * nll + eps * (-log_p.mean(1))).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, shape={self.shape!r}"
