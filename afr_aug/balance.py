"""The stage-2 training set: inter- and intra-class balanced (paper §3.2, Fig. 2).

In the paper's order (§3 step 2): every class is over-sampled to the same size *with data
augmentation* (a *slot* = an original image + one augmentation draw), the slots are embedded
and split into majority and minority per class, and ``attack_share`` of each class's majority
slots are replaced by adversarial versions that :class:`~afr_aug.MinorityPGD` moved into the
class's minority. ``refresh(model)`` does all of it again with the current model (the paper:
every 10 epochs), as one straight pipeline:

    slots → run_inference (the only place the model embeds) → IntraClassSplitter.split
    (embeddings in, split out) → MinorityPGD.fit + generate (the attack owns its batch loop)
    → AdversarialStore → this Dataset (items, get_batch) → RefreshReport

The originals are never copied: a tensor is used as it is, a ``Dataset`` is read lazily by
index, and a slot that is not attacked stays an (index, draw) pair. Only the adversarial
images are stored, as uint8, in memory or in a file on disk.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from .attack import MinorityPGD
from .augment import CropFlip
from .distributed import all_gather_cat, get_rank, get_world_size
from .embedding import model_device, run_inference, unwrap_model
from .metrics import RunningAccuracy
from .refresh_report import RefreshReport
from .checks import check_image_values, check_int, check_probability, check_state
from .split import IntraClassSplitter, SplitResult
from .store import AdversarialStore

__all__ = ["AFRBalancer"]

_STATE_VERSION = 3


def _to_uint8_images(images: torch.Tensor) -> torch.Tensor:
    check_image_values(images, "images")
    if images.dtype == torch.uint8:
        return images.contiguous()
    return (images * 255).round().to(torch.uint8)


def _float_image(img, i: int) -> torch.Tensor:
    """Dataset item ``i``'s image as float [C, H, W] in [0, 1], with a clear error otherwise."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"dataset item {i}: the image is a {type(img).__name__}, AFRBalancer needs "
                        f"a [C, H, W] tensor (add transforms.ToTensor() or PILToTensor())")
    if img.ndim != 3:
        raise ValueError(f"dataset item {i}: the image has shape {tuple(img.shape)}, expected "
                         f"[C, H, W]")
    check_image_values(img, f"image of dataset item {i}", tolerance=1e-6,
                       hint=" (leave Normalize out of the Dataset; put it in the model)")
    if img.dtype == torch.uint8:
        return img.float().div_(255)
    return img.float().clamp_(0, 1)


def _item(dataset: Dataset, i: int):
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(f"dataset item {i} is a {type(item).__name__}; expected (image, label)")
    return _float_image(item[0], i), int(item[1])


class _Indexed(Dataset):
    """``(float image, label, k)`` for the k-th of the chosen indices of a Dataset (read in
    workers)."""

    def __init__(self, dataset: Dataset, indices: torch.Tensor):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        img, label = _item(self.dataset, int(self.indices[k]))
        return img, label, k


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
    """AFR's stage-2 set: equal per-class size, part of each class adversarial minority-like.

    ``layout="slots"`` (default, the paper's order): each class holds ``target_size`` slots,
    every original once and then random repeats (a random subset when the class is larger),
    each slot with its own draw of ``slot_transform`` (default crop + flip), drawn afresh at
    every refresh. :meth:`refresh` embeds the slots, splits each class, and attacks
    ``attack_share`` of each class's majority slots: with the paper's 0.5 and a 20 % minority,
    every class, tail classes included, is about 40 % adversarial. ``layout="originals"`` is
    the earlier reading, kept for comparison: the originals are embedded and attacked, and each
    class is filled up with repeats of its originals; a tail class then holds a handful of
    adversarial images among thousands of repeats.

    Before the first :meth:`refresh` the set is plain class-balanced over-sampling, so the same
    object also serves as the control's (and CMO's) balanced set.

    Scale: a tensor is indexed as it is (the fast path); a ``Dataset`` is read lazily by index
    (constructing the set reads no image when ``labels`` are given or the dataset has
    ``.targets``; a refresh streams the slots once through a ``DataLoader`` to embed them and
    reads the attacked ones once more). Only the adversarial images are stored, as uint8, in an
    :class:`~afr_aug.store.AdversarialStore`: in memory, or with ``storage=<dir>`` in a
    memory-mapped file shared by the ranks under ``torchrun`` (each rank embeds and attacks its
    share; all ranks end with the same set). Use a ``DataLoader`` without
    ``persistent_workers`` over this set, so workers see each refresh.

    Items are ``(float image [C, H, W] in [0, 1] through transform, int label)``;
    :meth:`get_batch` returns uint8 batches for batched augmentation on the GPU.

    Args:
        data: a uint8 or [0, 1] float tensor [N, C, H, W], or a map-style Dataset whose item
            ``i`` is ``(image, label)`` with ``image`` a [C, H, W] float tensor in [0, 1] or a
            uint8 tensor, all of one size: a deterministic view of the training set (e.g.
            ``ImageFolder(root, transform=Compose([Resize(256), CenterCrop(224), ToTensor()]))``).
        labels: int labels [N] (required with a tensor; with a Dataset, default its
            ``.targets``, else read from the items once).
        num_classes: default ``max(label) + 1``.
        attack_share: share of each class's majority slots to attack (paper: 0.5).
        target_size: slots per class; default the largest class's size.
        splitter: an :class:`IntraClassSplitter` (default: 20 % minority per class, §3.3
            keeping more originals in hard classes).
        attack: a configured :class:`MinorityPGD`; each :meth:`refresh` points it at the given
            model (``set_model``) and fits it to the new split. A model that expects
            normalised input is declared on it (``set_normalization_used``). Default:
            ``MinorityPGD(model, layer=layer)``.
        layer: embedding layer name (see :class:`~afr_aug.Embedder`); default the attack's,
            else the input of the model's last ``nn.Linear``.
        storage: ``"memory"`` or a directory path for the adversarial images. A refresh
            writes its generation beside the live one and swaps it in only when complete, so a
            failed refresh (an exception, Ctrl-C, a full disk) leaves the set as it was.
        keep_generations: with disk storage, how many generations' files are kept (default 2:
            the live one and the one before): a checkpoint older than that cannot be loaded.
        transform: applied to each float image in ``__getitem__`` (training augmentation).
        layout: ``"slots"`` or ``"originals"`` (see above).
        slot_transform: the slot augmentation, an object with ``draw(n, generator)`` and
            ``apply(images, params)``: :class:`~afr_aug.augment.CropFlip` (default, padding 4)
            or :class:`~afr_aug.augment.SeededTransform` around any per-image transform.
        mixer: the stage-2 mixer (a ``CutMixBalancer``/``MixUpBalancer``), only to compute the
            report's dose; default the paper's CutMix with p = 0.25.
        autocast: a dtype (e.g. ``torch.bfloat16``) to run the refresh's model passes under
            ``torch.autocast``; ``None``: the model's own precision (a float16 or bfloat16
            model runs under autocast to its dtype).
        batch_size, num_workers: of the refresh's passes (num_workers only for a Dataset).
        seed: seed of the slots, their draws and the choice of attacked slots.
        progress: tqdm bars during a refresh.

    Example:
        >>> from afr_aug.models import resnet32
        >>> images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
        >>> labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
        >>> stage2 = AFRBalancer(images, labels, progress=False)
        >>> stage2.class_sizes().tolist()
        [20, 20, 20]
        >>> report = stage2.refresh(resnet32(num_classes=3))   # embed, split, attack
        >>> stage2.class_sizes().tolist(), report.attacked
        ([20, 20, 20], [8, 8, 8])
        >>> loader = torch.utils.data.DataLoader(stage2, batch_size=8, shuffle=True)
    """

    LAYOUTS = ("slots", "originals")

    def __init__(self, data, labels=None, *, num_classes: Optional[int] = None,
                 attack_share: float = 0.5, target_size: Optional[int] = None,
                 splitter: Optional[IntraClassSplitter] = None,
                 attack: Optional[MinorityPGD] = None, layer: Optional[str] = None,
                 storage: str = "memory", transform=None, layout: str = "slots",
                 slot_transform=None, mixer=None, autocast: Optional[torch.dtype] = None,
                 batch_size: int = 256, num_workers: int = 0, seed: int = 0,
                 progress: bool = True, keep_generations: int = 2):
        n = self._set_data(data)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.progress = progress
        self._set_labels(labels, n, num_classes, target_size)
        self.attack_share = check_probability(attack_share, "attack_share")
        self._set_attack(attack, layer, splitter)
        self._set_layout(layout, slot_transform)
        if autocast is not None and not isinstance(autocast, torch.dtype):
            raise TypeError(f"autocast must be a torch.dtype or None, got {autocast!r}")
        self.transform, self.mixer, self.autocast = transform, mixer, autocast
        self.store = AdversarialStore(storage, keep_generations)
        self._model_dtype: Optional[torch.dtype] = None
        self.generator = torch.Generator().manual_seed(check_int(seed, "seed"))
        self.generation = 0                   # refreshes so far
        self.split_result: Optional[SplitResult] = None
        self.report: Optional[RefreshReport] = None
        self._set_items(*self._candidates(), torch.zeros(0, dtype=torch.long))

    # -- inputs ----------------------------------------------------------------------------
    def _set_data(self, data) -> int:
        if isinstance(data, torch.Tensor):
            if data.ndim != 4:
                raise ValueError(f"data must be [N, C, H, W], got shape {tuple(data.shape)}")
            self.images: Optional[torch.Tensor] = _to_uint8_images(data)
            self.dataset: Optional[Dataset] = None
            self.image_shape: Optional[tuple] = tuple(data.shape[1:])
        elif isinstance(data, torch.utils.data.IterableDataset):
            raise TypeError(f"data is an IterableDataset ({type(data).__name__}); AFRBalancer "
                            f"reads items by index: give it a map-style Dataset")
        elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            self.images, self.dataset, self.image_shape = None, data, None
        else:
            raise TypeError(f"data must be a tensor or a map-style Dataset, got "
                            f"{type(data).__name__}")
        if len(data) == 0:
            raise ValueError("no images")
        return len(data)

    def _set_labels(self, labels, n: int, num_classes: Optional[int],
                    target_size: Optional[int]) -> None:
        """``labels`` (default the Dataset's ``.targets``, else read from its items), the
        class counts and the per-class size, checked."""
        if labels is None and self.dataset is not None and hasattr(self.dataset, "targets"):
            labels = self.dataset.targets
        labels = self._read_labels() if labels is None else torch.as_tensor(labels)
        self.labels, num_classes = self._check_labels(labels, n, num_classes)
        self.num_classes = int(num_classes)
        self.class_counts = torch.bincount(self.labels, minlength=self.num_classes)
        self.target_size = (int(self.class_counts.max()) if target_size is None
                            else check_int(target_size, "target_size", minimum=1))

    def _set_attack(self, attack: Optional[MinorityPGD], layer: Optional[str],
                    splitter: Optional[IntraClassSplitter]) -> None:
        """The splitter, the attack and the embedding layer they share."""
        if attack is not None and not isinstance(attack, MinorityPGD):
            raise TypeError(f"attack must be a MinorityPGD, got {type(attack).__name__}")
        if attack is not None and layer is not None and attack.layer not in (None, layer):
            raise ValueError(f"layer={layer!r} but the attack embeds at {attack.layer!r}: the "
                             f"split and the attack must use the same embedding")
        self.splitter = splitter if splitter is not None else IntraClassSplitter()
        self.attack = attack
        self.layer = layer if layer is not None else (attack.layer if attack is not None else None)

    def _set_layout(self, layout: str, slot_transform) -> None:
        """The layout and, for slots, their augmentation (default crop + flip)."""
        if layout not in self.LAYOUTS:
            raise ValueError(f"layout must be one of {self.LAYOUTS}, got {layout!r}")
        if slot_transform is None and layout == "slots":
            slot_transform = CropFlip(padding=4)
        if slot_transform is not None and not (callable(getattr(slot_transform, "draw", None))
                                               and callable(getattr(slot_transform, "apply", None))):
            raise TypeError("slot_transform needs draw(n, generator) and apply(images, params); "
                            "wrap a per-image transform in afr_aug.augment.SeededTransform")
        self.layout = layout
        self.slot_transform = slot_transform if layout == "slots" else None

    def _check_labels(self, labels, n: int, num_classes):
        if self.images is not None and labels is None:
            raise ValueError("labels are required when data is a tensor")
        if labels.ndim != 1 or len(labels) != n:
            raise ValueError(f"labels has {labels.numel()} entries, data {n}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
        labels = labels.long()
        if int(labels.min()) < 0:
            raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        if int(labels.max()) >= num_classes:
            raise ValueError(f"labels must be in [0, {num_classes}), got max {int(labels.max())}")
        return labels, num_classes

    def _read_labels(self) -> torch.Tensor:
        """Labels of a Dataset without ``.targets``: one pass over its items."""
        from tqdm.auto import tqdm

        if self.dataset is None:
            raise ValueError("labels are required when data is a tensor")
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                            collate_fn=_labels_only)
        out = []
        for chunk in tqdm(loader, desc="reading labels", leave=False, disable=not self.progress):
            out += chunk
        return torch.tensor(out, dtype=torch.long)

    # -- slots -------------------------------------------------------------------------------
    def _fill(self, members: torch.Tensor, size: int) -> torch.Tensor:
        """``size`` of ``members``: each once, then random repeats; a random subset if fewer."""
        if len(members) == 0 or size <= 0:
            return members[:0]
        if size < len(members):
            return members[torch.randperm(len(members), generator=self.generator)[:size]].sort().values
        extra = torch.randint(len(members), (size - len(members),), generator=self.generator)
        return torch.cat([members, members[extra]])

    def _candidates(self):
        """What a refresh embeds and attacks: ``(original index [S], labels [S], draws)``;
        the slots, or the originals themselves (``layout="originals"``, no draws)."""
        if self.layout == "originals":
            return torch.arange(len(self.labels)), self.labels.clone(), None
        order = torch.argsort(self.labels, stable=True)
        ends = torch.cumsum(self.class_counts, 0).tolist()
        index = torch.cat([self._fill(order[(ends[c - 1] if c else 0):ends[c]], self.target_size)
                           for c in range(self.num_classes)])
        return index, self.labels[index], self.slot_transform.draw(len(index), self.generator)

    def _set_items(self, index, labels, draws, attacked: torch.Tensor) -> None:
        """The item table from the candidates, of which ``attacked`` (positions) now have
        adversarial row k = their rank in ``attacked``."""
        self.adversarial_source = index[attacked]
        self.adversarial_draws = None if draws is None else draws[attacked]
        if self.layout == "slots":
            self.item_index, self.item_labels, self.item_draws = index.clone(), labels, draws
            self.is_adversarial = torch.zeros(len(index), dtype=torch.bool)
            self.is_adversarial[attacked] = True
            self.item_index[attacked] = torch.arange(len(attacked))
            return
        # originals: per class, its adversarial rows plus originals filling it to target_size
        items, item_labels, flags = [], [], []
        ends = torch.cumsum(self.class_counts, 0).tolist()
        order = torch.argsort(self.labels, stable=True)
        row_class = labels[attacked]
        for c in range(self.num_classes):
            rows = torch.nonzero(row_class == c).flatten()[:self.target_size]
            fill = self._fill(order[(ends[c - 1] if c else 0):ends[c]], self.target_size - len(rows))
            if len(fill) + len(rows) == 0:
                continue
            items += [fill, rows]
            item_labels.append(torch.full((len(fill) + len(rows),), c, dtype=torch.long))
            flags += [torch.zeros(len(fill), dtype=torch.bool), torch.ones(len(rows), dtype=torch.bool)]
        self.item_index, self.item_labels = torch.cat(items), torch.cat(item_labels)
        self.is_adversarial, self.item_draws = torch.cat(flags), None

    def class_sizes(self) -> torch.Tensor:
        """Items per class (equal for every class that has images)."""
        return torch.bincount(self.item_labels, minlength=self.num_classes)

    # -- reading originals -------------------------------------------------------------------
    def _batches(self, positions: torch.Tensor, index, labels, draws, device) -> Iterator:
        """``(float images, labels, positions)`` of the given candidates, augmented with
        their draws, checked against the labels."""
        if self.images is not None:
            chunks = ((self.images[index[p]], labels[p], p)
                      for p in (positions.split(self.batch_size) if len(positions) else ()))
        else:
            loader = DataLoader(_Indexed(self.dataset, index[positions]), batch_size=self.batch_size,
                                num_workers=self.num_workers, collate_fn=_collate,
                                pin_memory=torch.device(device).type == "cuda")
            chunks = ((x, y, positions[k]) for x, y, k in loader)
        for x, y, p in chunks:
            if self.images is None:
                self._check_read(x, y, index[p])
            if draws is not None:
                x = self.slot_transform.apply(x, draws[p])
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            yield x, labels[p], p

    def _check_read(self, x, y, idx) -> None:
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

    def _originals_uint8(self, idx: torch.Tensor) -> torch.Tensor:
        if self.images is not None:
            return self.images[idx]
        imgs = [_to_uint8_images(_item(self.dataset, int(i))[0]) for i in idx]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) > 1 or (self.image_shape is not None and shapes != {self.image_shape}):
            raise ValueError(f"images of different sizes: {sorted(shapes)}; give the Dataset a "
                             f"deterministic resize")
        return torch.stack(imgs)

    @property
    def adversarial(self) -> torch.Tensor:
        """All adversarial images, uint8 [A, C, H, W] (read from the file with disk storage)."""
        return self.store.rows(slice(None))

    def adversarial_clean(self) -> torch.Tensor:
        """The clean image each adversarial row was made from (its original through its slot's
        draw), uint8 [A, C, H, W]: ``adversarial - adversarial_clean()`` is what the attack
        changed."""
        imgs = self._originals_uint8(self.adversarial_source)
        if self.adversarial_draws is not None and len(imgs):
            imgs = self.slot_transform.apply(imgs, self.adversarial_draws)
        return imgs

    # -- the refresh -----------------------------------------------------------------------
    def _context(self, device):
        dtype = self.autocast or self._model_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=dtype)

    def _embed(self, model, candidates, device):
        """Step 1: the candidates' embeddings and clean predictions (the one model pass)."""
        rank, world = get_rank(), get_world_size()
        index, labels, draws = candidates
        batches = self._batches(torch.arange(rank, len(index), world), index, labels, draws, device)
        if self.attack is not None and self.attack.normalization_used is not None:
            batches = ((self.attack.normalize(x.to(device)), y, p) for x, y, p in batches)
        with self._context(device):
            out = run_inference(model, batches, embed=True, layer=self.layer, device=device,
                                progress=self.progress, desc="AFR embedding")
        return out.embeddings, out.predictions

    def _choose(self, split: SplitResult) -> torch.Tensor:
        """Step 3: ``attack_share`` of each class's majority candidates, positions sorted."""
        chosen = []
        for c in range(self.num_classes):
            majority = split.majority_indices(c)
            k = int(round(self.attack_share * len(majority)))
            chosen.append(majority[torch.randperm(len(majority), generator=self.generator)[:k]])
        return torch.cat(chosen).sort().values

    def _attack(self, model, candidates, attacked, device):
        """Step 4: generate this rank's share of the attacked candidates into the store;
        returns the after-measurements of all of them (gathered)."""
        from tqdm.auto import tqdm

        rank, world = get_rank(), get_world_size()
        index, labels, draws = candidates
        mine = torch.arange(rank, len(attacked), world)            # rows this rank makes
        self.store.begin(len(attacked), self.image_shape)          # beside the live generation
        batches = ((x, y, rows) for (x, y, _), rows in
                   zip(self._batches(attacked[mine], index, labels, draws, device),
                       mine.split(self.batch_size)))
        bar = tqdm(total=len(mine), desc="AFR attack", leave=False,
                   disable=not self.progress or rank != 0)
        cols = {"rows": [], "embeddings": [], "predictions": [], "linf": []}
        with self._context(device):
            for (rows, after), pos in zip(self.attack.generate(batches), mine.split(self.batch_size)):
                self.store.write(pos, rows)
                cols["rows"].append(pos)
                for k in ("embeddings", "predictions", "linf"):
                    cols[k].append(after[k])
                bar.update(len(pos))
        bar.close()
        out = {k: torch.cat(v) if v else None for k, v in cols.items()}
        if out["rows"] is None:
            out = {"rows": torch.zeros(0, dtype=torch.long), "embeddings": torch.zeros(0, 1),
                   "predictions": torch.zeros(0, dtype=torch.long), "linf": torch.zeros(0)}
        if world > 1:
            out = {k: all_gather_cat(v) for k, v in out.items()}
        order = torch.argsort(out["rows"])
        return {k: v[order] for k, v in out.items()}

    def refresh(self, model: torch.nn.Module, device=None, class_accuracy=None,
                train_accuracy: Optional[float] = None) -> RefreshReport:
        """Draw new slots, embed them, split each class, attack, and rebuild the set.

        ``class_accuracy``/``train_accuracy`` feed §3.3: pass the *running* training accuracy
        (per class and overall) on the mixed batches of the last epoch
        (:class:`~afr_aug.metrics.RunningAccuracy`). Without them the accuracies of the clean
        slots are used; these usually lie above the splitter's accuracy window, and the
        splitter then warns that §3.3 is not applied.

        The model's device and every module's train/eval mode are left as they were; a
        ``DistributedDataParallel`` wrapper is looked through. Returns the
        :class:`~afr_aug.refresh_report.RefreshReport` (also kept as :attr:`report`; print it
        for the table); warns when the dose is below 1 % or a class's minority is one image.

        Under ``torch.distributed`` every rank calls it with the same seed and data; each rank
        embeds and attacks its share, and all ranks end with the same set.
        """
        model = unwrap_model(model, compiled=False)
        device = model_device(model) if device is None else torch.device(device)
        before = self.generator.get_state()
        # a half-precision model is run under autocast to its dtype (images stay float32)
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        self._model_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else None
        try:
            return self._refresh(model, device, class_accuracy, train_accuracy)
        except BaseException as exc:
            # nothing of the new generation is kept: the set serves the previous one, and a
            # retry draws the same slots
            self.store.abort()
            self.generator.set_state(before)
            if hasattr(exc, "add_note"):
                exc.add_note(f"AFRBalancer.refresh failed; the set still holds generation "
                             f"{self.generation}")
            raise

    def _refresh(self, model, device, class_accuracy, train_accuracy) -> RefreshReport:
        candidates = self._candidates()
        emb, predictions = self._embed(model, candidates, device)
        labels = candidates[1]
        correct = (predictions == labels)
        if class_accuracy is None or train_accuracy is None or train_accuracy != train_accuracy:
            # not given, or a RunningAccuracy that has not counted yet (NaN): the clean slots'
            clean = RunningAccuracy(self.num_classes)
            clean.update(predictions, labels)
            class_accuracy, train_accuracy = clean.per_class(), clean.overall()
        split = self.splitter.split(emb, labels, class_accuracy, train_accuracy,
                                    num_classes=self.num_classes)
        attacked = self._choose(split)
        if self.image_shape is None:            # a Dataset shard may be empty on this rank
            self.image_shape = tuple(self._originals_uint8(torch.tensor([0])).shape[1:])
        if self.attack is None:
            self.attack = MinorityPGD(model, layer=self.layer)
        else:
            self.attack.set_model(model)
        self.attack.fit(emb, split, seed=int(torch.randint(2 ** 62, (1,), generator=self.generator)))
        del emb                                 # S x D floats, not needed any more
        after = self._attack(model, candidates, attacked, device)
        self.store.finish()                     # the new rows are in: swap the items too
        self.generation += 1
        self.split_result = split
        self._set_items(*candidates, attacked)
        mean = split.class_means[labels[attacked]]
        mix_p, mix_area = self._mix()
        self.report = RefreshReport.measure(
            generation=self.generation, target=self.attack.target, layout=self.layout,
            class_counts=self.class_counts, slot_labels=self.item_labels, split=split,
            attacked=attacked, before_correct=correct[attacked],
            after_similarity=torch.nn.functional.cosine_similarity(after["embeddings"], mean,
                                                                    dim=1, eps=1e-12)
            if len(attacked) else torch.zeros(0),
            after_correct=after["predictions"] == labels[attacked], linf=after["linf"],
            mix_p=mix_p, mix_area=mix_area, accuracy=class_accuracy,
            train_accuracy=train_accuracy, head_accuracy=self.attack.head_accuracy)
        if get_rank() == 0:
            self.report.warn()
        return self.report

    def _mix(self):
        """(p, E[1 - lam]) of the stage-2 mixer, for the dose."""
        from .mixing import MixUpBalancer, cutmix_area_mean

        p = 0.25 if self.mixer is None else self.mixer.p
        beta = 1.0 if self.mixer is None else self.mixer.beta
        if isinstance(self.mixer, MixUpBalancer):
            return p, 0.5
        h, w = (self.image_shape or (3, 32, 32))[1:]
        return p, cutmix_area_mean(h, w, beta)

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_index)

    def _plain(self, items: torch.Tensor) -> torch.Tensor:
        """uint8 images of non-adversarial ``items``: their originals through their draws."""
        imgs = self._originals_uint8(self.item_index[items])
        if self.item_draws is not None:
            imgs = self.slot_transform.apply(imgs, self.item_draws[items])
        return imgs

    def get_batch(self, indices) -> tuple:
        """``(uint8 images [B, C, H, W], labels [B])`` for item ``indices`` (for batched,
        on-device augmentation)."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        adv = self.is_adversarial[indices]
        if not adv.any():
            return self._plain(indices), self.item_labels[indices]
        if adv.all():
            return self.store.rows(self.item_index[indices]), self.item_labels[indices]
        out = torch.empty((len(indices), *self.image_shape), dtype=torch.uint8)
        out[~adv] = self._plain(indices[~adv])
        out[adv] = self.store.rows(self.item_index[indices[adv]])
        return out, self.item_labels[indices]

    def __getitem__(self, i: int):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        i %= len(self)
        src = int(self.item_index[i])
        if self.is_adversarial[i]:
            img = self.store.rows(torch.tensor([src]))[0].float().div_(255)
        elif self.item_draws is not None:
            img = self._plain(torch.tensor([i]))[0]
            img = img.float().div_(255) if img.dtype == torch.uint8 else img.float()
        elif self.images is not None:
            img = self.images[src].float().div_(255)
        else:
            img = _item(self.dataset, src)[0]
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.item_labels[i])

    def __getstate__(self):
        # DataLoader workers need neither the attack (which holds the model) nor the split
        return {**self.__dict__, "attack": None, "split_result": None, "report": None}

    # -- checkpoints -------------------------------------------------------------------------
    def _identity(self) -> dict:
        """What a state must agree on to describe this set."""
        return {"version": _STATE_VERSION, "num_originals": len(self.labels),
                "num_classes": self.num_classes, "target_size": self.target_size,
                "layout": self.layout}

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue with the same set. With disk storage
        the adversarial images stay in their file, which the state names."""
        return {"type": type(self).__name__, **self._identity(), "image_shape": self.image_shape,
                "store": self.store.state_dict(), "item_index": self.item_index,
                "item_labels": self.item_labels, "is_adversarial": self.is_adversarial,
                "item_draws": self.item_draws, "adversarial_source": self.adversarial_source,
                "adversarial_draws": self.adversarial_draws,
                "generator": self.generator.get_state(),
                "generation": self.generation,
                "report": None if self.report is None else self.report.to_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`'s set (memory and disk states load into either storage)."""
        state = state_dict
        check_state(self, state, self._identity(),
                    ("image_shape", "store", "item_index", "item_labels", "is_adversarial",
                     "item_draws", "adversarial_source", "adversarial_draws", "generator",
                     "generation", "report"))
        n_items = len(state["item_index"])
        if not len(state["item_labels"]) == len(state["is_adversarial"]) == n_items:
            raise ValueError("inconsistent state: item_index, item_labels and is_adversarial "
                             "differ in length")
        if int(state["is_adversarial"].sum()) != int(state["store"]["num_rows"]):
            raise ValueError(f"inconsistent state: {int(state['is_adversarial'].sum())} adversarial "
                             f"items for {state['store']['num_rows']} stored rows")
        self.store.load_state_dict(state["store"])
        self.generator.set_state(state["generator"])
        for key in ("item_index", "item_labels", "is_adversarial", "item_draws",
                    "adversarial_source", "adversarial_draws", "generation"):
            setattr(self, key, state[key])
        if state["image_shape"] is not None:
            self.image_shape = tuple(state["image_shape"])
        self.report = None if state["report"] is None else RefreshReport.from_dict(state["report"])

    def __repr__(self) -> str:
        where = "memory" if not self.store.on_disk else f"disk:{self.store.storage}"
        return (f"AFRBalancer({len(self.labels)} originals, {self.num_classes} classes x "
                f"{self.target_size} {self.layout}, {int(self.is_adversarial.sum())} adversarial "
                f"in {where})")
