"""Class-balanced sampling: the *inter*-class half of AFR (paper §3.2, CMO's balanced batch).

CMO (and AFR's stage 1) draws a second, class-balanced batch next to the ordinary shuffled
one and pastes it onto the first with CutMix. :class:`LongTailSampler` produces that second
stream for any labelled dataset, and shards it across ``torch.distributed`` ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from ._deprecation import renamed_attribute, renamed_keywords
from .checks import check_int, check_labels, check_number, check_state

__all__ = ["LongTailSampler", "class_balanced_weights"]

# Draws with replacement are made in chunks of this many items, so an epoch of 50 M draws
# needs a few MB of scratch instead of several 400 MB arrays. Changing it changes the draws.
_CHUNK = 1 << 20


def _as_label_tensor(labels, compact: bool = False) -> torch.Tensor:
    """Checked 1-D integer labels as int64 (``compact``: int32 when they fit, to halve a copy)."""
    t = check_labels(labels)
    if t.numel() == 0:
        raise ValueError("labels is empty: a sampler needs at least one labelled sample")
    return t.int() if compact and int(t.max()) < 2**31 else t


@renamed_keywords(alpha="exponent")
def class_balanced_weights(labels, exponent: float = 1.0) -> torch.Tensor:
    """Per-sample weights ``n_{y_i} ** -exponent`` (float64, not normalised).

    Why: with exponent=1 every *class* gets the same total weight, so a draw from these
    weights is class-balanced however long the tail is.

    >>> class_balanced_weights([0, 0, 0, 1], exponent=1.0).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    exponent = check_number(exponent, "exponent")
    t = _as_label_tensor(labels)
    counts = torch.bincount(t).double()
    return counts[t].pow(-exponent)


class LongTailSampler(Sampler[int]):
    """Draw index ``i`` with probability proportional to ``n_{y_i} ** -exponent``.

    ``exponent=1`` makes every class equally likely (CMO's balanced batch, AFR's inter-class
    over-sampling), ``exponent=0.5`` is square-root sampling and ``exponent=0`` is plain
    instance-balanced sampling. The draw for an epoch depends only on ``seed`` and the epoch
    set by :meth:`set_epoch`, so every rank computes the same global draw and keeps its own
    slice: ``num_replicas`` shares, disjoint in position and equally long
    (``ceil(num_samples / num_replicas)`` each; the global draw is padded with extra draws).
    Without ``replacement`` the shares are disjoint in indices too.

    Why two steps: with replacement a draw picks a class (probability ``∝ n_c ** (1 - exponent)``)
    and then a uniform member of it, the same distribution as the per-item weights but with
    no per-item float array and no 2**24-category limit (``torch.multinomial``'s), so it
    scales to tens of millions of labels. Without replacement it is Efraimidis–Spirakis
    (the ``num_samples`` smallest keys ``Exp(1) / w_i``), also for any size.

    Args:
        labels: one integer label per dataset item (list, array or tensor).
        exponent: re-balancing exponent (see above; formerly ``alpha``, still accepted).
        num_samples: length of the *global* draw per epoch; default ``len(labels)``.
        replacement: draw with replacement (needed when a tail class must repeat).
        seed: base seed (an int, the same on every rank); the epoch is added to it.
        num_replicas, rank: the shard; default from ``torch.distributed`` when it is
            initialised, else a single replica.

    Attributes: ``classes`` (the labels present, ascending), ``class_counts``,
    ``class_probs`` (chance that one draw picks each class) and ``order`` (item indices
    grouped by class, stable; int32 below 2**31 items to save memory).

    Example:
        >>> labels = [0] * 90 + [1] * 10
        >>> sampler = LongTailSampler(labels, exponent=1.0, num_samples=1000, seed=0)
        >>> drawn = [labels[i] for i in sampler]
        >>> 400 < sum(drawn) < 600          # class 1 drawn about half the time
        True
        >>> sampler.class_probs.tolist()
        [0.5, 0.5]
        >>> loader = torch.utils.data.DataLoader(range(100), batch_size=10, sampler=sampler)
    """

    alpha = renamed_attribute("alpha", "exponent")

    @renamed_keywords(alpha="exponent")
    def __init__(
        self,
        labels: Sequence[int] | torch.Tensor,
        exponent: float = 1.0,
        num_samples: int | None = None,
        replacement: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        self.exponent = check_number(exponent, "exponent")
        t = _as_label_tensor(labels, compact=True)
        n = t.numel()
        self.seed = check_int(seed, "seed")  # every rank needs the same draw: no None
        self.epoch = 0
        self._set_sizes(n, num_samples, bool(replacement), num_replicas, rank)

        # Group the items by class once: a stable sort keeps the draw platform-independent.
        sorted_labels, order = torch.sort(t, stable=True)
        del t
        classes, self.class_counts = torch.unique_consecutive(sorted_labels, return_counts=True)
        self.classes = classes.long()
        del sorted_labels
        self.order = order.int() if n < 2**31 else order
        del order
        self._starts = torch.cumsum(self.class_counts, 0) - self.class_counts
        self._set_class_probs()

    def _set_sizes(
        self,
        n: int,
        num_samples: int | None,
        replacement: bool,
        num_replicas: int | None,
        rank: int | None,
    ) -> None:
        """The draw's global length, this rank's shard of it and their checks."""
        if num_replicas is None or rank is None:
            dist_ok = torch.distributed.is_available() and torch.distributed.is_initialized()
            if num_replicas is None:
                num_replicas = torch.distributed.get_world_size() if dist_ok else 1
            if rank is None:
                rank = torch.distributed.get_rank() if dist_ok else 0
        self.num_replicas = check_int(num_replicas, "num_replicas", minimum=1)
        self.rank = check_int(rank, "rank", minimum=0, maximum=self.num_replicas - 1)
        self.num_labels = n
        self.num_samples = (
            n if num_samples is None else check_int(num_samples, "num_samples", minimum=1)
        )
        self.per_replica = math.ceil(self.num_samples / self.num_replicas)
        self.total = self.per_replica * self.num_replicas
        self.replacement = replacement
        if not replacement and self.total > n:
            raise ValueError(
                f"without replacement the draw ({self.total} = {self.per_replica} per replica x "
                f"{self.num_replicas}) cannot exceed the {n} labelled items"
            )

    def _set_class_probs(self) -> None:
        """Each class's chance per draw, its CDF and the guide table that inverts it."""
        # Class mass n_c * n_c**-exponent, in log space so a large |exponent| cannot overflow.
        log_mass = (1.0 - self.exponent) * self.class_counts.double().log()
        mass = (log_mass - log_mass.max()).exp()
        if not bool(torch.isfinite(mass).all()):
            raise ValueError(
                f"exponent={self.exponent} is too extreme: class probabilities overflow"
            )
        self.class_probs = mass / mass.sum()
        cdf = torch.cumsum(mass, 0)
        self._cdf = cdf / cdf[-1]  # exactly 1.0 at the end
        self._last = int(mass.nonzero()[-1])  # never land on an underflowed tail class
        # Guide table: bucket j of [0, 1) in K equal parts is known to map to classes
        # guide[j]..guide[j+1]; most buckets hold one class, so most draws skip the search.
        k = 1 << min(20, max(10, (len(mass) - 1).bit_length() + 4))
        edges = torch.arange(k + 1, dtype=torch.float64) / k
        self._guide = self._class_of(edges)

    def set_epoch(self, epoch: int) -> None:
        """Change the draw for the next iteration (call once per epoch, as with
        ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def global_draw(self) -> torch.Tensor:
        """The whole epoch's draw (int64 indices) before sharding, the same on every rank.

        >>> LongTailSampler([0, 0, 1], num_samples=4, seed=1).global_draw().shape
        torch.Size([4])
        """
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.replacement:
            return self._draw_with_replacement(g)
        return self._draw_without_replacement(g)

    def _class_of(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse CDF: the class of each uniform ``u`` in [0, 1)."""
        return torch.searchsorted(self._cdf, u, right=True).clamp_(max=self._last)

    def _draw_with_replacement(self, g: torch.Generator) -> torch.Tensor:
        out = torch.empty(self.total, dtype=torch.long)
        k = len(self._guide) - 1  # a power of 2: u * k and its floor are exact
        for start in range(0, self.total, _CHUNK):
            m = min(_CHUNK, self.total - start)
            u = torch.rand(m, dtype=torch.float64, generator=g)
            bucket = u.mul(k).long()
            cls = self._guide.index_select(0, bucket)
            unsure = (self._guide.index_select(0, bucket.add_(1)) != cls).nonzero().squeeze(1)
            cls[unsure] = self._class_of(u[unsure])  # same answer as searching every u
            size = self.class_counts.index_select(0, cls)
            pos = torch.rand(m, dtype=torch.float64, generator=g).mul_(size).long()
            pos = torch.minimum(pos, size.sub_(1)).add_(self._starts.index_select(0, cls))
            out[start : start + m] = self.order.index_select(0, pos)  # a uniform member
        return out

    def _draw_without_replacement(self, g: torch.Generator) -> torch.Tensor:
        # Efraimidis-Spirakis in log space: key_i = log(Exp(1)) - log(w_i), smallest first.
        # Keys are built in class order (position p holds item order[p]).
        key = torch.empty(self.num_labels, dtype=torch.float64).exponential_(generator=g).log_()
        key.add_(
            (self.exponent * self.class_counts.double().log()).repeat_interleave(self.class_counts)
        )
        if self.total < self.num_labels:
            pos = torch.topk(key, self.total, largest=False, sorted=True).indices
        else:
            pos = torch.sort(key, stable=True).indices
        del key
        return self.order[pos].long()

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_draw()[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_replica

    # -- checkpoints ------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        """What fixes the draw besides seed and epoch: a state must agree on all of it."""
        return {
            "num_labels": self.num_labels,
            "num_classes": len(self.classes),
            "num_samples": self.num_samples,
            "replacement": self.replacement,
            "exponent": self.exponent,
        }

    def state_dict(self) -> dict[str, Any]:
        """Seed and epoch (plus what defines the draw, to check on load), so a resumed run
        replays the same epochs. Rank and world size are not part of it.

        >>> LongTailSampler([0, 1, 1], seed=3).state_dict()["seed"]
        3
        """
        return {
            "type": type(self).__name__,
            "seed": self.seed,
            "epoch": self.epoch,
            **self._identity(),
        }

    @renamed_keywords(state="state_dict")
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore seed and epoch from :meth:`state_dict`; a state from a sampler with other
        labels, exponent, num_samples or replacement raises ``ValueError``. States saved
        before ``alpha`` was renamed ``exponent`` load too.

        >>> a, b = LongTailSampler([0, 1, 1], seed=3), LongTailSampler([0, 1, 1])
        >>> a.set_epoch(4); b.load_state_dict(a.state_dict())
        >>> torch.equal(a.global_draw(), b.global_draw())
        True
        """
        state = state_dict
        if isinstance(state, dict) and "alpha" in state and "exponent" not in state:
            state = {("exponent" if k == "alpha" else k): v for k, v in state.items()}
        check_state(self, state, self._identity(), ("seed", "epoch"))
        name = type(self).__name__
        self.seed, self.epoch = (
            check_int(state[key], f"{name} state: {key}") for key in ("seed", "epoch")
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_labels} labels, {len(self.classes)} classes, "
            f"exponent={self.exponent}, num_samples={self.num_samples}, "
            f"replacement={self.replacement}, seed={self.seed})"
        )
