"""The intra-class attack: PGD that moves majority images toward their class's minority (§3.2).

AFR does not want adversarial examples that change the label; it wants images of the *same*
class that carry more of the features the class's rare, atypical (minority) images have.
:class:`MinorityPGD` therefore replaces PGD's objective: it pulls each image's embedding toward
its own class's minority centroid (from :class:`~afr_aug.IntraClassSplitter`) while a
cross-entropy term keeps the image classified as its own label.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
import torchattacks

from .embedding import Embedder, model_device, preserved_modes
from .split import SplitResult

__all__ = ["MinorityPGD"]


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Each sample's gradient scaled to unit L2 norm (zero stays zero)."""
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
    return g / norm.view(-1, *([1] * (g.ndim - 1)))


class MinorityPGD(torchattacks.PGD):
    r"""PGD toward the own class's minority features, keeping the label (AFR §3.2).

    Each step ascends, per image,

    .. math:: \hat g_{pull} + w \, \hat g_{keep}, \quad
        g_{pull} = \nabla_x \cos(e(x), t_y), \quad g_{keep} = -\nabla_x \mathrm{CE}(f(x), y)

    where :math:`t_y` is the minority centroid of class y, :math:`\hat g` is the gradient scaled
    to unit L2 norm per image and :math:`w` is ``label_weight``; then it takes a signed step of
    ``alpha`` and projects onto the L∞ ball of radius ``eps`` and onto [0, 1].

    Why normalise: in sign-gradient PGD a plain sum "pull − w·CE" is decided pixel by pixel by
    whichever term has the larger gradient there. On a trained ResNet32 the CE gradient is the
    larger, so with ``w = 1`` the sum pulled images toward the class *mean* (cosine to the
    minority centroid fell, 0.80 → 0.77) and with ``w = 0`` most labels flipped. With both
    directions at unit norm, ``label_weight`` is a real trade-off: 1.0 weighs "look like the
    minority" and "stay in the class" equally.

    Cost per step: one forward (the embedding is captured during the forward that gives the
    logits, :class:`~afr_aug.Embedder`). ``grad_scale`` says where the two directions are
    scaled to unit norm:

    - ``"pixels"`` (default): at the image, as above; each term needs its own backward, so a
      step costs one forward and two backwards.
    - ``"embedding"``: at the embedding (the gradients there only pass the classifier head),
      then one backward of the weighted sum: one forward and one backward per step. Cheaper,
      but a worse trade-off: the network amplifies the keep-the-label direction more than the
      pull, so at equal ``label_weight`` fewer images keep their label. Measured on a ResNet32
      trained briefly on 3 CIFAR-10 classes (300 majority images): "pixels" with weight 1.0
      moved 89 % toward the minority and kept 100 % of labels; "embedding" reached at best
      87 % moved with 88 % kept (weight 0.7), 95 % / 84 % (0.6), 70 % / 93 % (0.8).

    With ``embed_fn`` the embedding and the logits come from two forwards, scaled at the pixels.

    The paper's reading ("fine-tune the PGD model on the minority samples"): the attack is
    steered by the minority samples through the centroid target, not by training weights; the
    classifier is never updated here.

    Paper values: ``eps = 0.6``, 3 steps of ``1/255``. After 3 steps of 1/255 no pixel can move
    by more than 3/255, so ``eps = 0.6`` never binds: the step size and count set the budget.
    ``random_start`` is off because a uniform start in [−0.6, 0.6] would replace the image with
    noise that 3 small steps cannot undo — the opposite of "keep the original features".

    Args:
        model: any classifier returning logits (torchvision, timm, your own ``nn.Module``).
        eps: L∞ radius, in [0, 1] pixel units (>= 0).
        alpha: step size (> 0).
        steps: number of steps (>= 1).
        random_start: start from a uniform point in the eps-ball (see above).
        embed_fn: ``embed_fn(x) -> [N, D]``, an embedding computed outside the model's
            forward (costs a second forward per step); logits then come from ``model(x)``.
        label_weight: weight of the keep-the-label direction (>= 0; 0 = pure feature pull).
        layer: the embedding layer, as for :class:`~afr_aug.Embedder` (``None``: the input of
            the model's last ``nn.Linear``). Must be the space the targets were computed in.
        grad_scale: ``"pixels"`` or ``"embedding"``, where the two directions are balanced
            (see above).

    Only torchattacks' default mode exists: the label is kept, not chosen, so the targeted
    setters raise. :meth:`set_model` re-points the configured attack at another model (e.g.
    the model after more training), keeping eps, steps, normalisation and targets.

    Images are in [0, 1] as everywhere in torchattacks. If the model expects normalised input,
    declare it with ``set_normalization_used(mean, std)``: then, torchattacks' convention,
    normalised images go in and come out (the steps and eps still count in [0, 1] pixel units);
    :class:`~afr_aug.AFRBalancer` handles that for you.

    Example:
        >>> from afr_aug.models import resnet32
        >>> model = resnet32(num_classes=10)
        >>> atk = MinorityPGD(model).set_targets(torch.randn(10, 64))  # or a SplitResult
        >>> images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
        >>> adv = atk(images, labels)
        >>> bool((adv - images).abs().max() <= 3 / 255 + 1e-6)
        True
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.6, alpha: float = 1 / 255,
                 steps: int = 3, random_start: bool = False,
                 embed_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 label_weight: float = 1.0, layer: Optional[str] = None,
                 grad_scale: str = "pixels"):
        for name, value in (("eps", eps), ("alpha", alpha), ("label_weight", label_weight)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if alpha <= 0:
            raise ValueError(f"alpha (the step size) must be > 0, got {alpha}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        if label_weight < 0:
            raise ValueError(f"label_weight must be >= 0, got {label_weight}")
        if embed_fn is not None and not callable(embed_fn):
            raise TypeError(f"embed_fn must be callable, got {type(embed_fn).__name__}")
        if grad_scale not in ("pixels", "embedding"):
            raise ValueError(f"grad_scale must be 'pixels' or 'embedding', got {grad_scale!r}")
        if grad_scale == "embedding" and embed_fn is not None:
            raise ValueError("grad_scale='embedding' needs the embedding of the logits' forward: "
                             "use layer= instead of embed_fn")
        self.embed_fn = embed_fn
        self.layer = layer
        self.grad_scale = grad_scale
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
        self.attack = "MinorityPGD"
        self.supported_mode = ["default"]
        self.label_weight = float(label_weight)
        self.targets: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        targets = "unset" if self.targets is None else f"[{len(self.targets)}, {self.targets.shape[1]}]"
        return (f"MinorityPGD(eps={self.eps}, alpha={self.alpha:.5f}, steps={self.steps}, "
                f"random_start={self.random_start}, label_weight={self.label_weight}, "
                f"grad_scale={self.grad_scale!r}, "
                f"targets={targets})")

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
                         "and pulls it toward that class's minority (set_targets), so torchattacks' "
                         "targeted modes do not apply")

    set_mode_targeted_by_function = _targeted_unsupported
    set_mode_targeted_random = _targeted_unsupported
    set_mode_targeted_least_likely = _targeted_unsupported
    set_mode_targeted_by_label = _targeted_unsupported

    def set_targets(self, targets: Union[SplitResult, torch.Tensor]) -> "MinorityPGD":
        """Set each class's pull target: a ``SplitResult`` (its ``minority_centroids``) or a
        ``[C, D]`` tensor. Returns self."""
        if isinstance(targets, SplitResult):
            targets = targets.minority_centroids
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a SplitResult or a [C, D] tensor, got "
                            f"{type(targets).__name__}")
        if targets.ndim != 2 or targets.shape[0] == 0:
            raise ValueError(f"targets must be [C, D] (one row per class), got shape "
                             f"{tuple(targets.shape)}")
        if not torch.isfinite(targets).all():
            raise ValueError("targets contain NaN or inf")
        self.targets = targets.detach().float()
        return self

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *args, **kwargs):
        # torchattacks puts the model back in train mode only as a whole; restore every
        # module's own flag so e.g. a frozen BatchNorm inside a training model stays frozen.
        with preserved_modes(self.model):
            return super().__call__(images, labels, *args, **kwargs)

    def _check(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if self.targets is None:
            raise RuntimeError("MinorityPGD has no targets: call set_targets(split_result) first")
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be an NCHW batch, got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype}")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf")
        if images.numel() == 0:
            return
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"images must be in [0, 1] (declare normalisation with "
                             f"set_normalization_used), got range [{lo:.3f}, {hi:.3f}]")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be a 1-D tensor with one entry per image "
                             f"({len(images)}), got "
                             f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}")
        c = len(self.targets)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= c):
            raise ValueError(f"labels must be in [0, {c}) (one target per class), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")

    def _direction(self, adv: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor):
        """The ascent direction of one step (see the class docstring)."""
        x = self.normalize(adv) if self._normalization_applied is False else adv
        if self.embed_fn is not None:             # two forwards, a backward per term
            pull = F.cosine_similarity(self.embed_fn(x).flatten(1), targets, dim=1, eps=1e-12).sum()
            if self.label_weight == 0:
                return torch.autograd.grad(pull, adv)[0]
            keep = -F.cross_entropy(self.get_logits(adv), labels, reduction="sum")
            return (_unit(torch.autograd.grad(pull, adv)[0])
                    + self.label_weight * _unit(torch.autograd.grad(keep, adv)[0]))
        logits, emb = self.embedder(x)
        pull = F.cosine_similarity(emb, targets, dim=1, eps=1e-12)
        if self.label_weight == 0:
            return torch.autograd.grad(pull.sum(), adv)[0]
        keep = -F.cross_entropy(logits, labels, reduction="none")
        if self.grad_scale == "pixels":
            g_pull = torch.autograd.grad(pull.sum(), adv, retain_graph=True)[0]
            return _unit(g_pull) + self.label_weight * _unit(torch.autograd.grad(keep.sum(), adv)[0])
        # per-image weights 1/|grad at the embedding|: cheap backwards through the head only
        g_pull, g_keep = (torch.autograd.grad(t.sum(), emb, retain_graph=True, allow_unused=True)[0]
                          for t in (pull, keep))
        if g_keep is None:
            raise RuntimeError(f"the logits do not depend on {self.embedder.where}: choose "
                               f"a layer the classifier reads, or label_weight=0")
        w_pull = 1.0 / g_pull.flatten(1).norm(dim=1).clamp(min=1e-12)
        w_keep = self.label_weight / g_keep.flatten(1).norm(dim=1).clamp(min=1e-12)
        total = (w_pull.detach() * pull).sum() + (w_keep.detach() * keep).sum()
        return torch.autograd.grad(total, adv)[0]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Overridden: the minority-pull step described in the class docstring."""
        self._check(images, labels)
        if len(images) == 0:
            return images.clone().detach()
        images = images.clone().detach().to(self.device)
        labels = labels.clone().detach().long().to(self.device)
        targets = self.targets.to(self.device)[labels]

        adv = images.clone()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-self.eps, self.eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            direction = self._direction(adv, labels, targets)
            adv = adv.detach() + self.alpha * direction.sign()
            delta = (adv - images).clamp(-self.eps, self.eps)
            adv = (images + delta).clamp(0, 1).detach()
        return adv
