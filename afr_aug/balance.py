"""Deprecated: ``AFRBalancer`` is :class:`afr_aug.AFRDataset` (``afr_aug.stage2``).

The stage-2 set was called a "balancer", like the mixers (``CutMixBalancer``), although it is a
``Dataset``. The old name keeps working for one release, with a ``DeprecationWarning``; so do
its ``mixer=`` argument (pass the mixer to ``refresh(mix=...)``, as ``AFRLoader`` does) and
``layout="slots"``. The ``"originals"`` layout left the library: it is a reading the reference
benchmark keeps (``benchmarks/afr_old.py``).
"""

from __future__ import annotations

import warnings

from .stage2 import AFRDataset

__all__ = ["AFRBalancer"]


class AFRBalancer(AFRDataset):
    """Deprecated name of :class:`~afr_aug.AFRDataset`.

    >>> import torch
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     stage2 = AFRBalancer(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0, 0, 1, 1])
    >>> caught[0].category.__name__, isinstance(stage2, AFRDataset)
    ('DeprecationWarning', True)
    """

    def __init__(self, *args, mixer=None, **kwargs):
        warnings.warn(
            "AFRBalancer is deprecated: it is afr_aug.AFRDataset (the stage-2 set is a "
            "Dataset, not a mixer)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
        self.mixer = mixer

    def refresh(self, model, device=None, class_accuracy=None, train_accuracy=None, mix=None):
        return super().refresh(
            model, device, class_accuracy, train_accuracy, mix if mix is not None else self.mixer
        )
