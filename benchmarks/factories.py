"""The parts of a run, built from its method name: model, loss, optimiser and AFR's stage-2 set.

One place decides what "ldam_drw" or "afr_old" means, so the training loop, the derived rows
and the throughput probes all build the same objects.
"""

from __future__ import annotations

import torch

from afr_aug import AFRBalancer, IntraClassSplitter, MinorityPGD
from afr_aug.losses import BalancedSoftmaxLoss, LDAMLoss, LogitAdjustedLoss
from afr_aug.mixing import effective_class_counts
from afr_aug.models import resnet32

from .data import Data
from .schedule import Schedule

CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def make_model(data: Data, device, method: str = "") -> torch.nn.Module:
    """ResNet32 with CIFAR normalisation inside (attacks then see [0, 1] images); LDAM gets
    the cosine classifier its margins and scale assume."""
    mean, std = CIFAR_MEAN_STD.get(data.name.replace("-lt", ""), CIFAR_MEAN_STD["cifar10"])
    return resnet32(num_classes=data.num_classes, normalize=(mean, std),
                    normed_classifier=method == "ldam_drw").to(device)


def cmo_prior(data: Data, schedule: Schedule) -> torch.Tensor:
    """The label mass per class CMO's mixed stream carries (``effective_class_counts``)."""
    return effective_class_counts(data.class_counts, p=schedule.cmo_p,
                                  image_size=tuple(data.x_train.shape[-2:]))


def make_criterion(method: str, data: Data, device, schedule: Schedule,
                   mixing: bool = True) -> torch.nn.Module:
    """The loss of ``method``; bs_cmo_eff's Balanced Softmax uses CMO's effective prior while
    CMO mixes (``mixing``) and the plain counts in the epochs it does not."""
    counts = data.class_counts
    if method in ("ce", "ce_drw"):
        return torch.nn.CrossEntropyLoss().to(device)
    if method == "ldam_drw":
        return LDAMLoss(counts).to(device)
    if method == "la":
        return LogitAdjustedLoss(counts, tau=schedule.la_tau).to(device)
    if method == "bs_cmo_eff" and mixing:
        return BalancedSoftmaxLoss(cmo_prior(data, schedule)).to(device)
    return BalancedSoftmaxLoss(counts).to(device)


def make_optimizer(params, lr: float, s: Schedule, device: torch.device) -> torch.optim.Optimizer:
    """SGD with the fused CUDA kernel on a GPU (one launch for all parameters), foreach on CPU."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay, **fast)


def make_balancer(method: str, data: Data, schedule: Schedule, model, mixer, seed: int,
                  autocast=None) -> AFRBalancer:
    """The stage-2 set of ``method``. The control gets AFR's set of slots, only never
    refreshed: plain over-sampling with augmentation."""
    old = method == "afr_old"
    if old:     # AFR before issue 16: originals attacked toward the minority centroid, λ = 0.8
        attack = MinorityPGD(model, target="centroid", steps=3, alpha=1 / 255, label_weight=1.0,
                             grad_scale="pixels", keep_when="always")
        splitter = IntraClassSplitter(threshold=0.8, adaptive_rule="literal")
    else:
        target = "noise" if method == "afr_noise" else schedule.attack_target
        attack = MinorityPGD(model, target=target, steps=schedule.attack_steps,
                             alpha=schedule.attack_step, label_weight=schedule.label_weight,
                             grad_scale=schedule.grad_scale)
        splitter = IntraClassSplitter(quantile=schedule.minority_quantile)
    return AFRBalancer(data.x_train.cpu(), data.y_train.cpu(), num_classes=data.num_classes,
                       target_size=schedule.slots_per_class,
                       attack_share=schedule.attack_share, splitter=splitter, attack=attack,
                       layout="originals" if old else "slots", mixer=mixer, autocast=autocast,
                       seed=seed, progress=True)
