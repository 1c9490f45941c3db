"""afr-aug: Adversarial Feature Re-calibration for long-tailed image classification.

The pieces, each usable alone in an existing training loop:

- :class:`LongTailSampler` — class-balanced draws (inter-class over-sampling, CMO).
- :class:`Embedder` — (logits, embedding) of any classifier from one forward pass.
- :class:`IntraClassSplitter` — each class's minority images in embedding space (§3.1, §3.3).
- :class:`MinorityPGD` — a ``torchattacks.PGD`` that moves majority images toward their
  class's minority features (§3.2).
- :class:`CutMixBalancer` / :class:`MixUpBalancer` — mix a long-tailed batch with a balanced one.
- :class:`AFRBalancer` — the stage-2 set: balanced classes with adversarial images.
- ``afr_aug.data``, ``afr_aug.losses``, ``afr_aug.models``, ``afr_aug.metrics``,
  ``afr_aug.augment``, ``afr_aug.decouple`` (cRT, tau-normalisation, LWS).
"""

__version__ = "0.1.0"

from .attack import MinorityPGD
from .balance import AFRBalancer
from .embedding import Embedder
from .mixing import CutMixBalancer, MixUpBalancer, mixed_loss
from .sampler import LongTailSampler
from .split import IntraClassSplitter, SplitResult

__all__ = [
    "AFRBalancer",
    "CutMixBalancer",
    "Embedder",
    "IntraClassSplitter",
    "LongTailSampler",
    "MinorityPGD",
    "MixUpBalancer",
    "SplitResult",
    "mixed_loss",
]
