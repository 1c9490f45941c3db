"""Class-balanced sampling: the *inter*-class half of AFR (paper §3.2, CMO's balanced batch).

CMO (and AFR's stage 1) draws a second, class-balanced batch next to the ordinary shuffled
one and pastes it onto the first with CutMix. :class:`LongTailSampler` produces that second
stream for any labelled dataset, and shards it across ``torch.distributed`` ranks.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["LongTailSampler", "class_balanced_weights"]


def _as_label_tensor(labels) -> torch.Tensor:
    t = torch.as_tensor(labels)
    if t.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError("labels is empty: a sampler needs at least one labelled sample")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"labels must be integers, got dtype {t.dtype}")
    t = t.long()
    if int(t.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(t.min())}")
    return t


def class_balanced_weights(labels, alpha: float = 1.0) -> torch.Tensor:
    """Per-sample weights ``n_{y_i} ** -alpha`` (float64, not normalised).

    Why: with alpha=1 every *class* gets the same total weight, so a draw from these
    weights is class-balanced however long the tail is.

    >>> class_balanced_weights([0, 0, 0, 1], alpha=1.0).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    t = _as_label_tensor(labels)
    counts = torch.bincount(t).double()
    return counts[t].pow(-float(alpha))


class LongTailSampler(Sampler[int]):
    """Draw index ``i`` with probability proportional to ``n_{y_i} ** -alpha``.

    ``alpha=1`` makes every class equally likely (CMO's balanced batch, AFR's inter-class
    over-sampling), ``alpha=0.5`` is square-root sampling and ``alpha=0`` is plain
    instance-balanced sampling. The draw for an epoch depends only on ``seed`` and the epoch
    set by :meth:`set_epoch`, so every rank computes the same global draw and keeps its own
    slice: ``num_replicas`` shares, disjoint in position and equally long
    (``ceil(num_samples / num_replicas)`` each; the global draw is padded with extra draws).
    Without ``replacement`` the shares are disjoint in indices too.

    Args:
        labels: one integer label per dataset item (list, array or tensor).
        alpha: re-balancing exponent (see above).
        num_samples: length of the *global* draw per epoch; default ``len(labels)``.
        replacement: draw with replacement (needed when a tail class must repeat).
        seed: base seed; the epoch is added to it.
        num_replicas, rank: the shard; default from ``torch.distributed`` when it is
            initialised, else a single replica.

    Example:
        >>> labels = [0] * 90 + [1] * 10
        >>> sampler = LongTailSampler(labels, alpha=1.0, num_samples=1000, seed=0)
        >>> drawn = [labels[i] for i in sampler]
        >>> 400 < sum(drawn) < 600          # class 1 drawn about half the time
        True
        >>> loader = torch.utils.data.DataLoader(range(100), batch_size=10, sampler=sampler)
    """

    def __init__(
        self,
        labels: Sequence[int],
        alpha: float = 1.0,
        num_samples: Optional[int] = None,
        replacement: bool = True,
        seed: int = 0,
        num_replicas: Optional[int] = None,
        rank: Optional[int] = None,
    ):
        self.weights = class_balanced_weights(labels, alpha)
        self.alpha = float(alpha)
        n = len(self.weights)
        if num_samples is None:
            num_samples = n
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        if n > 2**24:
            raise ValueError(f"LongTailSampler draws with torch.multinomial, which supports at most "
                             f"2**24 items; got {n}")
        if num_replicas is None or rank is None:
            dist_ok = torch.distributed.is_available() and torch.distributed.is_initialized()
            if num_replicas is None:
                num_replicas = torch.distributed.get_world_size() if dist_ok else 1
            if rank is None:
                rank = torch.distributed.get_rank() if dist_ok else 0
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.num_samples = num_samples
        self.per_replica = math.ceil(num_samples / self.num_replicas)
        self.total = self.per_replica * self.num_replicas
        self.replacement = bool(replacement)
        if not self.replacement and self.total > n:
            raise ValueError(
                f"without replacement the draw ({self.total} = {self.per_replica} per replica x "
                f"{self.num_replicas}) cannot exceed the {n} labelled items")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the draw for the next iteration (call once per epoch, as with
        ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def global_draw(self) -> torch.Tensor:
        """The whole epoch's draw before sharding (the same on every rank)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.total, self.replacement, generator=g)

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_draw()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_replica
