"""Mixing a long-tailed batch with a balanced one (CMO; AFR §3.2 and Table 2), or with itself
(mixup, Remix).

CMO pastes a patch of a class-balanced batch onto an ordinary (long-tailed) batch, so tail
classes appear on the rich backgrounds of head-class images. AFR's stage 2 does the same with
its re-balanced set, on 25 % of the batches. Remix (Chou et al., 2020) mixes a batch with a
shuffled copy of itself and gives the mixed label to the rarer class. The mixers are callables
on a batch, like ``torchvision.transforms.v2.CutMix``; a mixer built with ``in_batch=True``
pairs each image with another of the same batch, otherwise it takes the second batch
explicitly.
"""

from __future__ import annotations

import math
from typing import Any, Union

import torch

from ._deprecation import renamed_attribute, renamed_keywords
from .checks import (
    check_class_counts,
    check_generator_state,
    check_image_batch,
    check_int,
    check_number,
    check_probability,
    check_seed,
    check_state,
)
from .random_variates import beta_draw

__all__ = [
    "CutMixBalancer",
    "MixUpBalancer",
    "Remix",
    "cutmix_area_mean",
    "effective_class_counts",
    "mix_share",
    "mixed_loss",
]

Mixed = tuple[torch.Tensor, torch.Tensor, torch.Tensor, Union[float, torch.Tensor]]


def _value_range(x: torch.Tensor):
    if x.dtype == torch.uint8:
        return "uint8", 0.0, 255.0
    lo, hi = torch.stack(torch.aminmax(x.detach())).float().tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("the images hold NaN or inf values")
    unit = lo >= -1e-3 and hi <= 1 + 1e-3
    return ("[0, 1]" if unit else f"[{lo:.3g}, {hi:.3g}]"), lo, hi


def _check_ranges(x: torch.Tensor, x_bal: torch.Tensor) -> None:
    """Both sides in one value convention, or a conversion that is unambiguous (uint8 and
    float in [0, 1]); one clear error otherwise."""
    if not (x.dtype == torch.uint8 or x.is_floating_point()) or not (
        x_bal.dtype == torch.uint8 or x_bal.is_floating_point()
    ):
        raise TypeError(f"images must be uint8 or float, got x {x.dtype} and x_bal {x_bal.dtype}")
    (rx, *_), (rb, *_) = _value_range(x), _value_range(x_bal)
    floats = {r for r, t in ((rx, x), (rb, x_bal)) if t.is_floating_point()}
    if "uint8" in (rx, rb) and floats and floats != {"[0, 1]"}:
        raise ValueError(
            f"x is {x.dtype} with values {rx} and x_bal is {x_bal.dtype} with values "
            f"{rb}: a uint8 batch mixes only with floats in [0, 1]; give both "
            f"sides the same dtype and range"
        )
    if "uint8" not in (rx, rb) and (rx == "[0, 1]") != (rb == "[0, 1]"):
        raise ValueError(
            f"x has values {rx} and x_bal has values {rb}: the two batches are not "
            f"in the same range (one normalised or 0-255?); give both sides the "
            f"same preprocessing"
        )


def _blend(x: torch.Tensor, x_bal: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * x + (1 - lam) * x_bal`` in ``x``'s dtype (uint8 rounded)."""
    if x.dtype == torch.uint8:
        out = lam * x.float() + (1.0 - lam) * x_bal.float()
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return lam * x + (1.0 - lam) * x_bal


class _Balancer:
    """What both mixers share: the coin per batch, the Beta draws and their one random stream
    (a ``torch.Generator``, as everywhere in afr-aug), saved and restored by the state dict."""

    alpha = renamed_attribute("alpha", "beta")

    def __init__(self, p: float, beta: float, seed: int | None, in_batch: bool = False):
        self.p = check_probability(p, "p")
        self.beta = check_number(beta, "beta", minimum=0, strict=True)
        if not isinstance(in_batch, bool):
            raise TypeError(f"in_batch must be True or False, got {type(in_batch).__name__}")
        self.in_batch = in_batch
        seed = check_seed(seed)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._pending = False  # decide() said "mix": the next call mixes, no new coin
        self._checked: set = set()  # dtype pairs whose value ranges were checked

    def decide(self) -> bool:
        """Toss the next batch's coin now: ``True`` means the next call mixes, ``False`` means
        this batch stays as it is (``lam = 1``): then skip the call.

        Why: with ``p = 0.25`` three balanced batches in four are discarded; a loop that asks
        first prepares (augments, copies to the GPU) only the ones that are used. The random
        stream is the same as calling the mixer on every batch.

        >>> mixer = CutMixBalancer(p=0.5, seed=0)
        >>> x, y = torch.zeros(2, 3, 8, 8), torch.tensor([0, 1])
        >>> for _ in range(3):
        ...     if mixer.decide():
        ...         x_b, y_b = torch.ones(2, 3, 8, 8), torch.tensor([2, 3])
        ...         x_mixed, y_a, y_b, lam = mixer(x, y, x_b, y_b)
        """
        if not self._pending:
            self._pending = self._toss()
        return self._pending

    def _toss(self) -> bool:
        return float(torch.rand((), dtype=torch.float64, generator=self.generator)) < self.p

    def _coin(self) -> bool:
        if self._pending:
            self._pending = False
            return True
        return self._toss()

    def _lam(self) -> float:
        """One ``Beta(beta, beta)`` draw."""
        return beta_draw(self.beta, self.beta, self.generator)

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_bal: torch.Tensor | None = None,
        y_bal: torch.Tensor | None = None,
    ) -> Mixed:
        x_bal, y_bal = self._partner(x, y, x_bal, y_bal)
        self._check(x, y, x_bal, y_bal)
        if not self._coin():
            return x, y, y, 1.0
        return self._mix(x, y, self._alike(x, x_bal), y_bal)

    def _alike(self, x: torch.Tensor, x_bal: torch.Tensor) -> torch.Tensor:
        """``x_bal`` in ``x``'s dtype and value range, converted explicitly, never by a silent
        cast: uint8 <-> float in [0, 1] (x 255), or another float precision. The value ranges of
        the two sides are checked the first time a pair of dtypes is mixed (one host sync per
        mixer and pair), which catches a [0, 1] batch mixed with a 0-255 or normalised one;
        afterwards only the conversion runs."""
        key = (x.dtype, x_bal.dtype)
        if key not in self._checked:
            _check_ranges(x, x_bal)
            self._checked.add(key)
        if x_bal.dtype == x.dtype:
            return x_bal
        if x.dtype == torch.uint8:
            return x_bal.mul(255).round_().clamp_(0, 255).to(torch.uint8)
        if x_bal.dtype == torch.uint8:
            return x_bal.to(x.dtype).div_(255)
        return x_bal.to(x.dtype)

    def _mix(self, x, y, x_bal, y_bal) -> Mixed:
        """Mix a batch the coin said to mix."""
        raise NotImplementedError

    def _partner(self, x, y, x_bal, y_bal):
        """The second batch: ``(x_bal, y_bal)`` as given, or with ``in_batch`` a shuffled copy
        of ``(x, y)`` (one permutation from the mixer's stream)."""
        if x_bal is None and y_bal is None:
            if not self.in_batch:
                raise TypeError(
                    f"{type(self).__name__} mixes with a second batch: pass x_bal "
                    f"and y_bal, or build it with in_batch=True"
                )
            check_image_batch(x, "x")
            perm = torch.randperm(len(x), generator=self.generator).to(x.device)
            return x[perm], y[perm]
        if x_bal is None or y_bal is None:
            raise TypeError("pass both x_bal and y_bal, or neither (in_batch=True)")
        return x_bal, y_bal

    @staticmethod
    def _check(x, y, x_bal, y_bal):
        check_image_batch(x, "x")
        check_image_batch(x_bal, "x_bal")
        if x.shape != x_bal.shape:
            raise ValueError(
                f"x and x_bal must have the same shape, got {tuple(x.shape)} and "
                f"{tuple(x_bal.shape)}"
            )
        for name, t in (("y", y), ("y_bal", y_bal)):
            if not isinstance(t, torch.Tensor) or t.ndim != 1 or len(t) != len(x):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{name} must be a 1-D label tensor with {len(x)} entries (one per "
                    f"image), got {shape}"
                )

    def state_dict(self) -> dict[str, Any]:
        """The random state (plus type, ``p`` and ``beta`` to check on load), so a resumed
        run mixes exactly like an uninterrupted one."""
        state = {
            "type": type(self).__name__,
            **self._config(),
            "generator": self.generator.get_state(),
        }
        if self._pending:  # saved between decide() and the call it announced
            state["pending"] = True
        return state

    @renamed_keywords(state="state_dict")
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s random state. Why so strict: a state from another
        mixer type, ``p`` or ``beta`` would resume a different stream without a word, so it
        raises ``ValueError`` (``TypeError`` for a non-dict), and nothing changes. A state
        saved by an older afr-aug (a numpy random state) cannot be resumed and says so."""
        name = type(self).__name__
        if isinstance(state_dict, dict) and "rng" in state_dict:
            raise ValueError(
                f"{name} state comes from an older afr-aug version (a numpy random "
                f"state under 'rng'; mixers now draw from a torch.Generator): it "
                f"cannot resume the same stream; start the mixer from a seed"
            )
        pending = isinstance(state_dict, dict) and "pending" in state_dict
        if isinstance(state_dict, dict) and "in_batch" not in state_dict:
            state_dict = {**state_dict, "in_batch": False}  # saved before in_batch existed
        check_state(
            self,
            state_dict,
            self._config(),
            ("generator", "pending") if pending else ("generator",),
        )
        self.generator.set_state(
            check_generator_state(state_dict["generator"], f"{name} state: 'generator'")
        )
        self._pending = bool(state_dict.get("pending", False))

    def _config(self) -> dict[str, Any]:
        """The settings a state is checked against on load."""
        return {"p": self.p, "beta": self.beta, "in_batch": self.in_batch}

    def __repr__(self) -> str:
        extra = ", in_batch=True" if self.in_batch else ""
        return f"{type(self).__name__}(p={self.p}, beta={self.beta}{extra})"


class CutMixBalancer(_Balancer):
    """Paste a box of the balanced batch onto the long-tailed batch, with probability ``p``.

    One coin per batch decides (as CMO does); the box covers a ``1 - lam0`` share of the image
    with ``lam0 ~ Beta(beta, beta)``, centred uniformly and clipped at the borders, so the
    returned ``lam`` is recomputed as the *exact* fraction of pixels still from ``x``. When the
    coin says no, ``x`` comes back unchanged with ``lam = 1`` and ``y_b = y_a``. The input
    batch is not modified in place.

    Args:
        p: probability to mix a batch (AFR stage 2: 0.25; CMO stage 1: 0.5).
        beta: Beta(beta, beta) parameter for the box size (1.0: uniform; formerly ``alpha``,
            still accepted).
        seed: seed of the mixer's own ``torch.Generator``; the default 0 makes every run mix
            the same way, ``None`` draws a fresh one (nondeterministic).

    Example:
        >>> mixer = CutMixBalancer(p=1.0, seed=0)
        >>> x, y = torch.zeros(4, 3, 32, 32), torch.tensor([0, 0, 0, 1])
        >>> x_bal, y_bal = torch.ones(4, 3, 32, 32), torch.tensor([2, 3, 4, 5])
        >>> mixed, y_a, y_b, lam = mixer(x, y, x_bal, y_bal)
        >>> abs((1 - mixed[0].mean().item()) - lam) < 1e-6    # lam = share of pixels from x
        True
        >>> loss = mixed_loss(torch.nn.functional.cross_entropy, torch.randn(4, 6), y_a, y_b, lam)
        >>> state = mixer.state_dict(); lam1 = mixer(x, y, x_bal, y_bal)[3]   # checkpoint, go on
        >>> resumed = CutMixBalancer(p=1.0, seed=7); resumed.load_state_dict(state)
        >>> resumed(x, y, x_bal, y_bal)[3] == lam1
        True
    """

    @renamed_keywords(alpha="beta")
    def __init__(
        self, p: float = 0.25, beta: float = 1.0, seed: int | None = 0, in_batch: bool = False
    ):
        super().__init__(p, beta, seed, in_batch)

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random box ``(y0, y1, x0, x1)`` for one mix (CutMix's rule, clipped)."""
        lam0 = self._lam()
        ratio = (1.0 - lam0) ** 0.5
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy = int(torch.randint(height, (), generator=self.generator))
        cx = int(torch.randint(width, (), generator=self.generator))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        return y0, y1, x0, x1

    def _mix(self, x, y, x_bal, y_bal) -> Mixed:
        h, w = x.shape[-2:]
        y0, y1, x0, x1 = self.box(h, w)
        out = x.clone()
        out[:, :, y0:y1, x0:x1] = x_bal[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return out, y, y_bal, lam


class MixUpBalancer(_Balancer):
    """Blend the balanced batch into the long-tailed batch, with probability ``p`` (Table 2).

    ``lam ~ Beta(beta, beta)`` weighs ``x``; the output is ``lam * x + (1 - lam) * x_bal``.
    Arguments, ``seed`` (default 0; ``None``: nondeterministic) and ``state_dict()`` /
    ``load_state_dict()`` are as in :class:`CutMixBalancer`. With ``in_batch=True`` and
    ``p=1`` it is plain mixup (Zhang et al., 2018; MiSLAS's stage 1): ``mixer(x, y)`` blends
    each image with another of the same batch.

    Example:
        >>> mixer = MixUpBalancer(p=1.0, seed=0)
        >>> x, x_bal = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
        >>> mixed, y_a, y_b, lam = mixer(x, torch.tensor([0, 1]), x_bal, torch.tensor([2, 3]))
        >>> abs(mixed.mean().item() - (1 - lam)) < 1e-6
        True
        >>> CutMixBalancer(p=1.0).load_state_dict(mixer.state_dict())
        Traceback (most recent call last):
        ...
        ValueError: state was saved by 'MixUpBalancer', cannot load it into a CutMixBalancer
        >>> mixup = MixUpBalancer(p=1.0, in_batch=True)      # mixup within the batch
        >>> mixed, y_a, y_b, lam = mixup(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
        >>> sorted(y_b.tolist())
        [0, 1, 2, 3]
    """

    @renamed_keywords(alpha="beta")
    def __init__(
        self, p: float = 0.25, beta: float = 1.0, seed: int | None = 0, in_batch: bool = False
    ):
        super().__init__(p, beta, seed, in_batch)

    def _mix(self, x, y, x_bal, y_bal) -> Mixed:
        lam = self._lam()
        return _blend(x, x_bal, lam), y, y_bal, lam


class Remix(_Balancer):
    """Remix (Chou et al., ECCV 2020 workshops): mixup or CutMix whose label favours the rarer
    class.

    Why: plain mixup gives a mixed image the labels in proportion to the pixels, so the head
    keeps dominating. Remix mixes the images as usual (``lam ~ Beta(beta, beta)``, one draw per
    batch; with ``mode="cutmix"`` the pasted box, ``lam`` its exact share) but sets each
    sample's *label* share ``lam_y`` (Eq. 10 of the paper): with ``n_i`` and ``n_j`` the counts
    of the two classes,

    - ``lam_y = 0`` if ``n_i / n_j >= kappa`` and ``lam < tau`` (the label is all the rare j);
    - ``lam_y = 1`` if ``n_i / n_j <= 1 / kappa`` and ``1 - lam < tau`` (all the rare i);
    - ``lam_y = lam`` otherwise.

    The paper's ``kappa = 3``, ``tau = 0.5`` are the defaults. By default (``in_batch=True``,
    ``p=1``) every batch is mixed with a shuffled copy of itself, as in the paper:
    ``mixer(x, y)``. Inside :class:`~afr_aug.BalancedMixLoader` with ``in_batch=False`` the
    partner is the loader's class-balanced batch instead. The call returns
    ``(x_mixed, y_a, y_b, lam_y)`` with ``lam_y`` a float tensor [N] (one share per sample):
    :func:`mixed_loss` weighs each sample's two labels with it. With DRW (the paper's best,
    Remix-DRW), switch on class weights late in training as usual
    (:func:`afr_aug.losses.drw_weights`).

    Args:
        class_counts: training samples per class (the labels' classes).
        kappa: the count ratio (>= 1) from which a pair counts as imbalanced.
        tau: the share below which the rarer image's pixels still win its label, in [0, 1].
        mode: ``"mixup"`` (the paper's) or ``"cutmix"`` (its Remix-CM).
        p, beta, seed, in_batch: as in :class:`MixUpBalancer` (here ``p=1``, ``in_batch=True``).

    >>> remix = Remix([300, 100, 10], seed=0)
    >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 0, 1, 2])
    >>> mixed, y_a, y_b, lam_y = remix(x, y)
    >>> lam_y.shape, bool(((lam_y == 0) | (lam_y == 1) | (lam_y == remix.last_lam)).all())
    (torch.Size([4]), True)
    >>> loss = mixed_loss(torch.nn.CrossEntropyLoss(), torch.randn(4, 3), y_a, y_b, lam_y)
    >>> Remix([300, 100, 10], kappa=0.5)
    Traceback (most recent call last):
    ...
    ValueError: kappa must be a finite number >= 1, got 0.5
    """

    def __init__(
        self,
        class_counts,
        kappa: float = 3.0,
        tau: float = 0.5,
        mode: str = "mixup",
        p: float = 1.0,
        beta: float = 1.0,
        seed: int | None = 0,
        in_batch: bool = True,
    ):
        super().__init__(p, beta, seed, in_batch)
        self.counts = check_class_counts(class_counts).float()
        self.kappa = check_number(kappa, "kappa", minimum=1)
        self.tau = check_probability(tau, "tau")
        if mode not in ("mixup", "cutmix"):
            raise ValueError(f"mode must be 'mixup' or 'cutmix', got {mode!r}")
        self.mode = mode
        self._box = CutMixBalancer(p=1.0, beta=beta, seed=None) if mode == "cutmix" else None
        if self._box is not None:
            self._box.generator = self.generator  # one random stream for the whole mixer
        self.last_lam: float | None = None  # the image share of the last mixed batch

    def label_share(self, y: torch.Tensor, y_partner: torch.Tensor, lam: float) -> torch.Tensor:
        """``lam_y`` per sample (Eq. 10) for images mixed with share ``lam`` of ``y``'s."""
        n = self.counts.to(y.device)
        if bool(((y < 0) | (y >= len(n)) | (y_partner < 0) | (y_partner >= len(n))).any()):
            raise ValueError(
                f"labels must lie in [0, {len(n) - 1}] for the {len(n)} class "
                f"counts Remix was given"
            )
        ratio = n[y] / n[y_partner]
        share = torch.full(y.shape, float(lam), device=y.device)
        share[(ratio >= self.kappa) & (lam < self.tau)] = 0.0
        share[(ratio <= 1.0 / self.kappa) & (1.0 - lam < self.tau)] = 1.0
        return share

    def _mix(self, x, y, x_bal, y_bal) -> Mixed:
        if self._box is None:
            lam = self._lam()
            mixed = _blend(x, x_bal, lam)
        else:
            mixed, _, _, box_lam = self._box._mix(x, y, x_bal, y_bal)
            lam = float(box_lam)  # CutMix's: the share of the image not pasted over
        self.last_lam = float(lam)
        return mixed, y, y_bal, self.label_share(y, y_bal, lam)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "kappa": self.kappa, "tau": self.tau, "mode": self.mode}

    def __repr__(self) -> str:
        return (
            f"Remix(kappa={self.kappa}, tau={self.tau}, mode={self.mode!r}, p={self.p}, "
            f"beta={self.beta}, in_batch={self.in_batch})"
        )


def _per_sample(criterion, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``criterion``'s loss per sample: a loss module with a ``reduction`` attribute is called
    through a shallow copy with ``reduction="none"``, a function with ``reduction="none"``."""
    if isinstance(criterion, torch.nn.Module):
        if not hasattr(criterion, "reduction"):
            raise TypeError(
                f"per-sample lam needs per-sample losses: {type(criterion).__name__} "
                f"has no 'reduction' attribute to set to 'none'"
            )
        import copy

        per = copy.copy(criterion)
        per.reduction = "none"  # type: ignore[assignment]  # torch types Module attributes
        # as Tensor | Module only
        out = per(logits, y)
    else:
        out = criterion(logits, y, reduction="none")
    if out.shape != y.shape:
        raise ValueError(
            f"criterion with reduction='none' gave shape {tuple(out.shape)}, "
            f"expected one loss per sample {tuple(y.shape)}"
        )
    return out


def mixed_loss(
    criterion,
    logits: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float | torch.Tensor,
) -> torch.Tensor:
    """``lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)``.

    Why a function: with ``lam == 1`` it skips the second term, so unmixed batches cost one
    loss evaluation, and every training loop weighs the two labels the same way. ``lam`` may
    be one share per sample (a tensor [N], from :class:`Remix`): the loss is then the batch
    mean of ``lam_i * l(y_a_i) + (1 - lam_i) * l(y_b_i)``, with per-sample losses taken from
    ``criterion`` with ``reduction="none"`` (a class-weighted loss then averages over the
    samples, not over their weights).

    >>> ce = torch.nn.functional.cross_entropy
    >>> logits, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    >>> bool(torch.isclose(mixed_loss(ce, logits, y, y, 1.0), ce(logits, y)))
    True
    >>> y_b = torch.tensor([3, 3, 3])
    >>> per = mixed_loss(ce, logits, y, y_b, torch.tensor([1.0, 0.0, 0.5]))
    >>> ref = (ce(logits[:1], y[:1]) + ce(logits[1:2], y_b[1:2])
    ...        + 0.5 * (ce(logits[2:], y[2:]) + ce(logits[2:], y_b[2:]))) / 3
    >>> bool(torch.isclose(per, ref))
    True
    """
    if isinstance(lam, torch.Tensor):
        if lam.shape != y_a.shape or not lam.is_floating_point():
            raise ValueError(
                f"a per-sample lam must be a float tensor of shape "
                f"{tuple(y_a.shape)}, got {lam.dtype} {tuple(lam.shape)}"
            )
        if bool(((lam < 0) | (lam > 1)).any()):
            raise ValueError("a per-sample lam must lie in [0, 1]")
        lam = lam.to(logits.dtype)
        return (
            lam * _per_sample(criterion, logits, y_a)
            + (1.0 - lam) * _per_sample(criterion, logits, y_b)
        ).mean()
    check_probability(lam, "lam")
    loss = criterion(logits, y_a)
    if lam < 1.0:
        loss = lam * loss + (1.0 - lam) * criterion(logits, y_b)
    return loss


@renamed_keywords(alpha="beta")
def cutmix_area_mean(height: int, width: int, beta: float = 1.0, grid: int = 100_000) -> float:
    """``E[1 - lam]``: the mean share of an image :class:`CutMixBalancer` pastes over.

    Why: the box is clipped at the borders, so the pasted share is well below the ``0.5`` of
    an unclipped ``Beta(1, 1)`` box (0.299 at 32 x 32). Computed exactly over the box centre
    and by midpoint quadrature over ``lam0 ~ Beta(beta, beta)``.

    >>> round(cutmix_area_mean(32, 32), 3)
    0.299
    """
    height, width = check_int(height, "height", minimum=1), check_int(width, "width", minimum=1)
    beta = check_number(beta, "beta", minimum=0, strict=True)
    lam0 = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    a = torch.tensor(beta, dtype=torch.float64)
    pdf = torch.distributions.Beta(a, a).log_prob(lam0).exp()
    pdf = pdf / pdf.sum()
    ratio = (1.0 - lam0).sqrt()

    def mean_length(size: int) -> torch.Tensor:  # over the uniform centre, per lam0
        half = (size * ratio).floor().div(2).floor().view(-1, 1)
        centre = torch.arange(size, dtype=torch.float64).view(1, -1)
        return ((centre + half).clamp(max=size) - (centre - half).clamp(min=0)).mean(1)

    return float((pdf * mean_length(height) * mean_length(width)).sum() / (height * width))


def mix_share(mixer, image_size: tuple[int, int]) -> tuple[float, float]:
    """``(p, E[1 - lam])`` of a mixer: how often it mixes and how much of an image it takes
    from the second batch on average, at ``image_size`` (H, W). The refresh report's dose of
    AFR's stage 2 is ``p * E[1 - lam] * adversarial share``; ``None`` is the paper's stage-2
    mixer, CutMix with ``p = 0.25``.

    >>> p, area = mix_share(CutMixBalancer(p=0.25), (32, 32))
    >>> p, round(area, 3)
    (0.25, 0.299)
    >>> mix_share(MixUpBalancer(p=0.5), (32, 32))
    (0.5, 0.5)
    """
    if mixer is None:
        mixer = CutMixBalancer(p=0.25)
    if isinstance(mixer, MixUpBalancer) or getattr(mixer, "mode", None) == "mixup":
        return mixer.p, 0.5
    return mixer.p, cutmix_area_mean(int(image_size[0]), int(image_size[1]), mixer.beta)


@renamed_keywords(sampler_alpha="exponent", mix_alpha="beta")
def effective_class_counts(
    class_counts,
    p: float,
    lam_mean: float | None = None,
    exponent: float = 1.0,
    image_size: tuple[int, int] = (32, 32),
    beta: float = 1.0,
) -> torch.Tensor:
    """The expected label mass per class of a stream mixed by a balancer, scaled to the counts.

    Why: CMO pastes balanced-sampler patches onto the long-tailed batch, so the labels a model
    trains on are not distributed as ``class_counts`` and Balanced Softmax, given the plain
    counts, under-corrects the tail. Per image the label mass of class c is
    ``(1 - p (1 - E[lam])) * pi_c + p (1 - E[lam]) * q_c`` with ``pi`` the long-tailed prior and
    ``q_c ∝ n_c ** (1 - exponent)`` the balanced sampler's (``LongTailSampler``'s ``exponent``;
    1: uniform). Returned as float64 counts summing to ``sum(class_counts)``: pass them to
    ``BalancedSoftmaxLoss`` / ``LogitAdjustedLoss``, or post hoc to
    :func:`afr_aug.losses.adjust_logits`. ``lam_mean`` defaults to
    :func:`cutmix_area_mean` for ``image_size`` and the mixer's ``beta`` (CutMix); pass ``0.5``
    for MixUp with ``Beta(a, a)``. (``exponent`` and ``beta`` were ``sampler_alpha`` and
    ``mix_alpha``; the old names still work.)

    >>> counts = effective_class_counts([5000, 50], p=0.5, lam_mean=0.7)
    >>> [round(float(c), 1) for c in counts]      # the tail: 5050 * (0.85 * 50/5050 + 0.15 / 2)
    [4628.8, 421.3]
    """
    counts = check_class_counts(class_counts)
    p = check_probability(p, "p")
    if lam_mean is None:
        lam_mean = 1.0 - cutmix_area_mean(image_size[0], image_size[1], beta)
    lam_mean = check_probability(lam_mean, "lam_mean")
    pi = counts / counts.sum()
    q = counts.pow(1.0 - check_number(exponent, "exponent"))
    q = q / q.sum()
    share = p * (1.0 - lam_mean)
    return ((1.0 - share) * pi + share * q) * counts.sum()
