"""Decoupled classifier re-training (Kang et al., ICLR 2020): cRT, tau-normalisation, LWS, and
MiSLAS's stage 2 (Zhong et al., CVPR 2021).

Why: on long-tailed data the features of a plainly trained network are good, but its last
layer is biased toward the head classes (head classes get larger weight norms). Kang et al.
keep the features and fix only the classifier: re-train it on a class-balanced stream (cRT),
rescale each class's weight vector by its norm (tau-normalisation), or learn one scale per
class (LWS). They are the baselines a reviewer asks for next to AFR, and work on any classifier
whose last layer is an ``nn.Linear``.

The classifier is found as ``afr_aug.Embedder`` finds it without a forward pass: the last
``nn.Linear`` (or module with ``is_classifier = True``) in ``model.named_modules()``; pass
``classifier="name"`` where that is not the layer producing the logits.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sized

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_int, check_number
from .embedding import is_classifier, logits_of, model_device, unwrap_model
from .losses import LabelAwareSmoothingLoss
from .model_mode import eval_mode, preserved_modes

__all__ = [
    "LearnableWeightScaling",
    "find_classifier",
    "retrain_classifier",
    "retrain_mislas",
    "tau_normalize",
]


def find_classifier(model: nn.Module, classifier: str | None = None) -> str:
    """The name of ``model``'s classifier layer (see the module docstring)."""
    modules = dict(unwrap_model(model).named_modules())
    if classifier is not None:
        if classifier not in modules:
            raise ValueError(
                f"{type(unwrap_model(model)).__name__} has no sub-module named "
                f"{classifier!r} (see model.named_modules())"
            )
        return classifier
    names = [n for n, m in modules.items() if is_classifier(m)]
    if not names:
        raise ValueError(
            f"{type(unwrap_model(model)).__name__} has no nn.Linear classifier; "
            "pass classifier='<module name>'"
        )
    return names[-1]


def _weight(module: nn.Module) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(f"the classifier {type(module).__name__} has no 2-D weight [C, D]")
    return weight


def tau_normalize(
    model: nn.Module, tau: float = 1.0, classifier: str | None = None, keep_bias: bool = False
) -> nn.Module:
    """A copy of ``model`` whose class weight vectors are divided by their norm ** ``tau``.

    ``tau = 0`` changes nothing, ``tau = 1`` gives every class a unit-norm weight. Kang et al.
    drop the bias ("bias terms are omitted as they have negligible effect"), so by default it
    is set to zero; ``keep_bias=True`` leaves it as trained. The input model is not modified.
    Choose ``tau`` on a validation split (Kang et al. search [0, 1]).

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]))
    >>> tau_normalize(net, tau=1.0)[1].weight.norm(dim=1).tolist()
    [1.0, 1.0]
    """
    tau = check_number(tau, "tau", minimum=0)
    out = copy.deepcopy(unwrap_model(model))
    layer = dict(out.named_modules())[find_classifier(out, classifier)]
    w = _weight(layer)
    with torch.no_grad():
        norms = w.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()) and tau > 0:
            raise ValueError(
                "a class has an all-zero weight vector: tau-normalisation would divide by zero"
            )
        w.div_(norms.pow(tau))
        if not keep_bias and getattr(layer, "bias", None) is not None:
            layer.bias.zero_()
    return out


class LearnableWeightScaling(nn.Module):
    """LWS: ``model``'s logits times one learnable scale per class; only the scales train.

    Kang et al. scale each class's weight vector, ``f_c * w_c``; here the scale multiplies the
    whole logit ``f_c * (w_c . x + b_c)``, which is the same for a bias-free classifier and
    keeps the trained bias's relative size otherwise. The wrapped model is frozen
    (``requires_grad=False``) and stays in eval mode (its batch-norm statistics too) even when
    this module is put in training mode. Train it with a class-balanced stream, e.g.
    :func:`retrain_classifier` with ``params=lws.parameters()``, or your own loop.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> lws = LearnableWeightScaling(net)
    >>> [n for n, p in lws.named_parameters() if p.requires_grad]
    ['scales']
    >>> lws(torch.rand(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self, model: nn.Module, num_classes: int | None = None, classifier: str | None = None
    ):
        super().__init__()
        if num_classes is None:
            layer = dict(unwrap_model(model).named_modules())[find_classifier(model, classifier)]
            num_classes = _weight(layer).shape[0]
        self.model = model
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(int(num_classes), device=model_device(model)))
        self.model.eval()

    def train(self, mode: bool = True) -> LearnableWeightScaling:
        super().train(mode)
        self.model.eval()  # frozen features: batch-norm statistics stay as trained
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x)) * self.scales


def retrain_classifier(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    lr: float,
    sampler=None,
    *,
    classifier: str | None = None,
    params: Iterable[nn.Parameter] | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    device=None,
    reinit: bool = True,
    progress: bool = True,
) -> nn.Module:
    """cRT: re-initialise the classifier and train only it on a class-balanced stream.

    The rest of the network is frozen (``requires_grad=False``) and run in eval mode, so its
    features and batch-norm statistics stay as trained (every module's train/eval mode is put
    back afterwards); the loss is plain cross-entropy, the
    optimiser SGD with a cosine decay from ``lr`` to 0 over ``epochs`` (Kang et al.: 10 epochs).
    ``loader`` yields ``(images, labels)`` or ``(images, labels, index)``. ``sampler`` (e.g.
    ``LongTailSampler(loader.dataset.targets, exponent=1.0)``) replaces the loader's order with a
    balanced one: the loader is rebuilt on ``loader.dataset`` with its batch size, workers and
    collate function; without it, pass a loader that is balanced already. ``params``
    overrides what trains (e.g. ``LearnableWeightScaling(model).parameters()`` with
    ``reinit=False``). Modifies and returns ``model``.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from afr_aug import LongTailSampler
    >>> x, y = torch.randn(60, 5), torch.tensor([0] * 50 + [1] * 10)
    >>> net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> loader = DataLoader(TensorDataset(x, y), batch_size=20)
    >>> net = retrain_classifier(net, loader, epochs=2, lr=0.1,
    ...                          sampler=LongTailSampler(y, exponent=1.0), progress=False)
    >>> [p.requires_grad for p in net.parameters()]      # only the classifier trains
    [False, False, True, True]
    """
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_number(lr, "lr", minimum=0, strict=True)
    if params is None:
        trainable = _classifier_params(model, classifier, reinit)
    else:
        trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("nothing to train: no parameter requires grad")
    if sampler is not None:
        loader = _resampled(loader, sampler)
    device = torch.device(device) if device is not None else model_device(model)
    opt = torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = epochs * max(len(loader), 1) if isinstance(loader, Sized) else None
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if steps else None
    with eval_mode(model):  # frozen features: batch-norm statistics stay
        for epoch in range(epochs):
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            _train_epoch(
                model,
                loader,
                opt,
                sched,
                device,
                desc=f"cRT epoch {epoch + 1}/{epochs}",
                progress=progress,
            )
    return model


def retrain_mislas(
    model: nn.Module,
    loader: Iterable,
    class_counts,
    epochs: int = 10,
    lr: float = 0.1,
    sampler=None,
    *,
    lr_factor: float = 0.5,
    smooth_head: float = 0.3,
    smooth_tail: float = 0.0,
    shape: str = "concave",
    shift_bn: bool = False,
    classifier: str | None = None,
    momentum: float = 0.9,
    weight_decay: float = 2e-4,
    device=None,
    progress: bool = True,
) -> nn.Module:
    """MiSLAS's stage 2: the classifier re-trained with label-aware smoothing and a per-class
    scale on a class-balanced stream, the batch-norm statistics optionally shifted to it.

    Why: after a mixup-trained stage 1, MiSLAS keeps the features and fixes what the long tail
    did to the last layer and to the calibration. Unlike cRT the classifier (an ``nn.Linear``)
    is *not* re-initialised: it trains at ``lr_factor * lr`` with one learnable scale per class
    (at ``lr``) under :class:`~afr_aug.losses.LabelAwareSmoothingLoss`; the lr is a cosine per
    epoch, as the authors' code. ``shift_bn`` runs the frozen network in training mode, so its
    batch-norm statistics follow the balanced stream. The scales are folded into the classifier
    at the end, so the model keeps its layers. The authors' settings at imbalance 100 (10
    epochs, lr 0.1, weight decay 2e-4): CIFAR-10 ``smooth_head=0.3, smooth_tail=0.0,
    lr_factor=0.5, shift_bn=False``; CIFAR-100 ``0.4, 0.1, 0.2, True``. As in
    :func:`retrain_classifier` (``loader``, ``sampler``), the backbone stays frozen and the
    modes are put back. Modifies and returns ``model``.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from afr_aug import LongTailSampler
    >>> x, y = torch.randn(60, 5), torch.tensor([0] * 50 + [1] * 10)
    >>> net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    >>> loader = DataLoader(TensorDataset(x, y), batch_size=20)
    >>> net = retrain_mislas(net, loader, [50, 10], epochs=2, shift_bn=True,
    ...                      sampler=LongTailSampler(y, exponent=1.0), progress=False)
    >>> [p.requires_grad for p in net.parameters()]          # only the classifier trained
    [False, False, False, False, True, True]
    """
    epochs = check_int(epochs, "epochs", minimum=1)
    lr = check_number(lr, "lr", minimum=0, strict=True)
    lr_factor = check_number(lr_factor, "lr_factor", minimum=0)
    criterion = LabelAwareSmoothingLoss(class_counts, smooth_head, smooth_tail, shape)
    name, layer = _linear_classifier(model, classifier, criterion.num_classes)
    trainable = _classifier_params(model, name, reinit=False)
    scales = nn.Parameter(torch.ones(layer.out_features, device=layer.weight.device))
    opt = torch.optim.SGD(
        [{"params": trainable}, {"params": [scales]}],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
    )
    device = torch.device(device) if device is not None else model_device(model)
    with preserved_modes(model):
        model.train(bool(shift_bn))  # shift_bn: BN statistics follow the balanced stream
        for epoch in range(epochs):
            cosine = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))
            opt.param_groups[0]["lr"], opt.param_groups[1]["lr"] = lr_factor * cosine, cosine
            batches = _epoch_of(
                loader, sampler, epoch, device, f"MiSLAS epoch {epoch + 1}/{epochs}", progress
            )
            for x, y in batches:
                loss = criterion(logits_of(model(x)) * scales, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():  # the scale folded into the classifier
        layer.weight.mul_(scales.detach().unsqueeze(1))
        if layer.bias is not None:
            layer.bias.mul_(scales.detach())
    return model


def _linear_classifier(model: nn.Module, classifier: str | None, num_classes: int):
    """``(name, layer)`` of ``model``'s classifier, an ``nn.Linear`` with ``num_classes``
    outputs."""
    name = find_classifier(model, classifier)
    layer = dict(unwrap_model(model).named_modules())[name]
    if not isinstance(layer, nn.Linear):
        raise TypeError(
            f"retrain_mislas folds its per-class scale into an nn.Linear classifier; "
            f"{name!r} is a {type(layer).__name__}"
        )
    if layer.out_features != num_classes:
        raise ValueError(
            f"class_counts has {num_classes} classes but the classifier "
            f"{name!r} has {layer.out_features} outputs"
        )
    return name, layer


def _epoch_of(loader, sampler, epoch: int, device, desc: str, progress: bool):
    """Epoch ``epoch``'s batches of ``loader``, resampled by ``sampler`` when given."""
    if sampler is not None:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        loader = _resampled(loader, sampler)
    return _batches(loader, device, desc, progress)


def _batches(loader: Iterable, device, desc: str, progress: bool):
    """``(images, labels)`` of each batch on ``device``, under a progress bar."""
    from tqdm.auto import tqdm

    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("the loader must yield (images, labels) or (images, labels, index)")
        yield batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)


def _classifier_params(model: nn.Module, classifier: str | None, reinit: bool):
    """Freeze ``model``, re-initialise its classifier (``reinit``) and unfreeze only that:
    the classifier's parameters."""
    inner = unwrap_model(model)
    name = find_classifier(inner, classifier)
    layer = dict(inner.named_modules())[name]
    for p in inner.parameters():
        p.requires_grad_(False)
    if reinit:
        if not hasattr(layer, "reset_parameters"):
            raise TypeError(f"classifier {name!r} has no reset_parameters(); pass reinit=False")
        layer.reset_parameters()
    for p in layer.parameters():
        p.requires_grad_(True)
    return list(layer.parameters())


def _resampled(loader, sampler):
    """``loader`` rebuilt on its dataset with ``sampler`` (batch size, workers, collate kept)."""
    from torch.utils.data import DataLoader

    if not hasattr(loader, "dataset"):
        raise TypeError("sampler= needs a torch DataLoader (its .dataset is re-sampled)")
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
    )


def _train_epoch(
    model: nn.Module, loader: Iterable, opt, sched, device, desc: str, progress: bool
) -> None:
    """One epoch of cross-entropy steps (the scheduler steps per batch)."""
    for x, y in _batches(loader, device, desc, progress):
        loss = F.cross_entropy(logits_of(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
