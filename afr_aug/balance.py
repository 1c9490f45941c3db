"""The stage-2 training set: inter- and intra-class balanced (paper §3.2, Fig. 2).

Every class is brought to the same size; part of each class's *majority* images are
replaced by adversarial versions that :class:`~afr_aug.MinorityPGD` moved toward the class's
minority features, and the rest of the slots are filled by the class's original images,
repeated (over-sampled) where the class is small. ``refresh(model)`` re-embeds, re-splits and
re-attacks with the current model (the paper: every 10 epochs).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .attack import MinorityPGD
from .split import IntraClassSplitter, SplitResult

__all__ = ["AFRBalancer"]


def _to_uint8_images(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.contiguous()
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError(f"float images must be in [0, 1], got range "
                         f"[{float(images.min()):.3f}, {float(images.max()):.3f}]")
    return (images * 255).round().to(torch.uint8)


def _materialise(dataset: Dataset):
    """Read every (image, label) of a dataset once into a uint8 NCHW tensor and labels."""
    imgs, labs = [], []
    for i in range(len(dataset)):
        img, lab = dataset[i][0], dataset[i][1]
        img = torch.as_tensor(np.asarray(img)) if not isinstance(img, torch.Tensor) else img
        if img.ndim == 3 and img.shape[-1] in (1, 3) and img.shape[0] not in (1, 3):
            img = img.permute(2, 0, 1)  # HWC (PIL / numpy) -> CHW
        imgs.append(img)
        labs.append(int(lab))
    if not imgs:
        raise ValueError("the dataset is empty")
    return _to_uint8_images(torch.stack(imgs)), torch.tensor(labs, dtype=torch.long)


class AFRBalancer(Dataset):
    """AFR's stage-2 set: equal per-class size, with adversarial minority-like images.

    Per class ``c`` with ``n_c`` original images of which ``m_c`` are majority: ``a_c =
    round(attack_share * m_c)`` randomly chosen majority images are attacked, and the class
    holds exactly ``target_size`` items: the ``a_c`` adversarial images plus
    ``target_size - a_c`` originals (every original once, then random repeats; or a random
    subset when the class is too large for that). Before the first :meth:`refresh` it is plain
    class-balanced over-sampling, so the same object also serves as CMO's balanced set.

    Images are kept as uint8 (originals and adversarial ones): memory is about the dataset's
    own size plus the attacked share. Items are ``(float image [C, H, W] in [0, 1], label)``,
    through ``transform`` when given; :meth:`get_batch` returns a uint8 batch for batched
    augmentation on the GPU.

    Args:
        images: uint8 or [0, 1] float tensor [N, C, H, W], or a Dataset of ``(image, label)``
            without random augmentation (read once).
        labels: int labels [N] (required with a tensor, ignored with a Dataset).
        num_classes: default ``max(label) + 1``.
        attack_share: share of each class's majority images to attack (paper: 0.5).
        target_size: items per class; default the largest class's size.
        splitter: an :class:`IntraClassSplitter` (default: the paper's λ = 0.8, adaptive).
        attack_kwargs: keyword arguments for :class:`MinorityPGD` (eps, alpha, steps, ...).
        transform: applied to each float image in ``__getitem__``.
        batch_size: batch size of the embedding and attack passes.
        seed: seed for over-sampling and for the choice of attacked images.

    Example:
        >>> from afr_aug.models import resnet32
        >>> images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
        >>> labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
        >>> stage2 = AFRBalancer(images, labels, progress=False)
        >>> stage2.class_sizes().tolist()
        [20, 20, 20]
        >>> split = stage2.refresh(resnet32(num_classes=3))   # embed, split, attack
        >>> stage2.class_sizes().tolist(), int(stage2.is_adversarial.sum()) > 0
        ([20, 20, 20], True)
        >>> loader = torch.utils.data.DataLoader(stage2, batch_size=8, shuffle=True)
    """

    def __init__(self, images, labels=None, num_classes: Optional[int] = None,
                 attack_share: float = 0.5, target_size: Optional[int] = None,
                 splitter: Optional[IntraClassSplitter] = None,
                 attack_kwargs: Optional[dict] = None, transform=None, batch_size: int = 256,
                 seed: int = 0, progress: bool = True):
        if isinstance(images, torch.Tensor):
            if labels is None:
                raise ValueError("labels are required when images is a tensor")
            if images.ndim != 4:
                raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
            images = _to_uint8_images(images)
            labels = torch.as_tensor(labels)
            if labels.ndim != 1 or len(labels) != len(images):
                raise ValueError(f"labels has {labels.numel()} entries, images {len(images)}")
            if labels.is_floating_point():
                raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
            labels = labels.long()
        elif isinstance(images, Dataset) or hasattr(images, "__getitem__"):
            images, labels = _materialise(images)
        else:
            raise TypeError(f"images must be a tensor or a Dataset, got {type(images).__name__}")
        if len(images) == 0:
            raise ValueError("no images")
        if int(labels.min()) < 0:
            raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
        if num_classes is None:
            num_classes = int(labels.max()) + 1
        if int(labels.max()) >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got max {int(labels.max())}")
        if not 0.0 <= float(attack_share) <= 1.0:
            raise ValueError(f"attack_share must be in [0, 1], got {attack_share}")
        counts = torch.bincount(labels, minlength=num_classes)
        if target_size is None:
            target_size = int(counts.max())
        if target_size < 1:
            raise ValueError(f"target_size must be >= 1, got {target_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.num_classes = int(num_classes)
        self.class_counts = counts
        self.attack_share = float(attack_share)
        self.target_size = int(target_size)
        self.splitter = splitter if splitter is not None else IntraClassSplitter()
        self.attack_kwargs = dict(attack_kwargs or {})
        self.transform = transform
        self.batch_size = int(batch_size)
        self.progress = progress
        self.rng = np.random.default_rng(seed)
        self.adversarial = torch.empty((0, *images.shape[1:]), dtype=torch.uint8)
        self.adversarial_source = torch.empty(0, dtype=torch.long)
        self.split_result: Optional[SplitResult] = None
        self._build(attacked=[torch.empty(0, dtype=torch.long)] * self.num_classes)

    # -- composition ---------------------------------------------------------------------
    def _build(self, attacked) -> None:
        """Lay out the items; ``attacked[c]`` are the originals of class c with an adversarial
        version (row k of ``self.adversarial`` belongs to the k-th attacked index overall)."""
        items, item_labels, adv_flags = [], [], []
        adv_offset = 0
        for c in range(self.num_classes):
            members = torch.nonzero(self.labels == c).flatten()
            a = len(attacked[c])
            if len(members) == 0:
                adv_offset += a
                continue
            free = max(self.target_size - a, 0)
            if free >= len(members):
                extra = self.rng.choice(len(members), size=free - len(members), replace=True)
                originals = torch.cat([members, members[torch.as_tensor(extra, dtype=torch.long)]])
            else:
                pick = self.rng.choice(len(members), size=free, replace=False)
                originals = members[torch.as_tensor(pick, dtype=torch.long)]
            adv_rows = torch.arange(adv_offset, adv_offset + min(a, self.target_size))
            adv_offset += a
            items += [originals, adv_rows]
            item_labels.append(torch.full((len(originals) + len(adv_rows),), c, dtype=torch.long))
            adv_flags += [torch.zeros(len(originals), dtype=torch.bool),
                          torch.ones(len(adv_rows), dtype=torch.bool)]
        self.item_index = torch.cat(items)
        self.item_labels = torch.cat(item_labels)
        self.is_adversarial = torch.cat(adv_flags)

    def class_sizes(self) -> torch.Tensor:
        """Items per class (equal for every class that has images)."""
        return torch.bincount(self.item_labels, minlength=self.num_classes)

    # -- the refresh -----------------------------------------------------------------------
    def _batches(self, indices: torch.Tensor):
        for start in range(0, len(indices), self.batch_size):
            idx = indices[start:start + self.batch_size]
            yield self.images[idx].float() / 255.0, self.labels[idx], idx

    def refresh(self, model: torch.nn.Module, device=None, class_accuracy=None,
                train_accuracy: Optional[float] = None) -> SplitResult:
        """Re-embed all originals, re-split them and regenerate the adversarial images.

        ``class_accuracy``/``train_accuracy`` feed §3.3's adaptive thresholds; by default the
        accuracies measured on the clean images during embedding are used. The model's
        device and train/eval mode are left as they were. Returns the new split.

        Under ``torch.distributed`` (every rank calls it, with the same seed and data) each rank
        embeds and attacks its share and the results are gathered, so all ranks hold the same
        set, equal to the single-process one.
        """
        from tqdm.auto import tqdm

        from .distributed import all_gather_cat, get_rank, get_world_size

        rank, world = get_rank(), get_world_size()
        if device is None:
            device = next(model.parameters()).device
        shard = torch.arange(rank, len(self.images), world)
        emb, labels, acc, train_acc = self.splitter.embed(model, self._batches(shard), device,
                                                          progress=self.progress)
        if class_accuracy is None:
            class_accuracy, train_accuracy = acc, train_acc
        split = self.splitter.split(emb, labels, class_accuracy, train_accuracy,
                                    num_classes=self.num_classes)

        attacked = []
        for c in range(self.num_classes):
            majority = split.majority_indices(c)
            k = int(round(self.attack_share * len(majority)))
            pick = self.rng.choice(len(majority), size=k, replace=False)
            attacked.append(majority[torch.as_tensor(pick, dtype=torch.long)].sort().values)
        flat = torch.cat(attacked)

        attack = MinorityPGD(model, **self.attack_kwargs).set_targets(split)
        mine = torch.arange(rank, len(flat), world)          # positions in `flat` this rank attacks
        adv = torch.empty((len(mine), *self.images.shape[1:]), dtype=torch.uint8)
        bar = tqdm(total=len(mine), desc="AFR attack", leave=False,
                   disable=not self.progress or rank != 0)
        for start in range(0, len(mine), self.batch_size):
            idx = flat[mine[start:start + self.batch_size]]
            x = (self.images[idx].float() / 255.0).to(device)
            out = attack(x, self.labels[idx].to(device))
            adv[start:start + len(idx)] = (out.detach().cpu() * 255).round().to(torch.uint8)
            bar.update(len(idx))
        bar.close()
        if world > 1:
            positions, gathered = all_gather_cat(mine), all_gather_cat(adv)
            adv = torch.empty_like(gathered)
            adv[positions] = gathered
        self.adversarial, self.adversarial_source = adv, flat
        self.split_result = split
        self._build(attacked)
        return split

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_index)

    def get_batch(self, indices) -> tuple:
        """``(uint8 images [B, C, H, W], labels [B])`` for item ``indices`` (for batched,
        on-device augmentation)."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        src, adv = self.item_index[indices], self.is_adversarial[indices]
        out = self.images[src.masked_fill(adv, 0)]
        if adv.any():
            out[adv] = self.adversarial[src[adv]]
        return out, self.item_labels[indices]

    def __getitem__(self, i: int):
        images, labels = self.get_batch([int(i)])
        img = images[0].float() / 255.0
        if self.transform is not None:
            img = self.transform(img)
        return img, int(labels[0])

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue with the same set."""
        return {"adversarial": self.adversarial, "adversarial_source": self.adversarial_source,
                "item_index": self.item_index, "item_labels": self.item_labels,
                "is_adversarial": self.is_adversarial, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for key in ("adversarial", "adversarial_source", "item_index", "item_labels",
                    "is_adversarial"):
            setattr(self, key, state[key])
        self.rng.bit_generator.state = state["rng"]

    def __repr__(self) -> str:
        return (f"AFRBalancer({len(self.images)} originals, {self.num_classes} classes x "
                f"{self.target_size}, {int(self.is_adversarial.sum())} adversarial)")
