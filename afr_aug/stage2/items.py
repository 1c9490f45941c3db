"""The stage-2 set's item table and the layout that builds it (paper §3 step 2).

A *slot* is one original image plus one stored augmentation draw. :class:`SlotLayout` (the
paper's order) over-samples every class to the same number of slots with augmentation; after
a refresh, the attacked slots point at rows of the adversarial store instead of originals.
:class:`ItemTable` is that table: nothing in it is an image, so it costs a few integers an
item, whatever the size of the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["Candidates", "ItemTable", "SlotLayout", "fill"]


class Candidates(NamedTuple):
    """What a refresh embeds and attacks: original index, label and draw of each one."""

    # a field named like tuple.index (which it shadows): the public name of this field
    index: torch.Tensor  # type: ignore[assignment]
    labels: torch.Tensor
    draws: torch.Tensor | None


@dataclass
class ItemTable:
    """The items of the set. Item ``i`` is the original ``index[i]`` seen through its draw
    ``draws[i]``, or, when ``is_adversarial[i]``, row ``index[i]`` of the adversarial store;
    ``adversarial_source`` / ``adversarial_draws`` say which original and draw each row was
    made from."""

    index: torch.Tensor
    labels: torch.Tensor
    draws: torch.Tensor | None
    is_adversarial: torch.Tensor
    adversarial_source: torch.Tensor
    adversarial_draws: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.index)

    def class_sizes(self, num_classes: int) -> torch.Tensor:
        """Items per class."""
        return torch.bincount(self.labels, minlength=num_classes)

    KEYS = (
        "item_index",
        "item_labels",
        "item_draws",
        "is_adversarial",
        "adversarial_source",
        "adversarial_draws",
    )

    def state_dict(self) -> dict:
        return dict(
            zip(
                self.KEYS,
                (
                    self.index,
                    self.labels,
                    self.draws,
                    self.is_adversarial,
                    self.adversarial_source,
                    self.adversarial_draws,
                ),
            )
        )

    @classmethod
    def from_state(cls, state: dict, rows: int) -> ItemTable:
        """The table of :meth:`state_dict`, checked for consistent lengths and against the
        ``rows`` of the store it reads."""
        table = cls(*(state[k] for k in cls.KEYS))
        if not len(table.labels) == len(table.is_adversarial) == len(table.index):
            raise ValueError(
                "inconsistent state: item_index, item_labels and is_adversarial differ in length"
            )
        if len(table.adversarial_source) != rows or bool(
            (table.index[table.is_adversarial] >= rows).any()
        ):
            raise ValueError(
                f"inconsistent state: {int(table.is_adversarial.sum())} adversarial "
                f"items for {rows} stored rows"
            )
        return table


def fill(members: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` of ``members``: each once, then random repeats; a random subset if fewer."""
    if len(members) == 0 or size <= 0:
        return members[:0]
    if size < len(members):
        return members[torch.randperm(len(members), generator=generator)[:size]].sort().values
    extra = torch.randint(len(members), (size - len(members),), generator=generator)
    return torch.cat([members, members[extra]])


def class_members(labels: torch.Tensor, class_counts: torch.Tensor):
    """Each class's original indices, in label order (a stable sort)."""
    order = torch.argsort(labels, stable=True)
    ends = torch.cumsum(class_counts, 0).tolist()
    return [order[(ends[c - 1] if c else 0) : ends[c]] for c in range(len(class_counts))]


class SlotLayout:
    """The paper's order: each class holds ``target_size`` slots, every original once and then
    random repeats (a random subset when the class is larger), each with its own draw of
    ``slot_transform`` (an object with ``draw(n, generator)`` and ``apply(images, params)``:
    :class:`~afr_aug.augment.CropFlip`, the default, or
    :class:`~afr_aug.augment.SeededTransform`), drawn afresh at every refresh; the attacked
    slots become adversarial items. With the paper's attack share 0.5 and a 20 % minority,
    every class, tail classes included, is about 40 % adversarial.

    A layout is what :class:`~afr_aug.AFRDataset` asks for ``candidates`` (what a refresh
    embeds and attacks) and for the ``items`` once the attacked ones are known; another
    reading of the paper plugs in here.

    >>> layout = SlotLayout()
    >>> cand = layout.candidates(torch.tensor([0, 0, 0, 1]), torch.tensor([3, 1]), 3,
    ...                          torch.Generator().manual_seed(0))
    >>> cand.labels.tolist(), tuple(cand.draws.shape)
    ([0, 0, 0, 1, 1, 1], (6, 3))
    >>> layout.items(cand, torch.tensor([1, 4])).is_adversarial.tolist()
    [False, True, False, False, True, False]
    """

    name = "slots"

    def __init__(self, slot_transform=None):
        if slot_transform is None:
            from ..augment import CropFlip

            slot_transform = CropFlip(padding=4)
        if not (
            callable(getattr(slot_transform, "draw", None))
            and callable(getattr(slot_transform, "apply", None))
        ):
            raise TypeError(
                "slot_transform needs draw(n, generator) and apply(images, params); "
                "wrap a per-image transform in afr_aug.augment.SeededTransform"
            )
        self.slot_transform = slot_transform

    def candidates(
        self,
        labels: torch.Tensor,
        class_counts: torch.Tensor,
        target_size: int,
        generator: torch.Generator,
    ) -> Candidates:
        index = torch.cat(
            [
                fill(members, target_size, generator)
                for members in class_members(labels, class_counts)
            ]
        )
        return Candidates(index, labels[index], self.slot_transform.draw(len(index), generator))

    def items(
        self, cand: Candidates, attacked: torch.Tensor, keep: torch.Tensor | None = None
    ) -> ItemTable:
        """The table of ``cand`` of which ``attacked`` (positions) now have adversarial row
        k = their rank in ``attacked``; with ``keep`` (a mask over ``attacked``) only the kept
        ones, the others stay their clean slot (their rows stay in the store, unused)."""
        index = cand.index.clone()
        flags = torch.zeros(len(index), dtype=torch.bool)
        rows = torch.arange(len(attacked))
        served = attacked if keep is None else attacked[keep]
        flags[served] = True
        index[served] = rows if keep is None else rows[keep]
        return ItemTable(
            index,
            cand.labels,
            cand.draws,
            flags,
            cand.index[attacked],
            None if cand.draws is None else cand.draws[attacked],
        )

    def apply(self, images: torch.Tensor, draws: torch.Tensor | None) -> torch.Tensor:
        """``images`` through their ``draws`` (as they are without draws)."""
        return images if draws is None else self.slot_transform.apply(images, draws)
