"""Tests for afr_aug.checks: the shared argument checks and their messages."""

import math

import numpy as np
import pytest
import torch

from afr_aug.checks import (
    check_class_counts,
    check_finite,
    check_generator_state,
    check_image_batch,
    check_image_values,
    check_int,
    check_number,
    check_probability,
    check_seed,
)


def test_check_int_bounds_and_types():
    assert check_int(np.int64(4), "n", minimum=1) == 4 and type(check_int(np.int64(4), "n")) is int
    assert check_int(-3, "offset") == -3  # no bound unless asked
    with pytest.raises(TypeError, match="flag must be an int, got bool True"):
        check_int(True, "flag")
    with pytest.raises(ValueError, match="rank must be <= 1, got 2"):
        check_int(2, "rank", minimum=0, maximum=1)


def test_check_seed_and_numbers():
    assert check_seed(None) is None and check_seed(np.int32(3)) == 3
    with pytest.raises(TypeError, match="state: seed must be an int or None, got float"):
        check_seed(1.0, "state: seed")
    assert check_number(np.float32(0.5), "tau", minimum=0) == 0.5
    assert check_number(torch.tensor(2.0), "lr", minimum=0, strict=True) == 2.0
    for bad in (float("inf"), float("nan"), -1e-9):
        with pytest.raises(ValueError, match="tau must be a finite number >= 0"):
            check_number(bad, "tau", minimum=0)
    with pytest.raises(TypeError, match="lr must be a finite number > 0, got str"):
        check_number("0.1", "lr", minimum=0, strict=True)


def test_check_probability():
    assert check_probability(1, "p") == 1.0 and check_probability(np.float64(0.0), "p") == 0.0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"attack_share must be a probability in \[0, 1\]"):
            check_probability(bad, "attack_share")
    with pytest.raises(TypeError, match="p must be a probability"):
        check_probability("0.5", "p")
    with pytest.raises(TypeError, match="p must be a probability"):
        check_probability(True, "p")


def test_check_finite_and_class_counts():
    x = torch.tensor([1.0, 2.0])
    assert check_finite(x, "x") is x
    assert check_finite(torch.tensor([1, 2]), "labels") is not None  # ints are always finite
    with pytest.raises(ValueError, match="logits must be finite"):
        check_finite(torch.tensor([math.inf]), "logits")
    assert check_class_counts(torch.tensor([2.5, 1])).dtype == torch.float64
    with pytest.raises(ValueError, match=r"counts must all be positive.*got 0 for class 1"):
        check_class_counts([3, 0], "counts")


def test_image_checks():
    with pytest.raises(TypeError, match="x must be an image batch tensor"):
        check_image_batch([[0]], "x")
    with pytest.raises(ValueError, match=r"must have 1 or 3 channels \(NCHW\), got 4"):
        check_image_batch(torch.zeros(1, 4, 2, 2), "x", channels=(1, 3))
    u8 = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    assert check_image_values(u8, "images") is u8
    with pytest.raises(TypeError, match=r"images must be float in \[0, 1\], got dtype torch.uint8"):
        check_image_values(u8, "images", allow_uint8=False)
    nearly = torch.full((1, 1, 2, 2), 1 + 1e-7)
    assert check_image_values(nearly, "images", tolerance=1e-6) is nearly
    with pytest.raises(ValueError, match=r"got values in \[1, 1\] \(normalise in the model\)"):
        check_image_values(nearly, "images", hint=" (normalise in the model)")
    with pytest.raises(ValueError, match="images must be finite"):
        check_image_values(torch.tensor([0.5, math.nan]).view(1, 1, 1, 2), "images")
    assert check_image_values(torch.zeros(0, 3, 2, 2), "images").numel() == 0


def test_check_generator_state():
    state = torch.Generator().manual_seed(3).get_state()
    assert check_generator_state(state, "rng") is state
    with pytest.raises(
        ValueError, match=r"rng must be a CPU torch\.Generator state .*got torch\.float32"
    ):
        check_generator_state(state.float(), "rng")
    with pytest.raises(ValueError, match=r"uint8 tensor of shape \(5056,\)\), got list"):
        check_generator_state(state.tolist(), "rng")
