"""How long :class:`afr_aug.LongTailSampler` takes at web scale (tens of millions of labels).

    afr-aug sampler-scale [--labels 50000000] [--classes 1000]

Why: the sampler must build and draw an epoch for a 50 M-image long-tailed set in seconds
and a few GB, with no per-item float arrays kept. The labels follow the usual exponential
long-tail profile (class ``i`` holds a share ``∝ (1 / ratio) ** (i / (C - 1))``). The last
line printed is one JSON object ``{"labels", "classes", "construct_s", "draw_s"}``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from afr_aug import LongTailSampler

from .cli import fail

PROG = "afr-aug sampler-scale"


def long_tail_labels(
    num_labels: int, num_classes: int, imbalance_ratio: float = 100, seed: int = 0
) -> torch.Tensor:
    """Shuffled int64 labels with an exponential long-tail profile, every class non-empty.

    >>> y = long_tail_labels(1000, 10, imbalance_ratio=10)
    >>> len(y), int(y.max()), bool(torch.bincount(y)[0] > torch.bincount(y)[-1])
    (1000, 9, True)
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive int, got {num_labels!r}")
    if (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int)
        or not 1 <= num_classes <= num_labels
    ):
        raise ValueError(
            f"num_classes must be an int in [1, num_labels={num_labels}], got {num_classes!r}"
        )
    if not float(imbalance_ratio) >= 1.0:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio!r}")
    exponent = torch.arange(num_classes, dtype=torch.float64) / max(num_classes - 1, 1)
    share = (1.0 / float(imbalance_ratio)) ** exponent
    counts = (share / share.sum() * (num_labels - num_classes)).floor().long() + 1
    counts[0] += num_labels - int(counts.sum())  # rounding leftovers go to the head
    labels = torch.repeat_interleave(torch.arange(num_classes), counts)
    g = torch.Generator().manual_seed(seed)
    return labels[torch.randperm(num_labels, generator=g)]


def time_sampler(
    num_labels: int = 50_000_000,
    num_classes: int = 1000,
    imbalance_ratio: float = 100,
    seed: int = 0,
) -> dict:
    """Seconds to build a ``LongTailSampler`` and to draw one epoch (``num_samples = num_labels``).

    >>> r = time_sampler(num_labels=10_000, num_classes=10)
    >>> sorted(r), r["labels"], r["classes"]
    (['classes', 'construct_s', 'draw_s', 'labels'], 10000, 10)
    """
    labels = long_tail_labels(num_labels, num_classes, imbalance_ratio, seed)
    start = time.perf_counter()
    sampler = LongTailSampler(labels, seed=seed)
    construct_s = time.perf_counter() - start
    start = time.perf_counter()
    draw = sampler.global_draw()
    draw_s = time.perf_counter() - start
    assert len(draw) == num_labels
    return {
        "labels": num_labels,
        "classes": num_classes,
        "construct_s": round(construct_s, 3),
        "draw_s": round(draw_s, 3),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=50_000_000, help="dataset size")
    parser.add_argument("--classes", type=int, default=1000, help="number of classes")
    parser.add_argument(
        "--imbalance-ratio", type=float, default=100.0, help="largest / smallest class size"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = time_sampler(args.labels, args.classes, args.imbalance_ratio, args.seed)
    except ValueError as e:  # --labels, --classes or --imbalance-ratio out of range
        fail(PROG, e)
    print(
        f"LongTailSampler, {result['labels']:,} labels in {result['classes']} classes "
        f"({torch.get_num_threads()} threads): build {result['construct_s']:.2f} s, "
        f"one epoch's draw {result['draw_s']:.2f} s"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
