"""Does the attack do what AFR needs? Dose, direction and labels kept, per attack setting.

    afr-aug attack-balance --checkpoint runs/x/ckpt/bs_cmo-seed0.pt --dataset cifar10-lt
    afr-aug attack-balance --checkpoint ... --settings head:3:1:1 head:10:2:1 noise:3:1:0

On a trained model (a checkpoint written by ``afr_aug.bench.reproduce``) it builds the stage-2
set of ``--slots`` slots per class (every class over-sampled with crop + flip, the paper's
order) and refreshes it once per setting
``TARGET:STEPS:STEP_IN_255THS:LABEL_WEIGHT[:GRAD_SCALE][:KEEP_WHEN]`` with the same slots and
split. Per setting it prints the refresh report's totals: the share of attacked
slots that crossed λ_c (Eq. 2, same model), the mean cosine to the class mean before → after,
labels kept (accuracy after / before on the attacked slots), the adversarial share and the
smallest class share, and the seconds. The last line is one JSON object with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from afr_aug import AFRDataset, IntraClassSplitter, MinorityPGD

from .checkpoints import load_checkpoint
from .cli import CHECKPOINT, data_or_fail, require_file
from .data import load_data
from .factories import make_model
from .runtime import device_name

PROG = "afr-aug attack-balance"

DEFAULT_SETTINGS = (
    "centroid:3:1:1",
    "slot:3:1:1",
    "head:3:1:1",
    "head:3:1:0",
    "noise:3:1:0",
    "head:5:1:1",
    "head:10:1:1",
    "head:10:2:1",
)


def parse_setting(text: str) -> dict:
    try:
        target, steps, step, weight, *extra = text.split(":")
        scale = [e for e in extra if e in ("pixels", "embedding")]
        keep = [e for e in extra if e in ("correct", "always")]
        if len(scale) + len(keep) != len(extra) or len(scale) > 1 or len(keep) > 1:
            raise ValueError
        return {
            "target": target,
            "steps": int(steps),
            "alpha": float(step) / 255,
            "label_weight": float(weight),
            "grad_scale": scale[0] if scale else "pixels",
            "keep_when": keep[0] if keep else "correct",
        }
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a setting is TARGET:STEPS:STEP_IN_255THS:LABEL_WEIGHT"
            f"[:pixels|embedding][:correct|always], e.g. head:3:1:1; got {text!r}"
        ) from None


def measure(
    model, data, setting: dict, slots: int, quantile: float, autocast, seed: int = 0
) -> dict:
    stage2 = AFRDataset(
        data.x_train.cpu(),
        data.y_train.cpu(),
        num_classes=data.num_classes,
        target_size=slots,
        seed=seed,
        progress=False,
        autocast=autocast,
        splitter=IntraClassSplitter(quantile=quantile, adaptive=False),
        attack=MinorityPGD(model, **setting),
        label_safe=None,  # the attack as the paper serves it
    )
    start = time.perf_counter()
    report = stage2.refresh(model)
    assert report is not None  # not a control set
    d = report.to_dict()
    return {
        **{k: (round(v * 255, 3) if k == "alpha" else v) for k, v in setting.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "crossed": round(d["total_crossed"], 4),
        "cos_before": round(d["cos_before_mean"], 4),
        "cos_after": round(d["cos_after_mean"], 4),
        "label_kept": round(d["total_label_kept"], 4),
        "clean_accuracy": round(d["clean_accuracy"], 4),
        "adversarial_accuracy": round(d["adversarial_accuracy"], 4),
        "adversarial_share": round(d["total_adversarial_share"], 4),
        "min_class_share": round(min(d["adversarial_share"]), 4),
        "head_accuracy": d["head_accuracy"],
    }


def main(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default=None, metavar="PACK", help="a file from afr_aug.bench.pack")
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch CIFAR with torchvision when it is not found (needs internet)",
    )
    p.add_argument("--slots", type=int, default=500, help="slots per class (default 500)")
    p.add_argument("--quantile", type=float, default=0.2)
    p.add_argument(
        "--settings",
        type=parse_setting,
        nargs="+",
        default=[parse_setting(s) for s in DEFAULT_SETTINGS],
    )
    p.add_argument("--amp", action="store_true", help="bf16 autocast in the refresh")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    require_file(PROG, "--checkpoint", args.checkpoint, CHECKPOINT)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = data_or_fail(
        PROG,
        load_data,
        args.dataset,
        args.data_root,
        device=device,
        pack=args.data,
        download=args.download,
    )
    model = make_model(data, device)
    model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    model.eval()
    autocast = torch.bfloat16 if args.amp else None
    print(
        f"{device_name(device)}; {args.checkpoint}; {args.slots} slots per class, "
        f"{args.quantile:.0%} minority per class, attack_share 0.5"
    )
    rows = []
    for setting in args.settings:
        r = measure(model, data, setting, args.slots, args.quantile, autocast)
        rows.append(r)
        print(
            f"{r['target']:>8} {r['steps']:>2} x {r['alpha']:g}/255 w={r['label_weight']:g} "
            f"{r['grad_scale']} keep {r['keep_when']}: "
            f"crossed {r['crossed']:.1%}, cos to class mean {r['cos_before']:.3f} -> "
            f"{r['cos_after']:.3f}, labels kept {r['label_kept']:.2f} ({r['clean_accuracy']:.3f} "
            f"-> {r['adversarial_accuracy']:.3f}), adversarial {r['adversarial_share']:.1%} "
            f"(min class {r['min_class_share']:.1%}), {r['seconds']} s",
            flush=True,
        )
    print(
        json.dumps(
            {
                "device": device_name(device),
                "checkpoint": args.checkpoint,
                "slots": args.slots,
                "quantile": args.quantile,
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
