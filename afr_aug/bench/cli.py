"""What the benchmark's command lines share: a usage error is one line and exit status 2.

argparse already answers a bad flag that way (its usage, then ``prog: error: ...``); a missing
data folder or pack is a usage error too, found only once the flags are read, and must not end
in a traceback that hides the one line that says what to pass instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


def fail(prog: str, message) -> NoReturn:
    """Print ``prog: error: message`` as one line on stderr and exit with status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def require_file(prog: str, flag: str, path, what: str) -> None:
    """:func:`fail` unless ``path`` (given with ``flag``) is a file; ``what`` says what it should
    be and where one comes from."""
    if path is not None and not os.path.isfile(path):
        fail(prog, f"{flag} {path}: no such file ({what})")


def label_or_confidence(text: str):
    """argparse type for a label-safe rule (``AFRDataset(label_safe=...)``): ``'label'``, or a
    confidence in (0, 1) as a float.

    >>> p = argparse.ArgumentParser(prog="demo")
    >>> _ = p.add_argument("--label-safe", type=label_or_confidence)
    >>> p.parse_args(["--label-safe", "0.6"]).label_safe
    0.6
    >>> label_or_confidence("1.5")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: a confidence must lie in (0, 1), got 1.5
    """
    if text == "label":
        return text
    try:
        conf = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'label' or a confidence in (0, 1), got {text!r}"
        ) from None
    if not 0 < conf < 1:
        raise argparse.ArgumentTypeError(f"a confidence must lie in (0, 1), got {text}")
    return conf


CHECKPOINT = "a bs_cmo checkpoint written by afr-aug reproduce, in --out/ckpt/"


def data_or_fail(prog: str, read, *args, **kwargs):
    """``read(*args, **kwargs)`` (``afr_aug.bench.data.load_data`` or ``check_data``), or
    :func:`fail` with its message when the data are missing, cannot be fetched or do not match
    (``afr_aug.bench.data.DataError``). Any other error is a bug and keeps its traceback."""
    from .data import DataError

    try:
        return read(*args, **kwargs)
    except DataError as e:
        fail(prog, e)
