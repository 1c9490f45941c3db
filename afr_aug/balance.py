"""The stage-2 training set: inter- and intra-class balanced (paper §3.2, Fig. 2).

Every class is brought to the same size; part of each class's *majority* images are
replaced by adversarial versions that :class:`~afr_aug.MinorityPGD` moved toward the class's
minority features, and the rest of the slots are filled by the class's original images,
repeated (over-sampled) where the class is small. ``refresh(model)`` re-embeds, re-splits and
re-attacks with the current model (the paper: every 10 epochs).

The originals are never copied: a tensor is used as it is, a ``Dataset`` is read lazily by
index. Only the adversarial images are stored, as uint8, in memory or in a file on disk.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .attack import MinorityPGD
from .distributed import all_gather_cat, barrier, get_rank, get_world_size
from .embedding import model_device, unwrap_model
from ._state import check_state
from .split import IntraClassSplitter, SplitResult

__all__ = ["AFRBalancer"]

_STATE_VERSION = 2


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


def _float_image(img, i: int) -> torch.Tensor:
    """Dataset item ``i``'s image as float [C, H, W] in [0, 1], with a clear error otherwise."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"dataset item {i}: the image is a {type(img).__name__}, AFRBalancer needs "
                        f"a [C, H, W] tensor (add transforms.ToTensor() or PILToTensor())")
    if img.ndim != 3:
        raise ValueError(f"dataset item {i}: the image has shape {tuple(img.shape)}, expected "
                         f"[C, H, W]")
    if img.dtype == torch.uint8:
        return img.float().div_(255)
    if not img.is_floating_point():
        raise TypeError(f"dataset item {i}: image dtype {img.dtype}, expected uint8 or float in "
                        f"[0, 1]")
    img = img.float()
    if not torch.isfinite(img).all():
        raise ValueError(f"dataset item {i}: the image contains NaN or inf")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"dataset item {i}: image values in [{lo:.3f}, {hi:.3f}], expected [0, 1] "
                         f"(leave Normalize out of the Dataset; put it in the model)")
    return img.clamp_(0, 1)


def _item(dataset: Dataset, i: int):
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(f"dataset item {i} is a {type(item).__name__}; expected (image, label)")
    return _float_image(item[0], i), int(item[1])


class _Indexed(Dataset):
    """``(float image, label, index)`` for the chosen indices of a Dataset (read in workers)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = int(self.indices[k])
        img, label = _item(self.dataset, i)
        return img, label, i


def _collate(batch):
    shapes = {tuple(b[0].shape) for b in batch}
    if len(shapes) > 1:
        first = tuple(batch[0][0].shape)
        odd = next(b for b in batch if tuple(b[0].shape) != first)
        raise ValueError(f"images of different sizes: item {batch[0][2]} is {list(first)}, item "
                         f"{odd[2]} is {list(odd[0].shape)}; give the Dataset a deterministic "
                         f"resize, e.g. Resize(256) + CenterCrop(224)")
    return (torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch]),
            torch.tensor([b[2] for b in batch]))


def _labels_only(batch):
    return [int(b[1]) for b in batch]


class AFRBalancer(Dataset):
    """AFR's stage-2 set: equal per-class size, with adversarial minority-like images.

    Per class ``c`` with ``n_c`` original images of which ``m_c`` are majority: ``a_c =
    round(attack_share * m_c)`` randomly chosen majority images are attacked, and the class
    holds exactly ``target_size`` items: the ``a_c`` adversarial images plus
    ``target_size - a_c`` originals (every original once, then random repeats; or a random
    subset when the class is too large for that). Before the first :meth:`refresh` it is plain
    class-balanced over-sampling, so the same object also serves as CMO's balanced set.

    Scale: the originals stay where they are. A tensor is indexed as it is (the fast path); a
    ``Dataset`` is read lazily by index: constructing the set reads no image when ``labels``
    are given or the dataset has ``.targets``, and each :meth:`refresh` streams the data once
    through a ``DataLoader`` to embed it, then reads only the images chosen for the attack.
    Only the adversarial images are stored, as uint8: in memory, or with ``storage=<dir>`` in a
    memory-mapped file there, so a set the size of ImageNet-LT needs disk, not RAM. Under
    ``torchrun`` each rank embeds and attacks its share; with a directory, each rank writes its
    rows of the same file, so the directory must be shared by the ranks. The last two files
    are kept (a checkpoint taken before the latest refresh still resumes); one directory per
    set. Use a ``DataLoader`` without ``persistent_workers`` over this set, so workers see
    each refresh.

    Items are ``(float image [C, H, W] in [0, 1] through transform, int label)`` for originals
    and adversarial images alike; :meth:`get_batch` returns a uint8 batch for batched
    augmentation on the GPU.

    Args:
        data: a uint8 or [0, 1] float tensor [N, C, H, W], or a map-style Dataset whose item
            ``i`` is ``(image, label)`` with ``image`` a [C, H, W] float tensor in [0, 1] or a
            uint8 tensor, all of one size: a deterministic view of the training set (e.g.
            ``ImageFolder(root, transform=Compose([Resize(256), CenterCrop(224), ToTensor()]))``).
        labels: int labels [N] (required with a tensor; with a Dataset, default its
            ``.targets``, else read from the items once).
        num_classes: default ``max(label) + 1``.
        attack_share: share of each class's majority images to attack (paper: 0.5).
        target_size: items per class; default the largest class's size.
        splitter: an :class:`IntraClassSplitter` (default: the paper's λ = 0.8, adaptive).
        attack: a configured :class:`MinorityPGD` (eps/steps chosen, normalisation declared
            with ``set_normalization_used`` when the model expects normalised input: both
            passes of a refresh then feed the model normalised images, while the set keeps
            [0, 1] images); each :meth:`refresh` points it at the given model (``set_model``)
            and the new targets. Default: ``MinorityPGD(model, layer=layer)`` with the paper's
            values.
        layer: embedding layer name (see :class:`~afr_aug.Embedder`); default the attack's,
            else the input of the model's last ``nn.Linear``.
        storage: ``"memory"`` or a directory path for the adversarial images.
        transform: applied to each float image in ``__getitem__`` (e.g. a torchvision v2 crop
            + flip on tensors).
        batch_size, num_workers: of the refresh's embedding and attack passes (num_workers
            only for a Dataset; pinned memory when the model is on CUDA).
        seed: seed for over-sampling and for the choice of attacked images.
        progress: tqdm bars during a refresh.

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

    def __init__(self, data, labels=None, *, num_classes: Optional[int] = None,
                 attack_share: float = 0.5, target_size: Optional[int] = None,
                 splitter: Optional[IntraClassSplitter] = None,
                 attack: Optional[MinorityPGD] = None, layer: Optional[str] = None,
                 storage: str = "memory", transform=None, batch_size: int = 256,
                 num_workers: int = 0, seed: int = 0, progress: bool = True):
        if isinstance(data, torch.Tensor):
            if labels is None:
                raise ValueError("labels are required when data is a tensor")
            if data.ndim != 4:
                raise ValueError(f"data must be [N, C, H, W], got shape {tuple(data.shape)}")
            self.images: Optional[torch.Tensor] = _to_uint8_images(data)
            self.dataset: Optional[Dataset] = None
            self.image_shape: Optional[tuple] = tuple(data.shape[1:])
            n = len(data)
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.images, self.dataset, self.image_shape = None, data, None
            n = len(data)
            if labels is None and hasattr(data, "targets"):
                labels = data.targets
        else:
            raise TypeError(f"data must be a tensor or a map-style Dataset, got "
                            f"{type(data).__name__}")
        if n == 0:
            raise ValueError("no images")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.batch_size, self.num_workers, self.progress = batch_size, num_workers, progress
        labels = self._read_labels() if labels is None else torch.as_tensor(labels)
        if labels.ndim != 1 or len(labels) != n:
            raise ValueError(f"labels has {labels.numel()} entries, data {n}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        labels = labels.long()
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
        if attack is not None and not isinstance(attack, MinorityPGD):
            raise TypeError(f"attack must be a MinorityPGD, got {type(attack).__name__}")
        if attack is not None and layer is not None and attack.layer not in (None, layer):
            raise ValueError(f"layer={layer!r} but the attack embeds at {attack.layer!r}: the "
                             f"split and the attack must use the same embedding")
        self.labels = labels
        self.num_classes = int(num_classes)
        self.class_counts = counts
        self.attack_share = float(attack_share)
        self.target_size = int(target_size)
        self.splitter = splitter if splitter is not None else IntraClassSplitter()
        self.attack = attack
        self.layer = layer if layer is not None else (attack.layer if attack is not None else None)
        self.transform = transform
        self.storage = self._check_storage(storage)
        self.rng = np.random.default_rng(seed)
        self.generation = 0                   # refreshes so far (names the storage files)
        self._token = None                    # names this set's files in a shared directory
        self._rows: Optional[torch.Tensor] = None   # the adversarial uint8 rows (memory)
        self._map = None                            # ... or their read-only memory map
        self.adversarial_file: Optional[str] = None
        self.adversarial_source = torch.empty(0, dtype=torch.long)
        self.split_result: Optional[SplitResult] = None
        self._build(attacked=[torch.empty(0, dtype=torch.long)] * self.num_classes)

    # -- inputs ----------------------------------------------------------------------------
    def _read_labels(self) -> torch.Tensor:
        """Labels of a Dataset without ``.targets``: one pass over its items."""
        from tqdm.auto import tqdm

        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=_labels_only)
        out = []
        for chunk in tqdm(loader, desc="reading labels", leave=False, disable=not self.progress):
            out += chunk
        return torch.tensor(out, dtype=torch.long)

    @staticmethod
    def _check_storage(storage):
        if storage == "memory":
            return storage
        if not isinstance(storage, (str, os.PathLike)):
            raise TypeError(f"storage must be 'memory' or a directory path, got "
                            f"{type(storage).__name__}")
        path = os.fspath(storage)
        try:
            os.makedirs(path, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise ValueError(f"storage directory {path!r} is not writable: {exc}") from exc
        return path

    # -- composition ---------------------------------------------------------------------
    def _build(self, attacked) -> None:
        """Lay out the items; ``attacked[c]`` are the originals of class c with an adversarial
        version (row k of the adversarial storage belongs to the k-th attacked index overall)."""
        items, item_labels, adv_flags = [], [], []
        adv_offset = 0
        order = torch.argsort(self.labels, stable=True)
        bounds = torch.cumsum(self.class_counts, 0).tolist()
        for c in range(self.num_classes):
            members = order[(bounds[c - 1] if c else 0):bounds[c]]
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

    # -- reading originals -------------------------------------------------------------------
    def _batches(self, indices: torch.Tensor, device) -> Iterator:
        """``(float images, labels, indices)`` batches of the given originals, checked."""
        if self.images is not None:
            for idx in indices.split(self.batch_size) if len(indices) else ():
                yield self.images[idx].float().div_(255), self.labels[idx], idx
            return
        loader = DataLoader(_Indexed(self.dataset, indices), batch_size=self.batch_size,
                            num_workers=self.num_workers, collate_fn=_collate,
                            pin_memory=torch.device(device).type == "cuda")
        for x, y, idx in loader:
            if self.image_shape is None:
                self.image_shape = tuple(x.shape[1:])
            if tuple(x.shape[1:]) != self.image_shape:
                raise ValueError(f"images of different sizes: item {int(idx[0])} is "
                                 f"{list(x.shape[1:])}, earlier items {list(self.image_shape)}; "
                                 f"give the Dataset a deterministic resize")
            wrong = torch.nonzero(y != self.labels[idx]).flatten()
            if len(wrong):
                i = int(idx[wrong[0]])
                raise ValueError(f"dataset item {i} has label {int(y[wrong[0]])} but labels[{i}] "
                                 f"is {int(self.labels[i])}")
            yield x, y, idx

    def _originals_uint8(self, idx: torch.Tensor) -> torch.Tensor:
        if self.images is not None:
            return self.images[idx]
        imgs = [_to_uint8_images(_item(self.dataset, int(i))[0]) for i in idx]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) > 1 or (self.image_shape is not None and shapes != {self.image_shape}):
            raise ValueError(f"images of different sizes: {sorted(shapes)}; give the Dataset a "
                             f"deterministic resize")
        return torch.stack(imgs)

    # -- the adversarial rows -----------------------------------------------------------------
    @property
    def adversarial(self) -> torch.Tensor:
        """All adversarial images, uint8 [A, C, H, W] (a view of the file with disk storage)."""
        return self._adversarial_rows(slice(None))

    def _adversarial_rows(self, rows) -> torch.Tensor:
        if self._rows is not None:
            return self._rows[rows]
        if self.adversarial_file is None or len(self.adversarial_source) == 0:
            shape = self.image_shape or (0, 0, 0)
            return torch.empty((0, *shape), dtype=torch.uint8)[rows]
        if self._map is None:
            shape = (len(self.adversarial_source), *self.image_shape)
            self._map = np.memmap(self.adversarial_file, dtype=np.uint8, mode="r", shape=shape)
        if isinstance(rows, torch.Tensor):
            rows = rows.numpy()
        return torch.from_numpy(np.array(self._map[rows]))

    def _file_name(self, generation: int) -> str:
        return os.path.join(self.storage, f"afr-adversarial-{self._token}-{generation}.u8")

    def _new_file(self, rows: int) -> str:
        """Create (rank 0) the next generation's file of ``rows`` images; drop the one before
        the previous (the previous stays for a checkpoint taken before this refresh)."""
        if self._token is None:
            token = torch.tensor([int.from_bytes(os.urandom(6), "little")])
            self._token = f"{int(all_gather_cat(token)[0]):012x}"
        path = self._file_name(self.generation)
        if get_rank() == 0:
            with open(path, "wb") as f:
                f.truncate(rows * int(np.prod(self.image_shape)))
            old = self._file_name(self.generation - 2)
            if self.generation >= 2 and os.path.exists(old):
                os.remove(old)
        barrier()
        return path

    # -- the refresh -----------------------------------------------------------------------
    def refresh(self, model: torch.nn.Module, device=None, class_accuracy=None,
                train_accuracy: Optional[float] = None) -> SplitResult:
        """Re-embed all originals, re-split them and regenerate the adversarial images.

        ``class_accuracy``/``train_accuracy`` feed §3.3's adaptive thresholds: pass the
        *running* training accuracy (per class and overall) on the mixed batches of the last
        epoch, as the benchmark does. Without them the accuracies measured on the clean images
        during embedding are used; these usually lie above the splitter's accuracy window, and
        the splitter then warns that the adaptive thresholds are not applied.

        The model's device and every module's train/eval mode are left as they were; a
        ``DistributedDataParallel`` wrapper is looked through. Returns the new split.

        Under ``torch.distributed`` (every rank calls it, with the same seed and data) each rank
        embeds and attacks its share and the results are gathered, so all ranks hold the same
        set, equal to the single-process one.
        """
        from tqdm.auto import tqdm

        rank, world = get_rank(), get_world_size()
        model = unwrap_model(model, compiled=False)
        if device is None:
            device = model_device(model)
        # A model that expects normalised input, declared on the attack (torchattacks'
        # set_normalization_used), sees normalised images in both passes.
        declared = self.attack is not None and self.attack.normalization_used is not None
        shard = torch.arange(rank, len(self.labels), world)
        batches = self._batches(shard, device)
        if declared:
            batches = ((self.attack.normalize(x.to(device)), y, i) for x, y, i in batches)
        emb, labels, acc, train_acc = self.splitter.embed(
            model, batches, device, progress=self.progress, layer=self.layer)
        if class_accuracy is None:
            class_accuracy, train_accuracy = acc, train_acc
        split = self.splitter.split(emb, labels, class_accuracy, train_accuracy,
                                    num_classes=self.num_classes)
        del emb                                 # N x D floats, not needed for the attack
        if self.image_shape is None:            # a Dataset shard may be empty on this rank
            self.image_shape = tuple(self._originals_uint8(torch.tensor([0])).shape[1:])

        attacked = []
        majority_labels = split.labels[~split.minority_mask]     # one pass, grouped by class
        order = torch.nonzero(~split.minority_mask).flatten()[torch.argsort(majority_labels,
                                                                            stable=True)]
        ends = torch.cumsum(torch.bincount(majority_labels, minlength=self.num_classes), 0).tolist()
        for c in range(self.num_classes):
            majority = order[(ends[c - 1] if c else 0):ends[c]]     # = split.majority_indices(c)
            k = int(round(self.attack_share * len(majority)))
            pick = self.rng.choice(len(majority), size=k, replace=False)
            attacked.append(majority[torch.as_tensor(pick, dtype=torch.long)].sort().values)
        flat = torch.cat(attacked)

        if self.attack is None:
            self.attack = MinorityPGD(model, layer=self.layer)
        else:
            self.attack.set_model(model)
        self.attack.set_targets(split)

        self.generation += 1
        mine = torch.arange(rank, len(flat), world)      # positions in `flat` this rank attacks
        to_disk = self.storage != "memory"
        if to_disk:
            path = self._new_file(len(flat))
            row_bytes = int(np.prod(self.image_shape))
            out = open(path, "r+b")
        else:
            adv = torch.empty((len(mine), *self.image_shape), dtype=torch.uint8)
        bar = tqdm(total=len(mine), desc="AFR attack", leave=False,
                   disable=not self.progress or rank != 0)
        done = 0
        try:
            for x, y, _ in self._batches(flat[mine], device):
                x = x.to(device, non_blocking=True)
                if declared:
                    res = self.attack.inverse_normalize(self.attack(self.attack.normalize(x),
                                                                    y.to(device))).clamp_(0, 1)
                else:
                    res = self.attack(x, y.to(device))
                res = res.detach().mul_(255).round_().to("cpu", torch.uint8)
                if to_disk:
                    pos = mine[done:done + len(res)]
                    if world == 1:
                        os.pwrite(out.fileno(), res.numpy().tobytes(), int(pos[0]) * row_bytes)
                    else:
                        for p, row in zip(pos.tolist(), res.numpy()):
                            os.pwrite(out.fileno(), row.tobytes(), p * row_bytes)
                else:
                    adv[done:done + len(res)] = res
                done += len(res)
                bar.update(len(res))
        finally:
            bar.close()
            if to_disk:
                out.flush()
                os.fsync(out.fileno())
                out.close()
        if to_disk:
            barrier()                                     # every rank's rows are written
            self._rows, self._map, self.adversarial_file = None, None, path
        else:
            if world > 1:
                positions, gathered = all_gather_cat(mine), all_gather_cat(adv)
                adv = torch.empty_like(gathered)
                adv[positions] = gathered
            self._rows = adv
        self.adversarial_source = flat
        self.split_result = split
        self._build(attacked)
        return split

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_index)

    def get_batch(self, indices) -> tuple:
        """``(uint8 images [B, C, H, W], labels [B])`` for item ``indices`` (for batched,
        on-device augmentation)."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        src, adv = self.item_index[indices], self.is_adversarial[indices]
        if not adv.any():
            return self._originals_uint8(src), self.item_labels[indices]
        if adv.all():
            return self._adversarial_rows(src), self.item_labels[indices]
        out = torch.empty((len(src), *self.image_shape), dtype=torch.uint8)
        out[~adv] = self._originals_uint8(src[~adv])
        out[adv] = self._adversarial_rows(src[adv])
        return out, self.item_labels[indices]

    def __getitem__(self, i: int):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        src = int(self.item_index[i])
        if self.is_adversarial[i]:
            img = self._adversarial_rows(src).float().div_(255)
        elif self.images is not None:
            img = self.images[src].float().div_(255)
        else:
            img = _item(self.dataset, src)[0]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.item_labels[i])

    def __getstate__(self):
        # DataLoader workers reopen the file themselves and need neither the attack (which
        # holds the model) nor the split.
        return {**self.__dict__, "_map": None, "attack": None, "split_result": None}

    # -- checkpoints -------------------------------------------------------------------------
    def _identity(self) -> dict:
        """What a state must agree on to describe this set."""
        return {"version": _STATE_VERSION, "num_originals": len(self.labels),
                "num_classes": self.num_classes, "target_size": self.target_size}

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue with the same set. With disk storage
        the adversarial images stay in their file, which the state names."""
        return {"type": type(self).__name__, **self._identity(), "image_shape": self.image_shape,
                "adversarial": self._rows, "adversarial_file": self.adversarial_file,
                "adversarial_source": self.adversarial_source, "item_index": self.item_index,
                "item_labels": self.item_labels, "is_adversarial": self.is_adversarial,
                "rng": self.rng.bit_generator.state, "generation": self.generation,
                "token": self._token}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s set (memory and disk states load into either storage)."""
        check_state(self, state, self._identity(),
                    ("image_shape", "adversarial", "adversarial_file", "adversarial_source",
                     "item_index", "item_labels", "is_adversarial", "rng", "generation", "token"))
        n_items, n_adv = len(state["item_index"]), len(state["adversarial_source"])
        if not len(state["item_labels"]) == len(state["is_adversarial"]) == n_items:
            raise ValueError("inconsistent state: item_index, item_labels and is_adversarial "
                             "differ in length")
        rows = state["adversarial"]
        if state["adversarial_file"] is not None and rows is None:
            path, shape = state["adversarial_file"], (n_adv, *state["image_shape"])
            if not os.path.isfile(path) or os.path.getsize(path) != int(np.prod(shape)):
                raise ValueError(f"the state's adversarial images are in {path!r}, which is "
                                 f"missing or not {int(np.prod(shape))} bytes")
        elif rows is not None and len(rows) != n_adv:
            raise ValueError(f"inconsistent state: {len(rows)} adversarial images for {n_adv} "
                             f"sources")
        if "bit_generator" not in state["rng"]:
            raise ValueError("the state's rng is not a numpy bit generator state")
        self.rng.bit_generator.state = state["rng"]
        for key in ("adversarial_source", "item_index", "item_labels", "is_adversarial"):
            setattr(self, key, state[key])
        self.generation, self._token = state["generation"], state["token"]
        if state["image_shape"] is not None:
            self.image_shape = tuple(state["image_shape"])
        self._map, self._rows, self.adversarial_file = None, None, None
        if rows is None and state["adversarial_file"] is not None:
            if self.storage == "memory":
                self._rows = torch.from_numpy(np.fromfile(state["adversarial_file"], np.uint8)
                                              .reshape(n_adv, *self.image_shape))
            else:
                self.adversarial_file = state["adversarial_file"]
        elif rows is not None and self.storage != "memory":
            if self._token is None:
                self._token = f"{int.from_bytes(os.urandom(6), 'little'):012x}"
            path = self._file_name(self.generation)
            if get_rank() == 0:
                rows.contiguous().numpy().tofile(path)
            barrier()
            self.adversarial_file = path
        else:
            self._rows = rows

    def __repr__(self) -> str:
        where = "memory" if self.storage == "memory" else f"disk:{self.storage}"
        return (f"AFRBalancer({len(self.labels)} originals, {self.num_classes} classes x "
                f"{self.target_size}, {int(self.is_adversarial.sum())} adversarial in {where})")
