"""Network architectures for afr-aug."""

from .resnet import NormedLinear, PadShortcut, ResNet32, resnet32

__all__ = ["NormedLinear", "PadShortcut", "ResNet32", "resnet32"]
