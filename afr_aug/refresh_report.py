"""What one AFR refresh did, per class and in total: so a user can see whether AFR does
anything on their data.

AFR works only if three things hold, and each can silently fail: enough adversarial images
reach the model (the *dose*), the attack moves majority images into their class's minority
(the *crossing*, Eq. 2 with the same model), and the images keep their class (*labels
kept*). :class:`RefreshReport` measures all three on every refresh.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import torch

__all__ = ["RefreshReport"]


def _mean(t: torch.Tensor) -> float:
    return float(t.float().mean()) if len(t) else float("nan")


@dataclass
class RefreshReport:
    """One refresh of :class:`~afr_aug.AFRDataset` (returned by ``refresh``, kept as
    ``balancer.report``).

    Per class (lists of length C): ``originals``, ``slots`` (items of the set), ``minority``
    (slots split minority), ``threshold`` (λ_c), ``hard`` (§3.3 treated the class as hard;
    None when the rule did not apply), ``accuracy`` (the per-class accuracy the split used),
    ``attacked``, ``adversarial_share``, and of the attacked slots: ``crossed`` (share whose
    cosine to the class mean fell below λ_c), ``cos_before`` / ``cos_after`` (mean cosine to
    the class mean), ``label_kept`` (accuracy after / accuracy before on those slots).

    Totals: the same over all attacked slots, ``linf`` (mean L∞ distance, in [0, 1] units),
    ``mix_p`` and ``mix_area`` (E[1 − lam] of the mixer), and :attr:`dose`.
    ``similarity`` and ``adversarial_similarity`` keep the cosines of every slot and of every
    adversarial image (with ``labels`` and ``adversarial_labels``) for :meth:`plot`.

    Example:
        >>> import warnings
        >>> from afr_aug import AFRDataset
        >>> from afr_aug.models import resnet32
        >>> images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
        >>> labels = torch.tensor([0] * 20 + [1] * 10)
        >>> stage2 = AFRDataset(images, labels, progress=False, label_safe=None)  # serve all
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     report = stage2.refresh(resnet32(num_classes=2))
        >>> report.attacked, report.adversarial_share, round(report.dose, 4)
        ([8, 8], [0.4, 0.4], 0.0299)
        >>> sorted(report.to_dict())[:3]                  # JSON-ready, for results files
        ['accuracy', 'adversarial_accuracy', 'adversarial_share']
    """

    generation: int
    target: str
    layout: str
    originals: list[int]
    slots: list[int]
    minority: list[int]
    threshold: list[float]
    hard: list[bool] | None
    accuracy: list[float] | None
    train_accuracy: float | None
    rule: str | None
    attacked: list[int]
    crossed: list[float]
    cos_before: list[float]
    cos_after: list[float]
    label_kept: list[float]
    clean_accuracy: float
    adversarial_accuracy: float
    linf: float
    mix_p: float
    mix_area: float
    similarity: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)
    adversarial_similarity: torch.Tensor = field(repr=False)
    adversarial_labels: torch.Tensor = field(repr=False)
    cos_before_mean: float = float("nan")
    head_accuracy: float | None = None
    cos_after_mean: float = float("nan")
    share_below_0_8: float = float("nan")  # what a fixed λ = 0.8 would call minority
    total_crossed: float = float("nan")  # share of all attacked slots that crossed λ_c
    rejected: list[int] | None = None  # per class: attacked slots served clean

    @classmethod
    def measure(
        cls,
        *,
        generation,
        target,
        layout,
        class_counts,
        slot_labels,
        split,
        attacked,
        before_correct,
        after_similarity,
        after_correct,
        linf,
        mix_p,
        mix_area,
        accuracy=None,
        train_accuracy=None,
        head_accuracy=None,
        rejected=None,
    ) -> RefreshReport:
        """Build the report from a refresh's split and the attacked slots' before/after."""
        c = split.num_classes
        lab = split.labels[attacked]
        lam = split.thresholds
        crossed = (after_similarity < lam[lab]).float()
        before = split.similarity[attacked]

        def per_class(values: torch.Tensor) -> list[float]:
            return [_mean(values[lab == k]) for k in range(c)]

        acc0, acc1 = per_class(before_correct.float()), per_class(after_correct.float())
        kept = [a1 / a0 if a0 > 0 else float("nan") for a0, a1 in zip(acc0, acc1)]
        slots = torch.bincount(slot_labels, minlength=c)
        return cls(
            generation=generation,
            target=target,
            layout=layout,
            originals=[int(v) for v in class_counts],
            slots=slots.tolist(),
            minority=split.minority_counts.tolist(),
            threshold=[float(v) for v in lam],
            hard=None if split.hard is None else split.hard.tolist(),
            accuracy=None if accuracy is None else [float(v) for v in accuracy],
            train_accuracy=None if train_accuracy is None else float(train_accuracy),
            rule=split.rule,
            attacked=torch.bincount(lab, minlength=c).tolist(),
            crossed=per_class(crossed),
            cos_before=per_class(before),
            cos_after=per_class(after_similarity),
            label_kept=kept,
            clean_accuracy=_mean(before_correct),
            adversarial_accuracy=_mean(after_correct),
            linf=_mean(linf),
            mix_p=float(mix_p),
            mix_area=float(mix_area),
            similarity=split.similarity,
            labels=split.labels,
            adversarial_similarity=after_similarity,
            adversarial_labels=lab,
            cos_before_mean=_mean(before),
            head_accuracy=head_accuracy,
            cos_after_mean=_mean(after_similarity),
            total_crossed=_mean(crossed),
            rejected=None if rejected is None else [int(r) for r in rejected],
            share_below_0_8=_mean((split.similarity < 0.8).float()),
        )

    # -- totals -----------------------------------------------------------------------------
    @property
    def served(self) -> list[int]:
        """Adversarial items per class: the attacked slots minus the rejected ones."""
        return [a - r for a, r in zip(self.attacked, self.rejected or [0] * len(self.attacked))]

    @property
    def adversarial_share(self) -> list[float]:
        """Adversarial items / items, per class."""
        return [a / s if s else float("nan") for a, s in zip(self.served, self.slots)]

    @property
    def total_adversarial_share(self) -> float:
        return sum(self.served) / max(sum(self.slots), 1)

    @property
    def total_label_kept(self) -> float:
        """Accuracy on the adversarial images / on the same images clean."""
        if not self.clean_accuracy or math.isnan(self.clean_accuracy):
            return float("nan")
        return self.adversarial_accuracy / self.clean_accuracy

    @property
    def dose(self) -> float:
        """The share of stage 2's pixel mass that is adversarial: mix p × E[1 − lam] ×
        adversarial share of the set."""
        return self.mix_p * self.mix_area * self.total_adversarial_share

    def share_below(self, cosine: float = 0.8) -> float:
        """Share of the split images (the slots, or the originals) with cosine to their class
        mean below ``cosine``: what a fixed λ (the paper's 0.8) would label minority in this
        model's embedding space."""
        return _mean((self.similarity < cosine).float())

    def warnings(self) -> list[str]:
        """What suggests AFR does little on this data."""
        out = []
        if self.dose < 0.01:
            out.append(
                f"AFR dose {self.dose:.2%} < 1%: adversarial images are {self.dose:.2%} of "
                f"stage 2's pixel mass (mix p {self.mix_p} x pasted area "
                f"{self.mix_area:.2f} x adversarial share "
                f"{self.total_adversarial_share:.1%})"
            )
        single = [k for k, m in enumerate(self.minority) if m == 1]
        if single:
            out.append(
                f"classes {single} have a single minority image: their attack target is one image"
            )
        return out

    # -- output -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything but the per-slot cosines, JSON-ready."""
        skip = {"similarity", "labels", "adversarial_similarity", "adversarial_labels"}
        out = {k: v for k, v in self.__dict__.items() if k not in skip}
        out.update(
            adversarial_share=self.adversarial_share,
            dose=self.dose,
            total_adversarial_share=self.total_adversarial_share,
            total_crossed=self.total_crossed,
            total_label_kept=self.total_label_kept,
            warnings=self.warnings(),
        )
        return out

    @classmethod
    def from_dict(cls, data: dict) -> RefreshReport:
        """The report back from :meth:`to_dict` (e.g. from a checkpoint). The per-slot cosines
        are not in the dict, so :meth:`plot` of a restored report has no histograms.

        >>> import torch
        >>> from afr_aug import AFRDataset
        >>> from afr_aug.models import resnet32
        >>> stage2 = AFRDataset(torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8),
        ...                      torch.tensor([0] * 15 + [1] * 5), progress=False)
        >>> report = stage2.refresh(resnet32(num_classes=2))
        >>> RefreshReport.from_dict(report.to_dict()).to_dict() == report.to_dict()
        True
        """
        if not isinstance(data, dict):
            raise TypeError(
                f"from_dict expects the dict of RefreshReport.to_dict(), got {type(data).__name__}"
            )
        names = {f.name for f in fields(cls)}
        tensors = {"similarity", "labels", "adversarial_similarity", "adversarial_labels"}
        optional = {
            "cos_before_mean",
            "head_accuracy",
            "cos_after_mean",
            "share_below_0_8",
            "total_crossed",
            "rejected",
        }
        missing = sorted(names - tensors - optional - set(data))
        if missing:
            raise ValueError(f"not a RefreshReport dict: missing {missing}")
        empty: dict[str, Any] = {
            "similarity": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.long),
            "adversarial_similarity": torch.zeros(0),
            "adversarial_labels": torch.zeros(0, dtype=torch.long),
        }
        return cls(**{k: v for k, v in data.items() if k in names - tensors}, **empty)

    def __str__(self) -> str:
        head = (
            f"AFR refresh {self.generation} ({self.layout}, target {self.target}): "
            f"§3.3 {'applied (' + self.rule + ')' if self.rule else 'not applied'}"
        )
        cols = (
            "class",
            "orig",
            "slots",
            "minor",
            "λ_c",
            "hard",
            "acc",
            "attacked",
            "adv%",
            "crossed",
            "cos before→after",
            "kept",
        )
        lines = [head, "  ".join(f"{c:>8}" for c in cols)]
        for k in range(len(self.slots)):
            hard = "-" if self.hard is None else ("yes" if self.hard[k] else "no")
            acc = "-" if self.accuracy is None else f"{self.accuracy[k]:.2f}"
            cells = (
                k,
                self.originals[k],
                self.slots[k],
                self.minority[k],
                f"{self.threshold[k]:.3f}",
                hard,
                acc,
                self.attacked[k]
                if self.rejected is None
                else f"{self.attacked[k]}-{self.rejected[k]}",
                f"{self.adversarial_share[k]:.1%}",
                f"{self.crossed[k]:.1%}",
                f"{self.cos_before[k]:.3f}→{self.cos_after[k]:.3f}",
                f"{self.label_kept[k]:.2f}",
            )
            lines.append("  ".join(f"{c!s:>8}" for c in cells))
        rejected = "" if self.rejected is None else f" ({sum(self.rejected)} rejected)"
        lines.append(
            f"total: {sum(self.served)} adversarial{rejected} of {sum(self.slots)} items "
            f"({self.total_adversarial_share:.1%}); cos to class mean "
            f"{self.cos_before_mean:.3f}→{self.cos_after_mean:.3f}; "
            f"crossed λ_c {self.total_crossed:.1%}; "
            f"labels kept {self.total_label_kept:.2f} (accuracy {self.clean_accuracy:.3f} "
            f"clean → {self.adversarial_accuracy:.3f}); mean L∞ {self.linf * 255:.2f}/255; "
            f"dose {self.dose:.2%} (p {self.mix_p} × area {self.mix_area:.3f} × share)"
        )
        split = "slots" if self.layout == "slots" else "originals"
        total = sum(self.slots if self.layout == "slots" else self.originals)
        lines.append(
            f"minority {sum(self.minority) / max(total, 1):.1%} of the "
            f"{split} split; a fixed λ = 0.8 would give {self.share_below_0_8:.1%}"
        )
        lines += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def warn(self) -> None:
        for w in self.warnings():
            warnings.warn(w, stacklevel=3)

    def plot(self, path: str | None = None, bins: int = 40):
        """Fig. 1 style: per class, histograms of the cosine to the class mean of the clean
        slots and of the adversarial images, with λ_c. Returns the figure (saved to ``path``)."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        c = len(self.slots)
        cols = min(c, 5)
        rows = math.ceil(c / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
        for k in range(c):
            ax = axes[k // cols][k % cols]
            clean = self.similarity[self.labels == k].numpy()
            adv = self.adversarial_similarity[self.adversarial_labels == k].numpy()
            lo = float(min(clean.min() if len(clean) else 1, adv.min() if len(adv) else 1))
            edges = torch.linspace(lo, 1, bins + 1).numpy()
            ax.hist(clean, bins=edges, alpha=0.6, label="clean slots", density=True)
            if len(adv):
                ax.hist(adv, bins=edges, alpha=0.6, label="adversarial", density=True)
            ax.axvline(self.threshold[k], color="k", ls="--", lw=1)
            ax.set_title(
                f"class {k}: {self.adversarial_share[k]:.0%} adv, {self.crossed[k]:.0%} crossed",
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
        for k in range(c, rows * cols):
            axes[k // cols][k % cols].axis("off")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(
            f"cosine to the class mean, refresh {self.generation} (dashed: λ_c)", fontsize=9
        )
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
            plt.close(fig)
        return fig
