""""A little is enough" (ALIE, Baruch et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from scipy.stats import norm

from .._checks import check_int, check_real, check_regime, fail
from .base import Attack, repeat_row, saturate, scaled64
from .view import AdversaryView


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s ``z_max``: ``s = floor(n/2 + 1) - f``, ``z = Phi^{-1}((n - s) / n)``.

    ``s`` is the number of honest workers the attacker must "win over" for a
    majority; it needs ``s >= 1`` and ``s < n``. Example: ``n = 12, f = 2`` gives
    ``s = 5`` and ``z = Phi^{-1}(7/12) = 0.2104``.
    """
    n = check_int("alie", "n", n, low=2)
    f = check_int("alie", "f", f, low=1)
    s = math.floor(n / 2 + 1) - f
    check_regime("alie", 1 <= s < n, "s = floor(n/2 + 1) - f >= 1, i.e. f <= n/2", n, f)
    return float(norm.ppf((n - s) / n))


def mean_std(visible: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate mean and unbiased standard deviation (needs >= 2 rows).

    The squares inside ``std`` overflow for finite rows past ``~1e154`` (float64):
    ALIE sent ``-inf`` and Fang-trim ``NaN``. Then both are recomputed on rows scaled
    by a power of two (:func:`~.base.scaled64`), exact otherwise."""
    if visible.shape[0] < 2:
        raise fail(where, "visible rows", ">= 2 to estimate a standard deviation", visible.shape[0])
    mu, sigma = visible.mean(dim=0), visible.std(dim=0, correction=1)
    if bool(torch.isfinite(mu).all()) and bool(torch.isfinite(sigma).all()):
        return mu, sigma
    X, s = scaled64(visible)
    return (X.mean(dim=0) * s).to(visible.dtype), saturate((X.std(dim=0, correction=1) * s).to(visible.dtype))


@dataclass(frozen=True, kw_only=True)
class ALIE(Attack):
    """ALIE: every Byzantine sends ``mu_j - z * sigma_j`` in each coordinate j.

    ``mu``, ``sigma``: per-coordinate mean and (unbiased) standard deviation of
    the rows the adversary sees (``view.own`` if it sees no honest row).
    ``z``: ``None`` (default) takes Baruch et al.'s formula
    ``z = Phi^{-1}((n - s) / n)``, ``s = floor(n/2 + 1) - f`` (:func:`alie_z`);
    a number fixes it.

    Source: Baruch, Baruch, Goldberg, "A little is enough: circumventing
    defenses for distributed learning", NeurIPS 2019 (paper A.8, Fig. 6).
    Knowledge: mean and std of honest rows (>= 2 visible rows).
    Implementations disagree on z: some drop the floor in ``s`` (``n/2 + 1 - f``),
    some count only the ``n - f`` honest workers in place of ``n``, and many fix
    ``z`` (1.0 is common); the sign of the shift also varies
    (``mu + z sigma`` vs ``mu - z sigma``: equivalent for symmetric rules). We
    pin the paper's formula and the minus sign; pass ``z`` to reproduce others.

    Parameters: ``z`` ``None`` or a finite real. Errors: ``ValueError`` for a
    non-finite ``z``, fewer than 2 visible rows, or ``f > n/2`` with ``z=None``.
    """

    family: ClassVar[str] = "alie"
    z: float | None = None

    def validate(self):
        if self.z is not None:
            object.__setattr__(self, "z", check_real("alie", "z", self.z))

    def z_for(self, n: int, f: int) -> float:
        return alie_z(n, f) if self.z is None else self.z

    def craft(self, view: AdversaryView) -> torch.Tensor:
        mu, sigma = mean_std(view.visible("alie"), "alie")
        return repeat_row(saturate(mu - self.z_for(view.n, view.f) * sigma), view.f)
