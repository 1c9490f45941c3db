"""The benchmark's data: CIFAR-10/100-LT as uint8 tensors on the training device, read from the
CIFAR folder or from a data pack (``afr_aug.bench.pack_format``), and the batches that evaluation
and embedding passes read from them.

Built only on afr-aug's public API. The data stay uint8 tensors on the training device and are
augmented a batch at a time (``afr_aug.augment.BatchAugment``), so a GPU is not starved by
per-image PIL transforms.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from afr_aug.augment import to_device
from afr_aug.data import cifar_lt, load_cifar
from afr_aug.distributed import get_rank, get_world_size

from .pack_format import read_meta, read_pack

# How a command line that reads the CIFAR folder is told where it is
FOLDER_FIX = "--data-root FOLDER, --download (needs internet)"
# Where the data can come from instead of a download
OFFLINE_FIX = "pass --data-root FOLDER (or set $AFR_DATA) to a folder holding it, or --data PACK"


class DataError(Exception):
    """The data are missing, cannot be fetched, or do not match the run: a usage error that the
    command lines answer with one line naming the fix. Anything else keeps its traceback."""


@dataclass
class Data:
    """A long-tailed training set and the test set as uint8 NCHW tensors on one device."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_counts: list[int]
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


def _nchw(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


def _cifar_name(dataset: str) -> str:
    return {"cifar10-lt": "cifar10", "cifar100-lt": "cifar100"}.get(dataset, dataset)


def read_cifar_lt(
    dataset: str, root=None, imbalance_ratio: float = 100, seed: int = 0, download: bool = False
):
    """``(x_train, y_train, x_test, y_test, classes)`` from the CIFAR folder: the long-tailed
    split of ``afr_aug.data.cifar_lt`` and the whole test set, images as uint8 NCHW tensors.
    Raises afr_aug's ``FileNotFoundError`` (where it looked) when the folder is missing."""
    name = _cifar_name(dataset)
    with _data_errors(dataset, download):
        train = cifar_lt(
            name, root=root, imbalance_ratio=imbalance_ratio, seed=seed, download=download
        )
        test = load_cifar(name, root=root, train=False, download=download)
    return (
        _nchw(train.data),
        torch.tensor(train.targets),
        _nchw(test.data),
        torch.tensor(test.targets),
        list(train.classes),
    )


@contextlib.contextmanager
def _data_errors(dataset: str, download: bool):
    """A missing folder or a failed download as one :class:`DataError` naming the fix."""
    try:
        yield
    except FileNotFoundError as e:
        raise DataError(f"{e} From the command line: {FOLDER_FIX}, or --data PACK.") from None
    except OSError as e:  # urllib's URLError, a refused connection, ...
        if not download:
            raise
        raise DataError(
            f"could not download {dataset} ({type(e).__name__}: "
            f"{getattr(e, 'reason', None) or e}; offline?): {OFFLINE_FIX}"
        ) from None


def _check_pack(path, meta: dict, dataset: str, imbalance_ratio: float, seed: int) -> None:
    want = {"dataset": dataset, "imbalance_ratio": float(imbalance_ratio)}
    got = {
        "dataset": meta.get("dataset"),
        "imbalance_ratio": float(meta.get("imbalance_ratio", -1)),
    }
    if want != got or seed != 0:
        raise DataError(
            f"{path} packs {got}, but this run asks for {want} (split seed {seed}); "
            "write a matching pack with afr-aug pack"
        )


def _pack_exists(path) -> None:
    if not os.path.isfile(path):
        raise DataError(
            f"no data pack {path}: write one with afr-aug pack, "
            "or read the CIFAR folder with --data-root FOLDER"
        )


def _read_meta(path) -> dict:
    try:
        return read_meta(path)
    except ValueError as e:  # not a pack at all
        raise DataError(str(e)) from None


def _from_pack(path, dataset: str, imbalance_ratio: float, seed: int):
    _pack_exists(path)
    _check_pack(path, _read_meta(path), dataset, imbalance_ratio, seed)
    try:
        arrays, meta = read_pack(path)
    except ValueError as e:  # a damaged pack
        raise DataError(str(e)) from None
    return (
        torch.from_numpy(arrays["x_train"]),
        torch.from_numpy(arrays["y_train"]),
        torch.from_numpy(arrays["x_test"]),
        torch.from_numpy(arrays["y_test"]),
        list(meta["classes"]),
    )


def load_data(
    dataset: str,
    root=None,
    imbalance_ratio: float = 100,
    seed: int = 0,
    device="cpu",
    train_fraction: float | None = None,
    test_limit: int | None = None,
    pack=None,
    download: bool = False,
) -> Data:
    """CIFAR-10/100-LT as tensors, from the CIFAR folder or from a ``afr_aug.bench.pack`` file
    (``pack``). ``train_fraction`` (each class keeps that share, at least 2 images, so the
    long-tailed shape stays) and ``test_limit`` shrink it for smoke runs."""
    if pack is not None:
        x_tr, y_tr, x_te, y_te, classes = _from_pack(pack, dataset, imbalance_ratio, seed)
    else:
        x_tr, y_tr, x_te, y_te, classes = read_cifar_lt(
            dataset, root, imbalance_ratio, seed, download
        )
    keep = torch.arange(len(y_tr))
    if train_fraction is not None:
        members = [torch.nonzero(y_tr == c).flatten() for c in range(len(classes))]
        keep = torch.cat([m[: max(2, math.ceil(len(m) * train_fraction))] for m in members])
    if test_limit is not None:
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(y_te), generator=g)[:test_limit].sort().values
        x_te, y_te = x_te[pick], y_te[pick]
    y = y_tr[keep]
    return Data(
        name=dataset,
        x_train=x_tr[keep].to(device),
        y_train=y.to(device),
        x_test=x_te.to(device),
        y_test=y_te.to(device),
        class_counts=torch.bincount(y, minlength=len(classes)).tolist(),
        classes=classes,
    )


def check_data(
    dataset: str,
    root=None,
    imbalance_ratio: float = 100,
    seed: int = 0,
    pack=None,
    download: bool = False,
) -> None:
    """Raise what :func:`load_data` would for missing or mismatched data, in a fraction of its
    time (a pack's header; the CIFAR test batch): a parent process checks before it starts
    workers that would each fail on their own."""
    if pack is not None:
        _pack_exists(pack)
        _check_pack(pack, _read_meta(pack), dataset, imbalance_ratio, seed)
        return
    with _data_errors(dataset, download):
        load_cifar(_cifar_name(dataset), root=root, train=False, download=download)


def rank_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000):
    """This rank's share of ``(x, y)`` as ``(float images, labels, index)`` batches: the form
    ``IntraClassSplitter.embed`` and ``evaluate`` gather back over the ranks."""
    mine = torch.arange(get_rank(), len(y), get_world_size())
    for idx in mine.split(batch_size):
        dev_idx = to_device(idx, x.device)
        yield x[dev_idx].float().div_(255), y[dev_idx], idx


def test_batches(data: Data, batch_size: int = 1000):
    return rank_batches(data.x_test, data.y_test, batch_size)


def train_batches(data: Data, batch_size: int = 1000):
    """The clean (unaugmented) training images, for embedding passes."""
    return rank_batches(data.x_train, data.y_train, batch_size)


def sampler_batches(sampler, epoch: int, n_batches: int, batch_size: int) -> torch.Tensor:
    """``[n_batches, batch_size]`` indices of ``sampler``'s draw for ``epoch`` (repeated if
    short)."""
    sampler.set_epoch(epoch)
    draw = sampler.global_draw()
    need = n_batches * batch_size
    return draw.repeat(math.ceil(need / len(draw)))[:need].view(n_batches, batch_size)
