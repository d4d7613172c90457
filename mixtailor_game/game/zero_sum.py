"""Minimax mixing of a pool against a finite set of attacks (zero-sum game).

The defender (server) mixes over the M rules of a pool with probabilities
``p``; the attacker mixes over A attacks with probabilities ``q``; ``L[a, r]``
is the defender's loss when attack ``a`` meets rule ``r`` (for instance
``-<AGG_r, honest mean>``). The defender solves

    min_{p in simplex(M)} max_{a} (L p)_a                                   (D)

and the attacker the dual problem ``max_{q in simplex(A)} min_r (q^T L)_r``;
both have the same optimal value (von Neumann's minimax theorem). Each is the
textbook linear program (von Stengel, "Computing equilibria for two-person
games", Handbook of Game Theory 3, 2002, Sec. 3):

    (D)  min v  s.t.  L p <= v 1,  1^T p = 1,  p >= 0
    (P)  max w  s.t.  L^T q >= w 1,  1^T q = 1,  q >= 0

solved here with ``scipy.optimize.linprog(method="highs")``. The paper
(MixTailor, Sec. 3) mixes uniformly, ``p = 1/M``; this module computes the mix
that minimizes the loss against the worst attack of the set.

Certificate: for any pair ``(p, q)``,
``gap = max_a (L p)_a - min_r (q^T L)_r >= 0`` and ``gap = 0`` exactly at an
equilibrium; ``defender_gap = max_a (L p)_a - q^T L p`` and
``attacker_gap = q^T L p - min_r (q^T L)_r`` are how much each side could gain
by deviating (both are >= 0 and sum to ``gap``).

Solver failures are reported through ``status`` (``"optimal"``, ``"budget"``,
``"infeasible"``, ``"unbounded"``, ``"numerical"``), never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from .._checks import check_real, fail

#: scipy ``linprog`` exit codes -> shared statuses.
_LINPROG_STATUS = {0: "optimal", 1: "budget", 2: "infeasible", 3: "unbounded", 4: "numerical"}


@dataclass(frozen=True)
class ZeroSumResult:
    """Equilibrium of a finite zero-sum game with ``L[a, r]`` the defender's loss.

    Attributes: ``defender`` (probabilities over rules, ``ndarray[M]``),
    ``attacker`` (over attacks, ``ndarray[A]``), ``value`` (``q^T L p``, the
    defender's expected loss), ``gap`` (``defender_gap + attacker_gap``, the
    best-response certificate), ``status`` and ``message`` of the solver.
    On failure the strategies are ``None``, ``value`` is NaN and ``gap`` inf.
    """

    defender: np.ndarray | None
    attacker: np.ndarray | None
    value: float
    gap: float
    defender_gap: float
    attacker_gap: float
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """True when both linear programs were solved to optimality."""
        return self.status == "optimal"


def as_loss_matrix(L, where: str, name: str = "L") -> np.ndarray:
    """Return ``L`` as a finite float64 matrix ``(A, M)`` with A, M >= 1, or raise ``ValueError``
    (``TypeError`` for what is not an array of numbers); messages call it ``name``."""
    try:
        arr = np.asarray(L, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name} must be a 2-D array of real numbers, got {type(L).__name__}") from None
    except OverflowError:  # a Python int past the float64 range: numpy's message names nothing
        raise fail(where, name, "finite everywhere", "an entry too large for float64") from None
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise fail(where, name, "a non-empty 2-D array (attacks, rules)", arr.shape)
    if not np.isfinite(arr).all():
        raise fail(where, name, "finite everywhere", "an array with NaN or Inf")
    return arr


def best_response_gaps(L, defender, attacker) -> tuple[float, float]:
    """Best-response gaps ``(defender_gap, attacker_gap)`` of a strategy pair.

    ``defender_gap = max_a (L p)_a - q^T L p`` (what the attacker gains by its
    best pure reply to ``p``) and ``attacker_gap = q^T L p - min_r (q^T L)_r``
    (what the defender saves by its best pure reply to ``q``). Both are >= 0
    for probability vectors and both are 0 at an equilibrium.
    """
    L = as_loss_matrix(L, "best_response_gaps")
    p = _simplex_point("best_response_gaps", "defender", defender, L.shape[1])
    q = _simplex_point("best_response_gaps", "attacker", attacker, L.shape[0])
    value = float(q @ L @ p)
    return float(np.max(L @ p) - value), float(value - np.min(q @ L))


def normalized_payoffs(X: np.ndarray) -> np.ndarray:
    """``(X - mean) / max |X - mean|`` (zeros for a constant ``X``): an affine map with a
    positive scale, which keeps best responses and argmins, so that HiGHS's absolute
    tolerances are relative. Entries near the float64 maximum are first divided by
    the largest magnitude (their mean and differences would overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):
        shift = float(X.mean())
        dev = np.abs(X - shift)
    if not (np.isfinite(shift) and np.isfinite(dev).all()):
        X = X / float(np.max(np.abs(X)))
        shift = float(X.mean())
        dev = np.abs(X - shift)
    scale = float(np.max(dev))
    return (X - shift) / scale if scale > 0 else np.zeros_like(X)


def _simplex_point(where: str, name: str, x, size: int) -> np.ndarray:
    """``x`` as a probability vector of length ``size`` (finite, >= 0, summing to 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (size,) or not np.isfinite(x).all() or (x < 0).any() or abs(float(x.sum()) - 1.0) > 1e-6:
        raise fail(where, name, f"{size} finite probabilities >= 0 summing to 1", x.tolist())
    return x


def _clean_simplex(x: np.ndarray) -> np.ndarray:
    """Clip the solver's round-off (tiny negatives) and renormalize to sum 1."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    return x / x.sum()


def _solve_side(L: np.ndarray, options: dict):
    """Solve ``min_p max_a (L p)_a`` over the simplex; return (p, status, message).

    Variables ``x = (p_1..p_M, v)``; minimize ``v`` subject to
    ``L p - v 1 <= 0`` and ``1^T p = 1``, ``p >= 0``, ``v`` free.
    """
    A, M = L.shape
    c = np.zeros(M + 1)
    c[-1] = 1.0
    A_ub = np.hstack([L, -np.ones((A, 1))])
    b_ub = np.zeros(A)
    A_eq = np.hstack([np.ones((1, M)), np.zeros((1, 1))])
    b_eq = np.ones(1)
    bounds = [(0.0, None)] * M + [(None, None)]
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs", options=options)
    status = _LINPROG_STATUS.get(res.status, "numerical")
    if status != "optimal" or res.x is None:
        return None, status, str(res.message)
    return _clean_simplex(res.x[:M]), status, str(res.message)


def solve_zero_sum(L, *, time_limit: float | None = None) -> ZeroSumResult:
    """Minimax strategies of the zero-sum game with defender loss ``L[a, r]``.

    Parameters
    ----------
    L : array (A, M), finite
        ``L[a, r]``: defender's loss (attacker's gain) when attack ``a`` meets
        rule ``r``. Scaling ``L`` by ``s > 0`` scales the value by ``s``;
        adding a constant shifts it; the strategies do not change.
    time_limit : float > 0 or None
        Wall-clock limit per LP passed to HiGHS (inf: none); exceeding it gives
        ``status="budget"``.

    Returns
    -------
    ZeroSumResult with the defender's mix over rules, the attacker's over
    attacks, the value ``q^T L p`` and the best-response gap (certificate).

    Raises ``ValueError`` when ``L`` is empty, not 2-D or not finite.

    Both LPs are solved on ``(L - mean) / scale`` so that HiGHS's absolute
    tolerances mean the same thing for payoffs of any magnitude; the value and
    gaps are then computed on the original ``L``.

    >>> r = solve_zero_sum([[1.0, -1.0], [-1.0, 1.0]])   # matching pennies
    >>> r.defender.round(6).tolist(), r.attacker.round(6).tolist(), round(r.value, 9) + 0.0
    ([0.5, 0.5], [0.5, 0.5], 0.0)
    """
    where = "solve_zero_sum"
    L = as_loss_matrix(L, where)
    options = {}
    if time_limit is not None:
        # True ran as a 1 s limit; numpy reals are fine; a huge int or inf means no limit
        limit = check_real(where, "time_limit", time_limit, low=0.0, low_open=True, allow_inf=True)
        if limit < math.inf:  # HiGHS's default
            options["time_limit"] = limit
    Ln = normalized_payoffs(L)

    p, status_d, msg_d = _solve_side(Ln, options)
    # The attacker maximizes min_r (q^T L)_r = -min_q max_r (-L^T q)_r.
    q, status_a, msg_a = _solve_side(-Ln.T, options)
    if p is None or q is None:
        status = status_d if p is None else status_a
        return ZeroSumResult(None, None, float("nan"), float("inf"), float("inf"), float("inf"), status,
                             msg_d if p is None else msg_a)
    dgap, agap = best_response_gaps(L, p, q)
    return ZeroSumResult(p, q, float(q @ L @ p), max(dgap, 0.0) + max(agap, 0.0), dgap, agap, "optimal", msg_d)


def uniform_exploitability(L) -> float:
    """``max_a (L u)_a - minimax value`` for the uniform mix ``u = 1/M`` (the paper's MixTailor).

    How much more the defender loses by mixing uniformly than by mixing at the
    equilibrium, when the attacker best-responds to the mix it knows. NaN if
    the LP fails.
    """
    L = as_loss_matrix(L, "uniform_exploitability")
    res = solve_zero_sum(L)
    if not res.ok:
        return float("nan")
    u = np.full(L.shape[1], 1.0 / L.shape[1])
    return float(np.max(L @ u) - res.value)
