"""The Many / Medium / Few-shot groups of classes, from their numbers of training images.

Why a module of its own: the grouping is a property of the training counts that both the data
side (``afr_aug.data`` reports it next to the counts) and the evaluation side
(:func:`afr_aug.metrics.shot_accuracy`) use, and neither should import the other for it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from .checks import check_int

__all__ = ["shot_groups"]


def shot_groups(class_counts: Sequence[int], many: int = 100, few: int = 20) -> list[str]:
    """Many/Medium/Few-shot group of every class, from its number of training images.

    (Also importable as ``afr_aug.metrics.shot_groups`` and ``afr_aug.data.shot_groups``.)

    Why: long-tail papers (including AFR) report accuracy separately on Many-shot
    (> 100 training images), Medium-shot (20-100) and Few-shot (< 20) classes, to show whether
    a method helps the tail or only the head.

    A class with ``count > many`` is ``"many"``, with ``count < few`` is ``"few"``, otherwise
    ``"med"`` (both bounds inclusive in ``"med"``).

    >>> shot_groups([500, 101, 100, 20, 19, 5])
    ['many', 'many', 'med', 'med', 'few', 'few']
    """
    if isinstance(class_counts, (str, bytes)):
        raise TypeError(
            f"class_counts must be a sequence of ints, got {type(class_counts).__name__}"
        )
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.tolist()
    try:
        counts = list(class_counts)
    except TypeError:
        raise TypeError(
            f"class_counts must be a sequence of ints, got {type(class_counts).__name__}"
        ) from None
    for name, bound in (("many", many), ("few", few)):
        if isinstance(bound, bool) or not isinstance(bound, numbers.Real):
            raise TypeError(f"{name} must be a number, got {type(bound).__name__} {bound!r}")
    if few > many:
        raise ValueError(f"few must be <= many, got few={few}, many={many}")
    groups = []
    for i, c in enumerate(counts):
        c = check_int(c, f"class_counts[{i}]", minimum=0)
        groups.append("many" if c > many else "few" if c < few else "med")
    return groups
