"""Long-tailed CIFAR data: CIFAR-10-LT and CIFAR-100-LT.

The paper evaluates AFR on CIFAR-10-LT and CIFAR-100-LT (Section 4.1), built the way LDAM-DRW
(Cao et al., 2019) and CMO (Park et al., 2022) build them: the balanced CIFAR training set is
subsampled so that class ``i`` (in label order) keeps ``n_max * (1 / ratio) ** (i / (C - 1))``
images ("exp" profile), where ``ratio = n_max / n_min`` is the imbalance ratio (100 in the
paper's main tables). The test sets stay balanced, and results are also reported on the
"Many" (> 100 training images), "Medium" (20-100) and "Few" (< 20) shot class groups.

This module holds the pieces needed for that protocol without depending on md5-checked
downloads:

- :func:`long_tailed_counts` -- how many images each class keeps;
- :func:`make_long_tailed` -- which indices of any labelled dataset to keep;
- :func:`load_cifar` / :class:`CIFARDataset` -- a reader for the standard on-disk CIFAR layout
  (``cifar-10-batches-py/``, ``cifar-100-python/``);
- :func:`cifar_lt` -- the long-tailed training set in one call;
- :func:`shot_groups` -- the Many/Medium/Few split of classes;
- :class:`ImageList` / :class:`INaturalist` -- lazy readers for the standard long-tailed split
  files of ImageNet-LT and Places-LT ("path label" lines) and iNaturalist 2018 (JSON).

Images are kept as ``uint8`` HWC arrays in ``.data`` (like torchvision) and returned by
``__getitem__`` as PIL images to a ``transform`` or, without one, as float CHW tensors in
[0, 1].
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .metrics import shot_groups  # it lives in metrics; kept importable from here

__all__ = [
    "long_tailed_counts",
    "make_long_tailed",
    "CIFARDataset",
    "load_cifar",
    "cifar_lt",
    "shot_groups",
    "ImageList",
    "INaturalist",
]

PathLike = Union[str, os.PathLike]

# Relative slack used when truncating the "exp" profile to ints: it only matters where float
# rounding puts a mathematically exact integer just below itself (e.g. 32 * 64 ** (-5/6) = 1 is
# computed as 0.9999999999999999); for every standard setting the result equals the published
# LDAM/CMO formula exactly.
_TRUNC_SLACK = 1e-12

_PROFILES = ("exp", "step")


# --------------------------------------------------------------------------------------------
# Class counts and long-tailed subsets
# --------------------------------------------------------------------------------------------


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _as_ratio(imbalance_ratio) -> float:
    """Turn a ratio (100) or a factor (0.01) into a ratio >= 1 (100)."""
    if isinstance(imbalance_ratio, bool) or not isinstance(imbalance_ratio, numbers.Real):
        raise TypeError(
            "imbalance_ratio must be a number (a ratio like 100 or a factor like 0.01), "
            f"got {type(imbalance_ratio).__name__} {imbalance_ratio!r}"
        )
    value = float(imbalance_ratio)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            "imbalance_ratio must be a finite number > 0 (a ratio like 100 or a factor like "
            f"0.01), got {imbalance_ratio!r}"
        )
    ratio = 1.0 / value if value < 1 else value
    nearest = round(ratio)
    if abs(ratio - nearest) <= 1e-9:
        ratio = float(nearest)
    return ratio


def long_tailed_counts(
    n_max: int,
    num_classes: int,
    imbalance_ratio: float = 100,
    profile: str = "exp",
) -> List[int]:
    """Number of training images each class keeps in a long-tailed split.

    Why: every CIFAR-LT result in the literature (LDAM, CMO, and the AFR paper, Sec. 4.1) uses
    this deterministic schedule, so the counts must match it exactly for results to be
    comparable.

    - ``"exp"``: class ``i`` keeps ``int(n_max * (1 / ratio) ** (i / (C - 1)))`` images, so the
      head keeps ``n_max`` and the tail ``n_max / ratio``.
    - ``"step"``: the first ``C // 2`` classes keep ``n_max``, the others ``int(n_max / ratio)``.

    ``imbalance_ratio`` may be given as a ratio (``100``) or as a factor (``0.01``); a value
    below 1 is read as a factor, and ``1`` means balanced. With a single class the result is
    ``[n_max]`` for both profiles. A setting that would leave some class with no image raises
    ``ValueError``.

    >>> long_tailed_counts(5000, 10, 100)
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    >>> long_tailed_counts(5000, 10, 0.01) == long_tailed_counts(5000, 10, 100)
    True
    >>> long_tailed_counts(100, 4, 10, profile="step")
    [100, 100, 10, 10]
    """
    n_max = _check_int(n_max, "n_max", 1)
    num_classes = _check_int(num_classes, "num_classes", 1)
    ratio = _as_ratio(imbalance_ratio)
    if not isinstance(profile, str) or profile not in _PROFILES:
        raise ValueError(f"profile must be one of {list(_PROFILES)}, got {profile!r}")

    if num_classes == 1:
        return [n_max]
    if profile == "exp":
        counts = [
            int(math.floor(n_max * (1.0 / ratio) ** (i / (num_classes - 1)) * (1 + _TRUNC_SLACK)))
            for i in range(num_classes)
        ]
    else:
        tail = int(math.floor(n_max / ratio * (1 + _TRUNC_SLACK)))
        half = num_classes // 2
        counts = [n_max] * half + [tail] * (num_classes - half)
    counts = [min(c, n_max) for c in counts]
    empty = [i for i, c in enumerate(counts) if c < 1]
    if empty:
        raise ValueError(
            f"imbalance ratio {imbalance_ratio!r} with n_max={n_max} leaves class {empty[0]} "
            f"with 0 images (the tail class gets n_max / ratio = {n_max / ratio:.3g}); "
            f"use n_max >= ratio ({ratio:g}) or a smaller ratio"
        )
    return counts


def _as_label_array(targets, name: str = "targets") -> np.ndarray:
    """Convert a list / numpy array / tensor of int labels to a 1-D int64 numpy array."""
    if isinstance(targets, torch.Tensor):
        arr = targets.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(targets)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a 1-D sequence of ints, could not read it: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; expected at least one label")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class labels, got minimum {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def make_long_tailed(
    targets,
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
) -> np.ndarray:
    """Indices of a long-tailed subset of any labelled dataset.

    Why: the long-tailed benchmarks are built by subsampling a balanced training set; returning
    indices (rather than copying data) works with any dataset through
    ``torch.utils.data.Subset`` and records exactly which images were used.

    The number of classes is ``max(targets) + 1`` and every class must be present. Classes are
    taken in label order, as LDAM/CMO do: class ``i`` keeps
    ``long_tailed_counts(n_max, C, imbalance_ratio, profile)[i]`` images, where ``n_max`` is
    the largest per-class count in ``targets``. The images of each class are drawn without
    replacement with ``numpy.random.default_rng(seed)`` (classes visited in label order), so the
    same seed gives the same subset. The result is an ``int64`` array made of each class's
    chosen indices sorted ascending, concatenated in label order.

    >>> targets = [0, 1, 2, 0, 1, 0, 1, 0, 2, 0]          # class counts 5, 3, 2
    >>> idx = make_long_tailed(targets, imbalance_ratio=5, seed=0)
    >>> np.bincount(np.asarray(targets)[idx]).tolist()   # long_tailed_counts(5, 3, 5)
    [5, 2, 1]
    >>> bool((make_long_tailed(targets, 5, seed=0) == idx).all())
    True
    """
    labels = _as_label_array(targets)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    available = np.bincount(labels)
    num_classes = len(available)
    absent = np.flatnonzero(available == 0)
    if absent.size:
        raise ValueError(
            f"class {int(absent[0])} has no images in targets (labels run 0..{num_classes - 1}, "
            f"absent classes: {absent.tolist()}); every class must be present"
        )
    counts = long_tailed_counts(int(available.max()), num_classes, imbalance_ratio, profile)
    rng = np.random.default_rng(int(seed))
    chosen = []
    for cls, want in enumerate(counts):
        have = int(available[cls])
        if have < want:
            raise ValueError(
                f"class {cls} has {have} images available but the long-tailed profile asks "
                f"for {want}"
            )
        pool = np.flatnonzero(labels == cls)
        pick = rng.choice(pool, size=want, replace=False) if want < have else pool
        chosen.append(np.sort(pick))
    return np.concatenate(chosen).astype(np.int64, copy=False)


# --------------------------------------------------------------------------------------------
# CIFAR reader
# --------------------------------------------------------------------------------------------

_CIFAR = {
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


class CIFARDataset(Dataset):
    """An in-memory CIFAR(-LT) image set with the same attributes as torchvision's CIFAR.

    Why: one class for the full sets and their long-tailed subsets keeps the rest of the code
    (samplers, training loops, plots) agnostic to where the images came from, and keeping
    ``.data`` / ``.targets`` / ``.classes`` torchvision-compatible lets existing long-tail code
    use it unchanged.

    Attributes: ``data`` (uint8 array N x 32 x 32 x 3, HWC), ``targets`` (list of int),
    ``classes`` (list of str), ``transform``, ``class_counts`` (list of int, images per class)
    and ``indices`` (int64 array of positions in the full training set for a long-tailed
    subset, ``None`` for a full set).

    ``dataset[i]`` returns ``(image, target)``: with a ``transform`` the image is passed to it
    as a PIL image (so torchvision transforms work); without one it is a float tensor
    3 x H x W in [0, 1].

    >>> data = np.zeros((2, 32, 32, 3), dtype=np.uint8); data[1, 0, 0, 0] = 255
    >>> ds = CIFARDataset(data, [0, 1], classes=["cat", "dog"])
    >>> img, y = ds[1]
    >>> tuple(img.shape), img.dtype, float(img[0, 0, 0]), y
    ((3, 32, 32), torch.float32, 1.0, 1)
    >>> ds.class_counts
    [1, 1]
    """

    def __init__(
        self,
        data: np.ndarray,
        targets: Sequence[int],
        classes: Sequence[str],
        transform: Optional[Callable] = None,
        indices: Optional[np.ndarray] = None,
    ):
        data = np.asarray(data)
        if data.ndim != 4 or data.shape[-1] != 3:
            raise ValueError(f"data must have shape N x H x W x 3, got {tuple(data.shape)}")
        if data.dtype != np.uint8:
            raise TypeError(f"data must be uint8, got {data.dtype}")
        labels = np.asarray(targets)
        if labels.ndim != 1 or len(labels) != len(data):
            raise ValueError(f"targets has {labels.size} entries, data {len(data)} images")
        if len(labels) and (labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer)):
            raise TypeError(f"targets must be ints, got dtype {labels.dtype}")
        self.classes = [str(c) for c in classes]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ValueError(
                f"targets must lie in [0, {len(self.classes)}) for {len(self.classes)} classes, "
                f"got range [{int(labels.min())}, {int(labels.max())}]"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        self.data = data
        self.targets = [int(t) for t in labels]
        self.transform = transform
        self.class_counts = np.bincount(labels.astype(np.int64), minlength=len(self.classes)).tolist()
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img = self.data[index]
        target = self.targets[index]
        if self.transform is not None:
            from PIL import Image

            return self.transform(Image.fromarray(img)), target
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0), target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, "
            f"transform={self.transform!r})"
        )


def _canonical_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str ('cifar10' or 'cifar100'), got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _CIFAR:
        raise ValueError(f"unknown dataset {name!r}; expected 'cifar10' or 'cifar100'")
    return key


def _candidate_roots(root: Optional[PathLike]) -> List[Path]:
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}")
        return [Path(root).expanduser()]
    roots = []
    env = os.environ.get("AFR_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path("data"))
    return roots


def _find_folder(root: Optional[PathLike], folder: str) -> Optional[Path]:
    for r in _candidate_roots(root):
        if (r / folder).is_dir():
            return r / folder
        if r.name == folder and r.is_dir():  # root given as the batches folder itself
            return r
    return None


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file {path} is missing (expected the standard CIFAR layout)")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise ValueError(f"could not read CIFAR file {path}: it is truncated or corrupt ({exc!r})") from exc
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
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes
    ):
        raise ValueError(
            f"CIFAR file {path}: {labels_key!r} should be ints in [0, {num_classes}), "
            f"got dtype {labels.dtype} with range [{labels.min()}, {labels.max()}]"
        )
    # Rows are the R plane, then G, then B, each 32 x 32 row-major -> N x 32 x 32 x 3 (HWC).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def load_cifar(
    name: str,
    root: Optional[PathLike] = None,
    train: bool = True,
    transform: Optional[Callable] = None,
    download: bool = False,
) -> CIFARDataset:
    """Read CIFAR-10 or CIFAR-100 from the standard on-disk layout (no md5 check).

    Why: torchvision's CIFAR classes refuse a folder whose md5 sums differ from the official
    release (e.g. a re-encoded copy), and long-tail code needs ``.data`` / ``.targets`` to
    subsample; this reader only needs the layout, and ``download=True`` still fetches the
    official files through torchvision.

    ``name`` is ``"cifar10"`` (``<root>/cifar-10-batches-py/``) or ``"cifar100"``
    (``<root>/cifar-100-python/``, fine labels); case, ``-`` and ``_`` are ignored, so
    ``"CIFAR-10"`` works too. ``root`` defaults to ``$AFR_DATA`` and then
    ``./data`` (both are searched, in that order); ``root`` may also be the batches folder
    itself. When no folder is found, ``download=False`` raises ``FileNotFoundError`` listing
    where it looked; ``download=True`` downloads into ``root`` (else ``$AFR_DATA``, else
    ``./data``) with torchvision and then reads the files with this reader.

    >>> import pickle, tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); d = tmp / "cifar-10-batches-py"; d.mkdir()
    >>> batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [3, 7]}
    >>> for f in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
    ...           "data_batch_5", "test_batch"]:
    ...     _ = (d / f).write_bytes(pickle.dumps(batch))
    >>> _ = (d / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))
    >>> ds = load_cifar("cifar10", root=tmp)
    >>> len(ds), ds.data.shape, ds.targets[:2], ds.classes[3]
    (10, (10, 32, 32, 3), [3, 7], 'd')
    """
    key = _canonical_name(name)
    spec = _CIFAR[key]
    folder = _find_folder(root, spec["folder"])
    if folder is None:
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

    images, labels = [], []
    for fname in spec["train" if train else "test"]:
        x, y = _read_batch(folder / fname, spec["labels_key"], spec["num_classes"])
        images.append(x)
        labels.append(y)
    data = np.ascontiguousarray(np.concatenate(images))
    targets = np.concatenate(labels)

    meta = _unpickle(folder / spec["meta"])
    names = meta.get(spec["names_key"])
    if names is None or len(names) != spec["num_classes"]:
        got = "missing" if names is None else f"{len(names)} names"
        raise ValueError(
            f"CIFAR file {folder / spec['meta']}: {spec['names_key']!r} should list "
            f"{spec['num_classes']} class names, got {got}"
        )
    return CIFARDataset(data, targets, classes=list(names), transform=transform)


def cifar_lt(
    name: str,
    root: Optional[PathLike] = None,
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
    transform: Optional[Callable] = None,
    download: bool = False,
) -> CIFARDataset:
    """The long-tailed CIFAR training set (CIFAR-10-LT / CIFAR-100-LT) of the paper, Sec. 4.1.

    Why: one call gives the exact training split used by LDAM/CMO-style experiments, with its
    per-class counts (needed by re-weighting losses, samplers and the Many/Med/Few report) and
    the indices it was drawn from (so a run can be reproduced or audited).

    Loads the full training set with :func:`load_cifar` and keeps
    :func:`make_long_tailed` ``(targets, imbalance_ratio, profile, seed)`` of it. The result is
    a :class:`CIFARDataset` with the same ``.data`` / ``.targets`` / ``.classes`` / transform
    behaviour, plus ``.class_counts`` (list of int per class) and ``.indices`` (positions in
    the full training set). With ``imbalance_ratio=100``, CIFAR-10-LT has 12,406 images and
    CIFAR-100-LT 10,847.

    >>> import pickle, tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); d = tmp / "cifar-100-python"; d.mkdir()
    >>> labels = [i % 100 for i in range(400)]          # 4 images per class
    >>> train = {"data": np.zeros((400, 3072), np.uint8), "fine_labels": labels}
    >>> _ = (d / "train").write_bytes(pickle.dumps(train))
    >>> names = {"fine_label_names": [f"c{i}" for i in range(100)]}
    >>> _ = (d / "meta").write_bytes(pickle.dumps(names))
    >>> lt = cifar_lt("cifar100", root=tmp, imbalance_ratio=4)
    >>> lt.class_counts[0], lt.class_counts[-1], len(lt) == len(lt.indices)
    (4, 1, True)
    """
    full = load_cifar(name, root=root, train=True, transform=None, download=download)
    indices = make_long_tailed(full.targets, imbalance_ratio=imbalance_ratio, profile=profile, seed=seed)
    targets = np.asarray(full.targets, dtype=np.int64)[indices]
    return CIFARDataset(
        np.ascontiguousarray(full.data[indices]),
        targets,
        classes=full.classes,
        transform=transform,
        indices=indices,
    )


# --------------------------------------------------------------------------------------------
# Readers for the standard long-tailed split files
# --------------------------------------------------------------------------------------------


class _FileImages(Dataset):
    """Images read from files on demand: a data set larger than memory costs one path per item."""

    def __init__(self, root: PathLike, paths: List[str], targets: List[int], classes: List[str],
                 transform: Optional[Callable]):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        if not paths:
            raise ValueError("the split lists no images")
        self.root = Path(root)
        self.paths = paths
        self.targets = targets
        self.classes = classes
        self.transform = transform
        self.class_counts = np.bincount(np.asarray(targets, dtype=np.int64),
                                        minlength=len(classes)).tolist()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        path = self.root / self.paths[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image {index} of {type(self).__name__}: {path} does not "
                                    f"exist (is root={str(self.root)!r} right?)") from None
        if self.transform is not None:
            return self.transform(img), self.targets[index]
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x.float().div_(255.0), self.targets[index]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, "
                f"root={str(self.root)!r}, transform={self.transform!r})")


class ImageList(_FileImages):
    """A split given as a text file of ``relative/path label`` lines (ImageNet-LT, Places-LT).

    Why: the long-tailed benchmarks of Liu et al. (2019) and Kang et al. (2020) are defined by
    these files (``ImageNet_LT_train.txt`` ...), not by folders. Images are read lazily, so the
    set need not fit in memory; ``.targets`` and ``.class_counts`` are known at once, so
    ``LongTailSampler``, ``shot_groups`` and the lazy ``AFRBalancer`` work on it directly.
    ``num_classes`` defaults to the largest label + 1 (pass it for a val/test split that may
    miss classes). ``dataset[i]`` is ``(transform(PIL RGB image), label)``, or without a
    transform a float CHW tensor in [0, 1] (images keep their own size).

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "train").mkdir()
    >>> for i in range(3):
    ...     Image.new("RGB", (8, 6), (i, 0, 0)).save(root / "train" / f"{i}.jpg")
    >>> _ = (root / "split.txt").write_text("train/0.jpg 1\\ntrain/1.jpg 0\\ntrain/2.jpg 1\\n")
    >>> ds = ImageList(root, root / "split.txt")
    >>> len(ds), ds.targets, ds.class_counts, tuple(ds[0][0].shape)
    (3, [1, 0, 1], [1, 2], (3, 6, 8))
    """

    def __init__(self, root: PathLike, list_file: PathLike, transform: Optional[Callable] = None,
                 num_classes: Optional[int] = None):
        paths, targets = [], []
        with open(list_file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(None, 1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise ValueError(f"{list_file}, line {number}: expected 'relative/path label', "
                                     f"got {line.strip()!r}")
                label = int(parts[1])
                if label < 0:
                    raise ValueError(f"{list_file}, line {number}: negative label {label}")
                paths.append(parts[0].strip())
                targets.append(label)
        if not targets:
            raise ValueError(f"{list_file} lists no images")
        n = max(targets) + 1 if num_classes is None else _check_int(num_classes, "num_classes", 1)
        if max(targets) >= n:
            raise ValueError(f"{list_file}: label {max(targets)} is out of range for "
                             f"num_classes={n}")
        super().__init__(root, paths, targets, [str(c) for c in range(n)], transform)


class INaturalist(_FileImages):
    """iNaturalist 2018 from its COCO-style annotation JSON (``train2018.json``, ``val2018.json``).

    Why: iNaturalist 2018 is the natural long-tailed benchmark (8,142 species, ratio 500) and
    ships as one JSON per split with ``images`` (``id``, ``file_name``), ``annotations``
    (``image_id``, ``category_id``) and ``categories`` (``id``, ``name``). Category ids are
    mapped to labels ``0..C-1`` in increasing id order (the identity for iNaturalist 2018);
    ``.classes`` holds the names. Read lazily, with ``.targets`` and ``.class_counts``.

    >>> import json, tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for i in range(3):
    ...     Image.new("RGB", (5, 5)).save(root / f"{i}.jpg")
    >>> ann = {"images": [{"id": 10 + i, "file_name": f"{i}.jpg"} for i in range(3)],
    ...        "annotations": [{"image_id": 10, "category_id": 7}, {"image_id": 11, "category_id": 3},
    ...                        {"image_id": 12, "category_id": 7}],
    ...        "categories": [{"id": 3, "name": "fern"}, {"id": 7, "name": "moss"}]}
    >>> _ = (root / "train.json").write_text(json.dumps(ann))
    >>> ds = INaturalist(root, root / "train.json")
    >>> ds.targets, ds.classes, ds.class_counts
    ([1, 0, 1], ['fern', 'moss'], [1, 2])
    """

    def __init__(self, root: PathLike, annotation_json: PathLike,
                 transform: Optional[Callable] = None):
        import json

        with open(annotation_json, encoding="utf-8") as f:
            ann = json.load(f)
        missing = [k for k in ("images", "annotations") if k not in ann]
        if missing:
            raise ValueError(f"{annotation_json}: no {' or '.join(missing)} (not an iNaturalist "
                             "annotation file?)")
        categories = ann.get("categories") or [{"id": a["category_id"]} for a in ann["annotations"]]
        ids = sorted({int(c["id"]) for c in categories})
        label_of = {cid: i for i, cid in enumerate(ids)}
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
        category = {}
        for a in ann["annotations"]:
            if int(a["category_id"]) not in label_of:
                raise ValueError(f"{annotation_json}: image {a['image_id']} has category "
                                 f"{a['category_id']}, which 'categories' does not list")
            category[a["image_id"]] = label_of[int(a["category_id"])]
        paths, targets = [], []
        for image in ann["images"]:
            if image["id"] not in category:
                raise ValueError(f"{annotation_json}: image {image['id']} ({image['file_name']}) "
                                 "has no annotation")
            paths.append(image["file_name"])
            targets.append(category[image["id"]])
        super().__init__(root, paths, targets, [names[c] for c in ids], transform)
