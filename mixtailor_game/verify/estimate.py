"""Monte Carlo estimators with normal 95% confidence intervals.

Every estimator takes ``T`` independent trials (rows) and returns an
:class:`Estimate`: the point value, a two-sided interval at ``level`` and the
standard error it came from.

* :func:`bias_squared` estimates ``theta = ||E[U] - g||_2^2`` without the
  ``tr(Cov U) / T`` upward bias of the plug-in ``||mean(U) - g||^2``: it is the
  U-statistic ``1/(T(T-1)) sum_{s != t} (U_s - g)^T (U_t - g)``, unbiased for
  ``theta``. Its variance (Hoeffding decomposition of a degree-2 U-statistic)
  is ``4 mu^T Sigma mu / T + 2 tr(Sigma^2) / (T (T-1))`` with
  ``mu = E[U] - g`` and ``Sigma = Cov(U)``; both terms are estimated from the
  trials (``mu^T Sigma mu`` minus the ``tr(Sigma^2) / T`` that the plug-in
  ``mu`` adds).
* :func:`mean_estimate`: the sample mean with ``sd / sqrt(T)``.
* :func:`moment_ratios`: ``E||U||^r / E||G||^r`` (point estimates).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import torch

from .._checks import check_int, check_real, fail


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate with a two-sided confidence interval ``[lo, hi]``."""

    value: float
    lo: float
    hi: float
    se: float
    trials: int
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def z_value(level: float) -> float:
    """Two-sided normal quantile: 1.96 for ``level = 0.95``."""
    level = check_real("z_value", "level", level, low=0.0, high=1.0, low_open=True)
    if level >= 1.0:
        raise fail("z_value", "level", "< 1", level)
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _rows(U, where: str) -> torch.Tensor:
    if not isinstance(U, torch.Tensor) or U.dim() != 2:
        shape = tuple(U.shape) if isinstance(U, torch.Tensor) else type(U).__name__
        raise fail(where, "U", "a 2-D tensor (T, d)", shape)
    check_int(where, "T (rows of U)", U.shape[0], low=2)
    return U.to(torch.float64)


def bias_squared(U: torch.Tensor, g: torch.Tensor, level: float = 0.95) -> Estimate:
    """Unbiased estimate of ``||E[U] - g||_2^2`` from ``T`` iid rows of ``U`` (T, d).

    Parameters: ``U`` a (T, d) tensor with ``T >= 2``; ``g`` a (d,) tensor (the
    target, e.g. ``grad F``); ``level`` in (0, 1).

    >>> gen = torch.Generator().manual_seed(1)  # seed 0 is one of the 5% the CI misses
    >>> U = torch.randn(4000, 3, generator=gen, dtype=torch.float64) + torch.tensor([1.0, 0, 0])
    >>> e = bias_squared(U, torch.zeros(3))
    >>> e.lo < 1.0 < e.hi
    True
    """
    U = _rows(U, "bias_squared")
    g = torch.as_tensor(g, dtype=torch.float64)
    if g.shape != U.shape[1:]:
        raise fail("bias_squared", "g", f"of shape {tuple(U.shape[1:])}", tuple(g.shape))
    T = U.shape[0]
    E = U - g
    s = E.sum(0)
    value = float((s @ s - (E * E).sum()) / (T * (T - 1)))
    ebar = s / T
    Ec = E - ebar
    if U.shape[1] <= T:
        S = Ec.T @ Ec / (T - 1)
    else:
        S = Ec @ Ec.T / (T - 1)
    tr2 = float((S * S).sum())  # tr(Sigma^2) (same for the d x d and T x T Gram forms)
    v1 = float(((Ec @ ebar) ** 2).sum() / (T - 1))  # estimates mu'Sigma mu + tr(Sigma^2)/T
    v1 = max(v1 - tr2 / T, 0.0)
    var = 4.0 * v1 / T + 2.0 * tr2 / (T * (T - 1))
    se = var ** 0.5
    z = z_value(level)
    return Estimate(value, value - z * se, value + z * se, se, T, level)


def mean_estimate(x: torch.Tensor, level: float = 0.95) -> Estimate:
    """Sample mean of ``T >= 2`` scalars with the normal interval ``mean +- z sd / sqrt(T)``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise fail("mean_estimate", "x", "a 1-D tensor (T,)", shape)
    T = check_int("mean_estimate", "T (length of x)", x.shape[0], low=2)
    x = x.to(torch.float64)
    value = float(x.mean())
    se = float(x.std(unbiased=True)) / T ** 0.5
    z = z_value(level)
    return Estimate(value, value - z * se, value + z * se, se, T, level)


def moment_ratios(U: torch.Tensor, honest: torch.Tensor, orders=(2, 3, 4)) -> dict:
    """``{r: E||U||_2^r / E||G||_2^r}`` with ``G`` an honest row drawn uniformly at random.

    ``U`` is (T, d); ``honest`` is (T, m, d) (every honest row of every trial,
    which is the law of ``G`` of the paper: a uniformly drawn honest worker).
    """
    U = _rows(U, "moment_ratios")
    H = honest.to(torch.float64).reshape(-1, honest.shape[-1])
    nu = torch.linalg.vector_norm(U, dim=-1)
    nh = torch.linalg.vector_norm(H, dim=-1)
    out = {}
    for r in orders:
        den = float((nh ** r).mean())
        out[int(r)] = float((nu ** r).mean()) / den if den > 0 else float("inf")
    return out
