"""Long-tailed data: CIFAR-10-LT / CIFAR-100-LT and the split files of the larger benchmarks.

The paper evaluates AFR on CIFAR-10-LT and CIFAR-100-LT (Section 4.1), built the way LDAM-DRW
and CMO build them; the test sets stay balanced, and results are also reported on the "Many"
(> 100 training images), "Medium" (20-100) and "Few" (< 20) shot class groups. One module per
concept, everything importable from here:

- :mod:`~afr_aug.data.long_tail` -- :func:`long_tailed_counts` (how many images each class
  keeps) and :func:`make_long_tailed` (which indices of any labelled dataset to keep);
- :mod:`~afr_aug.data.cifar` -- :class:`CIFARDataset`, :func:`load_cifar` and :func:`cifar_lt`,
  reading the standard on-disk layout through :mod:`~afr_aug.data.cifar_files` (no md5 check);
- :mod:`~afr_aug.data.image_lists` -- :class:`ImageList` / :class:`INaturalist`, lazy readers
  for the split files of ImageNet-LT and Places-LT ("path label" lines) and iNaturalist 2018;
- :func:`shot_groups` -- the Many/Medium/Few split of classes (from :mod:`afr_aug.shots`).
"""

from ..shots import shot_groups
from .cifar import CIFARDataset, cifar_lt, load_cifar
from .image_lists import ImageList, INaturalist
from .long_tail import long_tailed_counts, make_long_tailed

__all__ = [
    "CIFARDataset",
    "INaturalist",
    "ImageList",
    "cifar_lt",
    "load_cifar",
    "long_tailed_counts",
    "make_long_tailed",
    "shot_groups",
]
