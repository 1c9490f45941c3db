"""Rows made from another row's finished model without training its features: post-hoc logit
adjustment, tau-normalisation, cRT and MiSLAS's stage 2 (the ``stage=0`` rows of
``afr_aug.bench.methods``), one builder per ``derive`` name."""

from __future__ import annotations

import math

import torch

from afr_aug import LongTailSampler
from afr_aug.augment import BatchAugment, to_device
from afr_aug.decouple import retrain_classifier, retrain_mislas, tau_normalize
from afr_aug.losses import adjust_logits

from .data import Data, sampler_batches
from .factories import cmo_prior, make_model
from .methods import DERIVED_METHODS, METHODS, MISLAS_STAGE2
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


def _posthoc(model, source_state, data, device, schedule, seed, progress):
    return PosthocAdjusted(model, data.class_counts, schedule.la_tau), 0


def _posthoc_cmo(model, source_state, data, device, schedule, seed, progress):
    counts = torch.tensor(data.class_counts, dtype=torch.float64)
    return PosthocAdjusted(model, cmo_prior(data, schedule) / counts), 0


def _tau(model, source_state, data, device, schedule, seed, progress):
    return tau_normalize(model, schedule.tau), 0


def _crt(model, source_state, data, device, schedule, seed, progress):
    torch.manual_seed(seed)  # the classifier's re-initialisation
    stream = BalancedStream(data, schedule, seed, device)
    retrain_classifier(
        model,
        stream,
        epochs=schedule.crt_epochs,
        lr=schedule.crt_lr,
        momentum=schedule.momentum,
        weight_decay=schedule.weight_decay,
        device=device,
        progress=progress,
    )
    return model, schedule.crt_epochs * len(stream) * stream.batch_size


def _mislas(model, source_state, data, device, schedule, seed, progress):
    settings = MISLAS_STAGE2.get(data.name, MISLAS_STAGE2["cifar10-lt"])
    stream = BalancedStream(data, schedule, seed, device)
    retrain_mislas(
        model,
        stream,
        data.class_counts,
        epochs=schedule.crt_epochs,
        lr=0.1,
        momentum=schedule.momentum,
        weight_decay=schedule.weight_decay,
        device=device,
        progress=progress,
        **settings,
    )
    return model, schedule.crt_epochs * len(stream) * stream.batch_size


# derive name (``Method.derive``) -> (model, source_state, data, device, schedule, seed,
# progress) -> (the model, images trained on)
# the derives that re-train the classifier (so they cost training time and record images/s)
CLASSIFIER_DERIVES = ("crt", "mislas")

DERIVES = {
    "posthoc": _posthoc,
    "posthoc_cmo": _posthoc_cmo,
    "tau": _tau,
    "crt": _crt,
    "mislas": _mislas,
}


def derive_model(
    name: str,
    source_state: dict,
    data: Data,
    device,
    schedule: Schedule,
    seed: int,
    progress: bool = False,
):
    """The model of a derived row (``stage=0`` in ``afr_aug.bench.methods``) made from the
    finished checkpoint of the run it starts from, and the number of images it trained on.

    ``posthoc`` (ce_posthoc): CE's logits minus ``la_tau * log prior`` (Menon et al.'s post-hoc
    form). ``posthoc_cmo`` (bs_cmo_posthoc): BS+CMO's logits minus ``log(effective prior /
    counts)``: the share of the prior Balanced Softmax left uncorrected because CMO's mixed
    stream is not distributed as the counts. ``tau`` (``*_tau``): tau-normalised classifier
    (``schedule.tau``, bias dropped). ``crt`` (bs_cmo_crt): the classifier re-initialised and
    re-trained on :class:`BalancedStream` for ``crt_epochs`` with the features frozen.
    ``mislas``: MiSLAS's stage 2 (``afr_aug.decouple.retrain_mislas``, the authors' settings
    for the data set) on :class:`BalancedStream` for ``crt_epochs`` (their 10)."""
    if name not in DERIVED_METHODS:
        raise ValueError(f"unknown derived row {name!r}; choose from {', '.join(DERIVED_METHODS)}")
    entry = METHODS[name]
    assert entry.starts_from is not None and entry.derive is not None  # a derived row
    device = torch.device(device)
    model = make_model(data, device, METHODS[entry.starts_from])
    model.load_state_dict(source_state["model"])
    return DERIVES[entry.derive](model, source_state, data, device, schedule, seed, progress)
