"""Your DataLoader, wrapped: ready-mixed batches for stage 1 (CMO) and stage 2 (AFR).

Why: every loop that trains with a balanced source writes the same plumbing: a second loader
beside the user's, the mixer's coin per batch, the running accuracy that §3.3 needs, and (in
stage 2) the refresh every ``refresh_every`` epochs with that accuracy. The wrappers own that
plumbing and nothing else: the user's loop keeps its model, loss, optimiser and schedule.

- :class:`BalancedMixLoader` (stage 1): the user's loader, plus a class-balanced loader built
  from it with :class:`~afr_aug.LongTailSampler` (CMO), mixed by a
  :class:`~afr_aug.CutMixBalancer` (``p = 0.5``).
- :class:`AFRLoader` (stage 2): the same, with :class:`~afr_aug.AFRDataset`'s set as the
  balanced source (``p = 0.25``), refreshed at the start of every ``refresh_every``-th epoch
  with the running accuracy of the epoch before.

Both yield :class:`MixedBatch` ``(x, y_a, y_b, lam)`` for
:func:`~afr_aug.mixed_loss`, and take the logits back with :meth:`~BalancedMixLoader.observe`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from .checks import check_int, check_labels, check_state
from .distributed import all_reduce_sum, get_rank, get_world_size
from .embedding import is_classifier, unwrap_model
from .metrics import RunningAccuracy
from .mixing import CutMixBalancer, MixUpBalancer, Remix, mix_share
from .sampler import LongTailSampler
from .stage2 import AFRDataset

__all__ = ["AFRLoader", "BalancedMixLoader", "MixedBatch"]

_STATE_VERSION = 2


# "long_tailed": the user's batches, some mixed with balanced ones (the paper's literal
# reading); "balanced": the balanced source's batches, some mixed with the user's
STREAMS = ("long_tailed", "balanced")


class MixedBatch(NamedTuple):
    """One training batch: images, the two labels and the share ``lam`` of ``y_a``.

    An unmixed batch has ``y_b is y_a`` and ``lam == 1.0``.
    """

    x: torch.Tensor
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float | torch.Tensor  # a tensor [N] of per-sample shares from Remix


def dataset_labels(dataset: Any) -> torch.Tensor | None:
    """The labels a dataset declares without reading an image: ``.targets`` (torchvision's
    datasets, ``ImageFolder``, ``cifar_lt``), looked through ``Subset``; ``None`` if it has none."""
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return None if inner is None else inner[torch.as_tensor(dataset.indices, dtype=torch.long)]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else check_labels(targets, f"{type(dataset).__name__}.targets")


def _set_epoch(obj: Any, epoch: int) -> None:
    """Pass the epoch to a loader's sampler (``DistributedSampler``, ``LongTailSampler``) and
    to a batch sampler's inner sampler, wherever there is a ``set_epoch``."""
    seen = set()
    for s in (
        getattr(obj, "sampler", None),
        getattr(obj, "batch_sampler", None),
        getattr(getattr(obj, "batch_sampler", None), "sampler", None),
    ):
        if s is not None and id(s) not in seen and callable(getattr(s, "set_epoch", None)):
            seen.add(id(s))
            s.set_epoch(epoch)


def _len(obj: object) -> int:
    """``len(obj)`` of an object typed without ``__len__`` (any iterable, a ``Dataset``): the
    same ``TypeError`` as ``len`` when it has none."""
    if not isinstance(obj, Sized):
        raise TypeError(f"object of type '{type(obj).__name__}' has no len()")
    return len(obj)


def _loader_like(loader: DataLoader, dataset: Dataset, sampler, persistent: bool) -> DataLoader:
    """A DataLoader over ``dataset`` with ``sampler`` and the user's loader's batch size, workers,
    pinned memory and collate function; ``drop_last`` so every balanced batch is full."""
    extra = {}
    if loader.num_workers > 0:
        extra = {
            "prefetch_factor": loader.prefetch_factor,
            "persistent_workers": persistent,
            "multiprocessing_context": loader.multiprocessing_context,
        }
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        collate_fn=loader.collate_fn,
        worker_init_fn=loader.worker_init_fn,
        timeout=loader.timeout,
        **extra,
    )


def _output_width(model: torch.nn.Module) -> int | None:
    """The number of logits ``model`` declares (timm's ``num_classes``, else its last
    ``nn.Linear``'s ``out_features``), or ``None`` when it declares none. A cheap check at
    construction; :meth:`BalancedMixLoader.observe` checks the real logits."""
    inner = unwrap_model(model)
    width = getattr(inner, "num_classes", None)
    if not isinstance(width, int):
        layers = [m for m in inner.modules() if is_classifier(m)]
        width = getattr(layers[-1], "out_features", None) if layers else None
    return int(width) if isinstance(width, int) and not isinstance(width, bool) else None


class BalancedMixLoader:
    """Stage 1 (inter-class): the user's batches, CutMixed with class-balanced ones (CMO).

    Args:
        loader: the user's loader: any iterable of ``(images, labels)`` batches with ``len``
            (a ``DataLoader``, a DDP one included). Its order, workers and memory pinning are
            left as they are.
        mixer: a :class:`~afr_aug.CutMixBalancer`, :class:`~afr_aug.MixUpBalancer` or
            :class:`~afr_aug.Remix`; default ``CutMixBalancer(p=0.5)`` (CMO). Its coin is
            tossed first, so a balanced batch is fetched (and transformed) only for the
            batches that mix. A mixer built with ``in_batch=True`` (mixup, Remix's default)
            mixes each batch with itself and never reads the balanced source.
        balanced: the balanced source, any iterable of ``(images, labels)`` batches at least
            as large as the user's (restarted when it runs out). Default: a ``DataLoader``
            over ``loader.dataset`` with a :class:`~afr_aug.LongTailSampler` and the loader's
            batch size, workers, pinning and collate function.
        labels: one label per item of ``loader.dataset``, for the default balanced source
            (default: the dataset's ``.targets``, looked through ``Subset``).
        num_classes: for the running accuracy; default ``max(labels) + 1``.
        transform: a callable on a whole batch, applied on ``device`` to the user's images and
            to the balanced ones before mixing (e.g. :class:`~afr_aug.augment.BatchAugment`
            on uint8 batches).
        device: where batches go (``non_blocking`` when the loader pins memory); ``None``:
            left where the loader puts them.
        seed: seed of the default balanced source's sampler.
        mixing: whether batches are mixed; set the attribute between epochs to pause mixing
            (CMO leaves the first and last epochs unmixed) without touching the mixer's coin.
        stream: ``"long_tailed"`` (default): the user's batches, mixed with balanced ones;
            ``"balanced"``: as many batches from the balanced source, each mixed (the coin)
            with the user's next batch as the partner. On a balanced stream the right loss is
            plain cross-entropy: Balanced Softmax's prior is then uniform, i.e. cross-entropy.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> from afr_aug import mixed_loss
        >>> data = TensorDataset(torch.rand(40, 3, 8, 8), torch.tensor([0] * 30 + [1] * 10))
        >>> data.targets = data.tensors[1]                  # what a torchvision dataset has
        >>> loader = BalancedMixLoader(DataLoader(data, batch_size=8, shuffle=True))
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
        >>> for epoch in range(2):
        ...     loader.set_epoch(epoch)
        ...     for x, y_a, y_b, lam in loader:
        ...         logits = model(x)
        ...         loss = mixed_loss(torch.nn.functional.cross_entropy, logits, y_a, y_b, lam)
        ...         loader.observe(logits)                   # §3.3's running accuracy
        >>> len(loader), loader.running.per_class().shape
        (5, torch.Size([2]))
    """

    def __init__(
        self,
        loader: Iterable,
        mixer=None,
        *,
        balanced: Iterable | None = None,
        labels=None,
        num_classes: int | None = None,
        transform=None,
        device=None,
        seed: int = 0,
        mixing: bool = True,
        stream: str = "long_tailed",
    ):
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        self.stream = stream
        self.mixer = self._check_mixer(CutMixBalancer(p=0.5) if mixer is None else mixer)
        if stream == "balanced" and self.mixer.in_batch:
            raise ValueError(
                "stream='balanced' mixes the balanced batches with the user's: the "
                "mixer must not be in_batch"
            )
        needs_balanced = balanced is None and not self.mixer.in_batch
        if needs_balanced and not isinstance(loader, DataLoader):
            raise TypeError(
                "without balanced=, the loader must be a torch DataLoader (the "
                "balanced loader is built from its dataset and settings)"
            )
        if isinstance(loader, Sized) and len(loader) == 0:
            raise ValueError(
                "the loader yields no batches (an empty dataset, or drop_last with "
                "fewer items than one batch)"
            )
        self.loader = loader
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be a callable on a batch, got {type(transform).__name__}"
            )
        self.transform = transform
        self.device = None if device is None else torch.device(device)
        self.seed = check_int(seed, "seed")
        self.mixing = bool(mixing)
        labels = self._labels(labels) if needs_balanced or num_classes is None else None
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if labels is not None and len(labels) else None
        if num_classes is None and needs_balanced:
            self._default_balanced(labels)  # raises: the dataset has no labels
        if num_classes is None:
            raise ValueError(
                "num_classes is needed when the loader's dataset declares no "
                "labels (pass num_classes= or labels=)"
            )
        self.num_classes = int(num_classes)
        self.balanced = self._default_balanced(labels) if needs_balanced else balanced
        self.running = RunningAccuracy(self.num_classes, device=self.device)
        self._nonfinite: torch.Tensor | None = None
        self.epoch = 0  # the epoch the next iteration runs
        self._labels_of_batch: torch.Tensor | None = None
        self._balanced_iter: Iterator | None = None

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def _check_mixer(mixer):
        if not isinstance(mixer, (CutMixBalancer, MixUpBalancer, Remix)):
            raise TypeError(
                f"mixer must be a CutMixBalancer, MixUpBalancer or Remix, got "
                f"{type(mixer).__name__}"
            )
        return mixer

    def _labels(self, labels) -> torch.Tensor | None:
        if labels is None:
            labels = dataset_labels(getattr(self.loader, "dataset", None))
            if labels is None:
                return None
        return check_labels(labels)

    def _default_balanced(self, labels) -> DataLoader:
        assert isinstance(self.loader, DataLoader)  # __init__ checked it
        if labels is None:
            raise ValueError(
                f"{type(self.loader.dataset).__name__} has no .targets: pass "
                f"labels= (one per item) or your own balanced= loader"
            )
        if len(labels) != _len(self.loader.dataset):
            raise ValueError(
                f"{len(labels)} labels for a dataset of {_len(self.loader.dataset)} items"
            )
        if self.loader.batch_size is None:
            raise ValueError("the loader uses a batch_sampler; pass your own balanced= loader")
        sampler = LongTailSampler(labels, seed=self.seed)
        return _loader_like(
            self.loader,
            self.loader.dataset,
            sampler,
            persistent=getattr(self.loader, "persistent_workers", False),
        )

    # -- iteration ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return _len(self.loader)

    @property
    def dataset(self):
        """The user's loader's dataset."""
        return getattr(self.loader, "dataset", None)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next iteration runs, and pass it on to the samplers of the user's
        loader and of the balanced source (DDP shuffling, the balanced draw)."""
        self.epoch = epoch = check_int(epoch, "epoch", minimum=0)
        _set_epoch(self.loader, epoch)
        _set_epoch(self.balanced, epoch)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor):
        if self.device is not None:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
        return x, y

    def _next_balanced(self, size: int):
        for _ in range(2):  # at most one restart: a fresh pass, then give up
            if self._balanced_iter is None:
                assert self.balanced is not None  # not in_batch: __init__ set it
                self._balanced_iter = iter(self.balanced)
            batch = next(self._balanced_iter, None)
            if batch is None:
                self._balanced_iter = None
                continue
            xb, yb = batch[0], batch[1]
            if len(xb) >= size:
                return xb[:size], yb[:size]
            self._balanced_iter = None  # a short last batch: start a fresh pass
        raise ValueError(
            f"the balanced source gives batches smaller than the loader's ({size} "
            f"images): give it at least the loader's batch size"
        )

    def _start_epoch(self) -> None:
        self.running.reset()
        self._balanced_iter = None
        self._mixed = {"batches": 0, "mixed": 0, "images": 0, "balanced": 0.0}

    def _count(self, n: int, mixed: bool, balanced_share) -> None:
        """Count one yielded batch of ``n`` images: whether it was mixed and the share of its
        pixels that came from the balanced source (a float, or a tensor kept on the device)."""
        m = self._mixed
        m["batches"] += 1
        m["mixed"] += int(mixed)
        m["images"] += n
        if isinstance(balanced_share, torch.Tensor):
            balanced_share = balanced_share.detach().float().mean() * n
        else:
            balanced_share = float(balanced_share) * n
        m["balanced"] = m["balanced"] + balanced_share

    def mix_stats(self) -> dict[str, float]:
        """What the balanced source (in stage 2: the stage-2 set that AFR refreshes) put into
        the training batches of the last (or current) epoch: ``batches``, ``mixed`` (batches
        the coin mixed), ``images`` and ``balanced_share``, the share of all training pixels
        that came from the balanced source (one host sync).

        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
        >>> data = DataLoader(TensorDataset(torch.rand(8, 3, 4, 4), labels), batch_size=4)
        >>> loader = BalancedMixLoader(data, labels=labels, mixer=CutMixBalancer(p=1.0))
        >>> _ = list(loader)
        >>> stats = loader.mix_stats()
        >>> stats["batches"], stats["mixed"], stats["images"], 0 < stats["balanced_share"] < 1
        (2, 2, 8, True)
        """
        m = getattr(self, "_mixed", None) or {
            "batches": 0,
            "mixed": 0,
            "images": 0,
            "balanced": 0.0,
        }
        share = float(m["balanced"]) / m["images"] if m["images"] else 0.0
        return {
            "batches": m["batches"],
            "mixed": m["mixed"],
            "images": m["images"],
            "balanced_share": share,
        }

    def _pair(self, batch):
        """``(images, labels)`` of one of the user's batches, or one clear error."""
        if isinstance(batch, dict):
            raise TypeError(
                f"the loader yields dicts (keys {sorted(map(str, batch))}); "
                f"{type(self).__name__} needs (images, labels) batches: map them, "
                f"e.g. with a collate_fn returning (batch['image'], batch['label'])"
            )
        if (
            not isinstance(batch, (tuple, list))
            or len(batch) < 2
            or not all(isinstance(t, torch.Tensor) for t in batch[:2])
        ):
            kind = type(batch).__name__ + (
                f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            )
            raise TypeError(
                f"the loader yields a {kind}; {type(self).__name__} needs "
                f"(images, labels) tensor batches"
            )
        x, y = batch[0], batch[1]
        if x.ndim != 4 or y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"a batch must be images [B, C, H, W] and labels [B], got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        return x, y

    def _first_batch_checks(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Once an epoch, on its first batch: labels are class indices the model can score
        (one host sync)."""
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"the loader's labels must be integer class indices, got {y.dtype}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"the loader's labels must lie in [0, {self.num_classes - 1}] for "
                f"{self.num_classes} classes, got values in [{int(y.min())}, "
                f"{int(y.max())}]"
            )

    def _finite(self, x: torch.Tensor) -> None:
        """NaN or inf images: one clear error. A CPU batch is checked at once; a GPU batch
        into a flag on the device, read once at the end of the epoch (no host sync a step)."""
        if not x.is_floating_point():
            return
        if x.device.type == "cpu":
            if not bool(torch.isfinite(x).all()):
                raise ValueError("a training batch holds NaN or inf images")
            return
        bad = ~torch.isfinite(x).all()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def __iter__(self) -> Iterator[MixedBatch]:
        batches = iter(self.loader)
        first = next(batches, None)  # checked before a refresh can start
        if first is not None:
            self._pair(first)
        self._start_epoch()
        self._nonfinite = None
        if self.stream == "balanced":
            yield from self._balanced_stream(first, batches)
            return
        for i, batch in enumerate(itertools.chain([first] if first is not None else [], batches)):
            x, y = self._to_device(*self._pair(batch))
            if i == 0:
                self._first_batch_checks(x, y)
            if self.transform is not None:
                x = self.transform(x)
            if self.mixing and self.mixer.decide():
                if self.mixer.in_batch:  # mixup, Remix: the partner is the batch itself
                    x, y_a, y_b, lam = self.mixer(x, y)
                else:
                    xb, yb = self._to_device(*self._next_balanced(len(x)))
                    if self.transform is not None:
                        xb = self.transform(xb)
                    x, y_a, y_b, lam = self.mixer(x, y, xb, yb)
                self._count(len(y), True, 0.0 if self.mixer.in_batch else 1 - lam)
            else:
                y_a, y_b, lam = y, y, 1.0
                self._count(len(y), False, 0.0)
            yield self._batch(x, y_a, y_b, lam)
        self._end_epoch()

    def _balanced_stream(self, first, batches) -> Iterator[MixedBatch]:
        """``stream="balanced"``: as many batches as the user's loader has, each drawn from the
        balanced source; with the mixer's coin, the user's next batch is its CutMix partner."""
        size, users = len(self._pair(first)[1]), itertools.chain([first], batches)
        for i in range(len(self)):
            x, y = self._to_device(*self._next_balanced(size))
            if self.transform is not None:
                x = self.transform(x)
            if self.mixing and self.mixer.decide():
                (x_lt, y_lt), users = self._next_user(users, size)
                if i == 0:
                    self._first_batch_checks(x_lt, y_lt)
                x, y_a, y_b, lam = self.mixer(x, y, x_lt, y_lt)
                self._count(len(y), True, lam)
            else:
                y_a, y_b, lam = y, y, 1.0
                self._count(len(y), False, 1.0)
            yield self._batch(x, y_a, y_b, lam)
        self._end_epoch()

    def _batch(self, x, y_a, y_b, lam) -> MixedBatch:
        """The batch to yield, checked for NaN/inf; ``y_a`` is what :meth:`observe` counts."""
        self._finite(x)
        self._labels_of_batch = y_a
        return MixedBatch(x, y_a, y_b, lam)

    def _end_epoch(self) -> None:
        self._labels_of_batch = None
        if self._nonfinite is not None and bool(self._nonfinite):
            raise ValueError(f"a training batch of epoch {self.epoch} held NaN or inf images")
        self.epoch += 1

    def _next_user(self, users, size: int):
        """The user's next full batch (a short last one is skipped; a fresh pass when done),
        on the device and transformed; and the iterator to continue with."""
        for _ in range(2):
            for batch in users:
                x, y = self._to_device(*self._pair(batch))
                if len(y) == size:
                    return (self.transform(x) if self.transform is not None else x, y), users
            users = iter(self.loader)
        raise ValueError(f"the loader gives no batch of {size} images to mix with")

    def observe(self, logits: torch.Tensor) -> None:
        """Count the logits of the last batch against its long-tailed labels ``y_a`` (the
        running accuracy §3.3 adapts to; it stays on the device, no host sync)."""
        if self._labels_of_batch is None:
            raise RuntimeError("observe() needs a batch: call it inside the loop over this loader")
        if (
            not isinstance(logits, torch.Tensor)
            or logits.ndim != 2
            or len(logits) != len(self._labels_of_batch)
        ):
            shape = (
                tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            )
            raise ValueError(
                f"logits must be [B, C] for the last batch's {len(self._labels_of_batch)} "
                f"images, got {shape}"
            )
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the model gives {logits.shape[1]} logits per image but the data "
                f"have {self.num_classes} classes"
            )
        self.running.update(logits.detach(), self._labels_of_batch)

    def accuracy(self):
        """``(per-class [C], overall)`` running accuracy of the last epoch, summed over the
        ranks under ``torch.distributed`` (NaN: not counted)."""
        correct, seen = all_reduce_sum(self.running.correct), all_reduce_sum(self.running.seen)
        acc = (correct / seen.clamp(min=1)).float().cpu()
        acc[seen.cpu() == 0] = float("nan")
        total = float(seen.sum())
        return acc, (float(correct.sum()) / total if total else float("nan"))

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The epoch, the mixer's random state and the running accuracy: save it between
        epochs; a resumed run then mixes as an uninterrupted one."""
        return {
            "type": type(self).__name__,
            "version": _STATE_VERSION,
            "num_classes": self.num_classes,
            "seed": self.seed,
            "epoch": self.epoch,
            "mixer": self.mixer.state_dict(),
            "running": self.running.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a state of a loader built with another ``seed`` (another
        balanced stream) or ``num_classes`` is refused. A state of afr-aug 0.1 (version 1)
        holds no seed and is taken as it is."""
        if (
            isinstance(state_dict, dict)
            and state_dict.get("version") == 1
            and "seed" not in state_dict
        ):
            state_dict = {**state_dict, "version": _STATE_VERSION, "seed": self.seed}
        check_state(
            self,
            state_dict,
            {"version": _STATE_VERSION, "num_classes": self.num_classes, "seed": self.seed},
            self._state_keys(),
        )
        self.mixer.load_state_dict(state_dict["mixer"])
        self.running.load_state_dict(state_dict["running"])
        self.set_epoch(int(state_dict["epoch"]))

    def _state_keys(self):
        return ("epoch", "mixer", "running")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} batches, {self.mixer!r}, epoch={self.epoch})"


class AFRLoader(BalancedMixLoader):
    """Stage 2 (intra-class): the user's batches, CutMixed with AFR's re-balanced set.

    At the start of every ``refresh_every``-th epoch (0, 10, 20, … by default) the set is
    refreshed with the running accuracy of the epoch before (for epoch 0: ``running``, the
    stage-1 loader's, as §3.3 wants the accuracy "just before" the split): slots → embed →
    split → attack. The refresh's :class:`~afr_aug.RefreshReport` is kept as :attr:`report`,
    its wall time as :attr:`refresh_seconds`.

    Args:
        loader: the user's loader (see :class:`BalancedMixLoader`).
        stage2: the :class:`~afr_aug.AFRDataset` over a deterministic view of the same data.
        model: the model being fine-tuned (a DDP wrapper is fine); :meth:`set_model` re-points.
        mixer: default ``CutMixBalancer(p=0.25)`` (the paper's stage 2).
        refresh_every: epochs between refreshes (paper: 10).
        running: the running accuracy before stage 2 (a
            :class:`~afr_aug.metrics.RunningAccuracy`, a :class:`BalancedMixLoader`, or a
            ``(per-class accuracies, overall)`` pair): what the first refresh adapts to.
            Default: none, so the first refresh uses the clean slots' accuracy.
        balanced: the balanced source; default a ``DataLoader`` over ``stage2`` with the user
            loader's batch size, workers, pinning and collate function, shuffled per epoch
            (per rank under ``torch.distributed``) and without persistent workers, so every
            epoch's workers see the latest refresh.
        transform, device, seed, mixing: as in :class:`BalancedMixLoader`.
        auto_refresh: refresh when an iteration starts and :meth:`due` says so; ``False``
            leaves it to the caller (:meth:`refresh`), e.g. to time it apart from training.
        stream: ``"long_tailed"`` (the paper's literal reading: the user's batches, a share
            CutMixed with the set) or ``"balanced"`` (its other reading, "fine-tune ... on the
            balanced dataset": every batch from the set, the user's batches as the CutMix
            partner; train it with plain cross-entropy). The report's dose follows it.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> from afr_aug import mixed_loss
        >>> from afr_aug.models import resnet32
        >>> images, labels = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8), \\
        ...     torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
        >>> data = TensorDataset(images.float() / 255, labels)
        >>> model = resnet32(num_classes=3)
        >>> stage2 = AFRLoader(DataLoader(data, batch_size=6, shuffle=True, drop_last=True),
        ...                    AFRDataset(images, labels, progress=False), model,
        ...                    refresh_every=2)
        >>> for epoch in range(3):
        ...     stage2.set_epoch(epoch)
        ...     for x, y_a, y_b, lam in stage2:       # epochs 0 and 2 start with a refresh
        ...         logits = model(x)
        ...         loss = mixed_loss(torch.nn.functional.cross_entropy, logits, y_a, y_b, lam)
        ...         stage2.observe(logits)
        >>> stage2.refreshes, stage2.report.generation, len(stage2.report.attacked)
        (2, 2, 3)
    """

    def __init__(
        self,
        loader: Iterable,
        stage2: AFRDataset,
        model: torch.nn.Module,
        mixer=None,
        *,
        refresh_every: int = 10,
        running=None,
        balanced: Iterable | None = None,
        transform=None,
        device=None,
        seed: int = 0,
        mixing: bool = True,
        auto_refresh: bool = True,
        stream: str = "long_tailed",
    ):
        if not isinstance(stage2, AFRDataset):
            raise TypeError(f"stage2 must be an AFRDataset, got {type(stage2).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        width = _output_width(model)
        if width is not None and width < stage2.num_classes:
            raise ValueError(
                f"the model's classifier gives {width} logits but the labels have "
                f"{stage2.num_classes} classes"
            )
        self.stage2, self.model, self.auto_refresh = stage2, model, bool(auto_refresh)
        self.refresh_every = check_int(refresh_every, "refresh_every", minimum=1)
        if mixer is None:
            mixer = CutMixBalancer(p=0.25)
        if balanced is None:
            users = self._check_batching(loader)
            sampler: DistributedSampler = DistributedSampler(
                stage2,
                num_replicas=get_world_size(),
                rank=get_rank(),
                shuffle=True,
                seed=check_int(seed, "seed"),
                drop_last=True,
            )
            balanced = _loader_like(users, stage2, sampler, persistent=False)
        super().__init__(
            loader,
            mixer,
            balanced=balanced,
            num_classes=stage2.num_classes,
            transform=transform,
            device=device,
            seed=seed,
            mixing=mixing,
            stream=stream,
        )
        self.report = stage2.report
        self.refresh_seconds: float | None = None
        self.refreshes = 0
        self._refreshed_epoch: int | None = None
        self._carry = self._running_from(running)

    @staticmethod
    def _check_batching(loader) -> DataLoader:
        if not isinstance(loader, DataLoader):
            raise TypeError(
                "without balanced=, the loader must be a torch DataLoader (the "
                "stage-2 loader copies its batch size and workers)"
            )
        if loader.batch_size is None:
            raise ValueError(
                "the loader uses a batch_sampler; pass your own balanced= loader "
                "over the AFRDataset"
            )
        return loader

    def _running_from(self, running):
        if running is None:
            return None
        if isinstance(running, BalancedMixLoader):
            return running.accuracy()
        if isinstance(running, RunningAccuracy):
            if running.num_classes != self.num_classes:
                raise ValueError(
                    f"running counts {running.num_classes} classes, the stage-2 set "
                    f"{self.num_classes}"
                )
            return running.per_class(), running.overall()
        if isinstance(running, (tuple, list)) and len(running) == 2:
            per_class = torch.as_tensor(running[0], dtype=torch.float32).reshape(-1)
            if len(per_class) != self.num_classes:
                raise ValueError(
                    f"running gives {len(per_class)} class accuracies, the stage-2 "
                    f"set has {self.num_classes} classes"
                )
            return per_class, float(running[1])
        raise TypeError(
            f"running must be a RunningAccuracy, a BalancedMixLoader or a "
            f"(per-class, overall) pair, got {type(running).__name__}"
        )

    def set_model(self, model: torch.nn.Module) -> None:
        """Point the refreshes at another model (e.g. a re-wrapped or compiled one)."""
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def refresh(self):
        """Refresh the stage-2 set now, with the running accuracy of the epoch before; returns
        the :class:`~afr_aug.RefreshReport`. Called by the iteration when it is due."""
        if self._carry is not None and self.running.seen.sum() == 0:
            class_accuracy, train_accuracy = self._carry
        else:
            class_accuracy, train_accuracy = self.accuracy()
        start = time.perf_counter()
        self.report = self.stage2.refresh(
            self.model,
            device=self.device,
            class_accuracy=class_accuracy,
            train_accuracy=train_accuracy,
            mix=self.dose_mix(),
        )
        self.refresh_seconds = time.perf_counter() - start
        self.refreshes += 1
        self._refreshed_epoch = self.epoch
        return self.report

    def dose_mix(self):
        """``(p, E[share of an image from the stage-2 set])`` for the report's dose: the
        mixer's with the long-tailed stream; with the balanced one every image comes from the
        set, less what the long-tailed partner covers: ``(1, 1 - p * E[1 - lam])``."""
        shape = self.stage2.source.find_image_shape()[1:]
        p, area = mix_share(self.mixer, shape)
        return (p, area) if self.stream == "long_tailed" else (1.0, 1.0 - p * area)

    def due(self) -> bool:
        """Whether the next iteration starts with a refresh."""
        return self.epoch % self.refresh_every == 0 and self._refreshed_epoch != self.epoch

    def _start_epoch(self) -> None:
        if self.auto_refresh and self.due():
            self.refresh()
            self._carry = None
        super()._start_epoch()

    def state_dict(self) -> dict[str, Any]:
        """As :class:`BalancedMixLoader`'s, plus the stage-2 set and the refresh bookkeeping."""
        state = super().state_dict()
        state.update(
            stage2=self.stage2.state_dict(),
            refreshed_epoch=self._refreshed_epoch,
            refreshes=self.refreshes,
            carry=None if self._carry is None else (self._carry[0].clone(), float(self._carry[1])),
        )
        return state

    def _state_keys(self):
        return (*super()._state_keys(), "stage2", "refreshed_epoch", "refreshes", "carry")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.stage2.load_state_dict(state_dict["stage2"])
        self._refreshed_epoch = state_dict["refreshed_epoch"]
        self.refreshes = int(state_dict["refreshes"])
        self._carry = state_dict["carry"]
        self.report = self.stage2.report
