"""Where the stage-2 set reads its originals: a tensor as it is, or a Dataset lazily by index.

Why a piece of its own: the set never copies the originals. A uint8 (or [0, 1] float) tensor
is indexed in place, the fast path; a map-style ``Dataset`` (an ``ImageFolder`` of a data set
that does not fit in memory) is read item by item, through a ``DataLoader`` with workers when a
refresh streams many of them. Everything that can go wrong with a user's data is said here,
once: a non-tensor image, images of different sizes, a label that disagrees with the declared
one, an ``IterableDataset``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..checks import check_image_values, check_int, check_labels

__all__ = ["ImageSource"]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    check_image_values(images, "images")
    if images.dtype == torch.uint8:
        return images.contiguous()
    return (images * 255).round().to(torch.uint8)


def _float_image(img, i: int) -> torch.Tensor:
    """Dataset item ``i``'s image as float [C, H, W] in [0, 1], with a clear error otherwise."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(
            f"dataset item {i}: the image is a {type(img).__name__}, the stage-2 set "
            f"needs a [C, H, W] tensor (add transforms.ToTensor() or PILToTensor())"
        )
    if img.ndim != 3:
        raise ValueError(
            f"dataset item {i}: the image has shape {tuple(img.shape)}, expected [C, H, W]"
        )
    check_image_values(
        img,
        f"image of dataset item {i}",
        tolerance=1e-6,
        hint=" (leave Normalize out of the Dataset; put it in the model)",
    )
    if img.dtype == torch.uint8:
        return img.float().div_(255)
    return img.float().clamp_(0, 1)


def read_item(dataset: Dataset, i: int):
    """``(float image in [0, 1], label)`` of item ``i``, checked."""
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(f"dataset item {i} is a {type(item).__name__}; expected (image, label)")
    return _float_image(item[0], i), int(item[1])


class _Indexed(Dataset):
    """``(float image, label, k)`` for the k-th of the chosen indices (read in workers)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        img, label = read_item(self.dataset, int(self.indices[k]))
        return img, label, k


def _collate(batch):
    shapes = {tuple(b[0].shape) for b in batch}
    if len(shapes) > 1:
        first = tuple(batch[0][0].shape)
        odd = next(b for b in batch if tuple(b[0].shape) != first)
        raise ValueError(
            f"images of different sizes: item {batch[0][2]} is {list(first)}, item "
            f"{odd[2]} is {list(odd[0].shape)}; give the Dataset a deterministic "
            f"resize, e.g. Resize(256) + CenterCrop(224)"
        )
    return (
        torch.stack([b[0] for b in batch]),
        torch.tensor([b[1] for b in batch]),
        torch.tensor([b[2] for b in batch]),
    )


def _labels_only(batch):
    return [int(b[1]) for b in batch]


class ImageSource:
    """The originals and their labels.

    ``data`` is a uint8 or [0, 1] float tensor [N, C, H, W] (kept as uint8) or a map-style
    ``Dataset`` whose item ``i`` is ``(image [C, H, W], label)``, all of one size. ``labels``
    default to the Dataset's ``.targets``, else are read from its items once.

    >>> src = ImageSource(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), [0, 1, 1])
    >>> len(src), src.labels.tolist(), src.image_shape
    (3, [0, 1, 1], (1, 2, 2))
    """

    def __init__(
        self,
        data,
        labels=None,
        num_classes: int | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        progress: bool = True,
    ):
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.progress = progress
        if isinstance(data, torch.Tensor):
            if data.ndim != 4:
                raise ValueError(f"data must be [N, C, H, W], got shape {tuple(data.shape)}")
            if labels is None:
                raise ValueError("labels are required when data is a tensor")
            self.images: torch.Tensor | None = to_uint8(data)
            self.dataset: Dataset | None = None
            self.image_shape: tuple | None = tuple(data.shape[1:])
        elif isinstance(data, IterableDataset):
            raise TypeError(
                f"data is an IterableDataset ({type(data).__name__}); the stage-2 "
                f"set reads items by index: give it a map-style Dataset"
            )
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.images, self.dataset, self.image_shape = None, data, None
        else:
            raise TypeError(
                f"data must be a tensor or a map-style Dataset, got {type(data).__name__}"
            )
        if len(data) == 0:
            raise ValueError("no images")
        if labels is None and hasattr(data, "targets"):
            labels = data.targets
        labels = self._read_labels() if labels is None else labels
        self.labels = check_labels(labels, num_classes=num_classes, length=len(data))

    def __len__(self) -> int:
        return len(self.labels)

    def _read_labels(self) -> torch.Tensor:
        """Labels of a Dataset without ``.targets``: one pass over its items."""
        from tqdm.auto import tqdm

        assert self.dataset is not None  # a tensor comes with its labels
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_labels_only,
        )
        out = []
        for chunk in tqdm(loader, desc="reading labels", leave=False, disable=not self.progress):
            out += chunk
        return torch.tensor(out, dtype=torch.long)

    def uint8(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 originals ``idx`` [B, C, H, W]."""
        if self.images is not None:
            return self.images[idx]
        dataset = self.dataset
        assert dataset is not None  # no tensor: a Dataset
        imgs = [to_uint8(read_item(dataset, int(i))[0]) for i in idx]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) > 1 or (
            self.image_shape is not None and imgs and shapes != {self.image_shape}
        ):
            raise ValueError(
                f"images of different sizes: {sorted(shapes)}; give the Dataset a "
                f"deterministic resize"
            )
        return torch.stack(imgs)

    def float_item(self, i: int) -> torch.Tensor:
        """Original ``i`` as float [C, H, W] in [0, 1]."""
        if self.images is not None:
            return self.images[i].float().div_(255)
        assert self.dataset is not None  # no tensor: a Dataset
        return read_item(self.dataset, i)[0]

    def batches(self, positions: torch.Tensor, index: torch.Tensor, device) -> Iterator:
        """``(images, positions)`` of originals ``index[positions]``, a batch at a time: uint8
        slices of the tensor, or float images read through a ``DataLoader`` (checked against
        the labels and the image size)."""
        if self.images is not None:
            yield from (
                (self.images[index[p]], p)
                for p in (positions.split(self.batch_size) if len(positions) else ())
            )
            return
        assert self.dataset is not None  # no tensor: a Dataset
        loader = DataLoader(
            _Indexed(self.dataset, index[positions]),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=torch.device(device).type == "cuda",
        )
        for x, y, k in loader:
            self._check_read(x, y, index[positions[k]])
            yield x, positions[k]

    def _check_read(self, x, y, idx) -> None:
        if self.image_shape is None:
            self.image_shape = tuple(x.shape[1:])
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images of different sizes: item {int(idx[0])} is "
                f"{list(x.shape[1:])}, earlier items {list(self.image_shape)}; "
                f"give the Dataset a deterministic resize"
            )
        wrong = torch.nonzero(y != self.labels[idx]).flatten()
        if len(wrong):
            i = int(idx[wrong[0]])
            raise ValueError(
                f"dataset item {i} has label {int(y[wrong[0]])} but labels[{i}] "
                f"is {int(self.labels[i])}"
            )

    def find_image_shape(self) -> tuple:
        """The images' shape, reading one item if no batch has been read yet."""
        if self.image_shape is None:
            self.image_shape = tuple(self.uint8(torch.tensor([0])).shape[1:])
        return self.image_shape
