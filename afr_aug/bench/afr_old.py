"""The ``afr_old`` row's reading of stage 2 (AFR before issue 16), kept for the committed
results that compare with it (``benchmarks/results/cpu-cifar10lt-30+10-screen``).

In this reading the *originals* are embedded and attacked (no slots, no draws), and each class
is then filled up to the target size with its adversarial images plus repeats of its
originals: a tail class holds a handful of adversarial images among many repeats. It plugs
into ``afr_aug.AFRDataset`` as a layout (``candidates``, ``items``, ``apply``), like the
library's ``SlotLayout``.
"""

from __future__ import annotations

import torch

from afr_aug.stage2 import Candidates, ItemTable
from afr_aug.stage2.items import class_members, fill


class OriginalsLayout:
    """Candidates are the originals; items are, per class, its adversarial rows and then
    random repeats of its originals up to the target size."""

    name = "originals"

    def candidates(
        self,
        labels: torch.Tensor,
        class_counts: torch.Tensor,
        target_size: int,
        generator: torch.Generator,
    ) -> Candidates:
        # items() fills the classes with this refresh's generator, sizes and members
        self._fill_with = (labels, class_counts, target_size, generator)
        return Candidates(torch.arange(len(labels)), labels.clone(), None)

    def items(self, cand: Candidates, attacked: torch.Tensor, keep=None) -> ItemTable:
        if keep is not None:
            raise ValueError("the originals layout keeps every attacked image (no label_safe)")
        labels, counts, target_size, generator = self._fill_with
        rows_class = cand.labels[attacked]
        index, item_labels, flags = [], [], []
        for c, members in enumerate(class_members(labels, counts)):
            rows = torch.nonzero(rows_class == c).flatten()[:target_size]
            extra = fill(members, target_size - len(rows), generator)
            if len(extra) + len(rows) == 0:
                continue
            index += [extra, rows]
            item_labels.append(torch.full((len(extra) + len(rows),), c, dtype=torch.long))
            flags += [
                torch.zeros(len(extra), dtype=torch.bool),
                torch.ones(len(rows), dtype=torch.bool),
            ]
        return ItemTable(
            torch.cat(index),
            torch.cat(item_labels),
            None,
            torch.cat(flags),
            cand.index[attacked],
            None,
        )

    @staticmethod
    def apply(images: torch.Tensor, draws) -> torch.Tensor:
        return images
