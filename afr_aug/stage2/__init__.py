"""AFR's stage-2 set (paper §3.2, Fig. 2), in small pieces, each with one job:

- :class:`ItemTable` and :class:`SlotLayout` (``items``): which original and which draw each
  item is, and which items are adversarial;
- :class:`ImageSource` (``source``): the originals, from a tensor or a Dataset read lazily;
- the store (:class:`afr_aug.store.AdversarialStore`): the adversarial images;
- :func:`pipeline.refresh`: slots → embed → split → attack → store → report;
- :class:`AFRDataset` (``dataset``): the ``Dataset`` a loader reads.
"""

from . import pipeline
from .dataset import AFRDataset
from .items import Candidates, ItemTable, SlotLayout
from .source import ImageSource

__all__ = ["AFRDataset", "Candidates", "ImageSource", "ItemTable", "SlotLayout", "pipeline"]
