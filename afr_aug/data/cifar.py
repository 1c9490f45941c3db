"""CIFAR-10 / CIFAR-100 and their long-tailed training sets (CIFAR-10-LT, CIFAR-100-LT).

- :class:`CIFARDataset` -- an in-memory image set with torchvision's CIFAR attributes;
- :func:`load_cifar` -- the full sets from the standard on-disk layout (see
  :mod:`afr_aug.data.cifar_files`);
- :func:`cifar_lt` -- the long-tailed training set of the paper (Sec. 4.1) in one call.

Images are kept as ``uint8`` HWC arrays in ``.data`` (like torchvision) and returned by
``__getitem__`` as PIL images to a ``transform`` or, without one, as float CHW tensors in
[0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .cifar_files import PathLike, canonical_name, locate, read_class_names, read_split
from .long_tail import make_long_tailed

__all__ = ["CIFARDataset", "cifar_lt", "load_cifar"]


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
        targets: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        transform: Callable | None = None,
        indices: np.ndarray | None = None,
    ):
        data = np.asarray(data)
        if data.ndim != 4 or data.shape[-1] != 3:
            raise ValueError(f"data must have shape N x H x W x 3, got {tuple(data.shape)}")
        if data.dtype != np.uint8:
            raise TypeError(f"data must be uint8, got {data.dtype}")
        labels = np.asarray(targets)
        if labels.ndim != 1 or len(labels) != len(data):
            raise ValueError(f"targets has {labels.size} entries, data {len(data)} images")
        if len(labels) and (
            labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer)
        ):
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
        self.class_counts = np.bincount(
            labels.astype(np.int64), minlength=len(self.classes)
        ).tolist()
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        img = self.data[index]
        target = self.targets[index]
        if self.transform is not None:
            from PIL import Image

            return self.transform(Image.fromarray(img)), target
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(
            255.0
        ), target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, "
            f"transform={self.transform!r})"
        )


def load_cifar(
    name: str,
    root: PathLike | None = None,
    train: bool = True,
    transform: Callable | None = None,
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
    key = canonical_name(name)
    folder = locate(key, root, download=download, train=train)
    data, targets = read_split(key, folder, train=train)
    return CIFARDataset(data, targets, classes=read_class_names(key, folder), transform=transform)


def cifar_lt(
    name: str,
    root: PathLike | None = None,
    imbalance_ratio: float = 100,
    profile: str = "exp",
    seed: int = 0,
    transform: Callable | None = None,
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
    indices = make_long_tailed(
        full.targets, imbalance_ratio=imbalance_ratio, profile=profile, seed=seed
    )
    targets = np.asarray(full.targets, dtype=np.int64)[indices]
    return CIFARDataset(
        np.ascontiguousarray(full.data[indices]),
        targets,
        classes=full.classes,
        transform=transform,
        indices=indices,
    )
