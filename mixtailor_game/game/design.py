"""Pool designer: choose K rules that keep the most rules resilient to every attack.

Input: a boolean matrix ``C[a, r]`` (True when attack a compromises candidate
rule r, e.g. the edges of :func:`.graph.vulnerability_graph`). For a pool
``S`` of ``K`` candidates, the fraction of resilient rules against attack a is
``|{r in S : not C[a, r]}| / K``; the designer maximizes its worst case

    max_{S, |S| = K}  min_a  |{r in S : not C[a, r]}| / K.

This is the quantity Proposition 1 needs large (``(M - q) / M``, the paper's
"sufficiently diverse set of aggregation rules", Remark 2); the paper picks its
pool by hand and does not optimize it.

Methods:

- ``greedy``: add, one at a time, the candidate that maximizes the new
  worst-case resilient count (ties: the larger total resilient count, then
  the lowest index). Fast, no guarantee (a max-min coverage problem).
- ``ilp``: the exact integer program, solved by ``scipy.optimize.milp``
  (HiGHS branch and bound)::

      max t  s.t.  sum_r R[a, r] x_r >= t  (every a),  sum_r x_r = K,
                   x in {0, 1}^M,  t >= 0        (R = not C)

- ``brute_force``: every subset (tests, tiny instances).

Each returns a :class:`PoolDesign` with a status; a solver failure or time
limit is a status (``"budget"``, ``"infeasible"``, ``"numerical"``), not an
exception.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from .._checks import check_int, check_real, fail


@dataclass(frozen=True)
class PoolDesign:
    """A chosen pool: candidate ``indices`` (sorted), ``worst_fraction`` of
    resilient rules over the attacks, ``per_attack`` fractions, the ``method``
    and its ``status`` (``"optimal"`` for ILP / brute force, ``"heuristic"``
    for greedy, or a failure status)."""

    indices: tuple
    worst_fraction: float
    per_attack: tuple
    method: str
    status: str

    def names(self, rules) -> list:
        """The chosen candidates' names from the list of all candidate names."""
        return [rules[i] for i in self.indices]


def _as_compromise(C, K, where):
    C = np.asarray(C)
    if C.ndim != 2 or C.shape[0] < 1 or C.shape[1] < 1:
        raise fail(where, "C", "a non-empty 2-D boolean array (attacks, candidate rules)", C.shape)
    if C.dtype != bool:
        if not np.isin(C, (0, 1)).all():
            raise fail(where, "C", "boolean (True = the attack compromises the rule)", C.dtype)
        C = C.astype(bool)
    K = check_int(where, "K", K, low=1, high=C.shape[1])
    return C, K


def _result(R, idx, K, method, status):
    idx = tuple(sorted(int(i) for i in idx))
    per = R[:, list(idx)].sum(axis=1) / K
    return PoolDesign(idx, float(per.min()), tuple(float(x) for x in per), method, status)


def worst_fraction(C, indices) -> float:
    """``min_a |{r in indices : not C[a, r]}| / |indices|`` for a given pool."""
    C, _ = _as_compromise(C, 1, "worst_fraction")  # NaN is not a boolean
    idx = list(indices)
    if not idx:
        raise fail("worst_fraction", "indices", "non-empty", idx)
    for i in idx:
        check_int("worst_fraction", "indices entry", i, low=0, high=C.shape[1] - 1)
    return float((~C[:, idx]).sum(axis=1).min() / len(idx))


def design_greedy(C, K: int) -> PoolDesign:
    """Greedy pool of size ``K`` (see the module docstring)."""
    C, K = _as_compromise(C, K, "design_greedy")
    R = (~C).astype(np.int64)
    chosen: list[int] = []
    counts = np.zeros(R.shape[0], dtype=np.int64)
    for _ in range(K):
        best, best_key = -1, None
        for r in range(R.shape[1]):
            if r in chosen:
                continue
            new = counts + R[:, r]
            key = (int(new.min()), int(new.sum()))
            if best_key is None or key > best_key:
                best, best_key = r, key
        chosen.append(best)
        counts += R[:, best]
    return _result(R, chosen, K, "greedy", "heuristic")


_MILP_STATUS = {0: "optimal", 1: "budget", 2: "infeasible", 3: "unbounded", 4: "numerical"}


def design_ilp(C, K: int, *, time_limit: float | None = None) -> PoolDesign:
    """Exact pool of size ``K`` by the integer program of the module docstring.

    ``time_limit`` (seconds) bounds HiGHS; if it stops early with an integer
    solution, the status is ``"budget"`` and the pool is the best found.
    """
    where = "design_ilp"
    C, K = _as_compromise(C, K, where)
    if time_limit is not None:  # HiGHS ignored a bad limit with a warning and ran unbounded
        time_limit = check_real(where, "time_limit", time_limit, low=0.0, low_open=True)
    R = (~C).astype(np.float64)
    A, M = R.shape
    # variables (x_1..x_M, t); maximize t  <=>  minimize -t
    c = np.zeros(M + 1)
    c[-1] = -1.0
    cover = LinearConstraint(np.hstack([R, -np.ones((A, 1))]), lb=0.0, ub=np.inf)
    size = LinearConstraint(np.hstack([np.ones((1, M)), np.zeros((1, 1))]), lb=K, ub=K)
    integrality = np.ones(M + 1)
    bounds = Bounds(np.zeros(M + 1), np.concatenate([np.ones(M), [K]]))
    options = {} if time_limit is None else {"time_limit": float(time_limit)}
    res = milp(c, constraints=[cover, size], integrality=integrality, bounds=bounds, options=options)
    status = _MILP_STATUS.get(res.status, "numerical")
    if res.x is None:
        return PoolDesign((), float("nan"), (), "ilp", status)
    idx = np.flatnonzero(np.round(res.x[:M]) > 0.5)
    return _result(R.astype(np.int64), idx, K, "ilp", status)


def design_brute_force(C, K: int, *, max_subsets: int = 200_000) -> PoolDesign:
    """Every subset of size ``K`` (lexicographically first optimum); for tiny instances."""
    where = "design_brute_force"
    C, K = _as_compromise(C, K, where)
    from math import comb

    M = C.shape[1]
    if comb(M, K) > max_subsets:
        raise fail(where, "instance", f"at most {max_subsets} subsets (C(M, K))", comb(M, K))
    R = (~C).astype(np.int64)
    best, best_val = None, -1
    for idx in itertools.combinations(range(M), K):
        val = int(R[:, idx].sum(axis=1).min())
        if val > best_val:
            best, best_val = idx, val
    return _result(R, best, K, "brute_force", "optimal")


def design_pool(C, K: int, *, method: str = "auto", time_limit: float | None = 10.0) -> PoolDesign:
    """``method``: ``"greedy"``, ``"ilp"``, or ``"auto"`` (ILP, falling back to greedy if the ILP fails)."""
    _as_compromise(C, K, "design_pool")  # errors name the function called, not the method it picks
    if method == "greedy":
        return design_greedy(C, K)
    if method == "ilp":
        return design_ilp(C, K, time_limit=time_limit)
    if method != "auto":
        raise fail("design_pool", "method", "one of ('auto', 'greedy', 'ilp')", method)
    res = design_ilp(C, K, time_limit=time_limit)
    if res.status in ("optimal", "budget") and res.indices:
        greedy = design_greedy(C, K)
        return res if res.worst_fraction >= greedy.worst_fraction else greedy
    return design_greedy(C, K)
