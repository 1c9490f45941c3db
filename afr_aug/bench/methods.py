"""The benchmark's rows: one :class:`Method` entry per row of the tables.

An entry says everything that makes the row what it is: its stage and what it starts from, its
loss, mixer, stage-2 set or derive step, its display name, the number its own paper reports,
and its **recipe** as its authors' official code trains it (:class:`Recipe`). The loop, the
factories, the grid, the derived rows, the planner and the tables read these fields; nothing
else compares row names. A new row is one entry here plus its library pieces (and, for a new
kind of loss, mixer or derive step, one builder in ``afr_aug.bench.factories`` or
``afr_aug.bench.derived``).

Only the standard library is imported here, so any module (the stdlib-only ``tables`` too)
can ask "what kind of row is this?" without importing the training code.

Two recipes (``reproduce --recipe``):

- ``paper``: every stage-1 row trains with the preset's schedule (LDAM-DRW's: 200 epochs,
  warm-up 5, lr x0.01 at 160 and 180, batch 128, weight decay 2e-4) and the AFR paper's
  stage-1 augmentation (crop, flip, AutoAugment, Cutout): the equal footing of the AFR
  comparison. DRW starts at the first milestone, IB at half-way.
- ``authors``: each row as its official code trains it (:attr:`Method.authors`), scaled to the
  preset's length (``epochs / 200``). This is the recipe to compare with published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypedDict

RECIPES = ("paper", "authors")
AUGMENTATIONS = ("crop_flip", "autoaugment_cutout")
LR_SCHEDULES = ("step", "cosine_warmup")
# The authors' recipes are given at full length; a preset of another length scales them.
FULL_EPOCHS = 200


@dataclass(frozen=True)
class Recipe:
    """How a stage-1 row trains, at full length.

    ``lr_schedule``: ``"step"`` is LDAM-DRW's code (linear warm-up over ``warmup_epochs``,
    ``lr * (epoch + 1) / warmup_epochs``, then ``lr * factors[i]`` from each milestone on);
    ``"cosine_warmup"`` is Balanced Softmax's code (``CosineAnnealingLRWarmup``: from
    ``warmup_start * lr`` up to ``lr`` over ``warmup_epochs``, then a cosine to 0 at the last
    epoch). ``milestones``, ``drw_from`` (class weights on, for rows with DRW) and
    ``switch_from`` (the loss switched on part-way, IB) are shares of ``epochs``.
    ``source`` says where the recipe comes from.
    """

    augment: str = "crop_flip"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 2e-4
    lr_schedule: str = "step"
    warmup_epochs: int = 5
    warmup_start: float = 0.0
    milestones: tuple[float, ...] = (0.8, 0.9)
    factors: tuple[float, ...] = (0.01, 1e-4)
    drw_from: float | None = 0.8
    switch_from: float | None = None
    source: str = "kaidic/LDAM-DRW cifar_train.py"

    def __post_init__(self):
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if len(self.milestones) != len(self.factors):
            raise ValueError("milestones and factors must have the same length")


@dataclass(frozen=True)
class Published:
    """A number a method's own paper or official repository reports (top-1 %, ResNet-32,
    imbalance ratio 100), and where."""

    top1: float
    source: str
    selection: str = "best epoch on the test set"


# The LDAM-DRW code's recipe, which the CE, DRW, LDAM, IB and CMO CIFAR codes are built on
LDAM_CODE = Recipe()
# Balanced Softmax's official CIFAR config (balanced_softmax_imba200.yaml with ratio 100):
# 13,000 iterations of batch 512, i.e. 520 epochs of the 12,406 CIFAR-10-LT images (25 batches
# each), warm-up 0.05 -> 0.1 over 800 iterations (32 epochs), cosine to 0, weight decay 5e-4,
# crop, flip, AutoAugment and Cutout
BALMS_CODE = Recipe(
    augment="autoaugment_cutout",
    epochs=520,
    batch_size=512,
    weight_decay=5e-4,
    lr_schedule="cosine_warmup",
    warmup_epochs=32,
    warmup_start=0.5,
    milestones=(),
    factors=(),
    drw_from=None,
    source="jiawei-ren/BalancedMetaSoftmax-Classification "
    "config/CIFAR10_LT/balanced_softmax_imba200.yaml, utils.py",
)
# IB's code: plain CE for 100 epochs, then IB with the learning rate at a hundredth, and a
# hundredth again at 160 and 180
IB_CODE = Recipe(
    milestones=(0.5, 0.8, 0.9),
    factors=(0.01, 1e-4, 1e-6),
    drw_from=None,
    switch_from=0.5,
    source="pseulki/IB-Loss cifar_train.py (start_ib_epoch 100)",
)
# Remix (no official code; the paper's Sec. 5.1): 300 epochs, lr x0.1 at 150 and 250, DRW at
# the second decay; the warm-up of the LDAM-DRW code it compares with
REMIX_PAPER = Recipe(
    epochs=300,
    milestones=(0.5, 250 / 300),
    factors=(0.1, 0.01),
    drw_from=250 / 300,
    source="Chou et al. 2020, Sec. 5.1 (no official code)",
)
# MiSLAS's stage 1: mixup, lr x0.1 at 160 and x0.01 at 180 (not LDAM's x0.01 / x1e-4)
MISLAS_CODE = Recipe(
    factors=(0.1, 0.01),
    drw_from=None,
    source="dvlab-research/MiSLAS config/cifar10/cifar10_imb001_stage1_mixup.yaml",
)
CMO_CODE = replace(LDAM_CODE, drw_from=None, source="naver-ai/cmo cifar_train.py")


class _MislasSettings(TypedDict):
    """The keyword arguments of ``afr_aug.decouple.retrain_mislas`` that MiSLAS sets per data
    set."""

    smooth_head: float
    smooth_tail: float
    lr_factor: float
    shift_bn: bool


# MiSLAS's stage 2 at imbalance 100 (config/*/cifar*_imb001_stage2_mislas.yaml)
MISLAS_STAGE2: dict[str, _MislasSettings] = {
    "cifar10-lt": {"smooth_head": 0.3, "smooth_tail": 0.0, "lr_factor": 0.5, "shift_bn": False},
    "cifar100-lt": {"smooth_head": 0.4, "smooth_tail": 0.1, "lr_factor": 0.2, "shift_bn": True},
}


@dataclass(frozen=True)
class Method:
    """One row of the tables.

    ``stage``: 1 trains from scratch, 2 fine-tunes the finished stage-1 model of
    ``--stage1-method`` (bs_cmo by default), 0 is derived from the finished model of
    ``starts_from`` without training its features (post hoc, tau-norm, cRT, MiSLAS's stage 2).
    ``loss``, ``mixer``, ``stage2_set`` and ``derive`` name builders in
    ``afr_aug.bench.factories`` and ``afr_aug.bench.derived``; ``drw``: class weights switched on
    late (when, is the recipe's ``drw_from``); ``classifier``: ``"cosine"`` for LDAM's.
    """

    name: str
    display: str
    stage: int = 1
    loss: str = "ce"
    mixer: str | None = None
    drw: bool = False
    classifier: str = "linear"
    stage2_set: str | None = None
    stage2_stream: str = "long_tailed"
    derive: str | None = None
    starts_from: str | None = None
    authors: Recipe = LDAM_CODE
    published: dict[str, Published] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        """Whether the row is trained epoch by epoch (stages 1 and 2), not derived."""
        return self.stage in (1, 2)

    @property
    def refreshes(self) -> bool:
        """Whether the row's stage-2 set is refreshed (AFR and its controls: the control
        redraws AFR's slots at the same refreshes, unattacked)."""
        return self.stage2_set is not None

    @property
    def attacks(self) -> bool:
        """Whether the row runs (or starts from a run of) the default-configurable attack."""
        return self.stage2_set in ("afr", "afr_noise") or (
            self.starts_from is not None and METHODS[self.starts_from].attacks
        )

    def recipe(self, name: str, schedule) -> Recipe:
        """The recipe ``name`` ("paper" or "authors") of this stage-1 row, at the length of
        ``schedule`` (a ``afr_aug.bench.schedule.Schedule``)."""
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
        if name == "authors":
            r = self.authors
            scale = schedule.epochs / FULL_EPOCHS
            if scale == 1:
                return r
            warmup = (
                schedule.warmup_epochs
                if r.warmup_epochs == LDAM_CODE.warmup_epochs
                else max(2, round(r.warmup_epochs * scale))
            )
            return replace(r, epochs=max(1, round(r.epochs * scale)), warmup_epochs=warmup)
        milestones = tuple(schedule.milestones)
        return Recipe(
            augment="autoaugment_cutout",
            epochs=schedule.epochs,
            batch_size=schedule.batch_size,
            lr=schedule.lr,
            weight_decay=schedule.weight_decay,
            warmup_epochs=schedule.warmup_epochs,
            milestones=milestones,
            factors=(0.01, 1e-4)[: len(milestones)],
            drw_from=milestones[0] if self.drw else None,
            switch_from=self.authors.switch_from,
            source="the AFR paper's stage 1 (preset schedule)",
        )


def _ldam(c10: float, c100: float, row: str) -> dict[str, Published]:
    src = f"Cao et al. 2019 (LDAM-DRW), {row}"
    return {"cifar10-lt": Published(c10, src), "cifar100-lt": Published(c100, src)}


_ROWS = (
    Method("ce", "Cross Entropy (CE)", published=_ldam(70.36, 38.32, "Table 2, ERM (error 29.64)")),
    Method("ce_posthoc", "CE + post-hoc logit adj.", stage=0, derive="posthoc", starts_from="ce"),
    Method(
        "ce_drw",
        "CE-DRW",
        drw=True,
        published=_ldam(74.86, 40.66, "App. C.4 Table 5, DRW (error 25.14); BBN's re-run: 76.34"),
    ),
    Method(
        "ldam_drw",
        "LDAM-DRW",
        loss="ldam",
        drw=True,
        classifier="cosine",
        published=_ldam(77.03, 42.04, "Table 2 (error 22.97)"),
    ),
    Method("la", "Logit-adjusted loss (LA)", loss="la", authors=replace(LDAM_CODE, drw_from=None)),
    Method(
        "bs",
        "Balanced Softmax (BS)",
        loss="bs",
        authors=BALMS_CODE,
        published={
            "cifar10-lt": Published(
                83.1, "Ren et al. 2020 (BALMS), Table 5 row (3), mean of 3 runs"
            ),
            "cifar100-lt": Published(50.3, "Ren et al. 2020 (BALMS), Table 5 row (3)"),
        },
    ),
    Method(
        "ib",
        "IB Loss",
        loss="ib",
        authors=IB_CODE,
        published={
            "cifar10-lt": Published(78.26, "Park et al. 2021 (IB), Table 4"),
            "cifar100-lt": Published(42.14, "Park et al. 2021 (IB), Table 4"),
        },
    ),
    Method(
        "ib_focal",
        "IB Loss + focal",
        loss="ib_focal",
        authors=IB_CODE,
        published={
            "cifar10-lt": Published(79.76, "Park et al. 2021 (IB), Table 4"),
            "cifar100-lt": Published(42.06, "Park et al. 2021 (IB), Table 4"),
        },
    ),
    Method(
        "remix",
        "Remix",
        mixer="remix",
        authors=replace(REMIX_PAPER, drw_from=None),
        published={
            "cifar10-lt": Published(
                75.36, "Chou et al. 2020 (Remix), Table 1, mean of 5 runs", "not stated"
            ),
            "cifar100-lt": Published(41.94, "Chou et al. 2020 (Remix), Table 1", "not stated"),
        },
    ),
    Method(
        "remix_drw",
        "Remix-DRW",
        mixer="remix",
        drw=True,
        authors=REMIX_PAPER,
        published={
            "cifar10-lt": Published(
                79.76, "Chou et al. 2020 (Remix), Table 1, mean of 5 runs", "not stated"
            ),
            "cifar100-lt": Published(46.77, "Chou et al. 2020 (Remix), Table 1", "not stated"),
        },
    ),
    Method(
        "mislas_stage1",
        "MiSLAS stage 1 (mixup)",
        mixer="mixup",
        authors=MISLAS_CODE,
        published={
            "cifar10-lt": Published(72.8, "dvlab-research/MiSLAS README (stage-1 checkpoint)"),
            "cifar100-lt": Published(39.5, "dvlab-research/MiSLAS README"),
        },
    ),
    Method(
        "mislas",
        "MiSLAS",
        stage=0,
        derive="mislas",
        starts_from="mislas_stage1",
        published={
            "cifar10-lt": Published(
                82.1, "Zhong et al. 2021 (MiSLAS); 82.5 in the official README"
            ),
            "cifar100-lt": Published(47.0, "Zhong et al. 2021 (MiSLAS)"),
        },
    ),
    Method(
        "bs_cmo",
        "BS+CMO",
        loss="bs",
        mixer="cmo",
        authors=CMO_CODE,
        published={"cifar100-lt": Published(46.6, "Park et al. 2022 (CMO), Table 2")},
    ),
    Method("bs_cmo_eff", "BS+CMO, effective prior", loss="bs_eff", mixer="cmo", authors=CMO_CODE),
    Method(
        "bs_cmo_posthoc",
        "BS+CMO + post-hoc prior fix",
        stage=0,
        derive="posthoc_cmo",
        starts_from="bs_cmo",
    ),
    Method("bs_cmo_tau", "BS+CMO + τ-norm", stage=0, derive="tau", starts_from="bs_cmo"),
    Method("bs_cmo_crt", "BS+CMO + cRT", stage=0, derive="crt", starts_from="bs_cmo"),
    Method("bs_cmo_ft", "BS+CMO + fine-tune (control)", stage=2, loss="bs", stage2_set="control"),
    Method("afr", "AFR (ours)", stage=2, loss="bs", stage2_set="afr"),
    Method("afr_old", "AFR before issue 16", stage=2, loss="bs", stage2_set="afr_old"),
    Method(
        "afr_noise", "AFR slots + sign noise (control)", stage=2, loss="bs", stage2_set="afr_noise"
    ),
    Method("afr_tau", "AFR + τ-norm", stage=0, derive="tau", starts_from="afr"),
    # the other reading of stage 2: the stream is the class-balanced set itself, the long-tailed
    # batches its CutMix partner; cross-entropy, since Balanced Softmax's prior is uniform there
    Method(
        "bs_cmo_ft_bal",
        "control, balanced stream",
        stage=2,
        stage2_set="control",
        stage2_stream="balanced",
    ),
    Method("afr_bal", "AFR, balanced stream", stage=2, stage2_set="afr", stage2_stream="balanced"),
    Method(
        "afr_noise_bal",
        "sign noise, balanced stream",
        stage=2,
        stage2_set="afr_noise",
        stage2_stream="balanced",
    ),
)

#: Every row by name, in report order
METHODS: dict[str, Method] = {m.name: m for m in _ROWS}
ALL_METHODS = tuple(METHODS)
STAGE1_METHODS = tuple(m.name for m in _ROWS if m.stage == 1)
STAGE2_METHODS = tuple(m.name for m in _ROWS if m.stage == 2)
DERIVED_METHODS = {m.name: m.starts_from for m in _ROWS if m.stage == 0}
TRAINED_METHODS = STAGE1_METHODS + STAGE2_METHODS
# The stage-1 rows whose model stage 2 may fine-tune (--stage1-method; the paper's is bs_cmo):
# plain linear classifiers trained on images (not ldam_drw's cosine one)
STAGE1_BASES = tuple(m.name for m in _ROWS if m.stage == 1 and m.classifier == "linear")
# The paper's Table 1: its nine systems (Remix with and without DRW; MiSLAS's stage 2 brings
# its stage 1) and AFR's control; the default grid of the paper presets and of device_table.sh
PAPER_METHODS = (
    "ce",
    "ce_drw",
    "ldam_drw",
    "bs",
    "ib",
    "remix",
    "remix_drw",
    "mislas",
    "bs_cmo",
    "bs_cmo_ft",
    "afr",
)
# Names --methods accepts for a whole list of rows
METHOD_GROUPS = {"paper": PAPER_METHODS, "all": ALL_METHODS}


def method(name: str) -> Method:
    """The entry of row ``name``; a clear error for an unknown one."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None
