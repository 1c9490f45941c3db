import re

import numpy as np
import pytest
import torch

from afr_aug import augment as A
from afr_aug.augment import BatchAugment, auto_augment, cutout, random_crop, random_hflip


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=16, c=3, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen(seed))


# ------------------------------------------------------------------ random_crop


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_crop_is_shifted_window_of_padded_input(dtype):
    p = 4
    # non-zero random pixels (H != W on purpose), so the zero padding shows where the window sits
    x = torch.randint(1, 256, (12, 3, 10, 14), dtype=torch.uint8, generator=gen(1)).to(dtype)
    y = random_crop(x, padding=p, generator=gen(3))
    assert y.shape == x.shape and y.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for i in range(x.shape[0]):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if torch.equal(y[i], padded[i, :, dy : dy + 10, dx : dx + 14])
        ]
        assert len(hits) == 1, f"sample {i} is not a unique window of the padded input"
        offsets.add(hits[0])
    assert len(offsets) > 1  # per-sample offsets


def test_random_crop_padding_zero_and_determinism():
    x = images()
    assert torch.equal(random_crop(x, padding=0), x)
    assert torch.equal(random_crop(x, generator=gen(5)), random_crop(x, generator=gen(5)))
    assert not torch.equal(random_crop(x, generator=gen(5)), random_crop(x, generator=gen(6)))
    random_crop(x)  # global RNG path


# ------------------------------------------------------------------ random_hflip


def test_random_hflip_known_image():
    x = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3).repeat(2, 3, 1, 1)
    assert random_hflip(x, p=1.0)[0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]
    assert torch.equal(random_hflip(x, p=0.0), x)


def test_random_hflip_per_sample():
    x = images(64)
    y = random_hflip(x, generator=gen(0))
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(y[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


# ------------------------------------------------------------------ cutout


@pytest.mark.parametrize("size", [16, 5])
def test_cutout_zeros_a_clipped_square(size):
    h = w = 40
    x = torch.ones(64, 3, h, w)
    y = cutout(x, size=size, generator=gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype
    inside = 0
    for i in range(64):
        zero = y[i] == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(
            zero[0], zero[2]
        )  # same hole on all channels
        rows = zero[0].any(1).nonzero().flatten()
        cols = zero[0].any(0).nonzero().flatten()
        r0, r1, c0, c1 = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
        assert zero[0].sum().item() == (r1 - r0 + 1) * (c1 - c0 + 1)  # a filled rectangle
        for lo, hi, n in ((r0, r1, h), (c0, c1, w)):
            assert hi - lo + 1 <= size
            if lo > 0 and hi < n - 1:
                assert hi - lo + 1 == size  # only clipped at the borders
        if r0 > 0 and c0 > 0 and r1 < h - 1 and c1 < w - 1:
            inside += 1
            assert zero[0].sum().item() == size * size
    assert inside > 0


def test_cutout_uint8_and_size_zero():
    x = images()
    y = cutout(x, size=8, generator=gen(0))
    assert y.dtype == torch.uint8
    assert torch.equal(cutout(x, size=0), x)


# ------------------------------------------------------------------ auto_augment


def test_policy_table_matches_torchvision():
    from torchvision.transforms import v2

    aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    if not hasattr(aa, "_policies"):
        pytest.skip("torchvision does not expose _policies")
    assert tuple(tuple(p) for p in aa._policies) == A._CIFAR10_POLICY


def test_batched_ops_equal_per_image_ops():
    """Each op must act per image (e.g. Equalize/AutoContrast statistics), not per batch."""
    x = images(4, seed=2)
    x[1] = x[1] // 4  # low-contrast image so AutoContrast/Equalize matter
    names = {name for sub in A._CIFAR10_POLICY for name, _, _ in sub}
    for name in sorted(names):
        bins = {b for sub in A._CIFAR10_POLICY for n, _, b in sub if n == name}
        for b in bins:
            mag = A.op_magnitude(name, b, 32, 32)
            for m in (mag, -mag) if name in A._SIGNED else (mag,):
                batched = A.apply_op(x, name, m)
                single = torch.cat([A.apply_op(x[i : i + 1], name, m) for i in range(4)])
                assert torch.equal(batched, single), (name, m)


def test_auto_augment_changes_images_keeps_uint8_and_varies_per_sample():
    x = images(1, seed=4).repeat(64, 1, 1, 1)  # identical inputs
    y = auto_augment(x, generator=gen(0))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    changed = [not torch.equal(y[i], x[i]) for i in range(64)]
    assert any(changed)
    distinct = {y[i].numpy().tobytes() for i in range(64)}
    assert len(distinct) > 5  # samples get different sub-policies / ops


def test_auto_augment_determinism_and_grayscale():
    x = images(32)
    assert torch.equal(auto_augment(x, generator=gen(1)), auto_augment(x, generator=gen(1)))
    assert not torch.equal(auto_augment(x, generator=gen(1)), auto_augment(x, generator=gen(2)))
    g = images(8, c=1)
    assert auto_augment(g, generator=gen(0)).shape == (8, 1, 32, 32)
    assert auto_augment(x[:0]).shape == (0, 3, 32, 32)


# ------------------------------------------------------------------ BatchAugment


def test_batch_augment_output_and_determinism():
    x = images(32)
    y = BatchAugment(auto_augment=True, cutout=True, seed=0)(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, BatchAugment(auto_augment=True, cutout=True, seed=0)(x))
    assert not torch.equal(y, BatchAugment(auto_augment=True, cutout=True, seed=1)(x))
    # stage 2: crop + flip only, values stay multiples of 1/255
    y2 = BatchAugment(seed=0)(x)
    assert torch.allclose(y2 * 255, (y2 * 255).round(), atol=1e-4)


def test_batch_augment_successive_calls_differ_and_state_resumes():
    x = images(16)
    aug = BatchAugment(auto_augment=True, cutout=True, seed=3)
    first = aug(x)
    state = aug.state_dict()
    second = aug(x)
    assert not torch.equal(first, second)
    other = BatchAugment(auto_augment=True, cutout=True, seed=99)
    other.load_state_dict(state)
    assert torch.equal(other(x), second)
    unseeded = BatchAugment(seed=None)
    s = unseeded.state_dict()
    a = unseeded(x)
    unseeded.load_state_dict(s)
    assert torch.equal(unseeded(x), a)


def test_batch_augment_float_input():
    x = images(8)
    xf = x.float() / 255
    # Same random stream -> same result from uint8 and float input (float is quantised for
    # AutoAugment).
    a = BatchAugment(auto_augment=True, cutout=True, seed=0)(x)
    b = BatchAugment(auto_augment=True, cutout=True, seed=0)(xf)
    assert torch.allclose(a, b, atol=1e-6)
    # No-op pipeline on float input returns an equal copy, not the same tensor
    ident = BatchAugment(crop=False, flip=False)
    out = ident(xf)
    assert torch.equal(out, xf) and out.data_ptr() != xf.data_ptr()
    assert BatchAugment(seed=0)(xf.double()).dtype == torch.float64


def test_batch_augment_cutout_only():
    x = torch.full((4, 3, 32, 32), 255, dtype=torch.uint8)
    y = BatchAugment(crop=False, flip=False, cutout=True, seed=0)(x)
    zeros = (y[:, 0] == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 256).all()
    assert ((y == 0) | (y == 1)).all()


def test_batch_augment_state_round_trip_continues_the_stream():
    x = images(8)
    straight = BatchAugment(auto_augment=True, cutout=True, seed=5)
    stopped = BatchAugment(auto_augment=True, cutout=True, seed=5)
    for _ in range(3):
        straight(x)
        stopped(x)
    state = stopped.state_dict()
    assert state["type"] == "BatchAugment" and state["seed"] == 5
    resumed = BatchAugment(auto_augment=True, cutout=True, seed=None)
    resumed.load_state_dict(state)
    assert resumed.seed == 5
    for _ in range(3):
        assert torch.equal(straight(x), resumed(x))


def test_batch_augment_seed_defaults_to_zero_and_none_is_fresh():
    x = images(8)
    assert torch.equal(BatchAugment()(x), BatchAugment(seed=0)(x))
    assert not torch.equal(BatchAugment(seed=None)(x), BatchAugment(seed=None)(x))


def test_batch_augment_load_state_dict_bad_input():
    aug = BatchAugment(cutout=True, seed=0)
    good = aug.state_dict()
    before = aug.generator.get_state()
    bad = [
        ([("seed", 0)], TypeError, "expects the dict"),
        (
            {k: v for k, v in good.items() if k != "generator_state"},
            ValueError,
            r"missing keys \['generator_state'\]",
        ),
        (dict(good, extra=1), ValueError, r"unexpected keys \['extra'\]"),
        (dict(good, type="CutMixBalancer"), ValueError, "saved by 'CutMixBalancer'"),
        (
            BatchAugment(seed=0).state_dict(),
            ValueError,
            "cutout=False but this BatchAugment has cutout=True",
        ),
        (BatchAugment(cutout=True, cutout_size=8).state_dict(), ValueError, "cutout_size=8"),
        (BatchAugment(cutout=True, padding=2).state_dict(), ValueError, "padding=2"),
        (dict(good, seed="0"), TypeError, "seed must be an int or None"),
        (
            dict(good, generator_state=[0] * 5056),
            ValueError,
            "'generator_state' must be .*got list",
        ),
        (
            dict(good, generator_state=torch.zeros(3, dtype=torch.uint8)),
            ValueError,
            r"shape \(3,\)",
        ),
        (dict(good, generator_state=good["generator_state"].float()), ValueError, "torch.float32"),
    ]
    for state, exc, match in bad:
        with pytest.raises(exc, match=match):
            aug.load_state_dict(state)
    assert torch.equal(aug.generator.get_state(), before) and aug.seed == 0


# ------------------------------------------------------------------ errors


def test_errors():
    aug = BatchAugment(seed=0)
    with pytest.raises(
        ValueError, match=r"4-D image batch \[N, C, H, W\], got shape \(3, 32, 32\)"
    ):
        aug(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"1 or 3 channels \(NCHW\), got 32 channels"):
        aug(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(
        ValueError, match=r"float images must be in \[0, 1\], got values in \[0, 255\]"
    ):
        aug(torch.arange(256.0).view(1, 1, 16, 16).expand(2, 3, 16, 16))
    with pytest.raises(
        ValueError, match=r"float images must be in \[0, 1\], got values in \[-0.5, 0.5\]"
    ):
        aug(torch.tensor([-0.5, 0.5]).view(1, 1, 1, 2).expand(2, 3, 8, 2))
    with pytest.raises(ValueError, match="images must be finite, got NaN"):
        aug(torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(TypeError, match=r"uint8 or float in \[0, 1\], got dtype torch.int32"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="image batch tensor"):
        aug([[0]])
    with pytest.raises(
        TypeError,
        match=re.escape("auto_augment expects a uint8 image batch, got dtype torch.float32"),
    ):
        auto_augment(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        random_crop(images(2), padding=-1)
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 2"):
        random_hflip(images(2), p=2)
    with pytest.raises(TypeError, match="size must be an int, got float"):
        cutout(images(2), size=16.0)
    with pytest.raises(
        TypeError, match=re.escape("generator must be a torch.Generator or None, got int")
    ):
        random_crop(images(2), generator=0)
    with pytest.raises(ValueError, match="cutout_size must be >= 0"):
        BatchAugment(cutout_size=-2)
    with pytest.raises(TypeError, match="seed must be an int or None, got str"):
        BatchAugment(seed="0")
    with pytest.raises(ValueError, match=r"missing keys \[.*'generator_state'.*'type'\]"):
        aug.load_state_dict({"seed": 0})


# ------------------------------------------------------------------ CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = images(16)
    aug_args = {"crop": True, "flip": True, "cutout": True}
    cpu = BatchAugment(seed=0, **aug_args)(x)
    gpu = BatchAugment(seed=0, **aug_args)(x.cuda())
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    full = BatchAugment(auto_augment=True, cutout=True, seed=0)(x.cuda())
    assert full.is_cuda and full.dtype == torch.float32 and full.shape == x.shape


# --- the reference pipeline (the PIL AutoAugment of the CMO code), pixel by pixel -----------------


def test_translate_moves_rounded_pixels_and_fills_grey():
    x = torch.zeros(1, 1, 32, 32, dtype=torch.uint8)
    x[0, 0, :, 0] = 200  # a bright first column
    for bin_idx, pixels in ((3, 5), (8, 13), (9, 15)):
        mag = A.op_magnitude("TranslateX", bin_idx, 32, 32)
        out = A.apply_op(x, "TranslateX", mag)
        assert out[0, 0, :, pixels].eq(200).all() and out[0, 0, :, pixels + 1].eq(0).all()
        assert out[0, 0, :, :pixels].eq(A.AUTOAUGMENT_FILL).all()  # uncovered: grey 128
        back = A.apply_op(x, "TranslateY", -mag)
        assert back.eq(A.AUTOAUGMENT_FILL).sum() == pixels * 32


def test_solarize_thresholds_on_the_256_scale():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    for bin_idx, first_inverted in ((2, 200), (3, 171), (5, 114), (8, 29)):
        out = A.apply_op(x, "Solarize", A.op_magnitude("Solarize", bin_idx, 16, 16)).flatten()
        assert out[first_inverted] == 255 - first_inverted
        assert out[first_inverted - 1] == first_inverted - 1


def test_rotate_fills_corners_grey():
    x = torch.full((1, 3, 32, 32), 10, dtype=torch.uint8)
    out = A.apply_op(x, "Rotate", 20.0)
    assert (out[0, :, 0, 0] == A.AUTOAUGMENT_FILL).all() and (out[0, :, 16, 16] == 10).all()


def test_shear_is_bicubic_like_pil_by_hand_and_against_pil():
    # one row 0, 0, 90, 0, ... sheared by m = 0.25: output (x=1, y=1) samples x + m*y = 1.875
    # (pixel centres), i.e. 1.375 in index units: taps 0, 90, 0, 0 at d = 0.375 with PIL's
    # a = -1 kernel: v = v1 + d(v2 - v0) + d^2(2(v0 - v1) + v2 - v3) + d^3(v1 - v0 - v2 + v3)
    x = torch.zeros(1, 1, 4, 8, dtype=torch.uint8)
    x[0, 0, 1, 2] = 90
    out = A.apply_op(x, "ShearX", 0.25)
    d = 0.375
    assert out[0, 0, 1, 1] == int(90 * d + d * d * 90 - d**3 * 90)  # 41.66 -> 41
    assert out[0, 0, 3, 7] == A.AUTOAUGMENT_FILL  # samples 7.5 + 0.25 * 3.5 >= 8: outside
    pil_image = pytest.importorskip("PIL.Image")
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    for m in (0.3, -0.2, 0.1):
        for name, coeffs in (("ShearX", (1, m, 0, 0, 1, 0)), ("ShearY", (1, 0, 0, m, 1, 0))):
            ours = A.apply_op(imgs, name, m)
            for i in range(3):
                im = pil_image.fromarray(imgs[i].permute(1, 2, 0).numpy())
                ref = im.transform(
                    im.size, pil_image.AFFINE, coeffs, pil_image.BICUBIC, fillcolor=(128, 128, 128)
                )
                assert torch.equal(ours[i].permute(1, 2, 0), torch.from_numpy(np.array(ref)))


def test_batch_augment_crops_and_flips_before_auto_augment(monkeypatch):
    seen = {}

    def spy(x, generator=None):
        seen["x"] = x.clone()
        return x

    monkeypatch.setattr(A, "auto_augment", spy)
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)
    A.BatchAugment(crop=True, flip=True, auto_augment=True, padding=4, seed=0)(x)
    # AutoAugment saw the cropped images: the zero padding shows in some of them
    assert (seen["x"] == 0).any() and seen["x"].shape == x.shape
