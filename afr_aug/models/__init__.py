"""Network architectures for afr-aug."""

from .resnet import ResNet32, resnet32

__all__ = ["ResNet32", "resnet32"]
