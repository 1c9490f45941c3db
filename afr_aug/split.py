"""Finding each class's *minority* images in embedding space (paper §3.1 Eq. 2 and §3.3).

Inside one class a few atypical images lie far from the rest; AFR calls them the class's
minority. An image is minority when the cosine similarity of its embedding (the model's
penultimate layer) to its class's mean embedding falls below a per-class threshold ``λ_c``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import check_labels, check_probability

__all__ = ["IntraClassSplitter", "SplitResult"]


@dataclass
class SplitResult:
    """The outcome of :meth:`IntraClassSplitter.split`.

    Attributes:
        minority_mask: bool [N], True where the image is a minority image of its class.
        thresholds: float [C], the λ_c used for each class.
        similarity: float [N], cosine similarity of each embedding to its class mean.
        class_means: float [C, D], mean embedding per class (zeros for an empty class).
        minority_centroids: float [C, D], mean embedding of each class's minority images: the
            target :class:`~afr_aug.MinorityPGD` pulls majority images toward. A class with no
            minority image gets the embedding of its least typical image (lowest similarity),
            so an attack still has a direction; an empty class gets zeros.
        labels: int64 [N], the labels the split was made with.
        class_counts: int64 [C], images per class.
        adaptive_applied: whether §3.3's per-class thresholds were used.
        hard: bool [C], the classes §3.3 treated as hard (None when it did not apply).
        rule: the §3.3 rule that was applied (None when none was).
    """

    minority_mask: torch.Tensor
    thresholds: torch.Tensor
    similarity: torch.Tensor
    class_means: torch.Tensor
    minority_centroids: torch.Tensor
    labels: torch.Tensor
    class_counts: torch.Tensor
    adaptive_applied: bool = False
    hard: torch.Tensor | None = None
    rule: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.thresholds)

    @property
    def minority_counts(self) -> torch.Tensor:
        """Minority images per class, int64 [C]."""
        return torch.bincount(self.labels[self.minority_mask], minlength=self.num_classes)

    @property
    def minority_shares(self) -> torch.Tensor:
        """Minority share of each class, float [C] (NaN for an empty class)."""
        share = self.minority_counts.float() / self.class_counts.clamp(min=1).float()
        share[self.class_counts == 0] = float("nan")
        return share

    def majority_indices(self, c: int) -> torch.Tensor:
        """Indices (into the split's N images) of class ``c``'s majority images."""
        return torch.nonzero((self.labels == c) & ~self.minority_mask).flatten()

    def __repr__(self) -> str:
        n, m = len(self.labels), int(self.minority_mask.sum())
        return (
            f"SplitResult({n} images, {self.num_classes} classes, {m} minority "
            f"({m / max(n, 1):.1%}), adaptive_applied={self.adaptive_applied})"
        )


class IntraClassSplitter:
    """Split every class into majority and minority images by cosine similarity (Eq. 2).

    ``L(x) = minority  if cos(e_x, e_mu(y)) < λ_y  else majority``: the minority are the
    images least like their class's mean embedding (the paper's Fig. 1 and its text, "samples
    beyond λ ... as the long-tailed data").

    **Which λ.** ``threshold=0.8`` is the paper's literal cosine. A fixed cosine means
    different things in different embedding spaces (a wide network's embeddings are far more
    alike than a ResNet32's, so λ = 0.8 may call almost nothing minority there). The default is
    therefore ``quantile``: in every class the ``quantile`` share of images with the lowest
    cosine is minority, so λ_c is the class's own ``quantile``-quantile of cosines, and 0.2
    means the same on any model. Give one of the two.

    **§3.3, adaptive per class.** The paper records each class's accuracy ``a_c`` and the
    overall training accuracy ``a_train``; a class with ``a_c < a_train`` is "hard", and "harder
    classes tend to keep more original samples ... easier classes have more attacked samples".
    Eq. 2 and that sentence disagree: Eq. 2 labels ``cos < λ`` as 0 = *majority* and calls cos
    "the cosine similarity distance", and with the cosine rule above, λ_c = a_c < λ labels
    *fewer* images of a hard class minority, so *more* of it is attacked. ``adaptive_rule``:

    - ``"keep_originals"`` (default, the paper's stated purpose): a hard class keeps more
      originals. Its majority share shrinks in proportion to its accuracy,
      ``1 - s'_c = (1 - s_c) * a_c / a_train`` (``s_c`` = its minority share under the base
      λ), capped at ``max_minority`` so it is still attacked; λ_c is the matching quantile.
    - ``"literal"``: λ_c = a_c as a cosine (the formula as printed, read as a similarity);
      hard classes then get *more* attacked images.

    The rule applies "while the training accuracy reaches a certain level (between 60 % and
    70 %)": with ``accuracy_window=(lo, hi)`` only when ``lo <= a_train <= hi``, else every class
    keeps the base λ, ``SplitResult.adaptive_applied`` is False and a warning names the accuracy
    and the window (once per splitter). ``accuracy_window=None`` always applies it. Pass the
    *running* training accuracy on the mixed (CutMix) batches of the last epoch
    (:class:`~afr_aug.metrics.RunningAccuracy`); the accuracy on clean images is usually far
    above the window.

    Edge cases: an image whose embedding is all zeros has similarity 0; a class with one image
    is its own mean (similarity 1, never minority); a class with no image gets λ (or NaN with
    quantiles) and zero mean/centroid rows.

    Args:
        threshold: a fixed cosine λ in [-1, 1] (the paper: 0.8).
        adaptive: apply §3.3 when accuracies are given.
        accuracy_window: see above.
        quantile: the minority share of each class, in [0, 1) (default 0.2 without threshold).
        adaptive_rule: ``"keep_originals"`` or ``"literal"``, see above.
        max_minority: cap of a hard class's minority share under ``"keep_originals"``.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> emb = torch.randn(1, 8).repeat(20, 1) + 0.05 * torch.randn(20, 8)
        >>> emb[3] = -emb[3]                        # one atypical image
        >>> labels = torch.zeros(20, dtype=torch.long)
        >>> result = IntraClassSplitter(threshold=0.8).split(emb, labels)
        >>> torch.nonzero(result.minority_mask).flatten().tolist()
        [3]
        >>> int(IntraClassSplitter(quantile=0.25).split(emb, labels).minority_mask.sum())
        5
    """

    RULES = ("keep_originals", "literal")

    def __init__(
        self,
        threshold: float | None = None,
        adaptive: bool = True,
        accuracy_window: tuple[float, float] | None = (0.6, 0.7),
        *,
        quantile: float | None = None,
        adaptive_rule: str = "keep_originals",
        max_minority: float = 0.5,
    ):
        if threshold is not None and quantile is not None:
            raise ValueError(
                "give threshold (a fixed cosine) or quantile (a minority share per class), not both"
            )
        if threshold is None and quantile is None:
            quantile = 0.2
        if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(
                f"threshold is a cosine similarity and must be in [-1, 1], got {threshold}"
            )
        if quantile is not None and not 0.0 <= float(quantile) < 1.0:
            raise ValueError(f"quantile is a minority share and must be in [0, 1), got {quantile}")
        if accuracy_window is not None:
            lo, hi = accuracy_window
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(
                    f"accuracy_window must be (lo, hi) with 0 <= lo <= hi <= 1, got "
                    f"{accuracy_window}"
                )
            accuracy_window = (float(lo), float(hi))
        if adaptive_rule not in self.RULES:
            raise ValueError(f"adaptive_rule must be one of {self.RULES}, got {adaptive_rule!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.quantile = None if quantile is None else float(quantile)
        self.adaptive = bool(adaptive)
        self.accuracy_window = accuracy_window
        self.adaptive_rule = adaptive_rule
        self.max_minority = check_probability(max_minority, "max_minority")
        self._warned = False  # the §3.3-not-applied warning is given once per splitter

    def __repr__(self) -> str:
        base = (
            f"threshold={self.threshold}"
            if self.threshold is not None
            else f"quantile={self.quantile}"
        )
        return (
            f"IntraClassSplitter({base}, adaptive={self.adaptive}, "
            f"accuracy_window={self.accuracy_window}, adaptive_rule={self.adaptive_rule!r})"
        )

    def embed(
        self,
        model: torch.nn.Module,
        loader,
        device=None,
        progress: bool = True,
        layer: str | None = None,
    ):
        """Deprecated: the splitter takes embeddings, never a model. Use
        :func:`afr_aug.embedding.run_inference` (``embed=True``) and pass its ``embeddings``
        and ``labels`` to :meth:`split`.

        Embeds every image of ``loader`` in one pass in eval mode and returns ``(embeddings
        [N, D], labels [N], class_accuracy [C], train_accuracy)`` on the CPU, the accuracies
        measured on these very images (rows by dataset index when the loader yields indices).
        """
        warnings.warn(
            "IntraClassSplitter.embed is deprecated: use afr_aug.embedding."
            "run_inference(model, loader, embed=True) and split(out.embeddings, "
            "out.labels)",
            DeprecationWarning,
            stacklevel=2,
        )
        from .embedding import run_inference

        out = run_inference(
            model,
            loader,
            embed=True,
            layer=layer,
            device=device,
            progress=progress,
            desc="embedding",
        )
        labels, num_classes = check_labels(out.labels, num_classes=out.num_classes), out.num_classes
        correct = (out.predictions == labels).double()
        counts = torch.bincount(labels, minlength=num_classes).double()
        hits = torch.bincount(labels, weights=correct, minlength=num_classes)
        class_accuracy = (hits / counts.clamp(min=1)).float()
        class_accuracy[counts == 0] = float("nan")
        return out.embeddings, labels, class_accuracy, float(correct.mean())

    def hard_classes(
        self, num_classes: int, class_accuracy=None, train_accuracy: float | None = None
    ) -> tuple[torch.Tensor | None, bool]:
        """§3.3's "hard" classes (``a_c < a_train``), bool [C], and whether the rule applies
        (``None, False`` when it does not: no accuracies, ``adaptive=False`` or outside the
        window)."""
        if not self.adaptive or class_accuracy is None or train_accuracy is None:
            return None, False
        acc = torch.as_tensor(class_accuracy, dtype=torch.float32).flatten()
        if len(acc) != num_classes:
            raise ValueError(
                f"class_accuracy has {len(acc)} entries, expected one per class ({num_classes})"
            )
        train_accuracy = check_probability(train_accuracy, "train_accuracy")
        known = ~torch.isnan(acc)
        if ((acc[known] < 0) | (acc[known] > 1)).any():
            raise ValueError("class_accuracy values must be in [0, 1] (NaN for an empty class)")
        if self.accuracy_window is not None:
            lo, hi = self.accuracy_window
            if not lo <= train_accuracy <= hi:
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"IntraClassSplitter: the training accuracy {train_accuracy:.3f} lies "
                        f"outside accuracy_window={self.accuracy_window}, so the adaptive "
                        f"per-class thresholds of §3.3 are NOT applied (every class keeps its "
                        f"base λ). Pass the running accuracy on the mixed training batches, or "
                        f"accuracy_window=None to always apply them.",
                        stacklevel=3,
                    )
                return None, False
        return known & (acc < float(train_accuracy)), True

    def _thresholds(self, similarity, labels, counts, class_accuracy, train_accuracy):
        """λ_c per class (see the class docstring), the hard-class mask and whether §3.3 applied."""
        num_classes = len(counts)
        hard, applied = self.hard_classes(num_classes, class_accuracy, train_accuracy)
        order = torch.argsort(similarity)
        order = order[torch.argsort(labels[order], stable=True)]  # by class, then cosine
        ordered = similarity[order]
        starts = (torch.cumsum(counts, 0) - counts).tolist()

        def at_share(c: int, share: float) -> float:  # the cosine below which `share` lies
            n = int(counts[c])
            k = round(share * n)
            return float("inf") if k >= n else float(ordered[starts[c] + k])

        lam = torch.empty(num_classes)
        for c in range(num_classes):
            n = int(counts[c])
            if n == 0:
                lam[c] = self.threshold if self.threshold is not None else float("nan")
                continue
            if self.threshold is not None:
                base, share = (
                    self.threshold,
                    float((ordered[starts[c] : starts[c] + n] < self.threshold).float().mean()),
                )
            else:
                assert self.quantile is not None  # no threshold: a quantile (__init__)
                base, share = at_share(c, self.quantile), self.quantile
            if hard is None or not bool(hard[c]):
                lam[c] = base
            elif self.adaptive_rule == "literal":
                lam[c] = float(class_accuracy[c])
            else:
                ratio = float(class_accuracy[c]) / float(train_accuracy)
                lam[c] = at_share(c, max(share, min(self.max_minority, 1 - (1 - share) * ratio)))
        return lam, hard, applied

    def split(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        class_accuracy=None,
        train_accuracy: float | None = None,
        num_classes: int | None = None,
    ) -> SplitResult:
        """Label each image minority/majority (Eq. 2) with per-class thresholds (§3.3).

        ``num_classes`` defaults to ``len(class_accuracy)`` when given, else ``max(labels)+1``.
        """
        embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}")
        labels = check_labels(labels, length=len(embeddings)).cpu()
        if len(labels) == 0:
            raise ValueError("no embeddings to split")
        embeddings = embeddings.float().cpu()
        if not torch.isfinite(embeddings).all():
            bad = torch.nonzero(~torch.isfinite(embeddings).all(1)).flatten()
            raise ValueError(
                f"embeddings contain NaN or inf in {len(bad)} rows (first: {bad[:5].tolist()})"
            )
        if num_classes is None:
            num_classes = (
                len(class_accuracy) if class_accuracy is not None else int(labels.max()) + 1
            )
        check_labels(labels, num_classes=num_classes)
        _n, d = embeddings.shape
        counts = torch.bincount(labels, minlength=num_classes)
        sums = torch.zeros(num_classes, d).index_add_(0, labels, embeddings)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        similarity = F.cosine_similarity(embeddings, means[labels], dim=1, eps=1e-12)
        thresholds, hard, applied = self._thresholds(
            similarity, labels, counts, class_accuracy, train_accuracy
        )
        minority = similarity < thresholds[labels]

        m_counts = torch.bincount(labels[minority], minlength=num_classes)
        m_sums = torch.zeros(num_classes, d).index_add_(0, labels[minority], embeddings[minority])
        centroids = m_sums / m_counts.clamp(min=1).unsqueeze(1)
        for c in torch.nonzero((m_counts == 0) & (counts > 0)).flatten().tolist():
            members = torch.nonzero(labels == c).flatten()
            centroids[c] = embeddings[members[similarity[members].argmin()]]
        return SplitResult(
            minority_mask=minority,
            thresholds=thresholds,
            similarity=similarity,
            class_means=means,
            minority_centroids=centroids,
            labels=labels,
            class_counts=counts,
            adaptive_applied=applied,
            hard=hard,
            rule=self.adaptive_rule if applied else None,
        )
