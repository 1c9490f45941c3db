"""afr-aug: Adversarial Feature Re-calibration for long-tailed image classification.

The pieces, each usable alone in an existing training loop:

- :class:`LongTailSampler` — class-balanced draws (inter-class over-sampling, CMO).
- :class:`Embedder` — (logits, embedding) of any classifier from one forward pass.
- :class:`IntraClassSplitter` — each class's minority images in embedding space (§3.1, §3.3).
- :class:`MinorityPGD` — a ``torchattacks.PGD`` that turns majority images into their class's
  minority, keeping the label (§3.2); its targets are in ``afr_aug.targets``;
  :class:`SignNoise` is its control (random sign steps of the same budget).
- :class:`CutMixBalancer` / :class:`MixUpBalancer` — mix a long-tailed batch with a balanced one
  (or, ``in_batch=True``, with itself: mixup); :class:`Remix` — mixup whose label favours the
  rarer class.
- :class:`BalancedMixLoader` / :class:`AFRLoader` — your DataLoader wrapped for stage 1 / 2:
  ready-mixed batches, the running accuracy, the refresh on schedule.
- :class:`AFRDataset` — the stage-2 set: balanced classes with adversarial images; its
  ``refresh`` returns a :class:`RefreshReport` (dose, crossing, labels kept per class). Its
  pieces are in ``afr_aug.stage2``. ``AFRBalancer`` is its deprecated name.
- ``afr_aug.data``, ``afr_aug.losses``, ``afr_aug.models``, ``afr_aug.metrics``,
  ``afr_aug.augment``, ``afr_aug.decouple`` (cRT, tau-normalisation, LWS, MiSLAS's stage 2).
"""

__version__ = "0.2.0"

from .attack import MinorityPGD, SignNoise
from .balance import AFRBalancer
from .embedding import Embedder
from .loader import AFRLoader, BalancedMixLoader
from .mixing import CutMixBalancer, MixUpBalancer, Remix, mixed_loss
from .refresh_report import RefreshReport
from .sampler import LongTailSampler
from .split import IntraClassSplitter, SplitResult
from .stage2 import AFRDataset

__all__ = [
    "AFRBalancer",
    "AFRDataset",
    "AFRLoader",
    "BalancedMixLoader",
    "CutMixBalancer",
    "Embedder",
    "IntraClassSplitter",
    "LongTailSampler",
    "MinorityPGD",
    "MixUpBalancer",
    "RefreshReport",
    "Remix",
    "SignNoise",
    "SplitResult",
    "mixed_loss",
]
