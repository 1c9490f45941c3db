"""Gamma and Beta draws from an explicit ``torch.Generator``.

Why: every random stream in afr-aug is a ``torch.Generator`` (one kind of state to save and
restore), but ``torch.distributions.Beta`` / ``Gamma`` and ``torch._standard_gamma`` take no
generator. The mixers need one ``Beta(a, a)`` draw per batch, so a scalar sampler is enough:
Marsaglia and Tsang's (2000) squeeze-and-reject method for ``Gamma(shape >= 1)``, boosted by
``Gamma(a) = Gamma(a + 1) * U ** (1 / a)`` below 1, and ``Beta(a, b) = X / (X + Y)``. Worked
in log space so that tiny shapes (``U ** (1 / a)`` underflowing to 0) still give a Beta draw.
"""

from __future__ import annotations

import math

import torch

from .checks import check_number

__all__ = ["beta_draw", "log_gamma_draw"]


def _uniform(generator: torch.Generator) -> float:
    """One draw in (0, 1]: ``log`` of it is always finite."""
    return 1.0 - float(torch.rand((), dtype=torch.float64, generator=generator))


def log_gamma_draw(shape: float, generator: torch.Generator) -> float:
    """``log X`` for one ``X ~ Gamma(shape, 1)`` (Marsaglia-Tsang), ``shape > 0``.

    >>> g = torch.Generator().manual_seed(0)
    >>> draws = [math.exp(log_gamma_draw(2.0, g)) for _ in range(4000)]
    >>> abs(sum(draws) / len(draws) - 2.0) < 0.1                  # E[X] = shape
    True
    """
    shape = check_number(shape, "shape", minimum=0, strict=True)
    if shape < 1.0:
        return log_gamma_draw(shape + 1.0, generator) + math.log(_uniform(generator)) / shape
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = float(torch.randn((), dtype=torch.float64, generator=generator))
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = _uniform(generator)
        if u < 1.0 - 0.0331 * x**4 or math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return math.log(d) + math.log(v)


def beta_draw(a: float, b: float, generator: torch.Generator) -> float:
    """One draw of ``Beta(a, b)``: ``X / (X + Y)`` with ``X ~ Gamma(a)``, ``Y ~ Gamma(b)``;
    ``Beta(1, 1)`` is a single uniform draw.

    >>> g = torch.Generator().manual_seed(0)
    >>> 0.0 <= beta_draw(0.5, 0.5, g) <= 1.0
    True
    """
    if a == 1.0 and b == 1.0:
        return float(torch.rand((), dtype=torch.float64, generator=generator))
    log_x, log_y = log_gamma_draw(a, generator), log_gamma_draw(b, generator)
    diff = log_y - log_x  # X / (X + Y) = 1 / (1 + exp(log Y - log X))
    return 0.0 if diff > 700.0 else 1.0 / (1.0 + math.exp(diff))
