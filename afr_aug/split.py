"""Finding each class's *minority* images in embedding space (paper §3.1 Eq. 2 and §3.3).

Inside one class a few atypical images lie far from the rest; AFR calls them the class's
minority. An image is minority when the cosine similarity of its embedding (the model's
penultimate layer) to its class's mean embedding falls below a per-class threshold ``λ_c``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

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
    """

    minority_mask: torch.Tensor
    thresholds: torch.Tensor
    similarity: torch.Tensor
    class_means: torch.Tensor
    minority_centroids: torch.Tensor
    labels: torch.Tensor
    class_counts: torch.Tensor
    adaptive_applied: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.thresholds)

    @property
    def minority_counts(self) -> torch.Tensor:
        """Minority images per class, int64 [C]."""
        return torch.bincount(self.labels[self.minority_mask], minlength=self.num_classes)

    def majority_indices(self, c: int) -> torch.Tensor:
        """Indices (into the split's N images) of class ``c``'s majority images."""
        return torch.nonzero((self.labels == c) & ~self.minority_mask).flatten()

    def __repr__(self) -> str:
        n, m = len(self.labels), int(self.minority_mask.sum())
        return (f"SplitResult({n} images, {self.num_classes} classes, {m} minority "
                f"({m / max(n, 1):.1%}), adaptive_applied={self.adaptive_applied})")


class IntraClassSplitter:
    """Split every class into majority and minority images by cosine similarity (Eq. 2).

    ``L(x) = minority  if cos(e_x, e_mu(y)) < λ_y  else majority``.

    §3.3 (adaptive): classes the model finds hard should keep more of their own images, so
    when ``adaptive`` and both the per-class accuracies ``a_c`` and the overall training
    accuracy ``a_train`` are known, a class with ``a_c < a_train`` uses ``λ_c = a_c`` and the
    others keep ``λ``. The paper applies this "while the training accuracy reaches a certain
    level (between 60 % and 70 %)": with ``accuracy_window=(lo, hi)`` the adaptive thresholds
    are used only when ``lo <= a_train <= hi`` (the regime of a CMO model's running training
    accuracy on mixed batches); otherwise every class keeps ``λ`` and
    ``SplitResult.adaptive_applied`` is False, and a warning naming the accuracy and the
    window is given (once per splitter). ``accuracy_window=None`` always applies them. Which
    accuracy to pass: the *running* training accuracy on the mixed (CutMix) batches of the last
    epoch, as the benchmark does; the accuracy on clean images is usually far above the window.

    Edge cases: an image whose embedding is all zeros has similarity 0 (minority unless
    λ_c <= 0); a class with one image is its own mean (similarity 1, never minority); a class
    with no image keeps λ as threshold and zero mean/centroid rows.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> emb = torch.randn(1, 8).repeat(20, 1) + 0.05 * torch.randn(20, 8)
        >>> emb[3] = -emb[3]                        # one atypical image
        >>> labels = torch.zeros(20, dtype=torch.long)
        >>> result = IntraClassSplitter(threshold=0.8).split(emb, labels)
        >>> torch.nonzero(result.minority_mask).flatten().tolist()
        [3]
    """

    def __init__(self, threshold: float = 0.8, adaptive: bool = True,
                 accuracy_window: Optional[Tuple[float, float]] = (0.6, 0.7)):
        if not -1.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold is a cosine similarity and must be in [-1, 1], got {threshold}")
        if accuracy_window is not None:
            lo, hi = accuracy_window
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"accuracy_window must be (lo, hi) with 0 <= lo <= hi <= 1, got "
                                 f"{accuracy_window}")
            accuracy_window = (float(lo), float(hi))
        self.threshold = float(threshold)
        self.adaptive = bool(adaptive)
        self.accuracy_window = accuracy_window
        self._warned = False   # the §3.3-not-applied warning is given once per splitter

    def __repr__(self) -> str:
        return (f"IntraClassSplitter(threshold={self.threshold}, adaptive={self.adaptive}, "
                f"accuracy_window={self.accuracy_window})")

    def embed(self, model: torch.nn.Module, loader, device=None, progress: bool = True,
              layer: Optional[str] = None):
        """Embed every image of ``loader`` with any classifier (:class:`~afr_aug.Embedder`).

        One pass in eval mode (every module's mode restored afterwards) through
        :func:`afr_aug.embedding.run_inference`. ``layer`` names the embedding layer (default:
        the input of the model's last ``nn.Linear``). Returns ``(embeddings [N, D], labels [N],
        class_accuracy [C], train_accuracy)`` on the CPU, the accuracies measured on these very
        images. Row ``i`` is the loader's ``i``-th image; a loader may also yield ``(images,
        labels, indices)``, and the rows are then ordered by dataset index (repeated indices
        kept once).

        Under ``torch.distributed`` each rank embeds its own shard and the results are
        gathered, so every rank gets the same arrays and the split equals the single-process
        split; give indices so that the order does not depend on how the data were sharded.
        """
        from .embedding import run_inference

        out = run_inference(model, loader, embed=True, layer=layer, device=device,
                            progress=progress, desc="embedding")
        labels, num_classes = out.labels, out.num_classes
        if int(labels.max()) >= num_classes or int(labels.min()) < 0:
            raise ValueError(f"labels must be in [0, {num_classes}) for a model with "
                             f"{num_classes} outputs, got range [{int(labels.min())}, "
                             f"{int(labels.max())}]")
        correct = (out.predictions == labels).double()
        counts = torch.bincount(labels, minlength=num_classes).double()
        hits = torch.bincount(labels, weights=correct, minlength=num_classes)
        class_accuracy = (hits / counts.clamp(min=1)).float()
        class_accuracy[counts == 0] = float("nan")
        return out.embeddings, labels, class_accuracy, float(correct.mean())

    def thresholds_for(self, num_classes: int, class_accuracy=None,
                       train_accuracy: Optional[float] = None) -> Tuple[torch.Tensor, bool]:
        """λ_c per class and whether §3.3's adaptive rule was applied."""
        lam = torch.full((num_classes,), self.threshold)
        if not self.adaptive or class_accuracy is None or train_accuracy is None:
            return lam, False
        acc = torch.as_tensor(class_accuracy, dtype=torch.float32).flatten()
        if len(acc) != num_classes:
            raise ValueError(f"class_accuracy has {len(acc)} entries, expected one per class "
                             f"({num_classes})")
        if not 0.0 <= float(train_accuracy) <= 1.0:
            raise ValueError(f"train_accuracy must be in [0, 1], got {train_accuracy}")
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
                        f"per-class thresholds of §3.3 are NOT applied (every class uses "
                        f"λ = {self.threshold}). Pass the running accuracy on the mixed training "
                        f"batches, or accuracy_window=None to always apply them.", stacklevel=3)
                return lam, False
        harder = known & (acc < float(train_accuracy))
        lam[harder] = acc[harder]
        return lam, True

    def split(self, embeddings: torch.Tensor, labels: torch.Tensor, class_accuracy=None,
              train_accuracy: Optional[float] = None,
              num_classes: Optional[int] = None) -> SplitResult:
        """Label each image minority/majority (Eq. 2) with per-class thresholds (§3.3).

        ``num_classes`` defaults to ``len(class_accuracy)`` when given, else ``max(labels)+1``.
        """
        embeddings = torch.as_tensor(embeddings)
        labels = torch.as_tensor(labels)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}")
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
        if len(labels) != len(embeddings):
            raise ValueError(f"labels has {len(labels)} entries, embeddings {len(embeddings)}")
        if len(labels) == 0:
            raise ValueError("no embeddings to split")
        if labels.is_floating_point():
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        embeddings = embeddings.float().cpu()
        labels = labels.long().cpu()
        if not torch.isfinite(embeddings).all():
            bad = torch.nonzero(~torch.isfinite(embeddings).all(1)).flatten()
            raise ValueError(f"embeddings contain NaN or inf in {len(bad)} rows (first: "
                             f"{bad[:5].tolist()})")
        if num_classes is None:
            num_classes = len(class_accuracy) if class_accuracy is not None else int(labels.max()) + 1
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        n, d = embeddings.shape
        counts = torch.bincount(labels, minlength=num_classes)
        sums = torch.zeros(num_classes, d).index_add_(0, labels, embeddings)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        similarity = F.cosine_similarity(embeddings, means[labels], dim=1, eps=1e-12)
        thresholds, applied = self.thresholds_for(num_classes, class_accuracy, train_accuracy)
        minority = similarity < thresholds[labels]

        m_counts = torch.bincount(labels[minority], minlength=num_classes)
        m_sums = torch.zeros(num_classes, d).index_add_(0, labels[minority], embeddings[minority])
        centroids = m_sums / m_counts.clamp(min=1).unsqueeze(1)
        for c in torch.nonzero((m_counts == 0) & (counts > 0)).flatten().tolist():
            members = torch.nonzero(labels == c).flatten()
            centroids[c] = embeddings[members[similarity[members].argmin()]]
        return SplitResult(minority_mask=minority, thresholds=thresholds, similarity=similarity,
                           class_means=means, minority_centroids=centroids, labels=labels,
                           class_counts=counts, adaptive_applied=applied)
