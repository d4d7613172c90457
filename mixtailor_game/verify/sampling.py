"""Honest gradients for the checkers: noise laws, heterogeneous means, directions.

Honest worker i sends ``V_i = g_i + xi_i`` with ``E[xi_i] = 0`` and
``E||xi_i||_2^2 = sigma^2`` exactly (Theorem 1's assumption holds with
equality, the hardest case for the bound):

* ``gaussian``: ``xi ~ N(0, sigma^2 / d I)``;
* ``student-t``: coordinates ``s * t_3`` (Student t, 3 degrees of freedom,
  variance 3) with ``s^2 = sigma^2 / (3 d)``: same second moment, heavy tails
  (infinite third absolute moment per coordinate, finite variance).

Heterogeneous means (Assumption 1): ``g_i = grad F + h_i`` with
``sum_i h_i = 0`` (so the honest means average to ``grad F``) and
``1/(n-f) sum_i ||h_i||^2 = Delta^2`` exactly, in one of three shapes:
``spread`` (random directions), ``outlier`` (one worker carries all of it,
along ``e_1``) and ``split`` (two groups at ``+a e_1`` / ``-b e_1``).
"""

from __future__ import annotations

import math

import torch

from .._checks import check_int, check_real, fail

LAWS = ("gaussian", "student-t")
# E||xi||^r is finite exactly for r < MOMENT_LIMIT[law] (t_3: r < 3)
MOMENT_LIMIT = {"gaussian": math.inf, "student-t": 3.0}
HETEROGENEITY = ("spread", "outlier", "split")


def sample_noise(law: str, shape: tuple, sigma2: float, gen: torch.Generator) -> torch.Tensor:
    """Noise rows of shape ``(..., d)`` with mean 0 and ``E||row||^2 = sigma2`` (float64)."""
    sigma2 = check_real("sample_noise", "sigma2", sigma2, low=0.0)
    d = shape[-1]
    if law == "gaussian":
        return torch.randn(shape, generator=gen, dtype=torch.float64) * math.sqrt(sigma2 / d)
    if law == "student-t":
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        chi2 = torch.randn(shape + (3,), generator=gen, dtype=torch.float64).square().sum(-1)
        t = z / torch.sqrt(chi2 / 3.0)
        return t * math.sqrt(sigma2 / (3.0 * d))
    raise fail("sample_noise", "law", f"one of {LAWS}", law)


def heterogeneous_offsets(kind: str, m: int, d: int, delta2: float, gen: torch.Generator) -> torch.Tensor:
    """Offsets ``h`` (m, d) with ``sum_i h_i = 0`` and ``mean_i ||h_i||^2 = delta2``."""
    m = check_int("heterogeneous_offsets", "m", m, low=2)
    delta2 = check_real("heterogeneous_offsets", "delta2", delta2, low=0.0)
    e1 = torch.zeros(d, dtype=torch.float64)
    e1[0] = 1.0
    if kind == "spread":
        h = torch.randn(m, d, generator=gen, dtype=torch.float64)
        h = h - h.mean(0)
        size = float(h.square().sum(-1).mean())
        return h * math.sqrt(delta2 / size) if size > 0 else h
    if kind == "outlier":
        a = math.sqrt((m - 1) * delta2)
        coef = torch.full((m,), -a / (m - 1), dtype=torch.float64)
        coef[0] = a
        return coef[:, None] * e1
    if kind == "split":
        k = m // 2  # k workers at +a, m - k at -b, k a = (m - k) b
        a = math.sqrt(delta2 * (m - k) / k)
        b = k * a / (m - k)
        coef = torch.full((m,), -b, dtype=torch.float64)
        coef[:k] = a
        return coef[:, None] * e1
    raise fail("heterogeneous_offsets", "kind", f"one of {HETEROGENEITY}", kind)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v)


def gradient_vector(d: int, norm: float, gen: torch.Generator) -> torch.Tensor:
    """``grad F``: a random direction (drawn from ``gen``) scaled to ``norm``."""
    return unit(torch.randn(d, generator=gen, dtype=torch.float64)) * norm


DIRECTIONS = ("e1", "-e1", "ones", "-grad", "random")


def search_directions(g: torch.Tensor, gen: torch.Generator, names=DIRECTIONS) -> dict:
    """Unit directions the adversary searches, a subset of :data:`DIRECTIONS`:
    ``e1`` (the axis of the heterogeneity of Theorem 2), ``-e1``, ``ones / sqrt(d)``,
    ``-grad F / ||grad F||`` and a random one. Duplicates (in d = 1 every
    direction is +-e1) are removed.
    """
    for name in names:
        if name not in DIRECTIONS:
            raise fail("search_directions", "names", f"a subset of {DIRECTIONS}", tuple(names))
    d = g.shape[0]
    e1 = torch.zeros(d, dtype=torch.float64)
    e1[0] = 1.0
    cands = {"e1": e1, "-e1": -e1, "ones": unit(torch.ones(d, dtype=torch.float64))}
    if float(torch.linalg.vector_norm(g)) > 0:
        cands["-grad"] = -unit(g)
    cands["random"] = unit(torch.randn(d, generator=gen, dtype=torch.float64))
    out: dict = {}
    for name, u in ((k, cands[k]) for k in names if k in cands):
        if all(float(torch.linalg.vector_norm(u - w)) > 1e-9 for w in out.values()):
            out[name] = u
    return out
