"""Generalized Krum (paper eq. (3)) and Multi-Krum, with any l_p norm, p >= 1."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, check_regime
from ._distances import check_p, ranking_squared_distances
from .base import Rule, check_batch, check_gradients, mean_rows, name_field


def check_krum_regime(where: str, n: int, f: int) -> None:
    """Krum's guarantee (Theorem 1) needs ``n > 2f + 2``."""
    check_regime(where, n > 2 * f + 2, "n > 2f + 2", n, f)


def scores_from_distances(D: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Krum scores from an unsquared distance matrix ``D`` (``(..., n, n)``).

    ``score(i) = sum of the `neighbours` smallest ``D[i, j]^2`` over ``j != i``.
    Infinite distances (non-finite rows, overflow) give infinite scores.
    """
    return scores_from_squared(D.double().square(), neighbours)


def scores_from_squared(S: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Krum scores from squared distances ``S`` (``(..., n, n)``, float64):
    the sum of the ``neighbours`` smallest ``S[i, j]`` over ``j != i``."""
    n = S.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=S.device)
    S = S.masked_fill(eye, math.inf)
    return torch.topk(S, neighbours, dim=-1, largest=False).values.sum(dim=-1)


def _scores(G, f, p, where: str) -> torch.Tensor:
    G = check_gradients(G, where)
    f = check_int(where, "f", f, low=0)
    p = check_p(where, p)
    n = G.shape[0]
    check_krum_regime(where, n, f)
    return scores_from_squared(ranking_squared_distances(G, p), n - f - 2)


def krum_scores(G: torch.Tensor, f: int, p: float = 2.0) -> torch.Tensor:
    """Scores of paper eq. (3): ``score(i) = sum_{j in N(i)} ||G_i - G_j||_p^2``,
    ``N(i)`` the ``n - f - 2`` nearest other rows of ``G_i``."""
    return _scores(G, f, p, "krum")


def krum(G: torch.Tensor, f: int, p: float = 2.0) -> torch.Tensor:
    """Generalized Krum, paper eq. (3): the row with the lowest score.

    ``i* = argmin_i sum_{j in N(i)} ||G_i - G_j||_p^2`` where ``N(i)`` holds the
    ``n - f - 2`` rows nearest to ``G_i`` (excluding ``i``). Pinned: squared
    (not 4th-power, not unsquared) l_p distances and ``n - f - 2`` neighbours
    (Blanchard et al. 2017; ByzFL and others use ``n - f - 1`` or other powers).

    Parameters: ``f`` in ``[0, (n - 3) / 2]`` (needs ``n > 2f + 2``), ``p >= 1``
    (``inf`` allowed). Ties go to the lowest row index. Rows with NaN / Inf are
    infinitely far from all others, so with at most ``f`` of them the output is
    an honest-or-finite row.

    >>> G = torch.tensor([[0.0], [0.1], [0.25], [0.4], [50.0]])
    >>> krum(G, f=1)
    tensor([0.1000])
    """
    scores = krum_scores(G, f, p)
    return G[int(torch.argmin(scores))].clone()


def multi_krum(G: torch.Tensor, f: int, m: int | None = None, p: float = 2.0) -> torch.Tensor:
    """Multi-Krum(m): the average of the ``m`` rows with the lowest eq. (3) scores.

    ``m`` in ``[1, n - f]`` (with more rows some Byzantine rows are always
    averaged in); ``None`` (the default) is ``n - f``, the usual choice (ByzFL's
    MultiKrum averages ``n - f`` rows too). ``m = 1`` is Krum. Ties go to the
    lowest row indices.
    """
    scores = _scores(G, f, p, "multi_krum")
    n = G.shape[0]
    m = n - f if m is None else check_int("multi_krum", "m", m, low=1, high=n - f)
    order = torch.sort(scores, stable=True).indices[:m]
    return mean_rows(G[order])


@dataclass(frozen=True)
class Krum(Rule):
    """Config of :func:`krum`: ``Krum(f=2, p=2.0)(G)``, ``.name == "krum[p=2]"``."""

    family: ClassVar[str] = "krum"
    f: int = 0
    p: float = name_field(2.0)

    def __post_init__(self):
        check_int("krum", "f", self.f, low=0)
        object.__setattr__(self, "p", check_p("krum", self.p))

    def check(self, n: int) -> None:
        check_krum_regime("krum", n, self.f)

    def __call__(self, G):
        return krum(G, self.f, self.p)

    def batched(self, Gb):
        n = check_batch(Gb, self.family).shape[-2]
        self.check(n)
        scores = scores_from_squared(ranking_squared_distances(Gb, self.p), n - self.f - 2)
        idx = torch.argmin(scores, dim=-1)
        return Gb[torch.arange(Gb.shape[0], device=Gb.device), idx].clone()


@dataclass(frozen=True)
class MultiKrum(Rule):
    """Config of :func:`multi_krum`: ``MultiKrum(f=2)(G)`` averages the ``n - f`` rows of
    lowest score (``m=None``), ``MultiKrum(f=2, m=3)`` the three; ``.name`` is
    ``"multi_krum[p=2]"`` or ``"multi_krum[m=3,p=2]"`` (a name is a spec the CLI and
    ``--pool`` read back: the default ``m`` is left out of it)."""

    family: ClassVar[str] = "multi_krum"
    f: int = 0
    m: int | None = name_field(None)
    p: float = name_field(2.0)

    def __post_init__(self):
        check_int("multi_krum", "f", self.f, low=0)
        if self.m is not None:
            check_int("multi_krum", "m", self.m, low=1)
        object.__setattr__(self, "p", check_p("multi_krum", self.p))

    @property
    def name(self) -> str:
        return super().name.replace("m=None,", "")

    def check(self, n: int) -> None:
        check_krum_regime("multi_krum", n, self.f)
        if self.m is not None:
            check_int("multi_krum", "m", self.m, low=1, high=n - self.f)

    def __call__(self, G):
        return multi_krum(G, self.f, self.m, self.p)
