"""Batched tensor augmentation for CIFAR-style training (paper §4.1).

Why: the benchmark keeps the whole dataset as one uint8 tensor (on CPU or GPU)
and augments whole batches at once, so training is not starved by per-image
PIL transforms. Every op here is per-sample random but vectorised over the
batch (no Python loop over samples); AutoAugment groups the samples by
sub-policy and makes about one batched call per op and sign.

Stage 1 of the paper uses ``BatchAugment(auto_augment=True, cutout=True)``
(crop with pad 4 + horizontal flip, then AutoAugment CIFAR-10 policy, then
Cutout 16x16); stage 2 uses ``BatchAugment()`` (crop + flip only).

AutoAugment follows the PIL implementation the CMO code (and so the paper's
stage 1) uses, checked pixel by pixel: rotate/shear/translate fill with grey
128, shear interpolates bicubically as PIL does, translate moves
``round(150/331 * size * bin/9)`` pixels (5/13/15 px at bins 3/8/9 on 32 px),
solarize inverts pixels ``>= 256 * (1 - bin/9)``.

Randomness comes from an explicit ``torch.Generator`` (``generator=None`` uses
torch's global RNG). Random numbers are drawn on the generator's device (CPU
by default) and only index/mask tensors are moved to the images' device, so a
CPU generator works for CUDA images and results repeat across devices.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .checks import (
    check_generator_state,
    check_image_batch,
    check_image_values,
    check_int,
    check_probability,
    check_seed,
    check_state,
)

try:  # torchvision >= 0.16 (0.15 as beta)
    import torchvision.transforms.v2.functional as TF
except (
    ImportError
):  # pragma: no cover - older torchvision: v1 functional ops also take batched tensors
    import torchvision.transforms.functional as TF

try:
    from torchvision.transforms import InterpolationMode as _InterpolationMode

    _NEAREST = _InterpolationMode.NEAREST
except ImportError:  # pragma: no cover
    _NEAREST = None

__all__ = [
    "BatchAugment",
    "CropFlip",
    "SeededTransform",
    "apply_op",
    "auto_augment",
    "cutout",
    "op_magnitude",
    "random_crop",
    "random_hflip",
    "to_device",
]

# AutoAugment CIFAR-10 policy (Cubuk et al. 2019), the same table torchvision uses:
# 25 sub-policies of two (op name, probability, magnitude bin in 0..9 or None) entries.
_CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

_NUM_BINS = 10
#: Grey the geometric AutoAugment ops fill uncovered pixels with (the reference's fillcolor).
AUTOAUGMENT_FILL = 128
# Ops whose magnitude gets a random sign (probability 1/2), as in torchvision's AutoAugment.
_SIGNED = {
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}


def op_magnitude(name: str, bin_idx: int | None, height: int, width: int) -> float:
    """Unsigned magnitude of AutoAugment op ``name`` at bin ``bin_idx`` (0..9; torchvision's
    ranges) for ``height`` x ``width`` images; 0 for an op without magnitude.

    >>> op_magnitude("Rotate", 9, 32, 32), op_magnitude("Equalize", None, 32, 32)
    (30.0, 0.0)
    """
    if bin_idx is None:
        return 0.0
    if name in ("ShearX", "ShearY"):
        values = torch.linspace(0.0, 0.3, _NUM_BINS)
    elif name == "TranslateX":
        values = torch.linspace(0.0, 150.0 / 331.0 * width, _NUM_BINS)
    elif name == "TranslateY":
        values = torch.linspace(0.0, 150.0 / 331.0 * height, _NUM_BINS)
    elif name == "Rotate":
        values = torch.linspace(0.0, 30.0, _NUM_BINS)
    elif name in ("Brightness", "Color", "Contrast", "Sharpness"):
        values = torch.linspace(0.0, 0.9, _NUM_BINS)
    elif name == "Posterize":
        values = (8 - (torch.arange(_NUM_BINS) / ((_NUM_BINS - 1) / 4))).round().int()
    elif name == "Solarize":  # thresholds on the 256-step scale, as PIL
        values = torch.linspace(256.0, 0.0, _NUM_BINS, dtype=torch.float64)
    else:
        return 0.0
    return float(values[bin_idx])


def _cubic(v0, v1, v2, v3, d):
    """PIL's bicubic kernel (Keys, a = -1) through samples v0..v3 at offset ``d`` from v1."""
    return v1 + d * ((v2 - v0) + d * ((2 * (v0 - v1) + v2 - v3) + d * (v1 - v0 - v2 + v3)))


def _shear_x_bicubic(img: torch.Tensor, m: float, fill: int = AUTOAUGMENT_FILL) -> torch.Tensor:
    """uint8 [n, C, H, W] sheared as PIL's ``transform(AFFINE, (1, m, 0, 0, 1, 0), BICUBIC)``.

    Output pixel (x, y) samples the input at ``x + m * y`` (pixel centres, origin top left) on
    its own row, so the bicubic filter is 1-D. As in PIL, a sample outside the image is
    ``fill``, the four taps are clamped at the border and the result is clipped and truncated.
    """
    n, c, h, w = img.shape
    dev = img.device
    yo = torch.arange(h, device=dev, dtype=torch.float64) + 0.5
    xo = torch.arange(w, device=dev, dtype=torch.float64) + 0.5
    xin = xo.view(1, w) + m * yo.view(h, 1)
    inside = (xin >= 0) & (xin < w)
    xs = xin - 0.5
    x0 = torch.floor(xs)
    d = (xs - x0).view(1, 1, h, w)
    x0 = x0.long()
    src = img.to(torch.float64)
    taps = [
        src.gather(3, (x0 + k).clamp(0, w - 1).view(1, 1, h, w).expand(n, c, h, w))
        for k in (-1, 0, 1, 2)
    ]
    v0, v1, v2, v3 = taps
    out = _cubic(v0, v1, v2, v3, d).clamp_(0, 255).to(torch.uint8)  # truncates, as PIL does
    return torch.where(inside.view(1, 1, h, w), out, torch.full_like(out, fill))


def apply_op(img: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """One AutoAugment op (``"ShearX"``, ``"Rotate"``, ``"Solarize"``, ...) with a fixed signed
    magnitude on a uint8 batch [n, C, H, W], as the reference PIL pipeline computes it.

    >>> x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    >>> torch.equal(apply_op(x, "Rotate", 0.0), x), apply_op(x, "Invert", 0.0).dtype
    (True, torch.uint8)
    """
    if name == "ShearX":
        return _shear_x_bicubic(img, magnitude)
    if name == "ShearY":
        return _shear_x_bicubic(img.transpose(2, 3), magnitude).transpose(2, 3).contiguous()
    if name in ("TranslateX", "TranslateY"):
        shift = math.floor(abs(magnitude) + 0.5) * (1 if magnitude >= 0 else -1)
        translate = [shift, 0] if name == "TranslateX" else [0, shift]
        return TF.affine(
            img,
            angle=0.0,
            translate=translate,
            scale=1.0,
            shear=[0.0, 0.0],
            interpolation=_NEAREST,
            fill=AUTOAUGMENT_FILL,
        )
    if name == "Rotate":
        return TF.rotate(img, angle=magnitude, interpolation=_NEAREST, fill=AUTOAUGMENT_FILL)
    if name == "Brightness":
        return TF.adjust_brightness(img, 1.0 + magnitude)
    if name == "Color":
        return TF.adjust_saturation(img, 1.0 + magnitude)
    if name == "Contrast":
        return TF.adjust_contrast(img, 1.0 + magnitude)
    if name == "Sharpness":
        return TF.adjust_sharpness(img, 1.0 + magnitude)
    if name == "Posterize":
        return TF.posterize(img, int(magnitude))
    if name == "Solarize":
        return torch.where(img >= magnitude, 255 - img, img)
    if name == "AutoContrast":
        return TF.autocontrast(img)
    if name == "Equalize":
        return TF.equalize(img)
    if name == "Invert":
        return TF.invert(img)
    raise ValueError(f"unknown AutoAugment op {name!r}")


# ----------------------------------------------------------------------------- checks


def _check_generator(generator: Any) -> torch.device:
    """Return the device random numbers are drawn on."""
    if generator is None:
        return torch.device("cpu")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator.device


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` without making the host wait: a CPU tensor bound for a GPU is
    pinned and copied ``non_blocking`` (a copy from pageable memory waits for the GPU's queue,
    a host sync per call). Always one ``Tensor.to`` call, a no-op when ``t`` is already there,
    so the number of copies per training step is the same on every device (and testable).

    >>> to_device(torch.arange(3), "cpu").tolist()
    [0, 1, 2]
    >>> to_device([0, 1], "cpu")
    Traceback (most recent call last):
    ...
    TypeError: to_device expects a torch.Tensor, got list
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"to_device expects a torch.Tensor, got {type(t).__name__}")
    device = torch.device(device)
    if t.device.type == "cpu" and device.type == "cuda" and not t.is_pinned():
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- ops


def random_crop(
    x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch back to the input size.

    Why: the standard CIFAR "pad 4 + random 32x32 crop", but vectorised: each
    sample gets its own offset in ``[0, 2*padding]`` and one gather produces the
    whole batch. Works for any H, W and dtype; output has the input's shape.

    >>> import torch
    >>> x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    >>> y = random_crop(x, padding=1, generator=torch.Generator().manual_seed(0))
    >>> y.shape, y.dtype
    (torch.Size([1, 1, 4, 4]), torch.uint8)
    """
    check_image_batch(x, "random_crop's x")
    check_int(padding, "padding", minimum=0)
    draw_device = _check_generator(generator)
    n, _c, _h, _w = x.shape
    if padding == 0 or n == 0:
        return x.clone()
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=draw_device)
    return _crop_at(x, to_device(offsets, x.device), padding)


def _crop_at(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Crop sample i of the zero-padded batch at ``offsets[:, i]`` (row, column in [0, 2p])."""
    n, _c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[0].unsqueeze(1) + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[1].unsqueeze(1) + torch.arange(w, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # Advanced indices separated by a slice go to the front: result is [N, H, W, C].
    out = padded[batch, :, rows.unsqueeze(2), cols.unsqueeze(1)]
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(
    x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip each sample left-right independently with probability ``p``.

    Why: per-sample (not per-batch) flips keep the augmentation distribution of
    the usual per-image pipeline while staying one vectorised op.

    >>> import torch
    >>> x = torch.tensor([[[[1, 2, 3]]]], dtype=torch.uint8)
    >>> random_hflip(x, p=1.0).tolist()
    [[[[3, 2, 1]]]]
    """
    check_image_batch(x, "random_hflip's x")
    p = check_probability(p, "p")
    draw_device = _check_generator(generator)
    n = x.shape[0]
    flip = torch.rand(n, generator=generator, device=draw_device) < p
    flip = to_device(flip, x.device).view(n, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def cutout(
    x: torch.Tensor, size: int = 16, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero one ``size x size`` square per sample (Cutout, DeVries & Taylor 2017).

    Why: occluding a random region makes the network use the whole object.
    The hole's centre is uniform over the image and the hole is clipped at the
    borders, so holes near an edge are smaller. Rows
    ``[cy - size//2, cy - size//2 + size)`` (same for columns) are zeroed, i.e.
    exactly ``size x size`` pixels when the hole lies inside. Any dtype.

    >>> import torch
    >>> y = cutout(torch.ones(2, 3, 32, 32), size=16, generator=torch.Generator().manual_seed(0))
    >>> y.shape, bool((y == 0).any())
    (torch.Size([2, 3, 32, 32]), True)
    """
    check_image_batch(x, "cutout's x")
    check_int(size, "size", minimum=0)
    draw_device = _check_generator(generator)
    n, _c, h, w = x.shape
    if size == 0 or n == 0:
        return x.clone()
    cy = torch.randint(0, h, (n,), generator=generator, device=draw_device)
    cx = torch.randint(0, w, (n,), generator=generator, device=draw_device)
    cy, cx = to_device(torch.stack([cy, cx]), x.device).unbind(0)
    y0 = (cy - size // 2).unsqueeze(1)
    x0 = (cx - size // 2).unsqueeze(1)
    rows = torch.arange(h, device=x.device).unsqueeze(0)
    cols = torch.arange(w, device=x.device).unsqueeze(0)
    in_rows = (rows >= y0) & (rows < y0 + size)  # [N, H]
    in_cols = (cols >= x0) & (cols < x0 + size)  # [N, W]
    hole = (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).unsqueeze(1)  # [N, 1, H, W]
    return x.masked_fill(hole, 0)


def auto_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """AutoAugment with the CIFAR-10 policy, a different sub-policy per sample.

    Why: torchvision's ``AutoAugment`` draws one sub-policy per call, so a
    batch would share it. Here each sample draws its own of the 25
    sub-policies; then each sub-policy's two ops run on the group of samples
    that drew it, each op applied per sample with its own probability (and for
    signed ops a random sign per sample), using batched
    ``torchvision.transforms.v2.functional`` calls on the group (about 25-100
    small calls per batch, not N). Magnitudes, signs and fill (0) follow
    torchvision's ``AutoAugment(AutoAugmentPolicy.CIFAR10)``.

    Input and output: uint8 [N, 1 or 3, H, W], on any device.

    >>> import torch
    >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> y = auto_augment(x, generator=torch.Generator().manual_seed(0))
    >>> y.shape, y.dtype
    (torch.Size([8, 3, 32, 32]), torch.uint8)
    """
    check_image_batch(x, "auto_augment's x", channels=(1, 3))
    if x.dtype != torch.uint8:
        raise TypeError(f"auto_augment expects a uint8 image batch, got dtype {x.dtype}")
    draw_device = _check_generator(generator)
    n, _, h, w = x.shape
    out = x.clone()
    if n == 0:
        return out
    policy = torch.randint(
        0, len(_CIFAR10_POLICY), (n,), generator=generator, device=draw_device
    ).cpu()
    apply_u = torch.rand(n, 2, generator=generator, device=draw_device).cpu()
    negative = (torch.rand(n, 2, generator=generator, device=draw_device) <= 0.5).cpu()
    # Plan every (sample group, op, magnitude) on the host first, then copy all the groups'
    # indices to the images' device in one go: one copy per call, not one per group.
    plan, groups_idx = [], []
    for p_idx, sub_policy in enumerate(_CIFAR10_POLICY):
        members = policy == p_idx
        if not bool(members.any()):
            continue
        for j, (name, prob, bin_idx) in enumerate(sub_policy):
            applied = members & (apply_u[:, j] <= prob)
            if not bool(applied.any()):
                continue
            magnitude = op_magnitude(name, bin_idx, h, w)
            groups: tuple[tuple[torch.Tensor, float], ...]
            if name in _SIGNED:
                groups = (
                    (applied & ~negative[:, j], magnitude),
                    (applied & negative[:, j], -magnitude),
                )
            else:
                groups = ((applied, magnitude),)
            for mask, mag in groups:
                idx = mask.nonzero().flatten()
                if idx.numel() == 0:
                    continue
                plan.append((name, mag))
                groups_idx.append(idx)
    if not plan:
        return out
    sizes = [len(i) for i in groups_idx]
    on_device = to_device(torch.cat(groups_idx), x.device).split(sizes)
    for (name, mag), idx in zip(plan, on_device):
        out[idx] = apply_op(out[idx], name, mag)
    return out


# ----------------------------------------------------------------------------- pipeline


class CropFlip:
    """The slot augmentation of AFR's stage-2 set: pad-and-crop plus a horizontal flip, with
    the random choices drawn once and stored, so a slot (an original + one draw) always shows
    the same image.

    ``draw(n, generator)`` returns int64 params [n, 3] (row and column offset in [0, 2p], flip);
    ``apply(images, params)`` applies them to a batch (any dtype, any H, W).

    >>> t = CropFlip(padding=1)
    >>> params = t.draw(2, torch.Generator().manual_seed(0))
    >>> x = torch.arange(8, dtype=torch.uint8).view(2, 1, 2, 2)
    >>> torch.equal(t.apply(x, params), t.apply(x, params)), tuple(params.shape)
    (True, (2, 3))
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding = check_int(padding, "padding", minimum=0)
        self.flip = bool(flip)

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        flips = (torch.rand(n, generator=generator) < 0.5).long().unsqueeze(1) * int(self.flip)
        return torch.cat([offsets, flips], 1)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        check_image_batch(images, "CropFlip's images")
        params = torch.as_tensor(params, dtype=torch.long)
        if params.shape != (len(images), 3):
            raise ValueError(
                f"CropFlip params must be [{len(images)}, 3], got {tuple(params.shape)}"
            )
        if params.device != images.device:
            params = to_device(params, images.device)
        out = _crop_at(images, params[:, :2].T, self.padding) if self.padding else images.clone()
        flip = params[:, 2].bool().view(-1, 1, 1, 1)
        return torch.where(flip, out.flip(-1), out)

    def __repr__(self) -> str:
        return f"CropFlip(padding={self.padding}, flip={self.flip})"


class SeededTransform:
    """Any per-image transform (e.g. a torchvision v2 pipeline on tensors) as a slot
    augmentation: a slot's draw is a seed, and the transform runs under that seed, so it
    shows the same image every time.

    >>> t = SeededTransform(lambda img: img + torch.rand(()))
    >>> params = t.draw(2, torch.Generator().manual_seed(0))
    >>> x = torch.zeros(2, 1, 2, 2)
    >>> torch.equal(t.apply(x, params), t.apply(x, params))
    True
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, 2**62, (n, 1), generator=generator)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        check_image_batch(images, "SeededTransform's images")
        out = []
        for img, seed in zip(images, torch.as_tensor(params).reshape(-1).tolist()):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                out.append(self.transform(img))
        shapes = {tuple(t.shape) for t in out}
        if shapes != {tuple(images.shape[1:])}:
            raise ValueError(
                f"the transform changed the image size to {sorted(shapes)}: a slot "
                f"augmentation must keep {list(images.shape[1:])}"
            )
        return torch.stack(out).to(images.dtype)

    def __repr__(self) -> str:
        return f"SeededTransform({self.transform!r})"


class BatchAugment:
    """Seeded, batched training augmentation: uint8 NCHW in, float [0, 1] NCHW out.

    Why: one object holds the whole per-stage pipeline and its own RNG, so a
    training run repeats exactly for a seed, and ``state_dict()`` /
    ``load_state_dict()`` let a checkpoint resume the augmentation stream.
    Order, as the reference CIFAR pipeline: crop -> flip -> AutoAugment (on
    uint8) -> to float -> Cutout.

    Args:
        crop: random crop with ``padding`` zero pixels each side.
        flip: random horizontal flip (p = 0.5).
        auto_augment: AutoAugment CIFAR-10 policy, per sample.
        cutout: one ``cutout_size`` square hole per sample.
        padding, cutout_size: see above.
        seed: seed of the internal CPU ``torch.Generator``; the default 0 makes
            every run repeat, ``None`` seeds it non-deterministically (the state
            can still be saved and restored).

    Input: uint8 [N, 1 or 3, H, W] (values 0..255), or float in [0, 1]. Output
    is on the input's device: float32 for uint8 input, the input's float dtype
    otherwise. With float input and ``auto_augment=True`` the images are
    quantised to uint8 (``round(x * 255)``) for AutoAugment and converted back,
    so they lose sub-1/255 precision; without AutoAugment float input is not
    quantised. Random numbers are drawn on the CPU, so CUDA input gives the
    same result as CPU input for the same seed.

    >>> import torch
    >>> aug = BatchAugment(auto_augment=True, cutout=True, seed=0)
    >>> x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    >>> y = aug(x)
    >>> y.shape, y.dtype, bool(0.0 <= y.min() and y.max() <= 1.0)
    (torch.Size([4, 3, 32, 32]), torch.float32, True)
    >>> state = aug.state_dict(); a = aug(x); aug.load_state_dict(state)
    >>> torch.equal(a, aug(x))
    True
    >>> BatchAugment().load_state_dict(state)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: BatchAugment state has auto_augment=True but this BatchAugment has
    auto_augment=False
    """

    def __init__(
        self,
        crop: bool = True,
        flip: bool = True,
        auto_augment: bool = False,
        cutout: bool = False,
        padding: int = 4,
        cutout_size: int = 16,
        seed: int | None = 0,
    ) -> None:
        self.crop = bool(crop)
        self.flip = bool(flip)
        self.auto_augment = bool(auto_augment)
        self.cutout = bool(cutout)
        self.padding = check_int(padding, "padding", minimum=0)
        self.cutout_size = check_int(cutout_size, "cutout_size", minimum=0)
        seed = check_seed(seed)
        self.generator = torch.Generator(device="cpu")
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.seed = seed

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Augment a batch; returns float images in [0, 1] on ``x``'s device."""
        check_image_batch(x, "BatchAugment's images", channels=(1, 3))
        check_image_values(x, "images")
        out_dtype = torch.float32 if x.dtype == torch.uint8 else x.dtype

        g = self.generator
        if self.auto_augment and x.dtype != torch.uint8:
            x = x.mul(255.0).round_().to(torch.uint8)
        if self.crop:
            x = random_crop(x, padding=self.padding, generator=g)
        if self.flip:
            x = random_hflip(x, p=0.5, generator=g)
        if self.auto_augment:
            x = auto_augment(x, generator=g)
        if x.dtype == torch.uint8:
            x = x.to(out_dtype).div_(255.0)
        elif not (self.crop or self.flip):
            x = x.clone()  # never hand back the caller's tensor itself
        if self.cutout:
            x = cutout(x, size=self.cutout_size, generator=g)
        return x

    def _config(self) -> dict[str, Any]:
        """The settings that decide how much randomness each call consumes."""
        return {
            "crop": self.crop,
            "flip": self.flip,
            "auto_augment": self.auto_augment,
            "cutout": self.cutout,
            "padding": self.padding,
            "cutout_size": self.cutout_size,
        }

    def state_dict(self) -> dict[str, Any]:
        """The RNG state and seed (plus the pipeline settings, checked on load) so a
        checkpoint can resume the same augmentation stream."""
        return {
            "type": type(self).__name__,
            **self._config(),
            "seed": self.seed,
            "generator_state": self.generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the RNG state saved by :meth:`state_dict`.

        Why so strict: a state saved by a pipeline with other settings would resume a
        different stream without a word, so it raises ``ValueError`` (``TypeError`` for a
        non-dict) and leaves this object unchanged. The seed may differ: it is restored.
        """
        check_state(self, state_dict, self._config(), ("seed", "generator_state"))
        name = type(self).__name__
        seed = check_seed(state_dict["seed"], f"{name} state: seed")
        gen_state = check_generator_state(
            state_dict["generator_state"], f"{name} state: 'generator_state'"
        )
        self.generator.set_state(gen_state)
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop={self.crop}, flip={self.flip}, "
            f"auto_augment={self.auto_augment}, cutout={self.cutout}, padding={self.padding}, "
            f"cutout_size={self.cutout_size}, seed={self.seed})"
        )
