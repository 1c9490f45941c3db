"""The intra-class attack: PGD that turns majority images into their class's minority (§3.2).

AFR does not want adversarial examples that change the label; it wants images of the *same*
class that carry the features of the class's rare, atypical (minority) images. The paper
"consider[s] the minority and majority samples in a class as two categories" and "fine-tune[s]
the PGD model on the minority samples": :meth:`MinorityPGD.fit` trains a small 2C-way head on
the frozen embeddings that tells each class's minority from its majority, and the attack is a
targeted PGD toward "(class y, minority)" that also keeps the model's label y.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
import torchattacks

from .checks import check_finite, check_image_batch, check_image_values, check_int, check_number
from .embedding import Embedder, model_device
from .model_mode import eval_mode, preserved_modes
from .split import SplitResult

__all__ = ["MinorityPGD"]


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Each sample's gradient scaled to unit L2 norm (zero stays zero)."""
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
    return g / norm.view(-1, *([1] * (g.ndim - 1)))


TARGETS = ("head", "centroid", "slot", "noise")


class MinorityPGD(torchattacks.PGD):
    r"""PGD toward the own class's minority, keeping the label (AFR §3.2).

    Each step ascends, per image,

    .. math:: \hat g_{pull} + w \, \hat g_{keep}, \quad g_{keep} = -\nabla_x \mathrm{CE}(f(x), y)

    where :math:`\hat g` is a gradient scaled to unit L2 norm per image, :math:`w` is
    ``label_weight``, and the pull depends on ``target``:

    - ``"head"`` (default): :math:`g_{pull} = -\nabla_x \mathrm{CE}(h(\bar e(x)), (y, \mathrm{minority}))`,
      with ``h`` the 2C-way linear head :meth:`fit` trains on the unit-length embeddings
      :math:`\bar e` (the paper's "two categories" per class). The head's own classes also
      resist a move into another class.
    - ``"centroid"``: :math:`\nabla_x \cos(e(x), t_y)` toward the mean of class y's minority
      embeddings. Minority images lie away from the class mean in *different* directions, so
      their mean lies near the class mean: on trained ResNet32s this pull made images more
      typical, not less (cosine to the class mean 0.899 → 0.940). Kept for comparison.
    - ``"slot"``: as ``"centroid"``, toward one random minority embedding of class y per image.
    - ``"noise"``: random ±``alpha`` sign steps, no gradient: the control that shows what the
      direction adds.

    Then it takes a signed step of ``alpha`` and projects onto the L∞ ball of radius ``eps``
    and onto [0, 1]. Normalising the two gradients lets ``label_weight`` be a real trade-off
    (with a plain sum, sign-PGD follows whichever term has the larger gradient per pixel).

    ``grad_scale`` says where the two directions are scaled to unit norm: ``"embedding"``
    (default: at the embedding, where the gradients only pass the classifier and the head, then
    one backward of the weighted sum: one forward and one backward per step) or ``"pixels"``
    (at the image: a backward per direction). The network amplifies the keep-the-label
    direction more than the pull, so ``"embedding"`` wants a smaller ``label_weight`` for the
    same trade-off. ``keep_when="correct"`` (default) applies the label term only to images
    the model currently gets right: an image it already gets wrong would otherwise spend its
    budget on being fixed instead of moved. With ``embed_fn`` the embedding and the logits
    come from two forwards.

    Budget and defaults, measured (``benchmarks.attack_balance``,
    ``benchmarks/results/cpu-cifar10lt-30+10-screen/attack_*.txt``): the paper's ``eps = 0.6``
    never binds after 3 steps; its 3 steps of ``1/255`` move 46 % of attacked slots across
    λ_c on a ResNet32 trained 200 epochs on CIFAR-10-LT but only 19 % on one trained 30 epochs.
    3 steps of ``3/255`` (the same cost) with ``label_weight=0.25`` at the embedding cross 41 %
    and 36 % and keep the labels at 0.93 and 0.98 of the clean accuracy; pixel scaling with
    weight 0.7 does as well (50 %, 39 %) at two backwards a step. ``random_start`` is off: a
    uniform start in [−0.6, 0.6] would replace the image with noise.

    Args:
        model: any classifier returning logits (torchvision, timm, your own ``nn.Module``).
        eps: L∞ radius, in [0, 1] pixel units (>= 0).
        alpha: step size (> 0).
        steps: number of steps (>= 1).
        random_start: start from a uniform point in the eps-ball.
        embed_fn: ``embed_fn(x) -> [N, D]``, an embedding computed outside the model's forward.
        label_weight: weight of the keep-the-label direction (>= 0); see above.
        layer: the embedding layer, as for :class:`~afr_aug.Embedder` (``None``: the input of
            the model's last ``nn.Linear``). Must be the space of :meth:`fit`'s embeddings.
        grad_scale: ``"embedding"`` or ``"pixels"`` (see above); default ``"embedding"``,
            ``"pixels"`` with ``embed_fn``.
        target: ``"head"``, ``"centroid"``, ``"slot"`` or ``"noise"`` (see above).
        head_steps: optimiser steps of the head's fit (full batch, Adam).
        seed: seed of the random choices (``"slot"`` targets, ``"noise"`` steps, the head's
            sample); :meth:`fit` reseeds with its own ``seed``.
        keep_when: ``"correct"`` or ``"always"`` (see above).

    Only torchattacks' default mode exists: the label is kept, not chosen, so the targeted
    setters raise. :meth:`set_model` re-points the configured attack at another model, keeping
    every setting and the fitted targets. Images are in [0, 1]; a model that expects normalised
    input is declared with ``set_normalization_used(mean, std)`` (normalised images then go in
    and come out, torchattacks' convention; :meth:`generate` takes care of it).

    Example:
        >>> from afr_aug import IntraClassSplitter
        >>> from afr_aug.models import resnet32
        >>> model = resnet32(num_classes=2)
        >>> images, labels = torch.rand(8, 3, 32, 32), torch.tensor([0, 1] * 4)
        >>> emb = torch.randn(8, 64)                     # or run_inference(..., embed=True)
        >>> split = IntraClassSplitter(quantile=0.25).split(emb, labels)
        >>> atk = MinorityPGD(model).fit(emb, split)     # the 2C-way head, a fraction of a second
        >>> adv = atk(images, labels)
        >>> bool((adv - images).abs().max() <= 3 * 3 / 255 + 1e-6)   # 3 steps of 3/255
        True
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.6, alpha: float = 3 / 255,
                 steps: int = 3, random_start: bool = False,
                 embed_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 label_weight: float = 0.25, layer: Optional[str] = None,
                 grad_scale: Optional[str] = None, target: str = "head", head_steps: int = 200,
                 seed: int = 0, keep_when: str = "correct"):
        eps = check_number(eps, "eps", minimum=0)
        alpha = check_number(alpha, "alpha (the step size)", minimum=0, strict=True)
        label_weight = check_number(label_weight, "label_weight", minimum=0)
        steps = check_int(steps, "steps", minimum=1)
        head_steps = check_int(head_steps, "head_steps", minimum=1)
        if embed_fn is not None and not callable(embed_fn):
            raise TypeError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        if grad_scale is None:      # "pixels" is the only choice with an outside embed_fn
            grad_scale = "embedding" if embed_fn is None else "pixels"
        if grad_scale not in ("pixels", "embedding"):
            raise ValueError(f"grad_scale must be 'pixels' or 'embedding', got {grad_scale!r}")
        if grad_scale == "embedding" and embed_fn is not None:
            raise ValueError("grad_scale='embedding' needs the embedding of the logits' forward: "
                             "use layer= instead of embed_fn")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if keep_when not in ("correct", "always"):
            raise ValueError(f"keep_when must be 'correct' or 'always', got {keep_when!r}")
        self.keep_when = keep_when
        self.embed_fn = embed_fn
        self.layer = layer
        self.grad_scale = grad_scale
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.attack = "MinorityPGD"
        self.supported_mode = ["default"]
        self.label_weight = float(label_weight)
        self.target = target
        self.head_steps = head_steps
        self.generator = torch.Generator().manual_seed(int(seed))
        self.targets: Optional[torch.Tensor] = None        # [C, D] ("centroid")
        self.head: Optional[torch.nn.Linear] = None        # 2C-way ("head")
        self.head_accuracy: Optional[float] = None         # of the head on its fit sample
        self._pool: Optional[torch.Tensor] = None          # minority embeddings by class ("slot")
        self._pool_start: Optional[torch.Tensor] = None
        self._pool_count: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        return (f"MinorityPGD(target={self.target!r}, eps={self.eps}, alpha={self.alpha:.5f}, "
                f"steps={self.steps}, random_start={self.random_start}, "
                f"label_weight={self.label_weight}, grad_scale={self.grad_scale!r}, "
                f"fitted={self.fitted})")

    def set_model(self, model: torch.nn.Module) -> None:
        """Attack ``model`` from now on (same settings and targets); the embedding layer is
        looked up again in the new model."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().set_model(model)
        self.embedder = Embedder(model, self.layer) if self.embed_fn is None else None
        self.device = model_device(model)

    def _targeted_unsupported(self, *args, **kwargs):
        raise ValueError("MinorityPGD has only the default mode: it keeps each image's own label "
                         "and moves it toward that class's minority (fit), so torchattacks' "
                         "targeted modes do not apply")

    set_mode_targeted_by_function = _targeted_unsupported
    set_mode_targeted_random = _targeted_unsupported
    set_mode_targeted_least_likely = _targeted_unsupported
    set_mode_targeted_by_label = _targeted_unsupported

    # -- fitting the target ---------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Whether the attack has what its ``target`` needs (:meth:`fit` / :meth:`set_targets`)."""
        return {"head": self.head is not None, "centroid": self.targets is not None,
                "slot": self._pool is not None, "noise": True}[self.target]

    def set_targets(self, targets: Union[SplitResult, torch.Tensor]) -> "MinorityPGD":
        """``target="centroid"``: each class's pull target, a ``SplitResult`` (its
        ``minority_centroids``) or a ``[C, D]`` tensor. Returns self."""
        if isinstance(targets, SplitResult):
            targets = targets.minority_centroids
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a SplitResult or a [C, D] tensor, got "
                            f"{type(targets).__name__}")
        if targets.ndim != 2 or targets.shape[0] == 0:
            raise ValueError(f"targets must be [C, D] (one row per class), got shape "
                             f"{tuple(targets.shape)}")
        check_finite(targets, "targets")
        if self.target != "centroid":
            raise ValueError(f"set_targets gives target='centroid' its centroids; this attack "
                             f"has target={self.target!r}: use fit(embeddings, split)")
        self.targets = targets.detach().float()
        return self

    def fit(self, embeddings: torch.Tensor, split: SplitResult,
            seed: Optional[int] = None) -> "MinorityPGD":
        """Fit the target to a split of ``embeddings`` [N, D] (the paper's "fine-tune the PGD
        model on the minority samples"): the 2C-way head for ``"head"``, the minority
        centroids for ``"centroid"``, the minority embeddings for ``"slot"``. Returns self."""
        if not isinstance(split, SplitResult):
            raise TypeError(f"split must be a SplitResult, got {type(split).__name__}")
        embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(split.labels):
            raise ValueError(f"embeddings must be [N, D] with the split's N = {len(split.labels)} "
                             f"rows, got shape {tuple(embeddings.shape)}")
        check_finite(embeddings, "embeddings")
        if seed is not None:
            self.generator.manual_seed(int(seed))
        embeddings = embeddings.detach().float().cpu()
        if self.target == "centroid":
            self.targets = split.minority_centroids.float()
        elif self.target == "slot":
            self._fit_pool(embeddings, split)
        elif self.target == "head":
            self._fit_head(embeddings, split)
        return self

    def _fit_pool(self, embeddings: torch.Tensor, split: SplitResult) -> None:
        c = split.num_classes
        minority = torch.nonzero(split.minority_mask).flatten()
        minority = minority[torch.argsort(split.labels[minority], stable=True)]
        count = torch.bincount(split.labels[minority], minlength=c)
        pool = embeddings[minority]
        # a class without minority is pulled toward its centroid (its least typical image)
        empty = torch.nonzero(count == 0).flatten()
        start = torch.cumsum(count, 0) - count
        if len(empty):
            pool = torch.cat([pool, split.minority_centroids[empty].float()])
            start[empty] = len(minority) + torch.arange(len(empty))
            count[empty] = 1
        self._pool, self._pool_start, self._pool_count = pool, start, count

    def _fit_head(self, embeddings: torch.Tensor, split: SplitResult) -> None:
        """A balanced sample of each (class, minority/majority) category; Adam, full batch."""
        c = split.num_classes
        category = 2 * split.labels + split.minority_mask.long()
        per = max(16, min(256, 50_000 // (2 * c)))
        order = torch.randperm(len(category), generator=self.generator)
        order = order[torch.argsort(category[order], stable=True)]
        sizes = torch.bincount(category, minlength=2 * c)
        starts = torch.cumsum(sizes, 0) - sizes
        rank = torch.arange(len(order)) - starts[category[order]]
        pick = order[rank < per]
        x = F.normalize(embeddings[pick], dim=1)
        y = category[pick]
        head = torch.nn.Linear(x.shape[1], 2 * c)
        with torch.no_grad():
            head.weight.normal_(0, 0.01, generator=self.generator)
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

    # -- the attack -------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *args, **kwargs):
        # torchattacks puts the model back in train mode only as a whole; restore every
        # module's own flag so e.g. a frozen BatchNorm inside a training model stays frozen.
        with preserved_modes(self.model):
            return super().__call__(images, labels, *args, **kwargs)

    def _check(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not self.fitted:
            how = "set_targets(split_result)" if self.target == "centroid" else "fit(embeddings, split)"
            raise RuntimeError(f"MinorityPGD(target={self.target!r}) is not fitted: call {how} first")
        check_image_batch(images, "images")
        check_image_values(images, "images", allow_uint8=False, tolerance=1e-6,
                           hint=" (declare normalisation with set_normalization_used)")
        if images.numel() == 0:
            return
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be a 1-D tensor with one entry per image "
                             f"({len(images)}), got "
                             f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
        c = self.num_target_classes
        if c and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= c):
            raise ValueError(f"labels must be in [0, {c}) (one target per class), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")

    @property
    def num_target_classes(self) -> int:
        """Classes the fitted target knows (0 for ``"noise"``)."""
        if self.target == "head":
            return self.head.out_features // 2 if self.head is not None else 0
        if self.target == "centroid":
            return len(self.targets) if self.targets is not None else 0
        if self.target == "slot":
            return len(self._pool_count) if self._pool_count is not None else 0
        return 0

    def _pull(self, emb: torch.Tensor, labels: torch.Tensor, goal) -> torch.Tensor:
        """Per image, the quantity the pull ascends."""
        width = self.head.in_features if self.target == "head" else goal.shape[1]
        if emb.shape[1] != width:
            where = self.embedder.where if self.embedder is not None else "embed_fn"
            raise ValueError(f"the targets are {width}-dimensional but the model's embedding "
                             f"({where}) has {emb.shape[1]} dimensions: fit the attack on "
                             f"embeddings of the same layer (layer=...)")
        if self.target == "head":
            logits = self.head(F.normalize(emb.float(), dim=1))
            return -F.cross_entropy(logits * 10.0, goal, reduction="none")
        return F.cosine_similarity(emb.float(), goal, dim=1, eps=1e-12)

    def _goal(self, labels: torch.Tensor):
        """What each image is pulled toward: a head category or a target embedding."""
        if self.target == "head":
            self.head = self.head.to(self.device)
            return 2 * labels + 1
        if self.target == "centroid":
            return self.targets.to(self.device)[labels]
        cpu = labels.cpu()
        pick = (torch.rand(len(cpu), generator=self.generator) * self._pool_count[cpu]).long()
        return self._pool[self._pool_start[cpu] + pick].to(self.device)

    def _direction(self, adv: torch.Tensor, labels: torch.Tensor, goal):
        """The ascent direction of one step (see the class docstring)."""
        x = self.normalize(adv) if self._normalization_applied is False else adv
        if self.embed_fn is not None:             # two forwards, a backward per term
            pull = self._pull(self.embed_fn(x).flatten(1), labels, goal).sum()
            if self.label_weight == 0:
                return torch.autograd.grad(pull, adv)[0]
            logits = self.get_logits(adv)
            keep = -F.cross_entropy(logits, labels, reduction="none")
            if self.keep_when == "correct":
                keep = keep * (logits.argmax(1) == labels).to(keep.dtype).detach()
            keep = keep.sum()
            return (_unit(torch.autograd.grad(pull, adv)[0])
                    + self.label_weight * _unit(torch.autograd.grad(keep, adv)[0]))
        logits, emb = self.embedder(x)
        pull = self._pull(emb, labels, goal)
        if self.label_weight == 0:
            return torch.autograd.grad(pull.sum(), adv)[0]
        keep = -F.cross_entropy(logits.float(), labels, reduction="none")
        if self.keep_when == "correct":    # an image the model gets wrong is pulled freely
            keep = keep * (logits.argmax(1) == labels).to(keep.dtype).detach()
        g_keep = None
        if self.grad_scale == "embedding":
            # per-image weights 1/|grad at the embedding|: cheap backwards through the heads
            g_pull, g_keep = (torch.autograd.grad(t.sum(), emb, retain_graph=True,
                                                  allow_unused=True)[0] for t in (pull, keep))
        if g_keep is None:   # "pixels", or a named layer whose captured tensor the logits skip
            g_pull = torch.autograd.grad(pull.sum(), adv, retain_graph=True)[0]
            return _unit(g_pull) + self.label_weight * _unit(torch.autograd.grad(keep.sum(), adv)[0])
        w_pull = 1.0 / g_pull.flatten(1).norm(dim=1).clamp(min=1e-12)
        w_keep = self.label_weight / g_keep.flatten(1).norm(dim=1).clamp(min=1e-12)
        total = (w_pull.detach() * pull).sum() + (w_keep.detach() * keep).sum()
        return torch.autograd.grad(total, adv)[0]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Overridden: the minority step described in the class docstring."""
        self._check(images, labels)
        if len(images) == 0:
            return images.clone().detach()
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().long().to(self.device)
        adv = images.clone()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        goal = None if self.target == "noise" else self._goal(labels)
        for _ in range(self.steps):
            if self.target == "noise":
                signs = torch.randint(0, 2, adv.shape, generator=self.generator).mul_(2).sub_(1)
                adv = adv + self.alpha * signs.to(adv.device, adv.dtype)
            else:
                adv.requires_grad_(True)
                adv = adv.detach() + self.alpha * self._direction(adv, labels, goal).sign()
            delta = (adv - images).clamp(-self.eps, self.eps)
            adv = (images + delta).clamp(0, 1).detach()
        return adv

    def generate(self, batches: Iterable, measure: bool = True) -> Iterator[Tuple[torch.Tensor, dict]]:
        """Attack every batch of ``batches`` (``(images [B, C, H, W] in [0, 1], labels[, ...])``)
        and yield ``(uint8 rows [B, C, H, W] on the CPU, after)``.

        Owns what the loop around an attack needs: the declared normalisation (images in and
        rows out stay in [0, 1]), the device, the uint8 rounding. With ``measure`` it runs one
        more forward per batch and ``after`` holds the adversarial images' ``"embeddings"``
        and ``"predictions"`` (CPU) and their L∞ distance ``"linf"`` from the clean images,
        for the refresh report; else ``after`` is empty.
        """
        declared = self.normalization_used is not None
        for batch in batches:
            x, y = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device)
            if declared:
                adv = self.inverse_normalize(self(self.normalize(x), y)).clamp_(0, 1)
            else:
                adv = self(x, y)
            rows = adv.detach().mul(255).round_().to(torch.uint8)
            after = {}
            if measure:
                back = rows.float().div_(255)
                seen = self.normalize(back) if declared else back
                with torch.no_grad(), eval_mode(self.model):
                    if self.embed_fn is not None:      # the embedding the split was made in
                        logits, emb = self.model(seen), self.embed_fn(seen).flatten(1)
                    else:
                        logits, emb = Embedder(self.model, self.layer)(seen)
                after = {"embeddings": emb.float().cpu(), "predictions": logits.argmax(1).cpu(),
                         "linf": (back - x).abs().flatten(1).amax(1).cpu()}
            yield rows.cpu(), after
