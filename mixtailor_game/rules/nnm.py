"""Nearest-neighbour mixing, NNM (Allouah et al. 2023, "Fixing by mixing: a recipe
for optimal Byzantine ML under heterogeneity"), as a wrapper around any rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_int, check_regime
from ._distances import ranking_squared_distances
from ._wrap import check_base, resolve_base
from .base import Rule, check_batch, check_gradients, finite_rows, mean_over, name_field


def check_nnm_regime(n: int, f: int) -> None:
    """NNM's guarantee (Allouah et al. 2023) needs a Byzantine minority, ``n > 2f``."""
    check_regime("nnm", n > 2 * f, "n > 2f", n, f)


def nnm_neighbours(G: torch.Tensor, f: int) -> torch.Tensor:
    """``Tensor[n, n - f]`` of row indices: row ``i`` holds ``i`` and its ``n - f - 1``
    nearest other rows in l_2 (ties to the lower index)."""
    n = G.shape[0]
    D = ranking_squared_distances(G, 2.0)  # float64; only their order matters
    # Row i itself first, whatever ties at distance 0 exist.
    D = D.masked_fill(torch.eye(n, dtype=torch.bool, device=G.device), -1.0)
    return torch.sort(D, dim=1, stable=True).indices[:, : n - f]


def nnm_mix(G: torch.Tensor, f: int) -> torch.Tensor:
    """The mixed rows ``Y_i = (1/(n - f)) sum_{j in N_i} G_j`` (``Tensor[n, d]``).

    ``N_i``: ``i`` and its ``n - f - 1`` nearest other rows in l_2 (Allouah et
    al. 2023, Algorithm 1). Computed as one ``(n, n) @ (n, d)`` product over the
    finite rows; the few rows whose neighbourhood holds a non-finite row (with
    at most ``f`` such rows, only the non-finite rows themselves: they are
    infinitely far from every other row) are averaged directly, so their
    NaN / Inf stays in their own mixed row and never reaches the others. Finite
    rows always mix to finite rows (near the dtype's maximum, where the product
    overflows, the row is averaged directly too).
    """
    G = check_gradients(G, "nnm")
    n = G.shape[0]
    f = check_int("nnm", "f", f, low=0)
    check_nnm_regime(n, f)
    idx = nnm_neighbours(G, f)
    W = torch.zeros(n, n, dtype=G.dtype, device=G.device)
    W.scatter_(1, idx, 1.0 / (n - f))
    ok = finite_rows(G)
    G0 = torch.where(ok.unsqueeze(1), G, torch.zeros_like(G))
    Y = W @ G0
    # rows mixing a non-finite row, and finite rows near the dtype's maximum whose weighted
    # sum overflows (the weight 1/(n - f) is rounded up for some n - f): averaged directly
    touched = (~ok)[idx].any(dim=1) | ~finite_rows(Y)
    for i in torch.nonzero(touched).flatten().tolist():
        Y[i] = mean_over(G[idx[i]], 0)
    return Y


def nnm(G: torch.Tensor, f: int, base) -> torch.Tensor:
    """NNM then the base rule: ``base(nnm_mix(G, f))``.

    Each row is replaced by the mean of its ``n - f`` nearest rows (itself
    included) in l_2, then the rule ``base`` (a callable) aggregates the mixed
    rows. Needs ``n > 2f`` and the base rule's regime on ``n`` rows. With
    ``f = 0`` every mixed row is the mean, so NNM then any rule returns the mean.

    >>> G = torch.tensor([[0.0], [1.0], [2.0], [100.0]])
    >>> nnm_mix(G, f=1).flatten()
    tensor([ 1.0000,  1.0000,  1.0000, 34.3333])
    """
    return base(nnm_mix(G, f))


@dataclass(frozen=True, eq=False)
class NNM(Rule):
    """Config of :func:`nnm`: ``NNM(base="krum", f=2)``; ``.name == "nnm[base=krum[p=2]]"``.

    The base rule is built with the same ``f``: after mixing, the ``f``
    Byzantine rows' own mixed rows may still be far from the honest ones, so the
    base rule must tolerate ``f`` (Allouah et al. pair NNM with the rule at its
    own ``f``).
    Permutation invariant (up to ties in distance), translation equivariant
    when the base rule is.
    """

    family: ClassVar[str] = "nnm"
    base: Any = name_field("comed")
    f: int | None = None

    def __post_init__(self):
        base, f = resolve_base("nnm", self.base, self.f)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "f", f)

    def check(self, n: int) -> None:
        check_nnm_regime(n, self.f)
        check_base("nnm", self.base, n, "the base rule's regime",
                   f"n={n}, f={self.f}, base={getattr(self.base, 'name', self.base)}")

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "nnm")
        self.check(G.shape[0])
        return nnm(G, self.f, self.base)

    def batched(self, Gb: torch.Tensor) -> torch.Tensor:
        """Each problem mixed on its own (an (n, n) product), then the base rule's own
        batched form on the mixed rows: a vectorized base (comed, Krum, small geomeds)
        runs once for the whole batch."""
        check_batch(Gb, "nnm")
        self.check(Gb.shape[1])
        Y = torch.stack([nnm_mix(G, self.f) for G in Gb.unbind(0)])
        if hasattr(self.base, "batched"):
            return self.base.batched(Y)
        return torch.stack([self.base(y) for y in Y.unbind(0)])  # a plain callable base
