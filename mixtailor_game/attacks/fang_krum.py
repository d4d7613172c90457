"""Fang et al. 2020's attack on Krum (full and partial knowledge)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from .._checks import check_real, check_regime
from ..rules import lp_norm_rows, pairwise_distances
from ..rules.base import finite_rows
from .base import Attack, check_choice, normal, pow2_scale
from .view import AdversaryView

DIRECTIONS = ("mean", "aggregate")


class FangKrumResult(NamedTuple):
    """Crafted rows, the lambda used, Fang's upper bound, whether the simulated
    Krum selects a Byzantine row, and how many times lambda was halved."""

    byzantine: torch.Tensor
    lam: float
    lam_max: float
    selected: bool
    halvings: int


def krum_scores(S: torch.Tensor, neighbours: int, p: float) -> torch.Tensor:
    """Krum's scores (paper eq. (3)) of the rows of ``S``, in float64."""
    D2 = pairwise_distances(S, p).double().square()  # float64: float32 squares of huge rows overflow
    D2.fill_diagonal_(math.inf)
    return torch.topk(D2, neighbours, dim=1, largest=False).values.sum(dim=1)


def krum_index(S: torch.Tensor, neighbours: int, p: float) -> int:
    """Index Krum (paper eq. (3)) selects in ``S`` with ``neighbours`` neighbours;
    ties go to the lowest index.

    Squared distances past ``~1e154`` overflow even float64: every score was ``inf``
    and the first row (a Byzantine one) counted as selected while the server's Krum
    picked an honest row. Then the scores are recomputed on ``S / s`` (``s`` a power
    of two, which scales every score by ``s^2`` and keeps the argmin)."""
    scores = krum_scores(S, neighbours, p)
    if not bool(torch.isfinite(scores).all()):
        scores = krum_scores(S / pow2_scale(S), neighbours, p)
    return int(torch.argmin(scores))


def fang_direction(V: torch.Tensor, n: int, f: int, p: float, direction: str) -> torch.Tensor:
    """``s = sign(mean of V)`` or ``sign(Krum of V)`` (the no-attack aggregate)."""
    if direction == "mean":
        return torch.sign(V.mean(dim=0))
    q = min(n - f - 2, V.shape[0] - 1)
    return torch.sign(V[krum_index(V, q, p)])


def fang_lambda_max(V: torch.Tensor, s: torch.Tensor, n: int, f: int, p: float) -> float:
    """Fang et al.'s upper bound on lambda (their Section 3.3, gradient space):

    ``lam_max = min_i sum_{l in G_i} ||V_l - V_i||_p / ((n - 2f - 1) ||s||_p)
    + max_i ||V_i||_p / ||s||_p``, ``G_i`` the ``min(n - f - 2, k - 1)`` visible
    rows nearest to ``V_i``. For ``p = 2`` and ``s`` in ``{-1, 1}^d``,
    ``||s||_2 = sqrt(d)``: Fang's formula with ``w_Re`` = 0 (the origin of
    gradient space).
    """
    s_norm = float(lp_norm_rows(s.unsqueeze(0), p)[0])
    if s_norm == 0.0:
        return 0.0
    q = min(n - f - 2, V.shape[0] - 1)
    D = pairwise_distances(V, p)
    D.fill_diagonal_(math.inf)
    near = torch.topk(D, q, dim=1, largest=False).values.sum(dim=1)
    first = float(near.min()) / ((n - 2 * f - 1) * s_norm)
    second = float(lp_norm_rows(V, p).max()) / s_norm
    return first + second


def fang_krum(
    V: torch.Tensor,
    n: int,
    f: int,
    *,
    p: float = 2.0,
    direction: str = "mean",
    lam_min: float = 1e-5,
    support_radius: float = 0.0,
    generator: torch.Generator | None = None,
    extra: torch.Tensor | None = None,
) -> FangKrumResult:
    """Fang et al.'s Krum attack on the visible rows ``V`` (``Tensor[k, d]``).

    1. ``s`` = sign of the mean of ``V`` (or of Krum of ``V`` and ``extra``);
    2. ``lam = lam_max`` (:func:`fang_lambda_max`);
    3. ``B_1 = -lam * s``; ``f - 1`` supporters ``B_1 + support_radius * u_i``
       (``u_i`` random with ``||u_i||_p = 1``; radius 0 = exact copies);
    4. simulate Krum on ``[B_1..B_f, V]`` with ``min(n - f - 2, f + k - 1)``
       neighbours; if it selects a Byzantine row stop, else halve ``lam`` and
       repeat while ``lam >= lam_min``.
    With full knowledge (``k = n - f``) the simulation is the server's Krum.
    Visible rows with a NaN or Inf entry are dropped (the rules put them
    infinitely far); ``lam`` is capped at the dtype's largest finite value.
    """
    check_regime("fang_krum", n > 2 * f + 2, "n > 2f + 2", n, f)
    V = V[finite_rows(V)]
    if V.shape[0] == 0:
        raise ValueError("fang_krum: needs at least one finite visible row, got none")
    if extra is not None:
        extra = extra[finite_rows(extra)]
    R = V if extra is None else torch.cat([V, extra.to(V.dtype)])
    s = fang_direction(R, n, f, p, direction)
    lam_max = fang_lambda_max(V, s, n, f, p)
    offsets = torch.zeros(f, V.shape[1], dtype=V.dtype, device=V.device)
    if support_radius > 0 and f > 1:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        z = normal((f - 1, V.shape[1]), gen, V)
        offsets[1:] = support_radius * z / lp_norm_rows(z, p).clamp_min(1e-300).unsqueeze(1)
    q = min(n - f - 2, f + V.shape[0] - 1)
    # an infinite bound (distances past the dtype's range) would never halve below lam_min
    lam, halvings = min(lam_max, float(torch.finfo(V.dtype).max)), 0
    while True:
        B = -lam * s + offsets
        selected = krum_index(torch.cat([B, V]), q, p) < f
        if selected or lam / 2 < lam_min:
            return FangKrumResult(B, lam, lam_max, selected, halvings)
        lam /= 2
        halvings += 1


@dataclass(frozen=True, kw_only=True)
class FangKrum(Attack):
    """Fang et al. 2020's full- and partial-knowledge attack on (generalized) Krum.

    Crafts ``B_1 = -lam * s`` with ``s = sign(mu)`` (``direction="mean"``) or
    the sign of the no-attack Krum output (``"aggregate"``), starts at Fang's
    upper bound on ``lam`` and halves it until Krum selects ``B_1`` (or a
    supporter); the other ``f - 1`` Byzantines support ``B_1`` within
    ``support_radius`` (l_p). See :func:`fang_krum` for the steps.

    Knowledge: full (the simulated Krum is the server's) or partial: with
    ``k < n - f`` visible honest rows, or only ``view.own`` (Fang's partial
    knowledge: the Byzantines' own before-attack gradients), the attack uses
    those rows as the benign set, as Fang et al. do. Model space (their
    original form): ``w_0 - lam * s`` with ``s = sign(w - w_0)``.

    Differences from Fang et al.: the default ``direction="mean"`` (DESIGN.md's
    pin); Fang et al.'s ``s`` is the sign of the model change without attack, i.e.
    ``direction="aggregate"``; gradient space by default (``w_Re`` is the
    origin, the crafted gradient is ``-lam * sign(mu)``); l_p distances with
    ``||s||_p`` in place of ``sqrt(d)``; ``sign(0) = 0``; under partial
    knowledge the neighbour count is ``min(n - f - 2, rows - 1)`` (Fang use
    Krum on the ``2c`` rows, which has no neighbours when ``c = 2``); ties in
    the simulation go to the Byzantine row. If no ``lam >= lam_min`` works the
    attack sends the last one tried (Fang's threshold rule).

    Parameters: ``p >= 1``, ``direction`` in ``("mean", "aggregate")``,
    ``lam_min > 0``, ``support_radius >= 0``. Needs ``n > 2f + 2``.
    """

    family: ClassVar[str] = "fang_krum"
    p: float = 2.0
    direction: str = "mean"
    lam_min: float = 1e-5
    support_radius: float = 0.0

    def validate(self):
        w = "fang_krum"
        object.__setattr__(self, "p", check_real(w, "p", self.p, low=1.0, allow_inf=True))
        check_choice(w, "direction", self.direction, DIRECTIONS)
        object.__setattr__(self, "lam_min", check_real(w, "lam_min", self.lam_min, low=0.0, low_open=True))
        object.__setattr__(self, "support_radius", check_real(w, "support_radius", self.support_radius, low=0.0))

    def solve(self, view: AdversaryView) -> FangKrumResult:
        """The full result (lambda, bound, success) for ``view`` (gradient space)."""
        V = view.visible("fang_krum")
        extra = view.own if (view.k > 0 and self.direction == "aggregate") else None
        gen = view.generator() if self.support_radius > 0 else None
        return fang_krum(V, view.n, view.f, p=self.p, direction=self.direction, lam_min=self.lam_min,
                         support_radius=self.support_radius, generator=gen, extra=extra)

    def craft(self, view: AdversaryView) -> torch.Tensor:
        return self.solve(view).byzantine


