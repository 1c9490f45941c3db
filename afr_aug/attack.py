"""The intra-class attack: PGD that turns majority images into their class's minority (§3.2).

AFR does not want adversarial examples that change the label; it wants images of the *same*
class that carry the features of the class's rare, atypical (minority) images. The paper
"consider[s] the minority and majority samples in a class as two categories" and "fine-tune[s]
the PGD model on the minority samples": :meth:`MinorityPGD.fit` trains a small 2C-way head on
the frozen embeddings that tells each class's minority from its majority, and the attack is a
targeted PGD toward "(class y, minority)" that also keeps the model's label y.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Callable

import torch
import torch.nn.functional as F
import torchattacks

from .checks import (
    check_finite,
    check_image_batch,
    check_image_values,
    check_int,
    check_labels,
    check_number,
)
from .embedding import Embedder, model_device
from .model_mode import eval_mode, preserved_modes
from .split import SplitResult
from .targets import TARGETS

__all__ = ["MinorityPGD", "SignNoise"]


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Each sample's gradient scaled to unit L2 norm (zero stays zero)."""
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
    return g / norm.view(-1, *([1] * (g.ndim - 1)))


class MinorityPGD(torchattacks.PGD):
    r"""PGD toward the own class's minority, keeping the label (AFR §3.2).

    Each step ascends, per image,

    .. math:: \hat g_{pull} + w \, \hat g_{keep}, \quad g_{keep} = -\nabla_x \mathrm{CE}(f(x), y)

    where :math:`\hat g` is a gradient scaled to unit L2 norm per image, :math:`w` is
    ``label_weight``, and the pull is the gradient of the target's ``pull`` (see
    :mod:`afr_aug.targets`): by default (:class:`~afr_aug.targets.HeadTarget`)
    :math:`-\nabla_x \mathrm{CE}(h(\bar e(x)), (y, \mathrm{minority}))`, with ``h`` a 2C-way
    linear head that :meth:`fit` trains on the unit-length embeddings :math:`\bar e` (the
    paper's "two categories" per class). Then it takes a signed step of ``alpha`` and projects
    onto the L∞ ball of radius ``eps`` and onto [0, 1]. Normalising the two gradients makes
    ``label_weight`` a real trade-off (with a plain sum, sign-PGD follows whichever term has the
    larger gradient per pixel).

    ``grad_scale`` says where the two directions are scaled to unit norm: ``"embedding"``
    (default: at the embedding, where the gradients only pass the classifier and the head, then
    one backward of the weighted sum: one forward and one backward per step) or ``"pixels"``
    (at the image: a backward per direction). The network amplifies the keep-the-label
    direction more than the pull, so ``"embedding"`` wants a smaller ``label_weight`` for the
    same trade-off. ``keep_when="correct"`` (default) applies the label term only to images
    the model currently gets right: an image it already gets wrong would otherwise spend its
    budget on being fixed instead of moved. With ``embed_fn`` the embedding and the logits
    come from two forwards. ``random_start`` is off by default: a uniform start in the
    paper's ball of ``eps = 0.6`` would replace the image with noise.

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
        target: a target object (:mod:`afr_aug.targets`) or its name: ``"head"``,
            ``"centroid"``, ``"slot"``. ``"noise"`` is deprecated: use :class:`SignNoise`.
        head_steps: optimiser steps of the head's fit, for ``target="head"``.
        seed: seed of the random choices (``"slot"`` goals, the head's sample); :meth:`fit`
            reseeds with its own ``seed``.
        keep_when: ``"correct"`` or ``"always"`` (see above).

    Only torchattacks' default mode exists: the label is kept, not chosen, so the targeted
    setters raise. :meth:`set_model` re-points the configured attack at another model, keeping
    every setting and the fitted target. Images are in [0, 1]; a model that expects normalised
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

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float = 0.6,
        alpha: float = 3 / 255,
        steps: int = 3,
        random_start: bool = False,
        embed_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        label_weight: float = 0.25,
        layer: str | None = None,
        grad_scale: str | None = None,
        target="head",
        head_steps: int = 200,
        seed: int = 0,
        keep_when: str = "correct",
    ):
        eps = check_number(eps, "eps", minimum=0)
        alpha = check_number(alpha, "alpha (the step size)", minimum=0, strict=True)
        label_weight = check_number(label_weight, "label_weight", minimum=0)
        steps = check_int(steps, "steps", minimum=1)
        if embed_fn is not None and not callable(embed_fn):
            raise TypeError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        if grad_scale is None:  # "pixels" is the only choice with an outside embed_fn
            grad_scale = "embedding" if embed_fn is None else "pixels"
        if grad_scale not in ("pixels", "embedding"):
            raise ValueError(f"grad_scale must be 'pixels' or 'embedding', got {grad_scale!r}")
        if grad_scale == "embedding" and embed_fn is not None:
            raise ValueError(
                "grad_scale='embedding' needs the embedding of the logits' forward: "
                "use layer= instead of embed_fn"
            )
        if keep_when not in ("correct", "always"):
            raise ValueError(f"keep_when must be 'correct' or 'always', got {keep_when!r}")
        self.keep_when, self.embed_fn, self.layer = keep_when, embed_fn, layer
        self.grad_scale = grad_scale
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.attack = "MinorityPGD"
        self.supported_mode = ["default"]
        self.label_weight = float(label_weight)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.noise: SignNoise | None = None
        self.target = self._target(target, head_steps, eps, alpha, steps)

    def _target(self, target, head_steps: int, eps: float, alpha: float, steps: int):
        if target == "noise":
            warnings.warn(
                "MinorityPGD(target='noise') is deprecated: the sign-noise control is "
                "afr_aug.SignNoise, with the same generate()",
                DeprecationWarning,
                stacklevel=3,
            )
            self.noise = SignNoise(self.model, eps=eps, alpha=alpha, steps=steps)
            self.noise.generator = self.generator
            return None
        if isinstance(target, str):
            if target not in TARGETS:
                raise ValueError(
                    f"target must be one of {(*tuple(TARGETS), 'noise')} or a "
                    f"target object, got {target!r}"
                )
            return TARGETS[target](head_steps) if target == "head" else TARGETS[target]()
        if not all(callable(getattr(target, m, None)) for m in ("fit", "goal", "pull")):
            raise TypeError(
                f"target must be a name or an object with fit, goal and pull (see "
                f"afr_aug.targets), got {type(target).__name__}"
            )
        return target

    @property
    def target_name(self) -> str:
        """The target's name (``"head"``, ``"centroid"``, ``"slot"``; ``"noise"``)."""
        return "noise" if self.target is None else self.target.name

    @property
    def head_accuracy(self) -> float | None:
        """The head's accuracy on its fit sample (``target="head"``), else ``None``."""
        return getattr(self.target, "head_accuracy", None)

    @property
    def head(self):
        return getattr(self.target, "head", None)

    @property
    def targets(self):
        return getattr(self.target, "targets", None)

    def __repr__(self) -> str:
        return (
            f"MinorityPGD(target={self.target_name!r}, eps={self.eps}, alpha={self.alpha:.5f}, "
            f"steps={self.steps}, random_start={self.random_start}, "
            f"label_weight={self.label_weight}, grad_scale={self.grad_scale!r}, "
            f"fitted={self.fitted})"
        )

    def set_model(self, model: torch.nn.Module) -> None:
        """Attack ``model`` from now on (same settings and target); the embedding layer is
        looked up again in the new model."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().set_model(model)
        self.embedder = Embedder(model, self.layer) if self.embed_fn is None else None
        self.device = model_device(model)
        noise = getattr(self, "noise", None)
        if noise is not None:  # set_model runs inside __init__ too
            noise.set_model(model)

    def _targeted_unsupported(self, *args, **kwargs):
        raise ValueError(
            "MinorityPGD has only the default mode: it keeps each image's own label "
            "and moves it toward that class's minority (fit), so torchattacks' "
            "targeted modes do not apply"
        )

    set_mode_targeted_by_function = _targeted_unsupported
    set_mode_targeted_random = _targeted_unsupported
    set_mode_targeted_least_likely = _targeted_unsupported
    set_mode_targeted_by_label = _targeted_unsupported

    # -- fitting the target ---------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """Whether the target has what it needs (:meth:`fit` / :meth:`set_targets`)."""
        return self.target is None or self.target.fitted

    def set_targets(self, targets: SplitResult | torch.Tensor) -> MinorityPGD:
        """``target="centroid"``: each class's pull target, a ``SplitResult`` (its
        ``minority_centroids``) or a ``[C, D]`` tensor. Returns self."""
        if not callable(getattr(self.target, "set", None)):
            raise ValueError(
                f"set_targets gives target='centroid' its centroids; this attack "
                f"has target={self.target_name!r}: use fit(embeddings, split)"
            )
        self.target.set(targets)
        return self

    def fit(
        self, embeddings: torch.Tensor, split: SplitResult, seed: int | None = None
    ) -> MinorityPGD:
        """Fit the target to a split of ``embeddings`` [N, D] (the paper's "fine-tune the PGD
        model on the minority samples"): the 2C-way head, the minority centroids or the
        minority embeddings. Returns self."""
        embeddings = check_fit_inputs(embeddings, split)
        if seed is not None:
            self.generator.manual_seed(int(seed))
        if self.target is not None:
            self.target.fit(embeddings, split, self.generator)
        return self

    # -- the attack -------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *args, **kwargs):
        # torchattacks puts the model back in train mode only as a whole; restore every
        # module's own flag so e.g. a frozen BatchNorm inside a training model stays frozen.
        with preserved_modes(self.model):
            return super().__call__(images, labels, *args, **kwargs)

    def _check(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if not self.fitted:
            how = (
                "set_targets(split_result)"
                if self.target_name == "centroid"
                else "fit(embeddings, split)"
            )
            raise RuntimeError(
                f"MinorityPGD(target={self.target_name!r}) is not fitted: call {how} first"
            )
        check_image_batch(images, "images")
        check_image_values(
            images,
            "images",
            allow_uint8=False,
            tolerance=1e-6,
            hint=" (declare normalisation with set_normalization_used)",
        )
        if images.numel() == 0:
            return
        check_labels(labels, num_classes=self.num_target_classes or None, length=len(images))

    @property
    def num_target_classes(self) -> int:
        """Classes the fitted target knows (0 for the sign-noise control)."""
        return 0 if self.target is None else self.target.num_classes

    def _pull(self, emb: torch.Tensor, goal) -> torch.Tensor:
        """Per image, the quantity the pull ascends."""
        width = self.target.width
        if width is not None and emb.shape[1] != width:
            where = self.embedder.where if self.embedder is not None else "embed_fn"
            raise ValueError(
                f"the targets are {width}-dimensional but the model's embedding "
                f"({where}) has {emb.shape[1]} dimensions: fit the attack on "
                f"embeddings of the same layer (layer=...)"
            )
        return self.target.pull(emb, goal)

    def _direction(self, adv: torch.Tensor, labels: torch.Tensor, goal):
        """The ascent direction of one step (see the class docstring)."""
        x = self.normalize(adv) if self._normalization_applied is False else adv
        if self.embed_fn is not None:  # two forwards, a backward per term
            pull = self._pull(self.embed_fn(x).flatten(1), goal).sum()
            if self.label_weight == 0:
                return torch.autograd.grad(pull, adv)[0]
            logits = self.get_logits(adv)
            keep = -F.cross_entropy(logits, labels, reduction="none")
            if self.keep_when == "correct":
                keep = keep * (logits.argmax(1) == labels).to(keep.dtype).detach()
            keep = keep.sum()
            return _unit(torch.autograd.grad(pull, adv)[0]) + self.label_weight * _unit(
                torch.autograd.grad(keep, adv)[0]
            )
        assert self.embedder is not None  # no embed_fn: set_model made one
        logits, emb = self.embedder(x)
        pull = self._pull(emb, goal)
        if self.label_weight == 0:
            return torch.autograd.grad(pull.sum(), adv)[0]
        keep = -F.cross_entropy(logits.float(), labels, reduction="none")
        if self.keep_when == "correct":  # an image the model gets wrong is pulled freely
            keep = keep * (logits.argmax(1) == labels).to(keep.dtype).detach()
        g_pull: torch.Tensor | None = None
        g_keep: torch.Tensor | None = None
        if self.grad_scale == "embedding":
            # per-image weights 1/|grad at the embedding|: cheap backwards through the heads
            g_pull, g_keep = (
                torch.autograd.grad(t.sum(), emb, retain_graph=True, allow_unused=True)[0]
                for t in (pull, keep)
            )
        if g_keep is None:  # "pixels", or a named layer whose captured tensor the logits skip
            g_pull = torch.autograd.grad(pull.sum(), adv, retain_graph=True)[0]
            return _unit(g_pull) + self.label_weight * _unit(
                torch.autograd.grad(keep.sum(), adv)[0]
            )
        assert g_pull is not None  # taken with g_keep
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
        if self.noise is not None:
            return self.noise.perturb(images)
        adv = images.clone()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        goal = self.target.goal(labels, self.device, self.generator)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            adv = adv.detach() + self.alpha * self._direction(adv, labels, goal).sign()
            delta = (adv - images).clamp(-self.eps, self.eps)
            adv = (images + delta).clamp(0, 1).detach()
        return adv

    def generate(
        self, batches: Iterable, measure: bool = True
    ) -> Iterator[tuple[torch.Tensor, dict]]:
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
            after = measure_rows(self, rows, x, y) if measure else {}
            yield rows.cpu(), after


def measure_rows(attack, rows: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor) -> dict:
    """What a refresh reports of adversarial ``rows`` (uint8) made from ``clean`` ([0, 1]) of
    class ``labels``: their embeddings, predictions and the model's confidence in their class
    (CPU), and their L∞ distance, from one forward of the attack's model (its declared
    normalisation applied), in eval mode."""
    back = rows.float().div_(255)
    declared = attack.normalization_used is not None
    seen = attack.normalize(back) if declared else back
    with torch.no_grad(), eval_mode(attack.model):
        if getattr(attack, "embed_fn", None) is not None:  # the embedding the split was made in
            logits, emb = attack.model(seen), attack.embed_fn(seen).flatten(1)
        else:
            logits, emb = Embedder(attack.model, attack.layer)(seen)
    confidence = logits.float().softmax(1).gather(1, labels.view(-1, 1).to(logits.device))
    return {
        "embeddings": emb.float().cpu(),
        "predictions": logits.argmax(1).cpu(),
        "confidence": confidence.flatten().cpu(),
        "linf": (back - clean).abs().flatten(1).amax(1).cpu(),
    }


def check_fit_inputs(embeddings, split: SplitResult) -> torch.Tensor:
    """``embeddings`` [N, D] for ``split`` as float CPU rows, or one clear error."""
    if not isinstance(split, SplitResult):
        raise TypeError(f"split must be a SplitResult, got {type(split).__name__}")
    embeddings = torch.as_tensor(embeddings)
    if embeddings.ndim != 2 or len(embeddings) != len(split.labels):
        raise ValueError(
            f"embeddings must be [N, D] with the split's N = {len(split.labels)} "
            f"rows, got shape {tuple(embeddings.shape)}"
        )
    check_finite(embeddings, "embeddings")
    return embeddings.detach().float().cpu()


class SignNoise(torchattacks.attack.Attack):
    """The control of :class:`MinorityPGD`: the same budget (``steps`` signed steps of
    ``alpha`` in the L∞ ball of ``eps``, pixel units), in random directions.

    Why: AFR's claim is that the *direction* toward the class's minority helps. A stage-2 set
    whose same slots are moved by random sign steps of the same size costs as much and changes
    the images as much; if it trains as well, the direction adds nothing. It has the attack's
    interface (``set_model``, ``fit``, ``generate``, ``normalization_used``), so a stage-2 set
    takes it as its ``attack``.

    >>> from afr_aug.models import resnet32
    >>> noise = SignNoise(resnet32(num_classes=2), seed=0)
    >>> x = torch.rand(2, 3, 8, 8)
    >>> rows, after = next(noise.generate([(x, torch.tensor([0, 1]))]))
    >>> rows.dtype, bool((rows.float() / 255 - x).abs().max() <= 3 * 3 / 255 + 1 / 255)
    (torch.uint8, True)
    """

    target_name = "noise"
    head_accuracy = None

    def __init__(
        self,
        model: torch.nn.Module,
        eps: float = 0.6,
        alpha: float = 3 / 255,
        steps: int = 3,
        layer: str | None = None,
        seed: int = 0,
    ):
        super().__init__("SignNoise", model)
        self.eps = check_number(eps, "eps", minimum=0)
        self.alpha = check_number(alpha, "alpha (the step size)", minimum=0, strict=True)
        self.steps = check_int(steps, "steps", minimum=1)
        self.layer, self.embed_fn = layer, None
        self.supported_mode = ["default"]
        self.generator = torch.Generator().manual_seed(int(seed))

    def set_model(self, model: torch.nn.Module) -> None:
        super().set_model(model)
        self.device = model_device(model)

    def fit(self, embeddings, split: SplitResult, seed: int | None = None) -> SignNoise:
        """Nothing to fit; ``seed`` reseeds the noise, as :meth:`MinorityPGD.fit` does."""
        check_fit_inputs(embeddings, split)
        if seed is not None:
            self.generator.manual_seed(int(seed))
        return self

    def perturb(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` ([0, 1]) moved by ``steps`` random sign steps, projected as PGD does."""
        adv = images.clone()
        for _ in range(self.steps):
            signs = torch.randint(0, 2, adv.shape, generator=self.generator).mul_(2).sub_(1)
            adv = adv + self.alpha * signs.to(adv.device, adv.dtype)
            delta = (adv - images).clamp(-self.eps, self.eps)
            adv = (images + delta).clamp(0, 1).detach()
        return adv

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        check_image_batch(images, "images")
        check_image_values(images, "images", allow_uint8=False, tolerance=1e-6)
        return self.perturb(images.clone().detach().to(self.device))

    def generate(
        self, batches: Iterable, measure: bool = True
    ) -> Iterator[tuple[torch.Tensor, dict]]:
        """As :meth:`MinorityPGD.generate`: ``(uint8 rows on the CPU, after)`` per batch."""
        for batch in batches:
            x = batch[0].to(self.device, non_blocking=True)
            rows = self.perturb(x).mul(255).round_().to(torch.uint8)
            yield rows.cpu(), (measure_rows(self, rows, x, batch[1]) if measure else {})
