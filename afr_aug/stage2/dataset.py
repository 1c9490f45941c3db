"""The stage-2 training set as a ``Dataset``: a thin view over its pieces (paper §3.2, Fig. 2).

Every class is over-sampled to ``target_size`` slots with augmentation (the layout,
:class:`~afr_aug.stage2.SlotLayout`); :meth:`AFRDataset.refresh` embeds the slots, splits each
class and attacks ``attack_share`` of each class's majority slots with the attack
(:class:`~afr_aug.MinorityPGD`, or its control :class:`~afr_aug.SignNoise`), as one pipeline
(:mod:`afr_aug.stage2.pipeline`). Before the first refresh the set is plain class-balanced
over-sampling: the control's set. Only the adversarial images are stored, as uint8, in memory
or with ``storage=DIR`` in a file (:class:`~afr_aug.store.AdversarialStore`: a failed refresh
leaves the set as it was). The originals are never copied: a tensor is indexed as it is, a
Dataset is read lazily (:class:`~afr_aug.stage2.ImageSource`).

Arguments of :class:`AFRDataset`:

- ``data``, ``labels``, ``num_classes``: the originals (see ``ImageSource``);
- ``attack_share``: share of each class's majority slots to attack (paper: 0.5);
- ``target_size``: slots per class, default the largest class's size;
- ``splitter``: default ``IntraClassSplitter()`` (20 % minority per class, §3.3);
- ``attack``: a configured attack; each refresh points it at the model (``set_model``) and
  fits it to the new split; default ``MinorityPGD(model, layer=layer)``;
- ``layer``: the embedding layer (see :class:`~afr_aug.Embedder`), default the attack's;
- ``storage``, ``keep_generations``: where the adversarial images live, and how many
  generations' files are kept;
- ``transform``: applied to each float image in ``__getitem__``;
- ``layout``: a layout object, or ``slot_transform`` for the default ``SlotLayout``;
- ``autocast``: a dtype for the refresh's model passes (``None``: the model's own; a float16 or
  bfloat16 model runs under autocast to its dtype);
- ``batch_size``, ``num_workers``: of the refresh's passes; ``seed``: of the slots, their
  draws and the attacked slots (each refresh's slots and draws depend on the seed and the
  refresh's number only); ``progress``: tqdm bars during a refresh;
- ``control``: AFR's equal-budget control: each refresh draws the same slots and draws as an
  AFR set of the same seed, and attacks none (no model pass); ``refresh`` returns ``None``;
- ``label_safe``: keep an attacked slot only when the model still gives its class
  (``"label"``, the default), or gives it with at least this confidence (a float in (0, 1)); a
  rejected slot stays its clean draw, and the report counts them (``rejected``). ``None``
  keeps them all, as the paper does. Why the default: on a ResNet32 of 3, 30 and 200 epochs,
  ``None`` loses the label of some classes' attacked slots (per class, as little as 11 % of
  the clean accuracy kept on the weakest model), ``"label"`` keeps every class at or above its
  clean accuracy by construction, and on the 200-epoch model it rejects 10.5 % of the attacked
  slots (36 % adversarial instead of 40 %) at no measurable cost in time
  (``benchmarks/results/cpu-label-safe``).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..checks import check_int, check_probability, check_state
from ..distributed import get_rank
from ..embedding import model_device, unwrap_model
from ..refresh_report import RefreshReport
from ..split import IntraClassSplitter, SplitResult
from ..store import AdversarialStore
from . import pipeline
from .items import ItemTable, SlotLayout
from .source import ImageSource

__all__ = ["AFRDataset"]

_STATE_VERSION = 3


class AFRDataset(Dataset):
    """AFR's stage-2 set: every class the same size, part of each class adversarial minority
    (see the module docstring for the pieces and the arguments). Items are ``(float image
    [C, H, W] in [0, 1] through transform, label)``; :meth:`get_batch` gives uint8 batches for
    augmentation on the GPU.

    Example:
        >>> from afr_aug.models import resnet32
        >>> images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8)
        >>> labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 3)
        >>> stage2 = AFRDataset(images, labels, progress=False)
        >>> stage2.class_sizes().tolist()
        [20, 20, 20]
        >>> report = stage2.refresh(resnet32(num_classes=3))   # embed, split, attack
        >>> stage2.class_sizes().tolist(), report.attacked
        ([20, 20, 20], [8, 8, 8])
        >>> loader = torch.utils.data.DataLoader(stage2, batch_size=8, shuffle=True)
    """

    def __init__(
        self,
        data,
        labels=None,
        *,
        num_classes: int | None = None,
        attack_share: float = 0.5,
        target_size: int | None = None,
        splitter: IntraClassSplitter | None = None,
        attack=None,
        layer: str | None = None,
        storage="memory",
        transform=None,
        layout=None,
        slot_transform=None,
        autocast: torch.dtype | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        progress: bool = True,
        keep_generations: int = 2,
        control: bool = False,
        label_safe="label",
    ):
        source = ImageSource(data, labels, num_classes, batch_size, num_workers, progress)
        num_classes = int(source.labels.max()) + 1 if num_classes is None else num_classes
        counts = torch.bincount(source.labels, minlength=num_classes)
        _check(attack, layer, autocast)
        self.parts = pipeline.Parts(
            source=source,
            layout=_layout(layout, slot_transform),
            store=AdversarialStore(storage, keep_generations),
            splitter=splitter if splitter is not None else IntraClassSplitter(),
            attack=attack,
            layer=layer if layer is not None else getattr(attack, "layer", None),
            num_classes=int(num_classes),
            class_counts=counts,
            target_size=int(counts.max())
            if target_size is None
            else check_int(target_size, "target_size", minimum=1),
            attack_share=check_probability(attack_share, "attack_share"),
            generator=torch.Generator().manual_seed(check_int(seed, "seed")),
            seed=seed,
            autocast=autocast,
            progress=progress,
            label_safe=_label_safe(label_safe),
        )
        self.transform, self.generation, self.control = transform, 0, bool(control)
        # of the last refresh
        self.split_result: SplitResult | None = None
        self.report: RefreshReport | None = None
        p = self.parts
        self.items = p.layout.items(
            p.layout.candidates(source.labels, counts, p.target_size, p.generator),
            torch.zeros(0, dtype=torch.long),
        )

    # -- the pieces, read-only views ------------------------------------------------------
    source = property(lambda self: self.parts.source)
    store = property(lambda self: self.parts.store)
    attack = property(lambda self: self.parts.attack)
    splitter = property(lambda self: self.parts.splitter)
    generator = property(lambda self: self.parts.generator)
    num_classes = property(lambda self: self.parts.num_classes)
    class_counts = property(lambda self: self.parts.class_counts)
    target_size = property(lambda self: self.parts.target_size)
    labels = property(lambda self: self.parts.source.labels)
    layout = property(lambda self: self.parts.layout.name)
    item_index = property(lambda self: self.items.index)
    item_labels = property(lambda self: self.items.labels)
    item_draws = property(lambda self: self.items.draws)
    is_adversarial = property(lambda self: self.items.is_adversarial)
    adversarial_source = property(lambda self: self.items.adversarial_source)
    adversarial_draws = property(lambda self: self.items.adversarial_draws)

    progress = property(
        lambda self: self.parts.progress, lambda self, v: _set_progress(self.parts, v)
    )

    def class_sizes(self) -> torch.Tensor:  # items per class: equal for every class
        return self.items.class_sizes(self.num_classes)

    # -- the refresh ------------------------------------------------------------------------
    def refresh(
        self,
        model: torch.nn.Module,
        device=None,
        class_accuracy=None,
        train_accuracy: float | None = None,
        mix=None,
    ) -> RefreshReport | None:
        """Draw new slots, embed, split, attack, swap the new set in; returns the report.

        ``class_accuracy``/``train_accuracy`` feed §3.3: the *running* training accuracy on
        the mixed batches of the last epoch (``AFRLoader`` passes it; without it the clean
        slots' accuracies are used and the splitter warns). ``mix``: the stage-2 mixer, or
        its ``(p, E[1 - lam])``, for the dose (default CutMix, p = 0.25). The model's device
        and modes are left as they were. On any failure nothing changes. Under
        ``torch.distributed`` every rank calls it; each embeds and attacks its share.
        """
        from ..attack import MinorityPGD

        if self.control:  # the same slots as an AFR set of this seed
            self.generation += 1
            self.items = pipeline.redraw(self.parts, self.generation)
            return None
        model = unwrap_model(model, compiled=False)
        device = model_device(model) if device is None else torch.device(device)
        p, before = self.parts, self.parts.generator.get_state()
        if p.attack is None:
            p.attack = MinorityPGD(model, layer=p.layer)
        try:
            items, split, report = pipeline.refresh(
                p,
                model,
                device,
                generation=self.generation + 1,
                mix=mix,
                class_accuracy=class_accuracy,
                train_accuracy=train_accuracy,
            )
        except BaseException as exc:  # nothing of the new generation is kept
            p.store.abort()
            p.generator.set_state(before)
            if hasattr(exc, "add_note"):
                exc.add_note(
                    f"AFRDataset.refresh failed; the set still holds generation {self.generation}"
                )
            raise
        self.items, self.split_result, self.report = items, split, report
        self.generation += 1
        if get_rank() == 0:
            report.warn()
        return report

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def _plain(self, items: torch.Tensor) -> torch.Tensor:
        """uint8 images of non-adversarial ``items``: their originals through their draws."""
        draws = None if self.items.draws is None else self.items.draws[items]
        return self.parts.layout.apply(self.source.uint8(self.items.index[items]), draws)

    def get_batch(self, indices) -> tuple:
        """``(uint8 images [B, C, H, W], labels [B])`` for item ``indices``."""
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        adv = self.items.is_adversarial[indices]
        if not adv.any():
            return self._plain(indices), self.items.labels[indices]
        if adv.all():
            return self.store.rows(self.items.index[indices]), self.items.labels[indices]
        out = torch.empty((len(indices), *self.source.image_shape), dtype=torch.uint8)
        out[~adv] = self._plain(indices[~adv])
        out[adv] = self.store.rows(self.items.index[indices[adv]])
        return out, self.items.labels[indices]

    def __getitem__(self, i: int):
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        i %= len(self)
        if self.items.is_adversarial[i]:
            img = self.store.rows(self.items.index[i : i + 1])[0].float().div_(255)
        elif self.items.draws is not None:
            img = self._plain(torch.tensor([i]))[0]
            img = img.float().div_(255) if img.dtype == torch.uint8 else img.float()
        else:
            img = self.source.float_item(int(self.items.index[i]))
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.items.labels[i])

    @property
    def adversarial(self) -> torch.Tensor:
        """All adversarial images, uint8 [A, C, H, W] (read from the file with disk storage)."""
        return self.store.rows(slice(None))

    def adversarial_clean(self) -> torch.Tensor:
        """The clean image each adversarial row was made from, uint8 [A, C, H, W]:
        ``adversarial - adversarial_clean()`` is what the attack changed."""
        imgs = self.source.uint8(self.items.adversarial_source)
        return self.parts.layout.apply(imgs, self.items.adversarial_draws) if len(imgs) else imgs

    def __getstate__(self):  # DataLoader workers need neither the attack (it holds the
        parts = pipeline.Parts(**{**vars(self.parts), "attack": None})  # model) nor the split
        return {**self.__dict__, "parts": parts, "split_result": None, "report": None}

    # -- checkpoints -------------------------------------------------------------------------
    def _identity(self) -> dict:
        return {
            "version": _STATE_VERSION,
            "num_originals": len(self.labels),
            "num_classes": self.num_classes,
            "target_size": self.target_size,
            "layout": self.layout,
        }

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue with the same set; with disk storage the
        adversarial images stay in their file, which the state names."""
        return {
            "type": type(self).__name__,
            **self._identity(),
            "image_shape": self.source.image_shape,
            "store": self.store.state_dict(),
            **self.items.state_dict(),
            "generator": self.generator.get_state(),
            "generation": self.generation,
            "report": None if self.report is None else self.report.to_dict(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict`'s set (memory and disk states load into either storage,
        checked against their checksums; the report comes back too)."""
        if isinstance(state_dict, dict) and state_dict.get("type") in _NAMES:
            state_dict = {**state_dict, "type": type(self).__name__}  # the name before 0.2
        check_state(
            self,
            state_dict,
            self._identity(),
            ("image_shape", "store", "generator", "generation", "report", *ItemTable.KEYS),
        )
        items = ItemTable.from_state(state_dict, rows=int(state_dict["store"]["num_rows"]))
        self.store.load_state_dict(state_dict["store"])
        self.generator.set_state(state_dict["generator"])
        self.items, self.generation = items, state_dict["generation"]
        if state_dict["image_shape"] is not None:
            self.source.image_shape = tuple(state_dict["image_shape"])
        report = state_dict["report"]
        self.report = None if report is None else RefreshReport.from_dict(report)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self.labels)} originals, {self.num_classes} classes "
            f"x {self.target_size} {self.layout}, {int(self.is_adversarial.sum())} "
            f"adversarial, {self.store!r})"
        )


_NAMES = ("AFRDataset", "AFRBalancer")  # the same set, by its name and its old one


def _set_progress(parts: pipeline.Parts, value: bool) -> None:
    parts.progress = parts.source.progress = bool(value)


def _check(attack, layer, autocast) -> None:
    if attack is not None and not all(
        callable(getattr(attack, m, None)) for m in ("set_model", "fit", "generate")
    ):
        raise TypeError(
            f"attack must be a MinorityPGD or a SignNoise (set_model, fit, generate), "
            f"got {type(attack).__name__}"
        )
    if (
        attack is not None
        and layer is not None
        and getattr(attack, "layer", None) not in (None, layer)
    ):
        raise ValueError(
            f"layer={layer!r} but the attack embeds at {attack.layer!r}: the split "
            f"and the attack must use the same embedding"
        )
    if autocast is not None and not isinstance(autocast, torch.dtype):
        raise TypeError(f"autocast must be a torch.dtype or None, got {autocast!r}")


def _label_safe(value):
    if value is None or value == "label":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    raise ValueError(f"label_safe must be None, 'label' or a confidence in (0, 1), got {value!r}")


def _layout(layout, slot_transform):
    if layout is None or layout == "slots":
        return SlotLayout(slot_transform)
    if isinstance(layout, str):
        raise ValueError(
            f"layout must be 'slots' or a layout object, got {layout!r} (the "
            f"'originals' reading lives in the reference benchmark now)"
        )
    if not all(callable(getattr(layout, m, None)) for m in ("candidates", "items", "apply")):
        raise TypeError(
            f"layout must have candidates, items and apply (see SlotLayout), got "
            f"{type(layout).__name__}"
        )
    return layout
