"""Rows made from another row's finished model without training its features (issue 10):
post-hoc logit adjustment, tau-normalisation and cRT (``methods.DERIVED_METHODS``)."""

from __future__ import annotations

import math

import torch

from afr_aug import LongTailSampler
from afr_aug.augment import BatchAugment, to_device
from afr_aug.decouple import retrain_classifier, tau_normalize
from afr_aug.losses import adjust_logits

from .data import Data, sampler_batches
from .factories import cmo_prior, make_model
from .methods import DERIVED_METHODS
from .schedule import Schedule


class PosthocAdjusted(torch.nn.Module):
    """``model`` whose logits are shifted by ``-tau * log(class_counts)`` at inference
    (``afr_aug.losses.adjust_logits``); nothing is trained."""

    def __init__(self, model: torch.nn.Module, class_counts, tau: float = 1.0):
        super().__init__()
        self.model, self.class_counts, self.tau = model, class_counts, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adjust_logits(self.model(x), self.class_counts, self.tau)


class BalancedStream:
    """The loader cRT trains on: class-balanced draws of ``LongTailSampler(exponent=1)``, crop and
    flip, as many batches per pass as an epoch of the long-tailed set (``max_iters`` caps it);
    each pass is the next epoch, and every rank draws the same batches (the classifier then
    stays identical on all ranks under torchrun)."""

    def __init__(self, data: Data, schedule: Schedule, seed: int, device):
        self.data, self.seed, self.device = data, seed, torch.device(device)
        self.batch_size = schedule.batch_size
        self.n_batches = math.ceil(len(data.y_train) / schedule.batch_size)
        if schedule.max_iters is not None:
            self.n_batches = min(self.n_batches, schedule.max_iters)
        self.sampler = LongTailSampler(data.y_train.cpu(), exponent=1.0, seed=seed)
        self.augment = BatchAugment(crop=True, flip=True, seed=seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        batches = sampler_batches(self.sampler, self.epoch, self.n_batches, self.batch_size)
        self.augment.generator.manual_seed(self.seed * 100003 + self.epoch)
        self.epoch += 1
        for idx in to_device(batches, self.device):
            yield self.augment(self.data.x_train[idx]), self.data.y_train[idx]


def derive_model(method: str, source_state: dict, data: Data, device, schedule: Schedule,
                 seed: int, progress: bool = False):
    """The model of a ``DERIVED_METHODS`` row made from the finished checkpoint of the run it
    starts from, and the number of images it trained on (cRT only).

    ``ce_posthoc``: CE's logits minus ``la_tau * log prior`` (Menon et al.'s post-hoc form).
    ``bs_cmo_posthoc``: BS+CMO's logits minus ``log(effective prior / counts)``: the share of
    the prior Balanced Softmax left uncorrected because CMO's mixed stream is not distributed as
    the counts. ``*_tau``: tau-normalised classifier (``schedule.tau``, bias dropped).
    ``bs_cmo_crt``: the classifier re-initialised and re-trained on :class:`BalancedStream` for
    ``crt_epochs`` with the features frozen."""
    if method not in DERIVED_METHODS:
        raise ValueError(f"unknown derived row {method!r}; choose from {', '.join(DERIVED_METHODS)}")
    device = torch.device(device)
    model = make_model(data, device, DERIVED_METHODS[method])
    model.load_state_dict(source_state["model"])
    if method.endswith("_tau"):
        return tau_normalize(model, schedule.tau), 0
    if method == "ce_posthoc":
        return PosthocAdjusted(model, data.class_counts, schedule.la_tau), 0
    if method == "bs_cmo_posthoc":
        counts = torch.tensor(data.class_counts, dtype=torch.float64)
        return PosthocAdjusted(model, cmo_prior(data, schedule) / counts), 0
    torch.manual_seed(seed)                       # the classifier's re-initialisation
    stream = BalancedStream(data, schedule, seed, device)
    retrain_classifier(model, stream, epochs=schedule.crt_epochs, lr=schedule.crt_lr,
                       momentum=schedule.momentum, weight_decay=schedule.weight_decay,
                       device=device, progress=progress)
    return model, schedule.crt_epochs * len(stream) * stream.batch_size
