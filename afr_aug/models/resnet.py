"""CIFAR ResNet-32 (He et al. 2016) as used by the LDAM-DRW and CMO long-tail baselines.

Layout: 3x3 conv (16) -> BN -> ReLU -> 3 stages x 5 BasicBlocks with 16/32/64
channels (strides 1, 2, 2) -> global average pool -> linear.

Shortcut choice: where a block changes shape we use *option A* of He et al.
(as LDAM/CMO do): the identity is subsampled with stride 2 and the new
channels are zero-padded, so shortcuts add **no parameters**. That gives
464,154 parameters for 10 classes and 470,004 for 100 classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_int

__all__ = ["NormedLinear", "PadShortcut", "ResNet32", "resnet32"]


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling plus zero channel padding (no parameters)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_planes - in_planes
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))


class _BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class NormedLinear(nn.Module):
    """Cosine classifier: logits are cosines between the embedding and each class weight.

    Why: LDAM's margins and scale ``s`` assume logits in [-1, 1]; the LDAM-DRW reference
    ResNet32 uses this layer instead of a plain ``nn.Linear``.

    ``is_classifier = True`` lets :class:`afr_aug.Embedder` take its input as the embedding,
    as it does for a plain ``nn.Linear``.

    >>> import torch
    >>> layer = NormedLinear(64, 10)
    >>> bool(layer(torch.randn(4, 64)).abs().max() <= 1 + 1e-6)
    True
    """

    is_classifier = True

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1).mm(F.normalize(self.weight, dim=0))


class ResNet32(nn.Module):
    """CIFAR ResNet-32 classifier that can also return its 64-d embedding.

    Why: the long-tail baselines (LDAM-DRW, CMO, Balanced Softmax) all report
    numbers with this backbone, and feature re-calibration needs the
    penultimate embedding. ``model(x, return_embedding=True)`` returns
    ``(logits, embedding)`` from a single forward pass, with
    ``logits == model.fc(embedding)``.

    Args:
        num_classes: size of the output layer (default 100).
        normalize: optional ``(mean, std)`` per-channel sequences (length 3).
            When given they are stored as buffers and the input is normalised
            at the start of ``forward``, so callers (e.g. adversarial attacks)
            can feed raw ``[0, 1]`` images. ``None`` (default): no normalisation.
        normed_classifier: use a cosine classifier (:class:`NormedLinear`) as ``fc``, as the
            LDAM-DRW reference does; default a plain linear layer.

    Input: float tensor [N, 3, H, W] (H = W = 32 for CIFAR; any size works
    thanks to the global average pool).

    >>> import torch
    >>> model = ResNet32(num_classes=10)
    >>> logits, emb = model(torch.rand(2, 3, 32, 32), return_embedding=True)
    >>> tuple(logits.shape), tuple(emb.shape), model.embedding_dim
    ((2, 10), (2, 64), 64)
    """

    embedding_dim = 64
    norm_mean: torch.Tensor  # buffers, with normalize
    norm_std: torch.Tensor

    def __init__(
        self,
        num_classes: int = 100,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        normed_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", minimum=1)
        self.normalize = normalize is not None
        if normalize is not None:
            mean, std = self._check_normalize(normalize)
            self.register_buffer("norm_mean", mean.view(1, 3, 1, 1))
            self.register_buffer("norm_std", std.view(1, 3, 1, 1))

        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(5):
                blocks.append(_BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc: nn.Module = nn.Linear(self.embedding_dim, num_classes)

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
        if normed_classifier:
            self.fc = NormedLinear(self.embedding_dim, num_classes)

    @staticmethod
    def _check_normalize(normalize) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            mean, std = normalize
            mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
            std = torch.as_tensor(std, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"normalize must be a pair (mean, std) of 3 floats each, got {normalize!r}"
            ) from exc
        if mean.numel() != 3 or std.numel() != 3:
            raise ValueError(
                f"normalize must give 3 means and 3 stds (one per RGB channel), "
                f"got {mean.numel()} means and {std.numel()} stds"
            )
        if not bool((std > 0).all()):
            raise ValueError(f"normalize std must be positive, got {std.tolist()}")
        return mean, std

    def forward(
        self, x: torch.Tensor, return_embedding: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return logits [N, C], or ``(logits, embedding [N, 64])`` if ``return_embedding``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a float tensor [N, 3, H, W], got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input must have shape [N, 3, H, W], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"input must be a float tensor (e.g. images in [0, 1]), got dtype {x.dtype}"
            )
        if self.normalize:
            x = (x - self.norm_mean.to(x.dtype)) / self.norm_std.to(x.dtype)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        embedding = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        logits = self.fc(embedding)
        if return_embedding:
            return logits, embedding
        return logits

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, normalize={self.normalize}"


def resnet32(
    num_classes: int = 100,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    normed_classifier: bool = False,
) -> ResNet32:
    """Build the CIFAR ResNet-32 used by the long-tail benchmarks.

    Why a factory: it is the name the training scripts and configs refer to;
    it simply returns ``ResNet32(...)`` with the same arguments (see there).

    >>> import torch
    >>> model = resnet32(num_classes=100, normalize=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    >>> sum(p.numel() for p in model.parameters())
    470004
    >>> model(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 100])
    """
    return ResNet32(
        num_classes=num_classes, normalize=normalize, normed_classifier=normed_classifier
    )
