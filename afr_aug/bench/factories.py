"""The parts of a run, built from its row's entry (``afr_aug.bench.methods.Method``): model, loss,
stage-1 mixer, optimiser and the stage-2 set (``afr_aug.AFRDataset``).

Each kind of loss, mixer and stage-2 set has one builder in a table here, keyed by the name
the registry gives it, so the training loop, the derived rows and the throughput probes all
build the same objects and no one compares row names.
"""

from __future__ import annotations

import torch

from afr_aug import (
    AFRDataset,
    CutMixBalancer,
    IntraClassSplitter,
    MinorityPGD,
    MixUpBalancer,
    Remix,
    SignNoise,
)
from afr_aug.losses import BalancedSoftmaxLoss, IBLoss, LDAMLoss, LogitAdjustedLoss
from afr_aug.mixing import effective_class_counts
from afr_aug.models import resnet32

from .afr_old import OriginalsLayout
from .data import Data
from .methods import Method
from .methods import method as method_entry
from .schedule import Schedule

CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _entry(method: str | Method) -> Method:
    """A row's registry entry, from the entry or its name."""
    return method if isinstance(method, Method) else method_entry(method)


def make_model(data: Data, device, method: str | Method | None = None) -> torch.nn.Module:
    """ResNet32 with CIFAR normalisation inside (attacks then see [0, 1] images); a row with
    ``classifier="cosine"`` (LDAM) gets the cosine classifier its margins and scale assume."""
    mean, std = CIFAR_MEAN_STD.get(data.name.replace("-lt", ""), CIFAR_MEAN_STD["cifar10"])
    cosine = method is not None and _entry(method).classifier == "cosine"
    return resnet32(
        num_classes=data.num_classes, normalize=(mean, std), normed_classifier=cosine
    ).to(device)


# LDAM's logit scale s: the cosine classifier's outputs times this are the logits its loss
# trains, so evaluation scales them by it for calibration (accuracy does not depend on it)
COSINE_SCALE = 30.0


def logit_scale(method: str | Method | None) -> float:
    """What the row's model outputs are multiplied by to give the logits its loss trains."""
    cosine = method is not None and _entry(method).classifier == "cosine"
    return COSINE_SCALE if cosine else 1.0


def cmo_prior(data: Data, schedule: Schedule) -> torch.Tensor:
    """The label mass per class CMO's mixed stream carries (``effective_class_counts``)."""
    height, width = data.x_train.shape[-2:]
    return effective_class_counts(data.class_counts, p=schedule.cmo_p, image_size=(height, width))


def _ib(gamma: float):
    def build(data: Data, schedule: Schedule, mixing: bool):
        start = 0 if schedule.switch_from is None else schedule.at(schedule.switch_from)
        return IBLoss(
            data.class_counts, alpha=1000.0, gamma=gamma, weighting="inverse", start_epoch=start
        )

    return build


# loss name -> (data, schedule, mixing) -> the criterion. bs_eff's Balanced Softmax uses CMO's
# effective prior while CMO mixes (``mixing``) and the plain counts in the epochs it does not.
LOSSES = {
    "ce": lambda data, s, mixing: torch.nn.CrossEntropyLoss(),
    "ldam": lambda data, s, mixing: LDAMLoss(data.class_counts, s=COSINE_SCALE),
    "la": lambda data, s, mixing: LogitAdjustedLoss(data.class_counts, tau=s.la_tau),
    "bs": lambda data, s, mixing: BalancedSoftmaxLoss(data.class_counts),
    "bs_eff": lambda data, s, mixing: BalancedSoftmaxLoss(
        cmo_prior(data, s) if mixing else data.class_counts
    ),
    "ib": _ib(0.0),
    "ib_focal": _ib(1.0),
}


def make_criterion(
    method: str | Method, data: Data, device, schedule: Schedule, mixing: bool = True
) -> torch.nn.Module:
    """The loss of ``method`` (its ``loss`` builder in :data:`LOSSES`)."""
    return LOSSES[_entry(method).loss](data, schedule, mixing).to(device)


# stage-1 mixer name -> (data, schedule, seed) -> the mixer. CMO pastes a balanced batch onto
# half the batches (p = 0.5); Remix (kappa 3, tau 0.5) and MiSLAS's mixup mix every batch with
# itself, mixup's Beta(1, 1).
MIXERS = {
    "cmo": lambda data, s, seed: CutMixBalancer(p=s.cmo_p, seed=seed),
    "remix": lambda data, s, seed: Remix(data.class_counts, kappa=3.0, tau=0.5, seed=seed),
    "mixup": lambda data, s, seed: MixUpBalancer(p=1.0, in_batch=True, seed=seed),
}


def make_mixer(method: str | Method, data: Data, schedule: Schedule, seed: int):
    """The stage-1 mixer of ``method`` (``None`` for a row that does not mix)."""
    name = _entry(method).mixer
    return None if name is None else MIXERS[name](data, schedule, seed)


def make_optimizer(params, lr: float, s: Schedule, device: torch.device) -> torch.optim.Optimizer:
    """SGD with the fused CUDA kernel on a GPU (one launch for all parameters), foreach on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay, **fast)


def _attack_and_splitter(method: Method, model, schedule: Schedule):
    if method.stage2_set == "afr_old":  # AFR before issue 16: originals attacked toward the
        # minority centroid, λ = 0.8
        attack = MinorityPGD(
            model,
            target="centroid",
            steps=3,
            alpha=1 / 255,
            label_weight=1.0,
            grad_scale="pixels",
            keep_when="always",
        )
        return attack, IntraClassSplitter(threshold=0.8, adaptive_rule="literal")
    if method.stage2_set == "afr_noise":
        attack = SignNoise(model, alpha=schedule.attack_step, steps=schedule.attack_steps)
    else:
        attack = MinorityPGD(
            model,
            target=schedule.attack_target,
            steps=schedule.attack_steps,
            alpha=schedule.attack_step,
            label_weight=schedule.label_weight,
            grad_scale=schedule.grad_scale,
        )
    return attack, IntraClassSplitter(quantile=schedule.minority_quantile)


def make_stage2_set(
    method: str | Method, data: Data, schedule: Schedule, model, seed: int, autocast=None
) -> AFRDataset:
    """The stage-2 set of ``method``. The control's set draws AFR's slots at every refresh of
    the same seed and attacks none: the only difference is the attack."""
    method = _entry(method)
    attack, splitter = _attack_and_splitter(method, model, schedule)
    layout = OriginalsLayout() if method.stage2_set == "afr_old" else None
    return AFRDataset(
        data.x_train.cpu(),
        data.y_train.cpu(),
        num_classes=data.num_classes,
        target_size=schedule.slots_per_class,
        attack_share=schedule.attack_share,
        splitter=splitter,
        attack=attack,
        layout=layout,
        autocast=autocast,
        seed=seed,
        progress=True,
        control=method.stage2_set == "control",
        label_safe=None if method.stage2_set == "control" else schedule.label_safe,
    )
