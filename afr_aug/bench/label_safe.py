"""Label-safe adversarial slots, measured: what each option keeps, on models of several quality.

    afr-aug label-safe --checkpoint few=runs/few/ckpt/bs-seed0.pt \\
        thirty=PATH200 ... [--options none label 0.5] [--slots 500]

Why: the default attack keeps most labels on well-trained ResNet32s but not on a model trained
a few epochs, and users start stage 2 from whatever model they have. ``AFRDataset(label_safe=...)``
serves an attacked slot only when the model still gives its class (``label``) or gives it with
a confidence (a float); a rejected slot stays its clean draw. For each checkpoint (``NAME=PATH``,
written by ``afr_aug.bench.reproduce``) and each option this refreshes one stage-2 set of
``--slots`` slots per class with the default attack, the same slots and the same attack for
every option, and prints per class the adversarial share, the share of served attacked slots
that crossed λ_c, the labels kept (accuracy of the attacked positions as served / clean), the
rejection rate, and the refresh's seconds. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from afr_aug import AFRDataset

from .checkpoints import load_checkpoint
from .cli import data_or_fail, fail, label_or_confidence
from .data import load_data
from .factories import make_model
from .runtime import device_name

PROG = "afr-aug label-safe"


def _option(text: str):
    """``none`` (no rule) or a label-safe rule (:func:`label_or_confidence`)."""
    return None if text == "none" else label_or_confidence(text)


def measure(model, data, option, slots: int, seed: int = 0) -> dict:
    """One refresh with ``label_safe=option``: per class and in total."""
    stage2 = AFRDataset(
        data.x_train.cpu(),
        data.y_train.cpu(),
        num_classes=data.num_classes,
        target_size=slots,
        seed=seed,
        progress=False,
        label_safe=option,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = stage2.refresh(model)
    seconds = time.perf_counter() - start
    assert report is not None  # not a control set
    rejected = report.rejected or [0] * len(report.attacked)
    return {
        "option": "none" if option is None else option,
        "seconds": round(seconds, 1),
        "adversarial_share": [round(v, 4) for v in report.adversarial_share],
        "crossed": [round(v, 4) for v in report.crossed],
        "label_kept": [round(v, 4) for v in report.label_kept],
        "rejection_rate": [
            round(r / a, 4) if a else 0.0 for r, a in zip(rejected, report.attacked)
        ],
        "total": {
            "adversarial_share": round(report.total_adversarial_share, 4),
            "crossed": round(report.total_crossed, 4),
            "label_kept": round(report.total_label_kept, 4),
            "clean_accuracy": round(report.clean_accuracy, 4),
            "rejection_rate": round(sum(rejected) / max(sum(report.attacked), 1), 4),
        },
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", nargs="+", required=True, metavar="NAME=PATH")
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default=None, metavar="PACK")
    p.add_argument(
        "--options",
        type=_option,
        nargs="+",
        default=[None, "label", 0.5],
        metavar="none|label|CONF",
    )
    p.add_argument("--slots", type=int, default=500, help="slots per class (default 500)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    checkpoints = []
    for spec in args.checkpoint:
        name, _, path = spec.partition("=")
        if not path:
            fail(PROG, f"--checkpoint takes NAME=PATH, got {spec!r}")
        checkpoints.append((name, path))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = data_or_fail(
        PROG, load_data, args.dataset, args.data_root, device=device, pack=args.data
    )
    out = []
    for name, path in checkpoints:
        state = load_checkpoint(path)
        model = make_model(data, device)
        model.load_state_dict(state["model"])
        model.eval()
        for option in args.options:
            r = {"model": name, "checkpoint": path, **measure(model, data, option, args.slots)}
            out.append(r)
            t = r["total"]
            print(
                f"{name} label_safe={r['option']}: adversarial {t['adversarial_share']:.1%}, "
                f"rejected {t['rejection_rate']:.1%}, crossed {t['crossed']:.1%}, labels kept "
                f"{t['label_kept']:.2f} (clean accuracy {t['clean_accuracy']:.3f}), "
                f"{r['seconds']} s; per class adversarial {r['adversarial_share']}, crossed "
                f"{r['crossed']}, kept {r['label_kept']}, rejected {r['rejection_rate']}",
                flush=True,
            )
    print(json.dumps({"device": device_name(device), "slots": args.slots, "rows": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
