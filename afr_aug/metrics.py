"""Evaluation metrics for long-tailed classification.

On a long-tailed training set the overall top-1 accuracy on the (balanced) test set hides
whether a method improves the tail or only the head, so the AFR paper, like LDAM/CMO, also
reports the mean per-class accuracy on Many-shot (> 100 training images), Medium-shot (20-100)
and Few-shot (< 20) classes. This module computes these numbers from model outputs
(:func:`top1_accuracy`, :func:`per_class_accuracy`, :func:`shot_accuracy`) or straight from a
model and a data loader (:func:`evaluate`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from .checks import check_finite, check_int, check_labels
from .embedding import run_inference
from .shots import shot_groups  # kept importable from here

__all__ = [
    "RunningAccuracy",
    "calibration_bins",
    "evaluate",
    "expected_calibration_error",
    "per_class_accuracy",
    "shot_accuracy",
    "shot_groups",
    "top1_accuracy",
]


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    try:
        return torch.as_tensor(x)
    except Exception as exc:
        raise TypeError(
            f"{name} must be a tensor, numpy array or sequence of numbers: {exc}"
        ) from exc


def _is_int_dtype(t: torch.Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _predictions(outputs, targets, num_classes: int | None = None):
    """Validate ``outputs`` / ``targets`` and return (pred, target) as CPU int64 tensors."""
    out = _as_tensor(outputs, "outputs")
    tgt = _as_tensor(targets, "targets")
    tgt = check_labels(tgt, "targets")
    if out.dim() == 2:
        if num_classes is not None and out.shape[1] != num_classes:
            raise ValueError(
                f"outputs has {out.shape[1]} columns (logits [N, C]), num_classes is {num_classes}"
            )
        if out.shape[1] == 0:
            raise ValueError("outputs has 0 columns; expected logits [N, C] with C >= 1")
        classes: int | None = out.shape[1]
        pred = out.argmax(dim=1)
    elif out.dim() == 1:
        if not _is_int_dtype(out):
            raise TypeError(
                "1-D outputs are read as predicted labels [N] and must be integers, "
                f"got dtype {out.dtype} (pass logits as [N, C])"
            )
        classes = num_classes
        pred = out
    else:
        raise ValueError(
            f"outputs must be logits [N, C] or predicted labels [N], got shape {tuple(out.shape)}"
        )
    if len(pred) != len(tgt):
        raise ValueError(f"outputs has {len(pred)} entries, targets {len(tgt)}")
    if len(tgt) == 0:
        raise ValueError("outputs and targets are empty; expected at least one sample")
    pred = check_labels(pred.to("cpu"), "predicted labels", num_classes=classes)
    return pred, check_labels(tgt.to("cpu"), "targets", num_classes=classes)


def top1_accuracy(outputs, targets) -> float:
    """Fraction of samples whose predicted class equals the label.

    Why: the headline number of every CIFAR-LT table; accepting either logits or labels lets it
    be used on raw model outputs or on stored predictions.

    ``outputs`` is logits ``[N, C]`` (the argmax is the prediction) or integer predicted labels
    ``[N]``; ``targets`` is integer labels ``[N]``. Returns a float in [0, 1].

    >>> top1_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]]), torch.tensor([0, 1, 1]))
    0.6666666666666666
    >>> top1_accuracy(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 0, 0]))
    0.75
    """
    pred, tgt = _predictions(outputs, targets)
    return (pred == tgt).sum().item() / len(tgt)


def per_class_accuracy(outputs, targets, num_classes: int) -> torch.Tensor:
    """Accuracy of each class (recall): correct predictions / test samples of that class.

    Why: on long-tailed data the head dominates overall accuracy; per-class accuracy shows what
    happens on tail classes and is the input to the Many/Med/Few report.

    Returns a float64 tensor ``[num_classes]``; a class with no test sample gets ``NaN`` (its
    accuracy is undefined, and NaN keeps it from silently counting as 0 or 1).

    >>> per_class_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 4)
    tensor([1.0000, 1.0000, 0.5000,    nan], dtype=torch.float64)
    """
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    pred, tgt = _predictions(outputs, targets, num_classes)
    total = torch.bincount(tgt, minlength=num_classes).to(torch.float64)
    correct = torch.bincount(tgt[pred == tgt], minlength=num_classes).to(torch.float64)
    acc = correct / total
    acc[total == 0] = float("nan")
    return acc


def shot_accuracy(
    per_class_acc,
    class_counts: Sequence[int],
    many: int = 100,
    few: int = 20,
) -> dict[str, float | None]:
    """Mean per-class accuracy over the Many-, Medium- and Few-shot classes.

    Why: the paper reports these three numbers to show where a long-tail method helps; the
    grouping follows the number of *training* images per class (see
    :func:`afr_aug.shots.shot_groups`: > ``many`` is Many, < ``few`` is Few, else Medium).

    Returns ``{"many": float | None, "med": ..., "few": ...}``; a group is ``None`` when it has
    no class (e.g. CIFAR-10-LT with ratio 100 has no Few class). Classes whose accuracy is NaN
    (no test sample) are left out of their group's mean; a group with only such classes is
    ``None``.

    >>> shot_accuracy([0.9, 0.7, 0.5, 0.1], class_counts=[500, 150, 50, 10])
    {'many': 0.8, 'med': 0.5, 'few': 0.1}
    >>> shot_accuracy([0.9, 0.5], class_counts=[500, 50])
    {'many': 0.9, 'med': 0.5, 'few': None}
    """
    if isinstance(per_class_acc, torch.Tensor):
        acc = per_class_acc.detach()
    else:
        try:
            acc = torch.as_tensor(per_class_acc, dtype=torch.float64)
        except Exception as exc:
            raise TypeError(f"per_class_acc must be a 1-D sequence of floats: {exc}") from exc
    if acc.dim() != 1:
        raise ValueError(f"per_class_acc must be 1-D [C], got shape {tuple(acc.shape)}")
    if not acc.is_floating_point():
        acc = acc.to(torch.float64)
    groups = shot_groups(class_counts, many=many, few=few)
    if len(groups) != len(acc):
        raise ValueError(f"per_class_acc has {len(acc)} entries, class_counts {len(groups)}")
    values = acc.to(torch.float64).tolist()
    result: dict[str, float | None] = {}
    for group in ("many", "med", "few"):
        vals = [v for v, g in zip(values, groups) if g == group and not math.isnan(v)]
        result[group] = sum(vals) / len(vals) if vals else None
    return result


def evaluate(
    model: torch.nn.Module,
    loader: Iterable,
    num_classes: int | None = None,
    class_counts: Sequence[int] | None = None,
    device=None,
    progress: bool = True,
    logit_scale: float = 1.0,
) -> dict[str, object]:
    """Evaluate a classifier on a data loader: top-1, per-class and Many/Med/Few accuracy.

    Why: one call gives every number of the paper's result tables, and it is safe to call in
    the middle of training: it runs one pass under ``torch.no_grad()`` in eval mode and then
    restores the train/eval mode of every sub-module exactly as it was. The model is never
    moved; batches are moved to ``device`` (default: the device of the model's parameters).

    ``loader`` yields ``(images, labels)`` batches (extra items after the first two are
    ignored); the model must return logits ``[B, C]``. ``num_classes`` defaults to
    ``len(class_counts)`` and then to the logits' width. ``class_counts`` (training images per
    class) enables the ``"many"``/``"med"``/``"few"`` entries, which are ``None`` otherwise.
    ``progress`` (default on, like every afr-aug pass over a dataset) shows a tqdm bar that is
    cleared when done. ``logit_scale`` multiplies the logits before the softmax of the
    calibration numbers only (accuracy does not depend on it): a cosine classifier's outputs
    lie in [-1, 1] and its loss scales them, e.g. ``LDAMLoss(...).s``; pass that scale so ECE
    measures the probabilities the model was trained to give.

    Returns ``{"top1": float, "per_class": list of float (NaN: class absent from the loader),
    "many": float | None, "med": ..., "few": ..., "ece": float, "calibration": dict}`` (``ece``:
    the :func:`expected_calibration_error` of the logits, 15 bins; ``calibration``: those bins'
    ``count``, ``confidence`` and ``accuracy`` as lists, NaN for an empty bin, for a
    reliability diagram).

    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> with torch.no_grad(): _ = model.weight.copy_(torch.eye(2))
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    >>> y = torch.tensor([0, 1, 1, 1])
    >>> res = evaluate(model, [(x[:2], y[:2]), (x[2:], y[2:])], class_counts=[200, 30],
    ...                progress=False)
    >>> res["top1"], res["per_class"], res["many"], res["med"], res["few"]
    (0.5, [1.0, 0.3333333333333333], 1.0, 0.3333333333333333, None)
    >>> model.training   # mode restored
    True
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(logit_scale, (int, float)) or isinstance(logit_scale, bool):
        raise TypeError(f"logit_scale must be a number, got {type(logit_scale).__name__}")
    if not math.isfinite(logit_scale) or logit_scale <= 0:
        raise ValueError(f"logit_scale must be a positive finite number, got {logit_scale!r}")
    num_classes = _expected_classes(num_classes, class_counts)
    out = run_inference(
        model,
        loader,
        device=device,
        progress=progress,
        desc="evaluate",
        indexed=False,
        keep_logits=True,
    )
    if num_classes is not None and out.num_classes != num_classes:
        raise ValueError(
            f"model returns {out.num_classes} logits per sample, num_classes is {num_classes}"
        )
    pred, tgt = out.predictions, out.labels
    per_class = per_class_accuracy(pred, tgt, out.num_classes)
    result: dict[str, object] = {
        "top1": top1_accuracy(pred, tgt),
        "per_class": per_class.tolist(),
        "many": None,
        "med": None,
        "few": None,
    }
    assert out.logits is not None  # keep_logits=True
    bins = calibration_bins(out.logits * float(logit_scale), tgt)
    result["ece"] = _ece_of(bins)
    result["calibration"] = {k: bins[k].tolist() for k in ("count", "confidence", "accuracy")}
    if class_counts is not None:
        result.update(shot_accuracy(per_class, class_counts))
    return result


def _expected_classes(num_classes, class_counts) -> int | None:
    """The number of classes :func:`evaluate` should see: ``num_classes``, else
    ``len(class_counts)``, else ``None`` (the logits' width decides); the two must agree."""
    if class_counts is not None:
        n_counts = len(list(class_counts))
        if num_classes is None:
            num_classes = n_counts
        elif n_counts != num_classes:
            raise ValueError(f"class_counts has {n_counts} entries, num_classes is {num_classes}")
    return None if num_classes is None else check_int(num_classes, "num_classes", minimum=1)


def calibration_bins(logits, labels, n_bins: int = 15) -> dict[str, torch.Tensor]:
    """Per-bin ``count``, mean ``confidence`` and ``accuracy`` of the top-1 softmax prediction.

    Why: a reliability diagram plots these; long-tail methods that re-weight logits (Balanced
    Softmax, logit adjustment, CMO) change calibration as much as accuracy (MiSLAS). Bins are
    equal-width over (0, 1], right-closed (a confidence of exactly 1 falls in the last bin);
    empty bins have confidence and accuracy NaN. Works on logits from any device.

    >>> import torch
    >>> bins = calibration_bins(torch.tensor([[4.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]), 2)
    >>> bins["count"].tolist(), [round(c, 3) for c in bins["confidence"].tolist()]
    ([1, 1], [0.5, 0.982])
    """
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    out = _as_tensor(logits, "logits")
    if out.dim() != 2 or not out.is_floating_point():
        raise ValueError(
            f"logits must be floating-point [N, C], got {out.dtype} {tuple(out.shape)}"
        )
    check_finite(out, "logits")
    pred, tgt = _predictions(out, labels)
    conf = torch.softmax(out.to("cpu", torch.float64), dim=1).max(dim=1).values
    hit = (pred == tgt).double()
    idx = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.bincount(idx, minlength=n_bins)
    with torch.no_grad():
        conf_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, conf)
        hit_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, hit)
    denom = count.double()
    nan = torch.full((n_bins,), float("nan"), dtype=torch.float64)
    return {
        "count": count,
        "confidence": torch.where(count > 0, conf_sum / denom.clamp(min=1), nan),
        "accuracy": torch.where(count > 0, hit_sum / denom.clamp(min=1), nan),
        "edges": torch.linspace(0, 1, n_bins + 1, dtype=torch.float64),
    }


def expected_calibration_error(logits, labels, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over the bins of
    :func:`calibration_bins` (Guo et al. 2017), as a fraction in [0, 1].

    >>> import torch
    >>> round(expected_calibration_error(torch.tensor([[4.0, 0.0], [0.0, 0.0]]),
    ...                                  torch.tensor([0, 1]), n_bins=2), 4)   # (0.018 + 0.5) / 2
    0.259
    """
    return _ece_of(calibration_bins(logits, labels, n_bins))


def _ece_of(bins: dict[str, torch.Tensor]) -> float:
    full = bins["count"] > 0
    gap = (bins["confidence"][full] - bins["accuracy"][full]).abs()
    weight = bins["count"][full].double() / bins["count"].sum()
    return float((gap * weight).sum())


class RunningAccuracy:
    """Per-class and overall accuracy of the training batches, counted as they go by.

    Why: §3.3 adapts each class's threshold to the accuracy the model has on it *during
    training* (on the mixed batches), recorded "just before identifying the minority or
    majority samples". Counting it from the logits the loop already has costs nothing; the
    counts live on ``device`` (give the training device), so updating never makes the host
    wait for a GPU; only :meth:`per_class` and :meth:`overall` read them back.

    Example:
        >>> acc = RunningAccuracy(num_classes=3)
        >>> logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0]])
        >>> acc.update(logits, torch.tensor([0, 1, 1]))
        >>> acc.per_class().tolist()[:2], round(acc.overall(), 3)
        ([1.0, 0.5], 0.667)
        >>> acc.per_class()[2].isnan().item()        # class 2 not seen yet
        True
    """

    def __init__(self, num_classes: int, device=None):
        self.num_classes = check_int(num_classes, "num_classes", minimum=1)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (e.g. at the start of an epoch)."""
        self.correct = torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)
        self.seen = torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch: ``logits`` [B, C] (or predictions [B]) against ``labels`` [B]."""
        if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise TypeError("logits and labels must be tensors")
        pred = logits.argmax(1) if logits.ndim == 2 else logits
        if logits.ndim == 2 and logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} columns, expected num_classes={self.num_classes}"
            )
        if pred.ndim != 1 or labels.ndim != 1 or len(pred) != len(labels):
            raise ValueError(
                f"expected logits [B, C] and labels [B], got {tuple(logits.shape)} "
                f"and {tuple(labels.shape)}"
            )
        if len(labels) == 0:
            return
        if self.correct.device != labels.device:
            self.correct = self.correct.to(labels.device)
            self.seen = self.seen.to(labels.device)
        labels = labels.long()
        hit = (pred == labels).to(self.correct.dtype)
        self.correct.index_add_(0, labels, hit)
        self.seen.index_add_(0, labels, torch.ones_like(hit))

    def per_class(self) -> torch.Tensor:
        """Accuracy per class, float [C] on the CPU; NaN for a class not seen."""
        correct, seen = self.correct.cpu(), self.seen.cpu()
        acc = (correct / seen.clamp(min=1)).float()
        acc[seen == 0] = float("nan")
        return acc

    def overall(self) -> float:
        """Accuracy over every counted image (NaN before the first update)."""
        seen = float(self.seen.sum())
        return float(self.correct.sum()) / seen if seen else float("nan")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"correct": self.correct.cpu().clone(), "seen": self.seen.cpu().clone()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        for key in ("correct", "seen"):
            t = torch.as_tensor(state_dict[key], dtype=torch.float64)
            if t.shape != (self.num_classes,):
                raise ValueError(
                    f"state's {key} has shape {tuple(t.shape)}, expected ({self.num_classes},)"
                )
            setattr(self, key, t.clone())

    def __repr__(self) -> str:
        return f"RunningAccuracy(num_classes={self.num_classes}, seen={int(self.seen.sum())})"
