"""One refresh of the stage-2 set, as one straight pipeline (paper §3 step 2, §3.2):

    slots (the layout, drawn from the seed and the generation) → embed (``run_inference``,
    the one model pass) → split
    (``IntraClassSplitter``: embeddings in, split out) → choose the attacked slots → fit and
    run the attack (it owns its batch loop) → a new generation in the store → the report

Every step takes what it needs as arguments and returns what it made; nothing is changed on
the set until :func:`refresh` returns the new item table, so the caller swaps it in at once
(the store's generation is swapped in the step before, the last that can fail).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ..distributed import all_gather_cat, get_rank, get_world_size
from ..embedding import run_inference
from ..metrics import RunningAccuracy
from ..mixing import mix_share
from ..refresh_report import RefreshReport
from ..split import IntraClassSplitter, SplitResult
from ..store import AdversarialStore
from .items import Candidates, ItemTable
from .source import ImageSource

__all__ = ["Parts", "refresh"]


class _Layout(Protocol):
    """What a refresh asks of a layout (:class:`~afr_aug.stage2.SlotLayout` is the library's)."""

    name: str

    def candidates(
        self,
        labels: torch.Tensor,
        class_counts: torch.Tensor,
        target_size: int,
        generator: torch.Generator,
    ) -> Candidates: ...

    def items(
        self, cand: Candidates, attacked: torch.Tensor, keep: torch.Tensor | None = None
    ) -> ItemTable: ...

    def apply(self, images: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor: ...


class _Attack(Protocol):
    """What a refresh asks of an attack (:class:`~afr_aug.MinorityPGD`, or its control
    :class:`~afr_aug.SignNoise`)."""

    @property
    def target_name(self) -> str: ...

    @property
    def head_accuracy(self) -> float | None: ...

    def set_model(self, model: torch.nn.Module) -> None: ...

    def fit(self, embeddings: torch.Tensor, split: SplitResult, seed: int | None = None) -> Any: ...

    def generate(self, batches: Iterable) -> Iterator[tuple[torch.Tensor, dict]]: ...


@dataclass
class Parts:
    """What a refresh reads and writes: the pieces an :class:`~afr_aug.AFRDataset` owns."""

    source: ImageSource
    layout: _Layout
    store: AdversarialStore
    splitter: IntraClassSplitter
    attack: _Attack | None
    layer: str | None
    num_classes: int
    class_counts: torch.Tensor
    target_size: int
    attack_share: float
    generator: torch.Generator
    seed: int = 0
    autocast: torch.dtype | None = None
    progress: bool = True
    label_safe: str | float | None = None


def slot_generator(seed: int, generation: int) -> torch.Generator:
    """The generator of generation ``generation``'s slots: a function of the seed and the
    generation only, so every set of one seed (AFR, its control, its noise control) draws the
    same slots and draws at each refresh, whatever its model did before."""
    return torch.Generator().manual_seed((seed * 1_000_003 + generation * 7919) % (2**63))


def redraw(parts: Parts, generation: int) -> ItemTable:
    """The control's refresh: generation ``generation``'s slots, none attacked, no model pass."""
    cand = parts.layout.candidates(
        parts.source.labels,
        parts.class_counts,
        parts.target_size,
        slot_generator(parts.seed, generation),
    )
    return parts.layout.items(cand, torch.zeros(0, dtype=torch.long))


def _context(device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _batches(parts: Parts, positions: torch.Tensor, cand: Candidates, device):
    """``(float images [0, 1], labels, positions)`` of the given candidates, through their
    draws."""
    for x, p in parts.source.batches(positions, cand.index, device):
        x = parts.layout.apply(x, None if cand.draws is None else cand.draws[p])
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        yield x, cand.labels[p], p


def embed(parts: Parts, model, cand: Candidates, device, dtype):
    """Step 1: the candidates' embeddings and clean predictions (the one model pass)."""
    rank, world = get_rank(), get_world_size()
    batches = _batches(parts, torch.arange(rank, len(cand.index), world), cand, device)
    normalize = getattr(parts.attack, "normalize", None)
    if parts.attack is not None and getattr(parts.attack, "normalization_used", None) is not None:
        assert normalize is not None  # torchattacks' Attack has both
        batches = ((normalize(x.to(device)), y, p) for x, y, p in batches)
    with _context(device, dtype):
        out = run_inference(
            model,
            batches,
            embed=True,
            layer=parts.layer,
            device=device,
            progress=parts.progress,
            desc="AFR embedding",
        )
    return out.embeddings, out.predictions


def choose(parts: Parts, split: SplitResult) -> torch.Tensor:
    """Step 3: ``attack_share`` of each class's majority candidates, positions sorted."""
    chosen = []
    for c in range(parts.num_classes):
        majority = split.majority_indices(c)
        k = round(parts.attack_share * len(majority))
        chosen.append(majority[torch.randperm(len(majority), generator=parts.generator)[:k]])
    return torch.cat(chosen).sort().values


def attack(parts: Parts, cand: Candidates, attacked: torch.Tensor, device, dtype) -> dict:
    """Step 4: this rank's share of the attacked candidates into a new generation of the store
    (not yet swapped in); the after-measurements of all of them (gathered)."""
    from tqdm.auto import tqdm

    rank, world = get_rank(), get_world_size()
    assert parts.attack is not None  # AFRDataset.refresh sets the default one
    mine = torch.arange(rank, len(attacked), world)  # rows this rank makes
    image_shape = parts.source.image_shape
    assert image_shape is not None  # refresh() found it before the attack
    parts.store.begin(len(attacked), image_shape)  # beside the live generation
    batches = (
        (x, y, rows)
        for (x, y, _), rows in zip(
            _batches(parts, attacked[mine], cand, device), mine.split(parts.source.batch_size)
        )
    )
    bar = tqdm(
        total=len(mine), desc="AFR attack", leave=False, disable=not parts.progress or rank != 0
    )
    cols: dict[str, list[torch.Tensor]] = {
        "rows": [],
        "embeddings": [],
        "predictions": [],
        "confidence": [],
        "linf": [],
    }
    with _context(device, dtype):
        for (rows, after), pos in zip(
            parts.attack.generate(batches), mine.split(parts.source.batch_size)
        ):
            parts.store.write(pos, rows)
            cols["rows"].append(pos)
            for k in ("embeddings", "predictions", "confidence", "linf"):
                cols[k].append(after[k])
            bar.update(len(pos))
    bar.close()
    if cols["rows"]:  # every batch adds to every column
        out = {k: torch.cat(v) for k, v in cols.items()}
    else:
        out = {
            "rows": torch.zeros(0, dtype=torch.long),
            "embeddings": torch.zeros(0, 1),
            "predictions": torch.zeros(0, dtype=torch.long),
            "confidence": torch.zeros(0),
            "linf": torch.zeros(0),
        }
    if world > 1:
        out = {k: all_gather_cat(v) for k, v in out.items()}
    order = torch.argsort(out["rows"])
    return {k: v[order] for k, v in out.items()}


def keep_mask(label_safe, after: dict, labels: torch.Tensor) -> torch.Tensor | None:
    """Which attacked slots the set takes (M2m's idea: an adversarial image that lost its class
    is not used): all (``None``), those the model still gives their class (``"label"``), or
    those it gives their class with a confidence of at least ``label_safe`` (a float)."""
    if label_safe is None:
        return None
    if label_safe == "label":
        return after["predictions"] == labels
    return after["confidence"] >= float(label_safe)


def served_after(
    after: dict,
    keep: torch.Tensor | None,
    similarity: torch.Tensor,
    before_similarity: torch.Tensor,
    before_predictions: torch.Tensor,
) -> dict:
    """The attacked positions as the set serves them (cosine to the class mean, prediction,
    L∞): a slot ``keep`` rejected is its clean slot again."""
    if keep is None:
        return {
            "similarity": similarity,
            "predictions": after["predictions"],
            "linf": after["linf"],
        }
    return {
        "similarity": torch.where(keep, similarity, before_similarity),
        "predictions": torch.where(keep, after["predictions"], before_predictions),
        "linf": torch.where(keep, after["linf"], torch.zeros_like(after["linf"])),
    }


def _accuracies(parts: Parts, predictions, labels, class_accuracy, train_accuracy):
    """The accuracies §3.3 adapts to: the given running ones, else the clean slots'."""
    if class_accuracy is None or train_accuracy is None or train_accuracy != train_accuracy:
        clean = RunningAccuracy(parts.num_classes)
        clean.update(predictions, labels)
        return clean.per_class(), clean.overall()
    return class_accuracy, train_accuracy


def refresh(
    parts: Parts,
    model,
    device,
    *,
    generation: int,
    mix=None,
    class_accuracy=None,
    train_accuracy=None,
) -> tuple[ItemTable, SplitResult, RefreshReport]:
    """The whole refresh (see the module docstring); returns the new item table, the split and
    the report. ``mix`` is the stage-2 mixer, or its ``(p, E[1 - lam])``, for the report's dose
    (``None``: the paper's CutMix, p = 0.25). The model passes run under autocast to
    ``parts.autocast``, else to a half-precision model's own dtype (the images stay float32)."""
    dtype = next((q.dtype for q in model.parameters()), torch.float32)
    dtype = parts.autocast or (dtype if dtype in (torch.float16, torch.bfloat16) else None)
    cand = parts.layout.candidates(
        parts.source.labels,
        parts.class_counts,
        parts.target_size,
        slot_generator(parts.seed, generation),
    )
    emb, predictions = embed(parts, model, cand, device, dtype)
    correct = predictions == cand.labels
    class_accuracy, train_accuracy = _accuracies(
        parts, predictions, cand.labels, class_accuracy, train_accuracy
    )
    split = parts.splitter.split(
        emb, cand.labels, class_accuracy, train_accuracy, num_classes=parts.num_classes
    )
    attacked = choose(parts, split)
    parts.source.find_image_shape()  # a Dataset shard may be empty on this rank
    assert parts.attack is not None  # AFRDataset.refresh sets the default one
    parts.attack.set_model(model)
    parts.attack.fit(emb, split, seed=int(torch.randint(2**62, (1,), generator=parts.generator)))
    del emb  # S x D floats, not needed any more
    after = attack(parts, cand, attacked, device, dtype)
    parts.store.finish()  # the new rows are in: the items follow at once
    labels = cand.labels[attacked]
    keep = keep_mask(parts.label_safe, after, labels) if len(attacked) else None
    items = parts.layout.items(cand, attacked, keep)
    mean = split.class_means[labels]
    if not (isinstance(mix, tuple) and len(mix) == 2):
        mix = mix_share(mix, parts.source.find_image_shape()[1:])
    similarity = (
        torch.nn.functional.cosine_similarity(after["embeddings"], mean, dim=1, eps=1e-12)
        if len(attacked)
        else torch.zeros(0)
    )
    served = served_after(
        after, keep, similarity, split.similarity[attacked], predictions[attacked]
    )
    report = RefreshReport.measure(
        generation=generation,
        target=parts.attack.target_name,
        layout=parts.layout.name,
        class_counts=parts.class_counts,
        slot_labels=items.labels,
        split=split,
        attacked=attacked,
        before_correct=correct[attacked],
        after_similarity=served["similarity"],
        after_correct=served["predictions"] == labels,
        linf=served["linf"],
        mix_p=mix[0],
        mix_area=mix[1],
        accuracy=class_accuracy,
        train_accuracy=train_accuracy,
        head_accuracy=parts.attack.head_accuracy,
        rejected=None
        if keep is None
        else torch.bincount(labels[~keep], minlength=parts.num_classes).tolist(),
    )
    return items, split, report
