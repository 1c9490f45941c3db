"""Network architectures for afr-aug."""

from .resnet import NormedLinear, ResNet32, resnet32

__all__ = ["NormedLinear", "ResNet32", "resnet32"]
