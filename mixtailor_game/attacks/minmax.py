"""Shejwalkar & Houmansadr 2021's AGR-agnostic min-max and min-sum attacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, NamedTuple

import torch

from .._checks import check_real
from .alie import mean_std
from .base import Attack, check_choice, repeat_row, saturate, scaled64
from .view import AdversaryView

PERTURBATIONS = ("unit", "sign", "std")
SEARCHES = ("binary", "paper")


class GammaResult(NamedTuple):
    """The malicious row ``mu + gamma * p``, ``gamma``, the perturbation ``p``,
    and the condition ``ok(gamma)`` it was searched with."""

    row: torch.Tensor
    gamma: float
    perturbation: torch.Tensor
    ok: Callable[[float], bool]


def perturbation(V: torch.Tensor, kind: str, where: str = "min_max") -> torch.Tensor:
    """``p``: ``-mu / ||mu||`` (unit), ``-sign(mu)`` (sign) or ``-sigma`` (std); errors
    name the attack ``where``."""
    mu = V.mean(dim=0)
    if kind == "unit":
        norm = torch.linalg.vector_norm(mu)
        return -mu / norm if norm > 0 else torch.zeros_like(mu)
    if kind == "sign":
        return -torch.sign(mu)
    return -mean_std(V, where)[1]


def _pair_distances(V: torch.Tensor) -> torch.Tensor:
    """l_2 distances between the rows, from their differences: cdist's matrix-product
    path (taken past 25 rows) cancels when the rows share a large mean."""
    return torch.cdist(V, V, compute_mode="donot_use_mm_for_euclid_dist")


def min_max_condition(V: torch.Tensor, mu: torch.Tensor, p: torch.Tensor) -> Callable[[float], bool]:
    """``ok(g)``: ``max_i ||mu + g p - V_i|| <= max_{i,j} ||V_i - V_j||`` (l_2)."""
    R = _pair_distances(V).max()
    return lambda g: bool(torch.linalg.vector_norm(mu + g * p - V, dim=1).max() <= R)


def min_sum_condition(V: torch.Tensor, mu: torch.Tensor, p: torch.Tensor) -> Callable[[float], bool]:
    """``ok(g)``: ``sum_i ||mu + g p - V_i||^2 <= max_i sum_j ||V_i - V_j||^2``."""
    S = _pair_distances(V).square().sum(dim=1).max()
    return lambda g: bool(torch.linalg.vector_norm(mu + g * p - V, dim=1).square().sum() <= S)


def search_binary(ok, gamma_init: float, rtol: float, max_doublings: int = 2200) -> float:
    """Largest ``g >= 0`` with ``ok(g)`` for a condition that holds on an interval
    ``[0, g*]``: double from ``gamma_init`` to bracket ``g*``, then bisect until
    ``hi - lo <= rtol * hi``; returns ``lo`` (feasible). ``max_doublings`` covers the
    float64 range (200 stopped at ``10 * 2^200 ~ 2e61``, far below ``g*`` for rows of
    ``1e100``; a doubling to ``inf`` fails ``ok`` and ends the bracketing anyway)."""
    lo, hi = 0.0, gamma_init
    for _ in range(max_doublings):
        if not ok(hi):
            break
        lo, hi = hi, 2 * hi
    else:
        return lo
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def search_paper(ok, gamma_init: float, tau: float) -> float:
    """Shejwalkar & Houmansadr's update rule (their Algorithm 1): start at
    ``gamma_init`` with step ``gamma_init / 2``; move up by the step after a
    success (recording it), down after a failure, halve the step; stop when
    the step is below ``tau``. Returns the last success (0 if none). It never
    exceeds ``2 * gamma_init``: choose ``gamma_init`` above the answer."""
    gamma, step, best = gamma_init, gamma_init / 2, 0.0
    while True:
        if ok(gamma):
            best = gamma
            gamma += step
        else:
            gamma -= step
        if step < tau:
            return best
        step /= 2


def gamma_attack(V, kind: str, objective: str, search: str, gamma_init: float, tol: float) -> GammaResult:
    """Shared core of min-max and min-sum (computed in float64).

    The distances are computed on ``V / s`` (``s`` a power of two, :func:`~.base.scaled64`):
    their squares overflowed float64 for rows past ``~1e154`` and the search returned
    ``gamma = 0`` (or ``-inf`` rows for ``std``). Scaling by ``s`` is exact, so ``gamma``,
    ``p`` and ``ok`` are those of ``V`` itself: ``unit`` / ``sign`` perturbations do not
    scale (``gamma`` does, by ``s``); ``std`` scales (``gamma`` does not)."""
    X, s = scaled64(V)
    c = 1.0 if kind == "std" else s  # gamma of V = c * gamma of V / s
    mu = X.mean(dim=0)
    p = perturbation(X, kind, objective)
    ok_scaled = (min_max_condition if objective == "min_max" else min_sum_condition)(X, mu, p)
    ok = lambda g: ok_scaled(g / c)  # noqa: E731 - the condition in V's units
    if not bool((p != 0).any()):
        gamma = 0.0
    elif search == "binary":
        gamma = search_binary(ok, gamma_init, tol)
    else:
        gamma = search_paper(ok, gamma_init, tol)
    row = saturate(((mu + (gamma / c) * p) * s).to(V.dtype))
    return GammaResult(row, gamma, (p * (s / c)).to(V.dtype), ok)


@dataclass(frozen=True, kw_only=True)
class MinMax(Attack):
    """Min-max attack (Shejwalkar & Houmansadr, NDSS 2021, AGR-agnostic).

    All Byzantines send ``B = mu + gamma * p`` with ``mu`` the mean of the
    visible rows ``V``, ``p`` in {``-mu/||mu||`` (unit), ``-sign(mu)`` (sign),
    ``-sigma`` (std)}, and the largest ``gamma`` with
    ``max_i ||B - V_i||_2 <= max_{i,j} ||V_i - V_j||_2``
    (no farther from any honest row than the honest rows are from each other).

    ``search="binary"`` (default): bracket by doubling from ``gamma_init`` then
    bisect to relative tolerance ``tol``; exact up to ``tol`` because the
    condition holds on an interval ``[0, gamma*]`` (convex in gamma, true at 0).
    ``search="paper"``: the authors' update rule with absolute threshold
    ``tol`` (it cannot exceed ``2 * gamma_init``; their code starts at a fixed
    gamma). Knowledge: visible honest rows (or ``view.own``).
    Differences from published code: the search (see above); the distance
    condition is computed in float64.

    Parameters: ``perturbation`` in ``("unit", "sign", "std")``,
    ``search`` in ``("binary", "paper")``, ``gamma_init > 0``, ``0 < tol < 1``.
    """

    family: ClassVar[str] = "min_max"
    perturbation: str = "unit"
    search: str = "binary"
    gamma_init: float = 10.0
    tol: float = 1e-6

    def validate(self):
        w = self.family
        check_choice(w, "perturbation", self.perturbation, PERTURBATIONS)
        check_choice(w, "search", self.search, SEARCHES)
        object.__setattr__(self, "gamma_init", check_real(w, "gamma_init", self.gamma_init, low=0.0, low_open=True))
        object.__setattr__(self, "tol", check_real(w, "tol", self.tol, low=0.0, high=1.0, low_open=True,
                                                           high_open=True))

    def solve(self, view: AdversaryView) -> GammaResult:
        V = view.visible(self.family)
        return gamma_attack(V, self.perturbation, self.family, self.search, self.gamma_init, self.tol)

    def craft(self, view: AdversaryView) -> torch.Tensor:
        return repeat_row(self.solve(view).row, view.f)


@dataclass(frozen=True, kw_only=True)
class MinSum(MinMax):
    """Min-sum attack (Shejwalkar & Houmansadr, NDSS 2021): as :class:`MinMax`
    but ``gamma`` is the largest with
    ``sum_i ||B - V_i||^2 <= max_i sum_j ||V_i - V_j||^2``
    (the sum of squared distances to the honest rows is no larger than the
    largest such sum of an honest row), as in the paper's Min-Sum equation.
    Difference from published code: the authors' ``our_attack_score`` (and
    ports of it, e.g. Blades) bound by the smallest such sum (``min_i``), which
    gives a smaller ``gamma``."""

    family: ClassVar[str] = "min_sum"


