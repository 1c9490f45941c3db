"""Lazy readers for the standard long-tailed split files of ImageNet-LT, Places-LT and
iNaturalist 2018.

Why: those benchmarks are defined by split files (``path label`` lines, or iNaturalist's
COCO-style JSON), not by folders, and are larger than memory: an item costs one path until it
is read. ``.targets`` and ``.class_counts`` are known at once, so samplers, ``shot_groups`` and
the lazy ``AFRDataset`` work on them directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_int

__all__ = ["INaturalist", "ImageList"]

PathLike = Union[str, os.PathLike]


class _FileImages(Dataset):
    """Images read from files on demand: a data set larger than memory costs one path per item."""

    def __init__(
        self,
        root: PathLike,
        paths: list[str],
        targets: list[int],
        classes: list[str],
        transform: Callable | None,
    ):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {type(transform).__name__}")
        if not paths:
            raise ValueError("the split lists no images")
        self.root = Path(root)
        self.paths = paths
        self.targets = targets
        self.classes = classes
        self.transform = transform
        self.class_counts = np.bincount(
            np.asarray(targets, dtype=np.int64), minlength=len(classes)
        ).tolist()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        path = self.root / self.paths[index]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {index} of {type(self).__name__}: {path} does not "
                f"exist (is root={str(self.root)!r} right?)"
            ) from None
        if self.transform is not None:
            return self.transform(img), self.targets[index]
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return x.float().div_(255.0), self.targets[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, classes={len(self.classes)}, "
            f"root={str(self.root)!r}, transform={self.transform!r})"
        )


class ImageList(_FileImages):
    """A split given as a text file of ``relative/path label`` lines (ImageNet-LT, Places-LT).

    Why: the long-tailed benchmarks of Liu et al. (2019) and Kang et al. (2020) are defined by
    these files (``ImageNet_LT_train.txt`` ...), not by folders. Images are read lazily, so the
    set need not fit in memory; ``.targets`` and ``.class_counts`` are known at once, so
    ``LongTailSampler``, ``shot_groups`` and the lazy ``AFRDataset`` work on it directly.
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

    def __init__(
        self,
        root: PathLike,
        list_file: PathLike,
        transform: Callable | None = None,
        num_classes: int | None = None,
    ):
        paths, targets = [], []
        with open(list_file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(None, 1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise ValueError(
                        f"{list_file}, line {number}: expected 'relative/path label', "
                        f"got {line.strip()!r}"
                    )
                label = int(parts[1])
                if label < 0:
                    raise ValueError(f"{list_file}, line {number}: negative label {label}")
                paths.append(parts[0].strip())
                targets.append(label)
        if not targets:
            raise ValueError(f"{list_file} lists no images")
        n = (
            max(targets) + 1
            if num_classes is None
            else check_int(num_classes, "num_classes", minimum=1)
        )
        if max(targets) >= n:
            raise ValueError(
                f"{list_file}: label {max(targets)} is out of range for num_classes={n}"
            )
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
    ...        "annotations": [{"image_id": 10, "category_id": 7},
    ...                        {"image_id": 11, "category_id": 3},
    ...                        {"image_id": 12, "category_id": 7}],
    ...        "categories": [{"id": 3, "name": "fern"}, {"id": 7, "name": "moss"}]}
    >>> _ = (root / "train.json").write_text(json.dumps(ann))
    >>> ds = INaturalist(root, root / "train.json")
    >>> ds.targets, ds.classes, ds.class_counts
    ([1, 0, 1], ['fern', 'moss'], [1, 2])
    """

    def __init__(
        self, root: PathLike, annotation_json: PathLike, transform: Callable | None = None
    ):
        import json

        with open(annotation_json, encoding="utf-8") as f:
            ann = json.load(f)
        missing = [k for k in ("images", "annotations") if k not in ann]
        if missing:
            raise ValueError(
                f"{annotation_json}: no {' or '.join(missing)} (not an iNaturalist "
                "annotation file?)"
            )
        categories = ann.get("categories") or [{"id": a["category_id"]} for a in ann["annotations"]]
        ids = sorted({int(c["id"]) for c in categories})
        label_of = {cid: i for i, cid in enumerate(ids)}
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
        category = {}
        for a in ann["annotations"]:
            if int(a["category_id"]) not in label_of:
                raise ValueError(
                    f"{annotation_json}: image {a['image_id']} has category "
                    f"{a['category_id']}, which 'categories' does not list"
                )
            category[a["image_id"]] = label_of[int(a["category_id"])]
        paths, targets = [], []
        for image in ann["images"]:
            if image["id"] not in category:
                raise ValueError(
                    f"{annotation_json}: image {image['id']} ({image['file_name']}) "
                    "has no annotation"
                )
            paths.append(image["file_name"])
            targets.append(category[image["id"]])
        super().__init__(root, paths, targets, [names[c] for c in ids], transform)
