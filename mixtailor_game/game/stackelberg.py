"""Optimal commitment of the defender in a general-sum attacks x rules game.

The defender (leader) commits to a mix ``p`` over the M rules of a pool; the
attacker (follower) observes ``p`` (MixTailor publishes its pool and its
probabilities, never the draw) and plays a pure attack that maximizes its own
gain ``U[a, r]``, breaking ties in the defender's favour (strong Stackelberg
equilibrium). The defender's loss is ``L[a, r]``; when ``U = L`` the game is
zero-sum and the commitment value equals the minimax value.

Algorithm (Conitzer & Sandholm, "Computing the optimal strategy to commit
to", EC 2006, Sec. 3 "multiple LPs"): for each attack ``a`` solve

    min_p  sum_r L[a, r] p_r
    s.t.   sum_r (U[a', r] - U[a, r]) p_r <= 0    for every attack a'      (1)
           1^T p = 1,  p >= 0

i.e. the best commitment among those that make ``a`` a best response of the
attacker; infeasible LPs are skipped, and the attack with the lowest optimal
loss (ties: the lowest index) is the equilibrium. Each LP is solved with
``scipy.optimize.linprog(method="highs")``.

Differences from the paper: the paper states the algorithm for a leader that
maximizes a utility over rows; here the leader is the column player and
minimizes a loss (the sign and the axes are swapped, nothing else).

Certificate: ``follower_regret = max_a' (U p)_a' - (U p)_a`` (<= tolerance:
the attacker has no better reply to ``p`` than ``a``) and ``candidates`` (the
optimal value of every LP, ``inf`` where infeasible), so the leader's
optimality is checked by ``value == min(candidates)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from .._checks import fail
from .zero_sum import _LINPROG_STATUS, _clean_simplex, as_loss_matrix, normalized_payoffs


@dataclass(frozen=True)
class StackelbergResult:
    """Strong Stackelberg equilibrium (defender leads, attacker follows).

    ``defender``: committed mix over rules (``None`` on failure); ``attack``:
    the attacker's pure reply (index); ``value``: the defender's expected loss
    ``(L p)_attack``; ``attacker_value``: ``(U p)_attack``;
    ``follower_regret``: ``max_a (U p)_a - attacker_value`` (certificate);
    ``candidates[a]``: optimal loss of LP (1) for attack ``a`` (inf if
    infeasible or failed); ``status``: ``"optimal"`` or the first LP failure.
    """

    defender: np.ndarray | None
    attack: int | None
    value: float
    attacker_value: float
    follower_regret: float
    candidates: np.ndarray
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "optimal"


def _commit_lp(L: np.ndarray, U: np.ndarray, a: int):
    """LP (1) for attack ``a``: returns (p, loss, status, message)."""
    A, M = L.shape
    A_ub = U - U[a]  # row a' : (U[a'] - U[a]) p <= 0 (row a is all zeros)
    A_ub = np.delete(A_ub, a, axis=0)
    res = linprog(
        L[a],
        A_ub=A_ub if A_ub.shape[0] else None,
        b_ub=np.zeros(A_ub.shape[0]) if A_ub.shape[0] else None,
        A_eq=np.ones((1, M)),
        b_eq=np.ones(1),
        bounds=[(0.0, None)] * M,
        method="highs",
    )
    status = _LINPROG_STATUS.get(res.status, "numerical")
    if status != "optimal":
        return None, float("inf"), status, str(res.message)
    return _clean_simplex(res.x), float(res.fun), status, str(res.message)


def solve_stackelberg(L, U=None) -> StackelbergResult:
    """Defender's optimal commitment when the attacker best-responds to it.

    Parameters
    ----------
    L : array (A, M), finite
        Defender's loss when attack ``a`` meets rule ``r``.
    U : array (A, M), finite, or None
        Attacker's gain; ``None`` means ``U = L`` (zero-sum).

    Returns a :class:`StackelbergResult`. An infeasible LP (an attack that is
    never a best response) is normal and skipped. When another LP fails
    (budget, numerical), ``status`` is ``"feasible"`` (the commitment is a
    valid one, certified by ``follower_regret``, but not proven optimal), or
    that failure's status when no LP succeeded.

    Raises ``ValueError`` when ``L`` or ``U`` is empty, not finite, or their
    shapes differ.

    >>> # leader payoffs (1,3;0,2), follower (1,0;0,1) as losses: commit 1/2-1/2
    >>> L = -np.array([[1.0, 0.0], [3.0, 2.0]]); U = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> r = solve_stackelberg(L, U); r.attack, r.defender.round(6).tolist(), round(r.value, 6)
    (1, [0.5, 0.5], -2.5)
    """
    where = "solve_stackelberg"
    L = as_loss_matrix(L, where)
    U = L.copy() if U is None else as_loss_matrix(U, where, "U")  # a bad U was called L
    if U.shape != L.shape:
        raise fail(where, "U", f"of the same shape as L {L.shape}", U.shape)
    Ln, Un = normalized_payoffs(L), normalized_payoffs(U)
    A = L.shape[0]
    candidates = np.full(A, np.inf)
    strategies: list[np.ndarray | None] = [None] * A
    failure = ("", "")
    for a in range(A):
        p, loss, status, msg = _commit_lp(Ln, Un, a)
        if p is not None:
            strategies[a] = p
            candidates[a] = float(L[a] @ p)
        elif status != "infeasible" and not failure[0]:
            failure = (status, msg)
    if not np.isfinite(candidates).any():
        status = failure[0] or "infeasible"
        return StackelbergResult(None, None, float("nan"), float("nan"), float("inf"), candidates, status, failure[1])
    # Lowest loss; among near-ties (solver round-off) the lowest index.
    best = float(candidates.min())
    tol = 1e-9 * max(1.0, float(np.max(np.abs(L))))
    a_star = int(np.flatnonzero(candidates <= best + tol)[0])
    p = strategies[a_star]
    Up = U @ p
    regret = float(Up.max() - Up[a_star])
    # If some LP failed for a reason other than infeasibility, the commitment is
    # valid (certified by follower_regret) but not proven the leader's best.
    status = "feasible" if failure[0] else "optimal"
    return StackelbergResult(p, a_star, float(L[a_star] @ p), float(Up[a_star]), regret, candidates,
                             status, failure[1])
