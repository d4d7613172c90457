"""Geometric median under an l_p norm, by smoothed Weiszfeld / IRLS (Pillutla et al. 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from .._checks import check_int, check_real, check_regime
from ._distances import check_p, lp_norm_rows
from .base import Rule, check_gradients, finite_rows, name_field, tuning_field
from .median import comed


class GeomedResult(NamedTuple):
    """The iterate ``z``, whether the stopping test passed, iterations and objective."""

    z: torch.Tensor
    converged: bool
    iterations: int
    objective: float


def geomed_objective(z: torch.Tensor, X: torch.Tensor, p: float) -> torch.Tensor:
    """``sum_i ||z - x_i||_p`` (in float64 for a stable comparison)."""
    return lp_norm_rows((X - z).double(), p).sum()


def _irls_step(z: torch.Tensor, X: torch.Tensor, p: float, nu: float) -> torch.Tensor:
    """One majorize-minimize step for ``sum_i ||z - x_i||_p``.

    The gradient of ``||z - x_i||_p`` in coordinate j is
    ``sign(z_j - x_ij) |z_j - x_ij|^(p-1) / ||z - x_i||_p^(p-1)``; writing it as
    ``w_ij (z_j - x_ij)`` with ``w_ij = (|z_j - x_ij| / r_i)^(p-2) / r_i`` and
    ``r_i = max(nu, ||z - x_i||_p)`` gives the weighted-average fixed point below.
    For p = 2 the weights are Weiszfeld's ``1 / max(nu, ||z - x_i||)``.
    """
    diff = X - z
    r = lp_norm_rows(diff, p).clamp_min(nu).unsqueeze(1)
    if p == 2:
        W = (1.0 / r).expand_as(X)
    else:
        ratio = (diff.abs() / r).clamp_min(nu)
        W = ratio.pow(p - 2) / r
    W = torch.where(torch.isfinite(r), W, torch.zeros_like(W))
    den = W.sum(0)
    num = (W * X).sum(0)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), z)


def geomed_solve(
    G: torch.Tensor,
    p: float = 2.0,
    *,
    nu: float = 1e-6,
    max_iter: int = 200,
    tol: float = 1e-7,
) -> GeomedResult:
    """Minimize ``sum_i ||z - G_i||_p`` by smoothed IRLS; see :func:`geomed`."""
    G = check_gradients(G, "geomed")
    p = check_p("geomed", p)
    nu = check_real("geomed", "nu", nu, low=0.0, low_open=True)
    max_iter = check_int("geomed", "max_iter", max_iter, low=1)
    tol = check_real("geomed", "tol", tol, low=0.0)
    X = G[finite_rows(G)]
    if X.shape[0] == 0:
        raise ValueError("geomed: needs at least one finite row, got none")
    z = comed(X)
    if p == 1 or X.shape[0] <= 2:
        # The l_1 objective separates by coordinate: the coordinate-wise median is
        # a minimizer (for <= 2 rows every point between them is one).
        return GeomedResult(z, True, 0, float(geomed_objective(z, X, p)))
    obj = geomed_objective(z, X, p)
    for it in range(1, max_iter + 1):
        z_new = _irls_step(z, X, p, nu)
        obj_new = geomed_objective(z_new, X, p)
        # MM is monotone for p <= 2; for p > 2 back off along the segment if needed.
        step = 1.0
        while obj_new > obj and step > 1e-4:
            step *= 0.5
            z_try = z + step * (z_new - z)
            obj_new = geomed_objective(z_try, X, p)
            z_new = z_try
        if obj_new > obj:
            return GeomedResult(z, True, it, float(obj))
        change = float(lp_norm_rows((z_new - z).double(), 2))
        scale = max(float(lp_norm_rows(z.double(), 2)), 1.0)
        z, obj = z_new, obj_new
        if change <= tol * scale:
            return GeomedResult(z, True, it, float(obj))
    return GeomedResult(z, False, max_iter, float(obj))


def geomed(G: torch.Tensor, p: float = 2.0, **options) -> torch.Tensor:
    """Geometric median under l_p: ``argmin_z sum_i ||z - G_i||_p``.

    Smoothed Weiszfeld / IRLS (Pillutla et al. 2022, "RFA"), generalized to l_p
    by per-coordinate weights (see ``_irls_step``), started at the
    coordinate-wise median. For ``p = 1`` the objective separates by
    coordinate and the coordinate-wise median is returned exactly. Rows with a
    non-finite entry are dropped (infinitely far); a finite but huge row gets a
    weight near zero. The MixTailor authors' code ignores ``p``; here the norm
    changes the result (tested). Options: ``nu`` (smoothing, > 0), ``max_iter``,
    ``tol`` (relative step size). Use :func:`geomed_solve` to also get
    convergence information.
    """
    return geomed_solve(G, p, **options).z


@dataclass(frozen=True)
class Geomed(Rule):
    """Config of :func:`geomed`; regime ``n > 2f`` (breakdown point 1/2)."""

    family: ClassVar[str] = "geomed"
    f: int = 0
    p: float = name_field(2.0)
    nu: float = tuning_field(1e-6)
    max_iter: int = tuning_field(200)
    tol: float = tuning_field(1e-7)

    def __post_init__(self):
        check_int("geomed", "f", self.f, low=0)
        object.__setattr__(self, "p", check_p("geomed", self.p))

    def check(self, n: int) -> None:
        check_regime("geomed", n > 2 * self.f, "n > 2f", n, self.f)

    def __call__(self, G):
        G = check_gradients(G, "geomed")
        self.check(G.shape[0])
        return geomed(G, self.p, nu=self.nu, max_iter=self.max_iter, tol=self.tol)
