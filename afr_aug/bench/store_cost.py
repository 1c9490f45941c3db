"""What the adversarial store's integrity costs: its checksums against the refresh they protect.

    afr-aug store-cost [--images 4000] [--size 32] [--storage-dir DIR]

Why: every generation of ``afr_aug.store.AdversarialStore`` is checksummed (crc32 per block of
about 1 MiB) when it is written, checked block by block when it is first read, and checked
whole when a state is loaded. The target is at most 2 % of a refresh. This script times one
real refresh of a synthetic long-tailed set (``--images`` uint8 images of ``--size`` px,
ratio 100, a fresh ResNet32: the worst case, half of every class attacked) with disk storage,
and, on the generation it wrote, the three integrity steps: computing the checksums (part of
the refresh), reading every row once through a fresh store (first-read checks), and loading
the state (the whole-file check, with the link). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
import warnings

import torch

import afr_aug.store as store_module
from afr_aug import AFRDataset
from afr_aug.models import resnet32

from .runtime import device_name
from .sampler_scale import long_tail_labels


def measure(images: int, size: int, storage_dir: str, seed: int = 0) -> dict:
    """Seconds of one refresh and of its integrity steps, and their share of the refresh."""
    labels = long_tail_labels(images, 10, 100.0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (len(labels), 3, size, size), dtype=torch.uint8, generator=g)
    stage2 = AFRDataset(x, labels, storage=storage_dir, progress=False, seed=seed, label_safe=None)
    spent = {"checksums_s": 0.0}
    real = store_module._checksums

    def timed(data, rows_per_block: int, row_bytes: int, num_rows: int) -> list[int]:
        start = time.perf_counter()
        try:
            return real(data, rows_per_block, row_bytes, num_rows)
        finally:
            spent["checksums_s"] += time.perf_counter() - start

    store_module._checksums = timed
    try:
        torch.manual_seed(seed)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = stage2.refresh(resnet32(num_classes=10))
        refresh_s = time.perf_counter() - start
    finally:
        store_module._checksums = real
    assert report is not None  # not a control set
    store = stage2.store
    fresh = pickle.loads(pickle.dumps(store))  # what a DataLoader worker starts with
    start = time.perf_counter()
    fresh.rows(slice(None))
    read_with_checks = time.perf_counter() - start
    fresh = pickle.loads(pickle.dumps(store))
    fresh.checksums = []  # the same read without checks
    start = time.perf_counter()
    fresh.rows(slice(None))
    read_plain = time.perf_counter() - start
    start = time.perf_counter()
    store_module.AdversarialStore(storage_dir).load_state_dict(store.state_dict())
    load_s = time.perf_counter() - start
    first_read_s = max(read_with_checks - read_plain, 0.0)
    return {
        "images": len(labels),
        "size": size,
        "attacked": sum(report.attacked),
        "generation_mb": round(store.num_rows * store.row_bytes / 2**20, 2),
        "blocks": len(store.checksums),
        "refresh_s": round(refresh_s, 2),
        "checksums_s": round(spent["checksums_s"], 4),
        "first_read_checks_s": round(first_read_s, 4),
        "load_check_s": round(load_s, 4),
        "share_of_refresh": {
            "checksums": round(spent["checksums_s"] / refresh_s, 5),
            "first_read_checks": round(first_read_s / refresh_s, 5),
            "load_check": round(load_s / refresh_s, 5),
        },
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="afr-aug store-cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--storage-dir", default=None, help="default: a temporary directory")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.storage_dir) as tmp:
        r = measure(args.images, args.size, tmp)
    r["device"] = device_name(torch.device("cpu"))
    share = r["share_of_refresh"]
    print(
        f"refresh of {r['images']} images ({r['attacked']} attacked, {r['generation_mb']} MiB "
        f"generation, {r['blocks']} blocks): {r['refresh_s']} s; checksums {r['checksums_s']} s "
        f"({share['checksums']:.3%}), first-read checks {r['first_read_checks_s']} s "
        f"({share['first_read_checks']:.3%}), load check {r['load_check_s']} s "
        f"({share['load_check']:.3%}); target <= 2 % each"
    )
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
