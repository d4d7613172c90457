"""Coordinate-wise median (comed, Yin et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, check_regime
from ._network import median_rows
from .base import Rule, check_batch, check_gradients


def sorted_columns(G: torch.Tensor) -> torch.Tensor:
    """Sort each coordinate over the rows (dim -2). NaN sorts after +inf.

    The slow, obviously-correct path (``torch.sort``); :func:`comed` uses a
    pruned sorting network instead (``_network.py``) and agrees with it.

    Putting NaN last (torch's order) makes a NaN entry act as ``+inf``: with at
    most ``f`` non-finite rows and ``n > 2f`` the middle order statistics stay finite.
    """
    return torch.sort(G, dim=-2).values


def median_of_sorted(S: torch.Tensor) -> torch.Tensor:
    """Median of already sorted columns; for even n the mean of the two middle values."""
    n = S.shape[-2]
    if n % 2 == 1:
        return S[..., n // 2, :].clone()
    return 0.5 * (S[..., n // 2 - 1, :] + S[..., n // 2, :])


def comed(G: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median: ``out_j = median_i G_ij``.

    Pinned definition (DESIGN.md): for even ``n`` the mean of the two middle
    values (``torch.median`` returns the lower one instead; ByzFL follows torch).
    Non-finite entries sort as ``+inf`` / ``-inf`` (NaN above ``+inf``), so with
    at most ``f < n/2`` Byzantine rows the output is finite.

    Computed by a pruned sorting network of elementwise min / max over
    cache-sized column chunks (``_network.py``), several times faster than
    ``torch.median(G, dim=0)``; same values as sorting. Works on ``(..., n, d)``.

    >>> comed(torch.tensor([[1.0], [5.0], [2.0], [100.0]]))
    tensor([3.5000])
    """
    G = check_gradients(G, "comed")
    return median_rows(G)


@dataclass(frozen=True)
class Comed(Rule):
    """Config of :func:`comed`; its regime is ``n > 2f`` (breakdown point 1/2)."""

    family: ClassVar[str] = "comed"
    f: int = 0

    def __post_init__(self):
        check_int("comed", "f", self.f, low=0)

    def check(self, n: int) -> None:
        check_regime("comed", n > 2 * self.f, "n > 2f", n, self.f)

    def __call__(self, G):
        G = check_gradients(G, "comed")
        self.check(G.shape[0])
        return comed(G)

    def batched(self, Gb):
        self.check(check_batch(Gb, self.family).shape[-2])
        return median_rows(Gb)
