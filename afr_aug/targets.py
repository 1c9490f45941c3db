"""Where :class:`~afr_aug.MinorityPGD` pulls each image: one small class per kind of target.

A target is fitted to a split of the embeddings (``fit(embeddings, split, generator)``), then
gives, for a batch's labels, a ``goal``, and for the batch's embeddings the per-image quantity
``pull(embeddings, goal)`` that the attack ascends. The attack never asks what kind of target
it holds; a new target is one more class with these three methods.

- :class:`HeadTarget` (the default): the paper's "two categories" per class. A 2C-way linear
  head on the unit-length embeddings tells each class's minority from its majority; the pull
  is toward "(class y, minority)".
- :class:`CentroidTarget`: toward the mean of class y's minority embeddings. Minority images
  lie away from the class mean in different directions, so their mean lies near the class
  mean: this pull tends to make images more typical. Kept for comparison.
- :class:`SlotTarget`: toward one random minority embedding of class y per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_finite, check_int
from .split import SplitResult

__all__ = ["TARGETS", "CentroidTarget", "HeadTarget", "SlotTarget"]


class HeadTarget:
    """The 2C-way head: "(class c, minority)" vs "(class c, majority)" for every class.

    ``fit`` takes a balanced sample of each category (at most 256 per category), trains a
    linear head on the unit-length embeddings (Adam, full batch, ``head_steps`` steps; a
    fraction of a second), and keeps its accuracy on that sample as ``head_accuracy``.

    >>> from afr_aug import IntraClassSplitter
    >>> emb, labels = torch.randn(40, 8), torch.tensor([0, 1] * 20)
    >>> split = IntraClassSplitter(quantile=0.25).split(emb, labels)
    >>> target = HeadTarget().fit(emb, split, torch.Generator().manual_seed(0))
    >>> target.num_classes, target.goal(torch.tensor([1, 0]), "cpu", None).tolist()
    (2, [3, 1])
    """

    name = "head"

    def __init__(self, head_steps: int = 200):
        self.head_steps = check_int(head_steps, "head_steps", minimum=1)
        self.head: torch.nn.Linear | None = None
        self.head_accuracy: float | None = None

    @property
    def fitted(self) -> bool:
        return self.head is not None

    @property
    def num_classes(self) -> int:
        return self.head.out_features // 2 if self.head is not None else 0

    @property
    def width(self) -> int | None:
        return self.head.in_features if self.head is not None else None

    def fit(
        self, embeddings: torch.Tensor, split: SplitResult, generator: torch.Generator
    ) -> HeadTarget:
        c = split.num_classes
        category = 2 * split.labels + split.minority_mask.long()
        per = max(16, min(256, 50_000 // (2 * c)))
        order = torch.randperm(len(category), generator=generator)
        order = order[torch.argsort(category[order], stable=True)]
        sizes = torch.bincount(category, minlength=2 * c)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(len(order)) - starts[category[order]]
        pick = order[rank < per]
        x = F.normalize(embeddings[pick], dim=1)
        y = category[pick]
        head = torch.nn.Linear(x.shape[1], 2 * c)
        with torch.no_grad():
            head.weight.normal_(0, 0.01, generator=generator)
            head.bias.zero_()
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        with torch.enable_grad():
            for _ in range(self.head_steps):
                loss = F.cross_entropy(head(x) * 10.0, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            self.head_accuracy = float((head(x).argmax(1) == y).float().mean())
        head.requires_grad_(False)
        self.head = head
        return self

    def goal(self, labels: torch.Tensor, device, generator) -> torch.Tensor:
        assert self.head is not None  # fitted (MinorityPGD checks it)
        self.head = self.head.to(device)
        return 2 * labels + 1

    def pull(self, emb: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        assert self.head is not None  # fitted (MinorityPGD checks it)
        logits = self.head(F.normalize(emb.float(), dim=1))
        return -F.cross_entropy(logits * 10.0, goal, reduction="none")


class CentroidTarget:
    """Each class's minority centroid (a ``SplitResult``'s ``minority_centroids``), or any
    ``[C, D]`` points given with :meth:`set`; the pull is the cosine to it."""

    name = "centroid"
    head_accuracy = None

    def __init__(self):
        self.targets: torch.Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.targets is not None

    @property
    def num_classes(self) -> int:
        return len(self.targets) if self.targets is not None else 0

    @property
    def width(self) -> int | None:
        return self.targets.shape[1] if self.targets is not None else None

    def set(self, targets) -> CentroidTarget:
        """The pull targets: a ``SplitResult`` (its minority centroids) or a [C, D] tensor."""
        if isinstance(targets, SplitResult):
            targets = targets.minority_centroids
        if not isinstance(targets, torch.Tensor):
            raise TypeError(
                f"targets must be a SplitResult or a [C, D] tensor, got {type(targets).__name__}"
            )
        if targets.ndim != 2 or targets.shape[0] == 0:
            raise ValueError(
                f"targets must be [C, D] (one row per class), got shape {tuple(targets.shape)}"
            )
        check_finite(targets, "targets")
        self.targets = targets.detach().float()
        return self

    def fit(self, embeddings, split: SplitResult, generator) -> CentroidTarget:
        self.targets = split.minority_centroids.float()
        return self

    def goal(self, labels: torch.Tensor, device, generator) -> torch.Tensor:
        assert self.targets is not None  # fitted (MinorityPGD checks it)
        return self.targets.to(device)[labels]

    def pull(self, emb: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(emb.float(), goal, dim=1, eps=1e-12)


class SlotTarget:
    """One random minority embedding of the image's class, drawn per image and attack call; a
    class without minority images is pulled toward its centroid. The pull is the cosine."""

    name = "slot"
    head_accuracy = None
    pull = CentroidTarget.pull

    def __init__(self):
        self._pool = self._start = self._count = None

    @property
    def fitted(self) -> bool:
        return self._pool is not None

    @property
    def num_classes(self) -> int:
        return len(self._count) if self._count is not None else 0

    @property
    def width(self) -> int | None:
        return self._pool.shape[1] if self._pool is not None else None

    def fit(self, embeddings: torch.Tensor, split: SplitResult, generator) -> SlotTarget:
        c = split.num_classes
        minority = torch.nonzero(split.minority_mask).flatten()
        minority = minority[torch.argsort(split.labels[minority], stable=True)]
        count = torch.bincount(split.labels[minority], minlength=c)
        pool = embeddings[minority]
        empty = torch.nonzero(count == 0).flatten()
        start = torch.cumsum(count, 0) - count
        if len(empty):
            pool = torch.cat([pool, split.minority_centroids[empty].float()])
            start[empty] = len(minority) + torch.arange(len(empty))
            count[empty] = 1
        self._pool, self._start, self._count = pool, start, count
        return self

    def goal(self, labels: torch.Tensor, device, generator) -> torch.Tensor:
        assert self._pool is not None and self._start is not None and self._count is not None
        cpu = labels.cpu()
        pick = (torch.rand(len(cpu), generator=generator) * self._count[cpu]).long()
        return self._pool[self._start[cpu] + pick].to(device)


#: The targets by the name ``MinorityPGD(target=...)`` accepts
TARGETS = {"head": HeadTarget, "centroid": CentroidTarget, "slot": SlotTarget}
