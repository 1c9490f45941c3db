"""The argument checks every afr-aug module shares.

Why one module: the same question ("is this an int >= 1?", "is this a probability?", "is this
an image batch in [0, 1]?", "is this state really a ``state_dict()`` of mine?") used to be
answered in several places with slightly different rules and messages. Each check here is
defined once, names the argument in its error and returns the value in the form the caller
needs. ``TypeError`` means the kind of value is wrong, ``ValueError`` that its value is.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "check_class_counts",
    "check_finite",
    "check_generator_state",
    "check_image_batch",
    "check_image_values",
    "check_int",
    "check_labels",
    "check_number",
    "check_probability",
    "check_seed",
    "check_state",
]


# -- numbers ----------------------------------------------------------------------------------


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int, after checking it is an integer (``bool`` is not) in
    ``[minimum, maximum]`` (either bound may be ``None``). numpy integers are accepted.

    >>> check_int(3, "steps", minimum=1)
    3
    >>> check_int(0, "steps", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: steps must be >= 1, got 0
    >>> check_int(2.0, "size")
    Traceback (most recent call last):
    ...
    TypeError: size must be an int, got float 2.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return number


def check_seed(value: Any, name: str = "seed") -> int | None:
    """A seed: an int, or ``None`` for a fresh, nondeterministic one.

    >>> check_seed("0")
    Traceback (most recent call last):
    ...
    TypeError: seed must be an int or None, got str
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    return None if value is None else int(value)


def _as_float(value: Any, name: str, expected: str) -> float:
    """``float(value)`` for a real number (numpy scalars and 0-d tensors too, not bool/str)."""
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from None


def check_number(
    value: Any, name: str, minimum: float | None = None, *, strict: bool = False
) -> float:
    """``value`` as a finite float, ``>= minimum`` (``> minimum`` with ``strict``) when given.

    >>> check_number(0.5, "tau", minimum=0)
    0.5
    >>> check_number(float("nan"), "exponent")
    Traceback (most recent call last):
    ...
    ValueError: exponent must be a finite number, got nan
    >>> check_number(0, "beta", minimum=0, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: beta must be a finite number > 0, got 0
    """
    bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
    number = _as_float(value, name, f"a finite number{bound}")
    low_ok = minimum is None or (number > minimum if strict else number >= minimum)
    if not math.isfinite(number) or not low_ok:
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def check_probability(value: Any, name: str) -> float:
    """``value`` as a float in [0, 1] (a probability, share or mixing weight; NaN is refused).

    >>> check_probability(0.25, "p")
    0.25
    >>> check_probability(2, "p")
    Traceback (most recent call last):
    ...
    ValueError: p must be a probability in [0, 1], got 2
    """
    number = _as_float(value, name, "a probability in [0, 1]")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return number


# -- tensors ----------------------------------------------------------------------------------


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """``tensor`` itself, after checking it holds no NaN or inf (one host sync).

    >>> check_finite(torch.tensor([1.0, float("nan")]), "embeddings")
    Traceback (most recent call last):
    ...
    ValueError: embeddings must be finite, got NaN or inf values
    """
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    return tensor


def check_class_counts(class_counts: Any, name: str = "class_counts") -> torch.Tensor:
    """Per-class training counts (positive, finite; fractional counts are allowed) as a 1-D
    float64 CPU tensor.

    >>> check_class_counts([3, 1]).tolist()
    [3.0, 1.0]
    """
    if isinstance(class_counts, (str, bytes)) or class_counts is None:
        raise TypeError(
            f"{name} must be a sequence of positive ints, got {type(class_counts).__name__}"
        )
    try:
        counts = torch.as_tensor(
            class_counts.detach().cpu() if isinstance(class_counts, torch.Tensor) else class_counts,
            dtype=torch.float64,
        )
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be a sequence of positive ints, got {type(class_counts).__name__}"
        ) from exc
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of per-class counts, got "
            f"shape {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all():
        raise ValueError(f"{name} must be finite, got {counts.tolist()}")
    bad = (counts <= 0).nonzero().flatten()
    if bad.numel() > 0:
        i = int(bad[0])
        raise ValueError(
            f"{name} must all be positive (every class needs at least one sample), "
            f"got {counts[i].item():g} for class {i}"
        )
    return counts


# -- labels -----------------------------------------------------------------------------------


def check_labels(
    labels: Any,
    name: str = "labels",
    num_classes: int | None = None,
    length: int | None = None,
) -> torch.Tensor:
    """1-D integer class labels as an int64 tensor (on the CPU when given as a list or array).

    ``TypeError`` when they are not integers: a bool, complex or non-numeric dtype, or floats
    with a fractional part (floats of whole numbers are taken as they are). ``ValueError`` for
    the wrong shape or ``length``, a negative label, or one ``>= num_classes``.

    >>> check_labels([0.0, 2.0, 1.0]).tolist()
    [0, 2, 1]
    >>> check_labels([0, 1.5])
    Traceback (most recent call last):
    ...
    TypeError: labels must be integer class indices, got fractional values (e.g. 1.5)
    >>> check_labels([0, 3], num_classes=3)
    Traceback (most recent call last):
    ...
    ValueError: labels must lie in [0, 2] for 3 classes, got 3
    """
    if isinstance(labels, (str, bytes)) or labels is None:
        raise TypeError(f"{name} must be integer class indices, got {type(labels).__name__}")
    try:
        t = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be integer class indices, got {type(labels).__name__}"
        ) from exc
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be integer class indices, got dtype {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per item), got shape {tuple(t.shape)}")
    if length is not None and len(t) != length:
        raise ValueError(f"{name} has {len(t)} entries, expected {length} (one per item)")
    if t.is_floating_point():
        frac = t[t != t.round()] if t.numel() else t
        if frac.numel():
            raise TypeError(
                f"{name} must be integer class indices, got fractional values "
                f"(e.g. {float(frac[0]):g})"
            )
    t = t.long()
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{name} must be >= 0, got {lo}")
        if num_classes is not None and hi >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes, got {hi}"
            )
    return t


# -- images -----------------------------------------------------------------------------------


def check_image_batch(x: Any, name: str, channels: Sequence[int] | None = None) -> torch.Tensor:
    """``x`` itself, after checking it is a 4-D image batch ``[N, C, H, W]`` (with ``C`` in
    ``channels`` when given). Says nothing about dtype or values: see
    :func:`check_image_values`.

    >>> check_image_batch(torch.zeros(3, 8, 8), "x")
    Traceback (most recent call last):
    ...
    ValueError: x must be a 4-D image batch [N, C, H, W], got shape (3, 8, 8)
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be an image batch tensor [N, C, H, W], got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D image batch [N, C, H, W], got shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] not in channels:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, channels))} channels (NCHW), "
            f"got {x.shape[1]} channels in shape {tuple(x.shape)}"
        )
    return x


def check_image_values(
    images: torch.Tensor,
    name: str,
    *,
    allow_uint8: bool = True,
    tolerance: float = 0.0,
    hint: str = "",
) -> torch.Tensor:
    """``images`` itself, after checking they are uint8 (when ``allow_uint8``) or float in
    [0, 1] (``± tolerance``), with no NaN or inf; ``hint`` is appended to a range error
    (e.g. where normalisation belongs). Float images cost one ``aminmax`` and one host sync.

    >>> check_image_values(torch.full((1, 1, 2, 2), 2.0), "images")
    Traceback (most recent call last):
    ...
    ValueError: float images must be in [0, 1], got values in [2, 2]
    >>> check_image_values(torch.zeros(1, 1, 2, 2, dtype=torch.int32), "images")
    Traceback (most recent call last):
    ...
    TypeError: images must be uint8 or float in [0, 1], got dtype torch.int32
    """
    if images.dtype == torch.uint8 and allow_uint8:
        return images
    if not images.is_floating_point():
        kinds = "uint8 or float" if allow_uint8 else "float"
        raise TypeError(f"{name} must be {kinds} in [0, 1], got dtype {images.dtype}")
    if images.numel() == 0:
        return images
    lo, hi = torch.stack(torch.aminmax(images)).tolist()  # NaN propagates into both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    if lo < -tolerance or hi > 1 + tolerance:
        raise ValueError(f"float {name} must be in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")
    return images


# -- checkpoints ------------------------------------------------------------------------------


def check_state(owner: object, state: Any, config: dict[str, Any], keys: Iterable[str]) -> None:
    """Raise unless ``state`` is ``type(owner)``'s :meth:`state_dict` with exactly ``"type"``,
    the ``config`` entries and ``keys``, and agrees with ``owner`` on every ``config`` value.

    Why strict: a state saved by another kind of object, or by one with other settings, would
    resume a different random stream or item layout without a word; every stateful piece
    therefore refuses it with one clear error before changing anything.

    >>> class Thing: pass
    >>> check_state(Thing(), {"type": "Thing", "size": 2, "rng": 0}, {"size": 3}, ["rng"])
    Traceback (most recent call last):
    ValueError: Thing state has size=2 but this Thing has size=3
    """
    name = type(owner).__name__
    if not isinstance(state, dict):
        raise TypeError(
            f"{name}.load_state_dict expects the dict from {name}.state_dict(), "
            f"got {type(state).__name__}"
        )
    expected = {"type", *config, *keys}
    missing, extra = sorted(expected - state.keys()), sorted(set(state) - expected, key=str)
    if missing or extra:
        raise ValueError(f"{name} state: missing keys {missing}, unexpected keys {extra}")
    if state["type"] != name:
        raise ValueError(f"state was saved by {state['type']!r}, cannot load it into a {name}")
    for key, mine in config.items():
        if state[key] != mine:
            raise ValueError(
                f"{name} state has {key}={state[key]!r} but this {name} has {key}={mine!r}"
            )


def check_generator_state(state: Any, name: str) -> torch.Tensor:
    """``state`` itself, after checking it is a CPU ``torch.Generator`` state (what
    ``generator.get_state()`` returns) that ``set_state`` accepts.

    >>> check_generator_state(torch.Generator().get_state(), "rng").dtype
    torch.uint8
    >>> check_generator_state({"bit_generator": "PCG64"}, "rng")
    Traceback (most recent call last):
    ...
    ValueError: rng must be a CPU torch.Generator state (uint8 tensor of shape (5056,)), got dict
    """
    probe = torch.Generator(device="cpu")
    shape = tuple(probe.get_state().shape)
    if not (
        isinstance(state, torch.Tensor)
        and state.dtype == torch.uint8
        and tuple(state.shape) == shape
    ):
        got = (
            f"{state.dtype} tensor of shape {tuple(state.shape)}"
            if isinstance(state, torch.Tensor)
            else type(state).__name__
        )
        raise ValueError(
            f"{name} must be a CPU torch.Generator state (uint8 tensor of shape {shape}), got {got}"
        )
    try:
        probe.set_state(state)
    except RuntimeError as err:
        raise ValueError(f"{name} is not a valid CPU torch.Generator state ({err})") from None
    return state
