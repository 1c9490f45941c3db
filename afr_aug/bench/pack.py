"""Pack a long-tailed training set and its test set into one file that travels.

    afr-aug pack --dataset cifar10-lt --out cifar10lt.afrpack     # 36.8 MB, prints sha256
    afr-aug reproduce --data cifar10lt.afrpack ...

Why: a GPU run may carry only a few tens of MiB and has no internet, so the raw CIFAR folder
(178 MB) cannot go along. The file holds exactly the arrays ``afr_aug.bench.data.load_data``
builds (the long-tailed split of ``make_long_tailed(seed=0)`` and the full test set), so a run
from a pack equals a run from the folder. The format is described in ``afr_aug.bench.pack_format``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .cli import fail
from .data import DataError, read_cifar_lt
from .pack_format import write_pack

PROG = "afr-aug pack"


def pack_dataset(
    dataset: str, out, root=None, imbalance_ratio: float = 100, download: bool = False
) -> str:
    """Pack what ``load_data(dataset, root, imbalance_ratio)`` returns; returns the sha256."""
    x_train, y_train, x_test, y_test, classes = read_cifar_lt(
        dataset, root, imbalance_ratio, download=download
    )
    arrays = {
        "x_train": x_train.numpy(),
        "y_train": y_train.numpy(),
        "x_test": x_test.numpy(),
        "y_test": y_test.numpy(),
    }
    meta = {
        "dataset": dataset,
        "imbalance_ratio": imbalance_ratio,
        "classes": classes,
        "class_counts": torch.bincount(y_train, minlength=len(classes)).tolist(),
    }
    return write_pack(out, arrays, meta)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", choices=["cifar10-lt", "cifar100-lt"], default="cifar10-lt")
    p.add_argument("--imbalance-ratio", type=float, default=100)
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding cifar-10-batches-py/ or "
        "cifar-100-python/ (default: $AFR_DATA, else ./data)",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch CIFAR with torchvision first when it is not found (needs internet)",
    )
    p.add_argument("--out", required=True, help="the pack file to write")
    args = p.parse_args(argv)
    try:
        digest = pack_dataset(
            args.dataset, args.out, args.data_root, args.imbalance_ratio, download=args.download
        )
    except DataError as e:  # no CIFAR folder, or no download
        fail(PROG, e)
    except ValueError as e:  # a damaged CIFAR file or an impossible --imbalance-ratio
        fail(PROG, e)
    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {size / 1e6:.1f} MB, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
