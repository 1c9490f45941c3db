"""Long-tailed class counts and subsets: the CIFAR-LT protocol of LDAM-DRW and CMO.

The paper evaluates AFR on CIFAR-10-LT and CIFAR-100-LT (Section 4.1), built the way LDAM-DRW
(Cao et al., 2019) and CMO (Park et al., 2022) build them: the balanced training set is
subsampled so that class ``i`` (in label order) keeps ``n_max * (1 / ratio) ** (i / (C - 1))``
images ("exp" profile), where ``ratio = n_max / n_min`` is the imbalance ratio (100 in the
paper's main tables). :func:`long_tailed_counts` gives those counts and
:func:`make_long_tailed` the indices of such a subset of any labelled dataset.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..checks import check_int

__all__ = ["long_tailed_counts", "make_long_tailed"]

# Relative slack used when truncating the "exp" profile to ints: it only matters where float
# rounding puts a mathematically exact integer just below itself (e.g. 32 * 64 ** (-5/6) = 1 is
# computed as 0.9999999999999999); for every standard setting the result equals the published
# LDAM/CMO formula exactly.
_TRUNC_SLACK = 1e-12

_PROFILES = ("exp", "step")


def _as_ratio(imbalance_ratio) -> float:
    """Turn a ratio (100) or a factor (0.01) into a ratio >= 1 (100)."""
    if isinstance(imbalance_ratio, bool) or not isinstance(imbalance_ratio, numbers.Real):
        raise TypeError(
            "imbalance_ratio must be a number (a ratio like 100 or a factor like 0.01), "
            f"got {type(imbalance_ratio).__name__} {imbalance_ratio!r}"
        )
    value = float(imbalance_ratio)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            "imbalance_ratio must be a finite number > 0 (a ratio like 100 or a factor like "
            f"0.01), got {imbalance_ratio!r}"
        )
    ratio = 1.0 / value if value < 1 else value
    nearest = round(ratio)
    if abs(ratio - nearest) <= 1e-9:
        ratio = float(nearest)
    return ratio


def long_tailed_counts(
    n_max: int,
    num_classes: int,
    imbalance_ratio: float = 100,
    profile: str = "exp",
) -> list[int]:
    """Number of training images each class keeps in a long-tailed split.

    Why: every CIFAR-LT result in the literature (LDAM, CMO, and the AFR paper, Sec. 4.1) uses
    this deterministic schedule, so the counts must match it exactly for results to be
    comparable.

    - ``"exp"``: class ``i`` keeps ``int(n_max * (1 / ratio) ** (i / (C - 1)))`` images, so the
      head keeps ``n_max`` and the tail ``n_max / ratio``.
    - ``"step"``: the first ``C // 2`` classes keep ``n_max``, the others ``int(n_max / ratio)``.

    ``imbalance_ratio`` may be given as a ratio (``100``) or as a factor (``0.01``); a value
    below 1 is read as a factor, and ``1`` means balanced. With a single class the result is
    ``[n_max]`` for both profiles. A setting that would leave some class with no image raises
    ``ValueError``.

    >>> long_tailed_counts(5000, 10, 100)
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    >>> long_tailed_counts(5000, 10, 0.01) == long_tailed_counts(5000, 10, 100)
    True
    >>> long_tailed_counts(100, 4, 10, profile="step")
    [100, 100, 10, 10]
    """
    n_max = check_int(n_max, "n_max", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=1)
    ratio = _as_ratio(imbalance_ratio)
    if not isinstance(profile, str) or profile not in _PROFILES:
        raise ValueError(f"profile must be one of {list(_PROFILES)}, got {profile!r}")

    if num_classes == 1:
        return [n_max]
    if profile == "exp":
        counts = [
            math.floor(n_max * (1.0 / ratio) ** (i / (num_classes - 1)) * (1 + _TRUNC_SLACK))
            for i in range(num_classes)
        ]
    else:
        tail = math.floor(n_max / ratio * (1 + _TRUNC_SLACK))
        half = num_classes // 2
        counts = [n_max] * half + [tail] * (num_classes - half)
    counts = [min(c, n_max) for c in counts]
    empty = [i for i, c in enumerate(counts) if c < 1]
    if empty:
        raise ValueError(
            f"imbalance ratio {imbalance_ratio!r} with n_max={n_max} leaves class {empty[0]} "
            f"with 0 images (the tail class gets n_max / ratio = {n_max / ratio:.3g}); "
            f"use n_max >= ratio ({ratio:g}) or a smaller ratio"
        )
    return counts


def _as_label_array(targets, name: str = "targets") -> np.ndarray:
    """Convert a list / numpy array / tensor of int labels to a 1-D int64 numpy array."""
    if isinstance(targets, torch.Tensor):
        arr = targets.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(targets)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(
                f"{name} must be a 1-D sequence of ints, could not read it: {exc}"
            ) from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; expected at least one label")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class labels, got minimum {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def make_long_tailed(
    targets,
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
) -> np.ndarray:
    """Indices of a long-tailed subset of any labelled dataset.

    Why: the long-tailed benchmarks are built by subsampling a balanced training set; returning
    indices (rather than copying data) works with any dataset through
    ``torch.utils.data.Subset`` and records exactly which images were used.

    The number of classes is ``max(targets) + 1`` and every class must be present. Classes are
    taken in label order, as LDAM/CMO do: class ``i`` keeps
    ``long_tailed_counts(n_max, C, imbalance_ratio, profile)[i]`` images, where ``n_max`` is
    the largest per-class count in ``targets``. The images of each class are drawn without
    replacement with ``numpy.random.default_rng(seed)`` (classes visited in label order), so the
    same seed gives the same subset. The result is an ``int64`` array made of each class's
    chosen indices sorted ascending, concatenated in label order.

    >>> targets = [0, 1, 2, 0, 1, 0, 1, 0, 2, 0]          # class counts 5, 3, 2
    >>> idx = make_long_tailed(targets, imbalance_ratio=5, seed=0)
    >>> np.bincount(np.asarray(targets)[idx]).tolist()   # long_tailed_counts(5, 3, 5)
    [5, 2, 1]
    >>> bool((make_long_tailed(targets, 5, seed=0) == idx).all())
    True
    """
    labels = _as_label_array(targets)
    seed = check_int(seed, "seed")
    available = np.bincount(labels)
    num_classes = len(available)
    absent = np.flatnonzero(available == 0)
    if absent.size:
        raise ValueError(
            f"class {int(absent[0])} has no images in targets (labels run 0..{num_classes - 1}, "
            f"absent classes: {absent.tolist()}); every class must be present"
        )
    counts = long_tailed_counts(int(available.max()), num_classes, imbalance_ratio, profile)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, want in enumerate(counts):
        have = int(available[cls])
        if have < want:
            raise ValueError(
                f"class {cls} has {have} images available but the long-tailed profile asks "
                f"for {want}"
            )
        pool = np.flatnonzero(labels == cls)
        pick = rng.choice(pool, size=want, replace=False) if want < have else pool
        chosen.append(np.sort(pick))
    return np.concatenate(chosen).astype(np.int64, copy=False)
