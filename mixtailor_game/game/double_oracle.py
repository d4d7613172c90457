"""Double oracle: the defender's minimax mix against a continuous attack space.

The attacker's strategies are Byzantine rows ``B in R^{f x d}`` (infinitely
many); the defender's are the M rules of the pool (finitely many), so the
defender's best response is the exact LP of :mod:`.zero_sum` and only the
attacker needs an oracle. Algorithm (McMahan, Gordon & Blum, "Planning in the
presence of cost functions controlled by an adversary", ICML 2003, Sec. 3;
the attacker's side of their double oracle):

    0. A_0 = initial attacks (or the oracle's best response to the uniform mix).
    for k = 0, 1, ...:
    1. solve the restricted game A_k x pool (LP): defender mix p_k, value v_k;
    2. oracle: the attacker's best response b_k to p_k and its row of losses
       l(b_k) in R^M; u_k = max(l(b_k)^T p_k, max_{a in A_k} (L_k p_k)_a), the
       loss of the best reply known (the attacker may replay an attack of A_k:
       a heuristic oracle can return a weaker one);
    3. gap_k = u_k - v_k; record (k, |A_k|, v_k, u_k, gap_k);
    4. stop if gap_k <= tol or l(b_k) is already a row of L_k (adding it again
       would leave the LP unchanged: McMahan et al.'s "no new strategy"
       termination; the gap is then the LP's round-off), else
       A_{k+1} = A_k + {b_k}.

With an exact oracle, ``v_k <= V* <= u_k`` (V* the value of the full game),
so ``gap_k`` bounds the exploitability of ``p_k`` (``u_k - V*``) and the loop
ends at an equilibrium of a finite game after at most |A| additions, whatever
``tol`` (round-off on large payoffs no longer re-adds known attacks). With a
heuristic oracle (the attacks of ``solvers`` solve a nonconvex problem) ``u_k``
is only the loss of the best attack known: the final gap (>= 0 up to the LP's
round-off) certifies the mix against that oracle and the attacks of the set,
not against every attack.

Oracle interface: ``oracle(p: ndarray[M]) -> (attack, loss_row: ndarray[M])``
or ``None`` when it fails. :func:`solvers_oracle` builds the one that calls
``solvers.solve(solvers.ExpectedValue(honest, f, pool, probs=p))`` and
evaluates its rows with :func:`.payoff.payoff_values`; a finite oracle
(argmax over a matrix) makes the algorithm testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .._checks import check_int, check_real, fail
from .payoff import defender_loss, payoff_values
from .zero_sum import solve_zero_sum


@dataclass
class DoubleOracleResult:
    """Outcome of :func:`double_oracle`.

    ``defender``: final mix over rules; ``attacker``: mix over ``attacks`` (the
    attacks found, in order); ``matrix``: their loss rows ``(|A|, M)``;
    ``value``: the restricted game's value ``v``; ``upper``: the loss of the
    best known reply to ``defender`` (the oracle's, or an attack of the set if
    that is worse for the defender); ``gap = upper - value``;
    ``history``: one dict per iteration (``iteration``, ``attacks``,
    ``lower``, ``upper``, ``gap``); ``status``: ``"converged"`` (gap <= tol,
    or the oracle's reply was already in the set), ``"budget"``
    (``max_iter`` reached), ``"oracle_failed"`` (then ``upper`` is NaN and
    ``gap`` inf: no best response to the final mix is known) or the LP's
    failure status.
    """

    defender: np.ndarray | None
    attacker: np.ndarray | None
    attacks: list
    matrix: np.ndarray
    value: float
    upper: float
    gap: float
    history: list = field(default_factory=list)
    status: str = "converged"

    @property
    def exploitability(self) -> list[float]:
        """The gap ``u_k - v_k`` of every iteration (an upper bound on the
        exploitability of ``p_k`` when the oracle is exact)."""
        return [h["gap"] for h in self.history]


def _as_row(row, M: int) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64).reshape(-1)
    if row.shape != (M,) or not np.isfinite(row).all():
        raise fail("double_oracle", "oracle loss row", f"{M} finite numbers", row.tolist())
    return row


def double_oracle(
    oracle: Callable,
    M: int,
    *,
    initial: Sequence = (),
    tol: float = 1e-6,
    max_iter: int = 50,
) -> DoubleOracleResult:
    """Grow a finite set of attacks until the defender's mix is (nearly) unexploitable.

    Parameters
    ----------
    oracle : callable ``p -> (attack, loss_row)`` or ``None`` (see module docstring).
    M : int >= 1, number of rules (the length of ``p`` and of every loss row).
    initial : sequence of ``(attack, loss_row)`` pairs to start from; empty:
        the oracle's best response to the uniform mix.
    tol : float >= 0, stop when ``u_k - v_k <= tol``.
    max_iter : int >= 1, most oracle calls after the initial set.

    Returns a :class:`DoubleOracleResult`; failures (oracle returns ``None``,
    LP fails, budget) are reported by ``status``, with the last mix found.
    """
    where = "double_oracle"
    M = check_int(where, "M", M, low=1)
    tol = check_real(where, "tol", tol, low=0.0)
    max_iter = check_int(where, "max_iter", max_iter, low=1)
    attacks, rows = [], []
    for att, row in initial:
        attacks.append(att)
        rows.append(_as_row(row, M))
    if not rows:
        first = oracle(np.full(M, 1.0 / M))
        if first is None:
            return DoubleOracleResult(None, None, [], np.zeros((0, M)), float("nan"), float("nan"),
                                      float("inf"), [], "oracle_failed")
        attacks.append(first[0])
        rows.append(_as_row(first[1], M))
    history: list[dict] = []
    status = "budget"
    p = q = None
    value = upper = float("nan")
    for k in range(max_iter):
        res = solve_zero_sum(np.vstack(rows))
        if not res.ok:
            status = res.status
            break
        p, q, value = res.defender, res.attacker, res.value
        reply = oracle(p)
        if reply is None:
            # no best response to this mix: its upper bound is unknown (the last reply
            # answered the previous mix)
            status, upper = "oracle_failed", float("nan")
            break
        row = _as_row(reply[1], M)
        known = np.vstack(rows)
        # the attacker may replay a known attack: a weaker reply of a heuristic oracle
        # must not lower the bound (it gave negative "exploitability")
        upper = max(float(row @ p), float(np.max(known @ p)))
        gap = upper - value
        history.append({"iteration": k, "attacks": len(rows), "lower": value, "upper": upper, "gap": gap})
        # a reply already in the set adds nothing: with round-off above tol (tol = 0, or
        # payoffs ~1e12) the loop re-added the same attack until the budget ran out
        if gap <= tol or bool((known == row).all(axis=1).any()):
            status = "converged"
            break
        attacks.append(reply[0])
        rows.append(row)
    # The mix (p, q) solves the game on the first len(q) attacks; an attack
    # added after the last LP (budget exhausted) is kept out of the result.
    used = len(q) if q is not None else len(rows)
    gap = history[-1]["gap"] if history and status != "oracle_failed" else float("inf")
    return DoubleOracleResult(p, q, attacks[:used], np.vstack(rows[:used]), value, upper, gap, history, status)


def matrix_oracle(L) -> Callable:
    """The exact oracle of a finite game: ``p -> (argmax_a (L p)_a, L[a])`` (ties: lowest index)."""
    L = np.asarray(L, dtype=np.float64)
    if L.ndim != 2 or L.size == 0:
        raise fail("matrix_oracle", "L", "a non-empty 2-D matrix (attacks x rules)", L.shape)

    def oracle(p):
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (L.shape[1],):
            # double_oracle's M must be the matrix's number of rules
            raise fail("matrix_oracle", "mix p", f"{L.shape[1]} probabilities (one per column of L; "
                       "double_oracle's M)", p.shape[0] if p.ndim == 1 else p.shape)
        a = int(np.argmax(L @ p))
        return a, L[a]

    return oracle


def solvers_oracle(honest, f: int, pool: Sequence, *, payoff: str = "inner", method=None,
                   structure: str | None = None, **options) -> Callable:
    """The attacker's best response by ``solvers`` (expected-value problem).

    ``oracle(p)`` calls ``solvers.solve(solvers.ExpectedValue(honest, f,
    pool, probs=p), method, **options)``, which minimizes
    ``sum_r p_r <AGG_r([V; B]), mean(V)>`` over the Byzantine rows ``B``, and
    returns ``(B, loss_row)`` with ``loss_row`` recomputed here by
    :func:`.payoff.payoff_values` (so the game's payoff, not the solver's
    bookkeeping, defines the matrix). Returns ``None`` when the solver reports
    ``"infeasible"`` or no rows.

    ``honest``: one honest sample (``Tensor[n-f, d]``), or a sequence of
    samples (synthetic draws, a run's snapshots). With several samples an
    attack is one set of Byzantine rows per sample: the expected loss under
    ``p`` is a sum over samples, so the best response solves every sample on
    its own; the oracle returns the list of rows and the mean loss row (the
    average :func:`.payoff.payoff_matrix` takes). ``structure``: the
    problem's ``structure`` (``None``: ``ExpectedValue``'s default, ``"line"``).
    With ``payoff="cosine"`` or ``"loss"`` the solver still minimizes the
    expected inner product: its replies are then not best responses in that
    game, and the double oracle's gaps bound nothing.
    """
    import torch

    import solvers  # layer 2; imported here so the game layer loads without it

    rules = list(pool)
    single = isinstance(honest, torch.Tensor)
    samples = [honest] if single else list(honest)
    if not samples:
        raise fail("solvers_oracle", "honest", "a tensor or a non-empty sequence of tensors", honest)
    extra = {} if structure is None else {"structure": structure}

    def oracle(p):
        probs = [float(x) for x in p]
        found, rows = [], []
        for V in samples:
            problem = solvers.ExpectedValue(V, f, rules, probs=probs, **extra)
            sol = solvers.solve(problem, method=method, **options)
            if sol.status == "infeasible" or sol.byzantine is None:
                return None
            values, _ = payoff_values(V, sol.byzantine, rules, payoff)
            found.append(sol.byzantine)
            rows.append(defender_loss(values, payoff))
        return (found[0] if single else found), np.mean(rows, axis=0)

    return oracle
