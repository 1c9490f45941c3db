"""The on-disk CIFAR layout: where the python-pickle batches are and how to read them.

Why apart from the dataset class: finding the folder (``root``, ``$AFR_DATA``, ``./data``),
downloading it through torchvision and checking each pickled batch are file handling; the
:class:`~afr_aug.data.cifar.CIFARDataset` built from them knows nothing of files. Only the
layout is needed (no md5 check), so a re-encoded copy of the official release reads too.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TypedDict, Union

import numpy as np

__all__ = ["LAYOUTS", "PathLike", "canonical_name", "locate", "read_class_names", "read_split"]

PathLike = Union[str, os.PathLike]


class _Layout(TypedDict):
    folder: str
    train: list[str]
    test: list[str]
    meta: str
    names_key: str
    labels_key: str
    num_classes: int
    tv_class: str


# The two official releases: folder, batch files per split, meta file and the keys inside.
LAYOUTS: dict[str, _Layout] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "names_key": "label_names",
        "labels_key": "labels",
        "num_classes": 10,
        "tv_class": "CIFAR10",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "names_key": "fine_label_names",
        "labels_key": "fine_labels",
        "num_classes": 100,
        "tv_class": "CIFAR100",
    },
}


def canonical_name(name) -> str:
    """The key of ``LAYOUTS`` for ``name`` (case, ``-`` and ``_`` ignored: ``"CIFAR-10"``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str ('cifar10' or 'cifar100'), got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "")
    if key not in LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; expected 'cifar10' or 'cifar100'")
    return key


def _candidate_roots(root: PathLike | None) -> list[Path]:
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(
                f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}"
            )
        return [Path(root).expanduser()]
    roots = []
    env = os.environ.get("AFR_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path("data"))
    return roots


def _find_folder(root: PathLike | None, folder: str) -> Path | None:
    for r in _candidate_roots(root):
        if (r / folder).is_dir():
            return r / folder
        if r.name == folder and r.is_dir():  # root given as the batches folder itself
            return r
    return None


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR file {path} is missing (expected the standard CIFAR layout)"
        )
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise ValueError(
            f"could not read CIFAR file {path}: it is truncated or corrupt ({exc!r})"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR file {path} should hold a dict, got {type(obj).__name__}")
    return obj


def _read_batch(path: Path, labels_key: str, num_classes: int):
    batch = _unpickle(path)
    for key in ("data", labels_key):
        if key not in batch:
            raise ValueError(f"CIFAR file {path} has no {key!r} entry (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR file {path}: 'data' should be uint8 of shape N x 3072, "
            f"got {data.dtype} {tuple(data.shape)} (truncated or corrupt file?)"
        )
    labels = np.asarray(batch[labels_key])
    if labels.ndim != 1 or len(labels) != len(data):
        raise ValueError(
            f"CIFAR file {path}: {labels_key!r} has {labels.size} entries, 'data' {len(data)} "
            "images (truncated or corrupt file?)"
        )
    if len(labels) and (
        not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ValueError(
            f"CIFAR file {path}: {labels_key!r} should be ints in [0, {num_classes}), "
            f"got dtype {labels.dtype} with range [{labels.min()}, {labels.max()}]"
        )
    # Rows are the R plane, then G, then B, each 32 x 32 row-major -> N x 32 x 32 x 3 (HWC).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def locate(
    key: str, root: PathLike | None = None, download: bool = False, train: bool = True
) -> Path:
    """The folder holding ``LAYOUTS[key]``'s files: found under ``root`` (else ``$AFR_DATA``,
    then ``./data``), or downloaded there with torchvision when ``download`` is true.

    Without ``download`` a missing folder raises ``FileNotFoundError`` listing where it looked.
    """
    spec = LAYOUTS[key]
    folder = _find_folder(root, spec["folder"])
    if folder is not None:
        return folder
    looked = [str((r / spec["folder"]).resolve()) for r in _candidate_roots(root)]
    if not download:
        raise FileNotFoundError(
            f"{key} not found: looked for the folder {spec['folder']!r} in "
            + ", ".join(looked)
            + ". Provide the data by passing root=<folder containing "
            f"{spec['folder']}>, by setting the AFR_DATA environment variable to that folder, "
            "or by calling with download=True."
        )
    target_root = _candidate_roots(root)[0]
    target_root.mkdir(parents=True, exist_ok=True)
    import torchvision

    getattr(torchvision.datasets, spec["tv_class"])(str(target_root), train=train, download=True)
    folder = target_root / spec["folder"]
    if not folder.is_dir():
        raise FileNotFoundError(
            f"download of {key} finished but {folder} does not exist; check the download"
        )
    return folder


def read_split(key: str, folder: Path, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The training (or test) split in ``folder``: uint8 images N x 32 x 32 x 3 (HWC,
    C-contiguous) and int64 labels N, every batch file checked."""
    spec = LAYOUTS[key]
    images, labels = [], []
    for fname in spec["train" if train else "test"]:
        x, y = _read_batch(folder / fname, spec["labels_key"], spec["num_classes"])
        images.append(x)
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def read_class_names(key: str, folder: Path) -> list[str]:
    """The class names from the meta file in ``folder`` (fine labels for CIFAR-100)."""
    spec = LAYOUTS[key]
    meta = _unpickle(folder / spec["meta"])
    names = meta.get(spec["names_key"])
    if names is None or len(names) != spec["num_classes"]:
        got = "missing" if names is None else f"{len(names)} names"
        raise ValueError(
            f"CIFAR file {folder / spec['meta']}: {spec['names_key']!r} should list "
            f"{spec['num_classes']} class names, got {got}"
        )
    return list(names)
