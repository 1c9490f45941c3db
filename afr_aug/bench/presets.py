"""The named recipes of ``afr-aug reproduce --preset`` and how flags change them.

A preset fixes the schedule, the data set, the rows run by default and, for the quick and smoke
presets, the shrunken data (``quick``: BS+CMO, its control and AFR in a few minutes on a CPU;
``smoke``: every row, for CI); ``schedule_from`` applies the command line's overrides on top.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypedDict

from .methods import ALL_METHODS, PAPER_METHODS
from .schedule import Schedule


class _PresetBase(TypedDict):
    schedule: Schedule
    dataset: str
    methods: tuple[str, ...]


class Preset(_PresetBase, total=False):
    """A named recipe: its schedule, data set and default rows (and shrunken data)."""

    train_fraction: float
    test_limit: int


PRESETS: dict[str, Preset] = {
    "paper": {
        "schedule": Schedule(epochs=200, stage2_epochs=50, milestones=(0.8, 0.9)),
        "dataset": "cifar100-lt",
        "methods": PAPER_METHODS,
    },
    # CMO's 400-epoch recipe: decay after 360 and 380 epochs
    "paper400": {
        "schedule": Schedule(epochs=400, stage2_epochs=50, milestones=(0.9, 0.95)),
        "dataset": "cifar100-lt",
        "methods": PAPER_METHODS,
    },
    # the README's main job: BS+CMO, its control and AFR, small enough for ~3 min on a 2-core
    # CPU, long enough that stage 2 mixes the AFR set into training (the paper's p = 0.25)
    "quick": {
        "schedule": Schedule(
            epochs=4,
            stage2_epochs=1,
            warmup_epochs=1,
            refresh_every=1,
            cmo_off_epochs=0,
            slots_per_class=50,
            lr=0.02,
        ),
        "train_fraction": 0.25,
        "test_limit": 1000,
        "dataset": "cifar10-lt",
        "methods": ("bs_cmo", "bs_cmo_ft", "afr"),
    },
    "smoke": {
        "schedule": Schedule(
            epochs=2,
            stage2_epochs=2,
            warmup_epochs=1,
            max_iters=3,
            eval_every=1,
            refresh_every=1,
            cmo_off_epochs=0,
            crt_epochs=1,
            slots_per_class=50,
        ),
        "train_fraction": 0.05,
        "test_limit": 500,
        "dataset": "cifar10-lt",
        "methods": ALL_METHODS,
    },
}


def schedule_from(args) -> Schedule:
    """``args.preset``'s schedule with every schedule flag of ``reproduce`` that was given."""
    s = PRESETS[args.preset]["schedule"]
    changes = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "stage2_epochs": args.stage2_epochs,
            "stage2_lr": args.stage2_lr,
            "mix": args.mix,
            "mix_p": args.mix_p,
            "batch_size": args.batch_size,
            "max_iters": args.max_iters,
            "eval_every": args.eval_every,
            "la_tau": args.la_tau,
            "tau": args.tau,
            "crt_epochs": args.crt_epochs,
            "crt_lr": args.crt_lr,
            "attack_target": args.attack_target,
            "attack_steps": args.attack_steps,
            "attack_step": None if args.attack_step is None else args.attack_step / 255,
            "label_weight": args.label_weight,
            "label_safe": args.label_safe,
            "grad_scale": args.grad_scale,
            "minority_quantile": args.minority_quantile,
            "stage1_method": args.stage1_method,
            "recipe": args.recipe,
            "stage1_weight_decay": args.weight_decay,
        }.items()
        if v is not None
    }
    return replace(s, **changes)
