"""How the training loop runs, not what it computes: bf16 autocast, memory format, compile.

These settings change the img/s and never the method, so every command line that trains takes
the same flags (:func:`add_speed_args`) and turns them into one :class:`Speed`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch


@dataclass
class Speed:
    """How the loop runs, not what it computes: none of these change the method.

    ``amp``: bf16 autocast for the training forward (the loss is computed in fp32); default on
    CUDA only, since on a CPU it must first be shown to train as well as fp32 (issue 9).
    ``channels_last``: NHWC model and inputs, faster convolutions on CPU (fp32 334 vs 226
    img/s for ResNet32 on this project's 2-core Xeon) and on tensor cores. ``compile``:
    torch.compile the training forward; opt-in until measured faster on the device at hand.
    The AFR refresh (embedding and attack) and evaluation stay fp32."""

    amp: bool | None = None
    channels_last: bool = True
    compile: bool = False

    def resolved(self, device: torch.device) -> Speed:
        return Speed(
            amp=device.type == "cuda" if self.amp is None else self.amp,
            channels_last=self.channels_last,
            compile=self.compile,
        )


def add_speed_args(parser) -> None:
    """--amp/--no-amp, --channels-last/--no-channels-last, --compile (see :class:`Speed`)."""
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast for training (default: on for CUDA, off on CPU)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="NHWC memory format (default: on)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward")


def speed_from(args) -> Speed:
    return Speed(amp=args.amp, channels_last=args.channels_last, compile=args.compile)
