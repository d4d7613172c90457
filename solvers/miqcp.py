"""Method ``"miqcp"``: exact mixed-integer quadratically constrained programs for Krum and Bulyan.

Krum (paper eq. (3)) scores each row by the sum of its ``K = n - f_r - 2``
smallest SQUARED l_p distances to the other rows (``f_r`` the rule's own f) and
outputs the lowest-score row (ties to the lowest index). The squares make the
scores piecewise quadratic in the Byzantine rows ``B``, so the MILP route of
:mod:`solvers.milp` is closed; this module writes the attack problems against
Krum (alone, or in a pool with mean / comed / trimmed mean) as a nonconvex
MIQCP and solves it to proven global optimality with SCIP (spatial branch and
bound; ``pyscipopt``, an optional dependency: ``pip install 'mixtailor-game[exact]'``).

Formulation (normalized coordinates ``(G - w_0) / sigma``, in which Krum's choice
and the coordinate-wise rules are unchanged):

- ``D_ij``: squared l_p distance of every pair that involves a Byzantine row,
  as the quadratic equality ``D_ij = sum_t (x_it - x_jt)^2`` (p = 2, or d = 1 for
  any p), or ``D_ij = r_ij^2`` with ``r_ij = sum_t |w_t|`` (p = 1) /
  ``max_t |w_t|`` (p = inf), the ``|w_t|`` split exactly into positive and
  negative parts with one sign binary, the max with one binary per coordinate.
  Honest pairs are constants.
- Sort-free scores. Upper: ``U_i = sum_j a_ij D_ij`` with selection binaries
  ``a_ij`` (``sum_j a_ij = K``; products linearized exactly), so ``U_i >=
  score_i`` and equality is attainable. Lower: the LP dual of "sum of the K
  smallest", ``L_i = K t_i - sum_j e_ij`` with ``e_ij >= t_i - D_ij``, ``e_ij >= 0``
  (and ``L_i >= 0``), so ``L_i <= score_i`` and equality is attainable.
- Selection: binaries ``s_k`` (``sum s_k = 1``); ``s_k = 1`` forces
  ``U_k + margin <= L_j`` for all ``j != k`` (big-M ``max U_k``), hence
  ``score_k <= score_j``: the selected row really has the lowest score.
  Krum's output ``y = sum_h s_h R_h + s_0 B_0`` (the product linearized exactly).
  Symmetry: permuting Byzantine rows changes no rule output up to ties, and ties
  go to the lowest index, so only the first Byzantine row is a candidate of the
  pool's first Krum; every Byzantine row is one of any other Krum's (two Krums can
  pick two different Byzantine rows: audit); with ``f >= 3`` the other rows are
  sorted by their first coordinate.
- Mean / comed / trimmed mean: the exact order-statistic formulation of
  :mod:`solvers.milp` (its column-sorting symmetry break is off: Krum sees rows).
- Objectives as in :mod:`solvers.milp`: ``min <y, u>`` (tailored ``"inner"``),
  ``max lambda`` s.t. ``y = -lambda g`` (tailored ``"lambda"``), ``min xi`` with
  ``xi >= <AGG_m, u>`` (P1 / P2), ``min sum_m p_m <AGG_m, u>`` (expected value).
  The similarity filter: l_1 / l_inf as in :mod:`solvers.milp`, l_2 as the
  nonconvex ``||B_i - B_k||_2^2 >= eps^2``.

Ties. The first solve uses ``margin = 0``: it is the closure of the true
feasible set (strict ``score_k < score_j`` for ``j < k`` relaxed to ``<=``), so
its dual bound is a valid bound of the true problem. Its rows are then run
through the real rules; if the real value is worse than the model said (the
optimum sits on a tie, or SCIP's feasibility tolerance moved a score across
one), the model is solved again with ``margin`` (default ``1e-6`` in normalized
units, 10x SCIP's feasibility tolerance, set to ``1e-7``) for every ``j != k``, a
restriction whose rows the real rule scores as the model does: first with the
first solve's selection and neighbour binaries fixed (a small continuous QCP),
then in full if that fails; the rows are then moved back toward the first
solve's while the real rules still agree (polishing); the bound stays the first
solve's. If the real value still misses the bound, the first solve's rows snapped
onto the honest rows they nearly equal (:func:`snap_to_rows`: a tie won by index,
as partial knowledge's duplicated rows make, met by SCIP only to 1e-8) and the
line search's rows (while ``time_limit`` is not spent: the search has no limit of its
own) are scored too, and the best is kept (``info["tie_repair"]``).
``status = "optimal"`` when SCIP
proved optimality and the recomputed value is within ``gap_tol`` (normalized
units, default ``1e-4``) of the bound; the gap is always reported.

Domain. Each Byzantine coordinate lies in the honest range of that coordinate
widened by ``W = max(box * width, 3.003 sqrt(S*))`` plus, with the similarity
filter, ``(f - 1) eps`` (:func:`solvers.milp.filter_margin`), where ``S*`` is the lowest
honest-only Krum score (K nearest among the other honest rows). When every
rule of the problem is Krum and there is no similarity filter, this box loses
nothing (``info["box_lossless"] = True``): a selected Byzantine row has score at
most ``S*`` (extra rows only lower scores), so it lies within ``sqrt(S*)`` of an
honest row; its neighbours lie within ``sqrt(S*)`` of it; any other Byzantine row
can be moved to a far corner of the box (beyond ``3 sqrt(S*)``) without changing
the selected row. Otherwise the result is the optimum on the box and
``info["box_active"]`` says whether a returned coordinate touches its boundary
(comed / trimmed mean with ``b >= f`` lose nothing beyond the honest range;
Bulyan's box is not proven lossless, see :mod:`solvers.bulyan_exact`). Problems
without a finite optimum (a mean or trimmed mean with ``b < f`` deciding the
objective) get status ``"feasible"``, ``bound=None``, ``info["unbounded"] = True``; so do
P1 / P2 pools with such a rule beside bounded ones (finite optimum, but the mean keeps
falling beyond the box), without the ``"unbounded"`` flag.
Rows from SCIP that miss the filter's ``eps`` by its tolerance are pushed apart to
``eps`` before they are scored (:func:`solvers.milp.push_apart`). Krum with its
own ``f`` below the problem's ``f - 1`` is refused (``miqcp_applicable``).

Bulyan(select=krum) (El Mhamdi et al. 2018; theta = n - 2f rounds of eq. (3)
on the rows left, then trimmed / average / comed on the selected rows, as pinned
in ``DESIGN.md`` and ``notes/DEFINITIONS.md``) is modelled by
:mod:`solvers.bulyan_exact` as a decision diagram over the sets of rows left, for
one Byzantine row (f = 1, so n = 7), alone or pooled with the rules above; the
same closure / margin runs and real-rule recomputation apply (models with
Bulyan run SCIP without presolve restarts and probing rounds, ``BULYAN_PARAMS``).

Not covered (``miqcp_applicable`` says why): Bulyan with f >= 2, other
selections or Krum / geomed aggregation (see :mod:`solvers.bulyan_exact`), Multi-Krum, geometric
medians, the 1-D ``"line"`` structure (use ``method="line"``), l_p with
``p`` not in {1, 2, inf} when ``d > 1``. Sizes: meant for ``n <= 7``, ``d <= 3``;
the time grows quickly with ``n``, ``d`` and ``f`` (``time_limit`` stops it with
status ``"budget"`` and the bound reached).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from mixtailor_game.rules import Comed, Krum, Mean, TrimmedMean

from . import bulyan_exact
from .line import line_rows, solve_line
from .milp import (_Formulation, _bounds, _fallback_rows, check_options, filter_margin, normalize, problem_unbounded,
                   push_apart, rule_unbounded)
from .problems import Instance
from .solution import evaluate, filter_ignored, make_solution, unique_rules

OPTIONS = ("time_limit", "box", "gap_tol", "margin", "tol", "seed", "verbose", "max_binaries", "scip_params")
# Few cut rounds at the root: on these small models SCIP's default (unlimited rounds of
# weak cuts) was 3-5x slower to prove optimality than stopping after 3 (measured, n = 5, d = 2).
DEFAULT_PARAMS = {"separating/maxroundsroot": 3, "numerics/feastol": 1e-7}
# Models with Bulyan: SCIP's restarts and probing rounds in presolve cost seconds on the big
# decision diagram and were erratic (2-56 s on one d = 1 instance); without them 2-6 s (measured).
BULYAN_PARAMS = {"presolving/maxrestarts": 0, "propagating/probing/maxprerounds": 0}
LINEAR_RULES = (Mean, Comed, TrimmedMean)

_MISSING = ("solvers.miqcp: method 'miqcp' needs pyscipopt (SCIP); install it with "
            "pip install 'mixtailor-game[exact]' (or pip install pyscipopt)")


def _import_scip():
    try:
        import pyscipopt
    except ImportError:
        raise ImportError(_MISSING) from None
    return pyscipopt


def scip_available() -> bool:
    """Whether ``pyscipopt`` can be imported (the ``"miqcp"`` method needs it)."""
    try:
        _import_scip()
    except ImportError:
        return False
    return True


def miqcp_applicable(inst: Instance) -> str | None:
    """``None`` when the MIQCP models the instance exactly, else the reason it does not."""
    uniq, _, _ = unique_rules(inst.rules, inst.weights)
    for r in uniq:
        if type(r) is Krum:
            if r.f < inst.f - 1:
                # K = n - f_r - 2 neighbours exceed the n - f - 1 honest others: the honest-only
                # score S* and its cuts are undefined (the box would be infinite)
                return (f"rule {r.name}: needs the rule's f >= problem f - 1 (K = n - f_r - 2 > n - f - 1 "
                        f"honest rows), got rule f={r.f}, problem f={inst.f}")
            if inst.d > 1 and float(r.p) not in (1.0, 2.0, math.inf):
                return f"rule {r.name}: l_p with p = {float(r.p):g} not in (1, 2, inf) for d > 1"
        elif bulyan_exact.is_bulyan(r):
            reason = bulyan_exact.applicable(r, inst)
            if reason is not None:
                return reason
        elif type(r) not in LINEAR_RULES:
            return (f"rule {getattr(r, 'name', type(r).__name__)} is not krum / bulyan / mean / comed / "
                    "trimmed mean")
    if inst.structure == "line":
        return "structure 'line' is a 1-D problem (use method='line', exact there)"
    if any(type(r) in LINEAR_RULES for r in uniq) and inst.f > 4:
        return f"f = {inst.f} > 4 (2^f binaries per order statistic)"
    if (inst.structure == "optimal" and inst.eps > 0 and inst.f >= 2 and inst.d > 1
            and inst.eps_p not in (1.0, 2.0, math.inf)):
        return f"the filter norm p = {inst.eps_p:g} is not 1, 2 or inf (d > 1)"
    return None


class _Form(_Formulation):
    """milp's formulation without its column-sorting symmetry break (Krum sees rows)."""

    def sorted_rows(self) -> bool:
        return False


def _honest_best_score(R: np.ndarray, K: int, p: float) -> float:
    """``S*``: the lowest Krum score among honest rows when only honest rows count."""
    m = R.shape[0]
    diff = R[:, None, :] - R[None, :, :]
    if p == 2.0 or R.shape[1] == 1:
        D = (diff ** 2).sum(-1)
    else:
        D = np.linalg.norm(diff, ord=p, axis=-1) ** 2
    D[np.arange(m), np.arange(m)] = np.inf
    return float(np.sort(D, 1)[:, :K].sum(1).min())


class _Builder:
    """One SCIP model of the instance (normalized coordinates); ``margin`` as in the docstring."""

    def __init__(self, scip, inst: Instance, lo: np.ndarray, hi: np.ndarray, margin: float, seed: int,
                 verbose: bool):
        self.scip, self.inst, self.margin = scip, inst, float(margin)
        F = _Form(inst, 1.0, 1e3)
        # widen the Byzantine variables' box to [lo, hi]
        for row in F.b:
            for j, e in enumerate(row):
                (k,) = [k for k in e if k is not None]
                F.m.lb[k], F.m.ub[k] = float(lo[j]), float(hi[j])
                F.vb[k] = (float(lo[j]), float(hi[j]))
        self.F = F
        uniq, _, w = unique_rules(inst.rules, inst.weights)
        self.uniq, self.w = uniq, w
        u = inst.u.double().cpu().numpy()
        self.u = u
        lin_idx = [i for i, r in enumerate(uniq) if type(r) in LINEAR_RULES]
        F.plan([uniq[i] for i in lin_idx], w[lin_idx], u)
        d = inst.d
        self.aggs = {i: [F.aggregate(uniq[i], j) for j in range(d)] for i in lin_idx}
        F.add_filter_done = False
        if inst.eps > 0 and inst.f >= 2 and inst.structure == "optimal" and (inst.eps_p != 2.0 or d == 1):
            F.add_filter()
            F.add_filter_done = True
        m = scip.Model()
        if not verbose:
            m.hideOutput()
        m.setParam("randomization/randomseedshift", int(seed))
        self.m = m
        self.x = [m.addVar(lb=None if not math.isfinite(F.m.lb[k]) else F.m.lb[k],
                           ub=None if not math.isfinite(F.m.ub[k]) else F.m.ub[k],
                           vtype="B" if F.m.integ[k] else "C") for k in range(len(F.m.lb))]
        for row, rlo, rhi in zip(F.m.rows, F.m.rlo, F.m.rhi):
            e = self.lin(row)
            if isinstance(e, float):  # milp's reductions can leave a row without variables
                if not (rlo - 1e-9 <= e <= rhi + 1e-9):
                    m.addCons(m.addVar(lb=0.0, ub=0.0) >= 1.0)  # a violated constant row: infeasible
                continue
            if rlo == rhi:
                m.addCons(e == rlo)
            else:
                if math.isfinite(rlo):
                    m.addCons(e >= rlo)
                if math.isfinite(rhi):
                    m.addCons(e <= rhi)
        self.nbin = sum(F.m.integ)
        if inst.eps > 0 and inst.f >= 2 and inst.structure == "optimal" and not F.add_filter_done:
            for i in range(inst.f):
                for k in range(i + 1, inst.f):
                    sq = scip.quicksum(self.diff2(F.b[i][j], F.b[k][j]) for j in range(d))
                    m.addCons(sq >= inst.eps ** 2)
        if inst.structure == "optimal" and inst.f >= 3:
            for i in range(1, inst.f - 1):
                m.addCons(self.lin(F.b[i][0]) <= self.lin(F.b[i + 1][0]))
        self.dist_cache: dict = {}
        self.key_vars: list = []  # Krum's selection and neighbour binaries (fixed by the repair run)
        self.krum, self.bulyan = {}, {}
        for i, r in enumerate(uniq):
            if type(r) is Krum:
                self.krum[i] = self.krum_block(r, first=not self.krum)
            elif bulyan_exact.is_bulyan(r):
                self.bulyan[i] = bulyan_exact.bulyan_block(self, r)
                self.key_vars += self.bulyan[i]["binaries"]
        self.objective()

    # --- expressions -------------------------------------------------------------------
    def var(self, lb=None, ub=None, binary=False):
        if binary:
            self.nbin += 1
            return self.m.addVar(vtype="B")
        return self.m.addVar(lb=lb, ub=ub, vtype="C")

    def lin(self, e):
        """A SCIP expression (or a float) from milp's ``{var: coef, None: const}``."""
        if isinstance(e, (int, float)):
            return float(e)
        out = e.get(None, 0.0)
        for k, v in e.items():
            if k is not None and v != 0.0:
                out = out + v * self.x[k]
        return out

    def diff2(self, a, b):
        e = self.lin(a) - self.lin(b)
        return e * e

    def row(self, i: int):
        """Row ``i`` of ``G = [B; R]`` as a list of (expression dict | float)."""
        f = self.inst.f
        if i < f:
            return self.F.b[i]
        return [float(v) for v in self.Rn[i - f]]

    @property
    def Rn(self):
        return self.inst.R.double().cpu().numpy()

    def coord(self, i, j):
        """``(dict expression, (lo, hi))`` of ``G[i, j]``."""
        e = self.row(i)[j]
        if isinstance(e, float):
            return {None: e}, (e, e)
        return e, _bounds(e, self.F.vb)

    def identical(self, i, j) -> bool:
        f = self.inst.f
        return self.inst.structure != "optimal" and i < f and j < f

    # --- Krum ----------------------------------------------------------------------------
    def distance(self, i: int, j: int, p: float):
        """``(D_ij, upper bound)``: a float for constant pairs, else a SCIP variable."""
        if i > j:
            i, j = j, i
        key = (p, i, j)
        if key in self.dist_cache:
            return self.dist_cache[key]
        inst, m, f, d = self.inst, self.m, self.inst.f, self.inst.d
        if self.identical(i, j):
            out = (0.0, 0.0)
        elif i >= f:
            a, b = self.Rn[i - f], self.Rn[j - f]
            val = float(((a - b) ** 2).sum()) if (p == 2.0 or d == 1) else float(np.linalg.norm(a - b, p)) ** 2
            out = (val, val)
        else:
            ws, A = [], []
            for t in range(d):
                ei, _ = self.coord(i, t)
                ej, _ = self.coord(j, t)
                w = dict(ei)
                for k, v in ej.items():
                    w[k] = w.get(k, 0.0) - v
                lo, hi = _bounds(w, self.F.vb)
                ws.append((w, lo, hi))
                A.append(max(abs(lo), abs(hi)))
            if (p == 2.0 or d == 1) and j >= f:
                # ||B_i - R_h||^2 = Q_i - 2 <B_i, R_h> + ||R_h||^2 with Q_i = ||B_i||^2: linear in
                # (Q_i, B_i), so each Byzantine row carries one nonconvex equality, not one per pair
                ub = float(sum(a * a for a in A))
                D = self.var(0.0, ub)
                h = self.Rn[j - f]
                m.addCons(D == self.sqnorm(i) + float(h @ h)
                          - self.scip.quicksum(2.0 * float(h[t]) * self.lin(self.coord(i, t)[0]) for t in range(d)))
            elif p == 2.0 or d == 1:
                ub = float(sum(a * a for a in A))
                D = self.var(0.0, ub)
                m.addCons(D == self.scip.quicksum(self.lin(w) * self.lin(w) for w, _, _ in ws))
            else:
                absv = []
                for (w, lo, hi), At in zip(ws, A):
                    if lo >= 0:
                        absv.append(self.lin(w))
                    elif hi <= 0:
                        absv.append(-self.lin(w))
                    else:
                        wp, wn, sg = self.var(0.0, hi), self.var(0.0, -lo), self.var(binary=True)
                        m.addCons(self.lin(w) == wp - wn)
                        m.addCons(wp <= hi * sg)
                        m.addCons(wn <= -lo * (1 - sg))
                        absv.append(wp + wn)
                if p == 1.0:
                    rmax = float(sum(A))
                    r = self.var(0.0, rmax)
                    m.addCons(r == self.scip.quicksum(absv))
                else:
                    rmax = float(max(A))
                    r = self.var(0.0, rmax)
                    taus = [self.var(binary=True) for _ in absv]
                    m.addCons(self.scip.quicksum(taus) == 1)
                    for a, tau in zip(absv, taus):
                        m.addCons(r >= a)
                        m.addCons(r <= a + rmax * (1 - tau))
                ub = rmax * rmax
                D = self.var(0.0, ub)
                m.addCons(D == r * r)
            out = (D, ub)
        self.dist_cache[key] = out
        return out

    def sqnorm(self, i: int):
        """``Q_i = ||B_i||_2^2`` (a variable with one quadratic equality; identical rows share it)."""
        key = ("Q", 0 if self.identical(i, 0) else i)
        if key not in self.dist_cache:
            lohi = [self.coord(i, t)[1] for t in range(self.inst.d)]
            qlo = sum(0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi) for lo, hi in lohi)
            qhi = sum(max(lo * lo, hi * hi) for lo, hi in lohi)
            Q = self.var(float(qlo), float(qhi))
            self.m.addCons(Q == self.scip.quicksum(self.lin(self.coord(i, t)[0]) * self.lin(self.coord(i, t)[0])
                                                   for t in range(self.inst.d)))
            self.dist_cache[key] = Q
        return self.dist_cache[key]

    def krum_block(self, rule, first=True):
        inst, m, scip = self.inst, self.m, self.scip
        n, f, d = inst.n, inst.f, inst.d
        p = float(rule.p)
        K = n - rule.f - 2
        ident = inst.structure != "optimal"
        # candidates for Krum's output (see docstring): a permutation of the Byzantine rows
        # makes only ONE Krum pick row 0; a second Krum may pick another one (two Krums
        # picking two different Byzantine rows beat the old model's "optimal" value)
        byz = [0] if (ident or first) else list(range(f))
        rows = byz + list(range(f, n))
        compared = rows if ident else list(range(n))
        L, U, Umax = {}, {}, {}
        Rn = self.Rn
        S0 = {}  # honest-only scores: score_h <= S0[h] whatever B is (extra rows only lower scores)
        for h in range(f, n):
            Dh = sorted(self.distance(h, j, p)[0] for j in range(f, n) if j != h)
            S0[h] = float(sum(Dh[:K]))
        Sstar = min(S0.values())
        for i in compared:
            others = [j for j in range(n) if j != i]
            Ds = [self.distance(i, j, p) for j in others]
            ubmax = max(ub for _, ub in Ds)
            if all(isinstance(D, float) for D, _ in Ds):
                L[i] = float(sum(sorted(D for D, _ in Ds)[:K]))
            else:
                t = self.var(0.0, ubmax)
                es = []
                for D, ub in Ds:
                    e = self.var(0.0, ubmax)
                    m.addCons(e >= t - D)
                    es.append(e)
                Li = K * t - scip.quicksum(es)
                m.addCons(Li >= 0)
                if i >= f:
                    m.addCons(Li <= S0[i])
                L[i] = Li
            if i in rows:
                a = [self.var(binary=True) for _ in Ds]
                self.key_vars += a
                m.addCons(scip.quicksum(a) == K)
                vs = []
                for (D, ub), ai in zip(Ds, a):
                    if isinstance(D, float):
                        vs.append(D * ai)
                    else:
                        v = self.var(0.0, ub)
                        m.addCons(v >= D - ub * (1 - ai))
                        vs.append(v)
                U[i] = scip.quicksum(vs)
                Umax[i] = float(sum(sorted((ub for _, ub in Ds), reverse=True)[:K]))
        s = {k: self.var(binary=True) for k in rows}
        self.key_vars += list(s.values())
        m.addCons(scip.quicksum(s.values()) == 1)
        mg = self.margin
        for k in rows:
            for j in compared:
                if j == k:
                    continue
                M = Umax[k] + mg
                m.addCons(U[k] - L[j] + mg * s[k] <= M * (1 - s[k]))
        # a selected row scores at most S* (valid cut): U_k <= S* when s_k = 1
        for k in rows:
            if Umax[k] > Sstar:
                m.addCons(U[k] <= Sstar + (Umax[k] - Sstar) * (1 - s[k]))
        # output y = sum_h s_h R_h + s_0 B_0 (McCormick, exact for binary s_0). A selected
        # Byzantine row lies within sqrt(S*) of an honest row, so within the honest range
        # widened by sqrt(S*) in each coordinate: [lo1, hi1] when s_0 = 1.
        y = []
        r = math.sqrt(Sstar)
        for t in range(d):
            qs = []
            for i in byz:
                e0, (lo, hi) = self.coord(i, t)
                lo1 = max(lo, float(Rn[:, t].min()) - r)
                hi1 = min(hi, float(Rn[:, t].max()) + r)
                q = self.var(min(lo1, 0.0), max(hi1, 0.0))
                b0 = self.lin(e0)
                if lo1 > lo:
                    m.addCons(b0 >= lo1 - (lo1 - lo) * (1 - s[i]))
                if hi1 < hi:
                    m.addCons(b0 <= hi1 + (hi - hi1) * (1 - s[i]))
                m.addCons(q >= lo1 * s[i])
                m.addCons(q <= hi1 * s[i])
                m.addCons(q >= b0 - hi * (1 - s[i]))
                m.addCons(q <= b0 - lo * (1 - s[i]))
                qs.append(q)
            yt = scip.quicksum(qs) + scip.quicksum(float(self.Rn[h - f, t]) * s[h] for h in rows if h >= f)
            y.append(yt)
        return dict(s=s, y=y, K=K)

    # --- objective -----------------------------------------------------------------------
    def output(self, i: int):
        if i in self.krum:
            return self.krum[i]["y"]
        if i in self.bulyan:
            return self.bulyan[i]["y"]
        return [self.lin(e) for e in self.aggs[i]]

    def objective(self):
        inst, m, scip, u = self.inst, self.m, self.scip, self.u
        o = inst.offset.double().cpu().numpy()
        inner = {i: scip.quicksum(float(u[j]) * self.output(i)[j] for j in range(inst.d)) - float(o @ u)
                 for i in range(len(self.uniq))}
        self.lam = None
        if inst.kind == "max":
            xi = self.var(None, None)
            for e in inner.values():
                m.addCons(e <= xi)
            m.setObjective(xi, "minimize")
        elif inst.kind == "expected":
            m.setObjective(scip.quicksum(float(self.w[i]) * inner[i] for i in inner), "minimize")
        elif inst.objective == "inner":
            m.setObjective(inner[0], "minimize")
        else:
            lam = self.var(None, None)
            y = self.output(0)
            for j in range(inst.d):
                m.addCons(y[j] - float(o[j]) + float(u[j]) * lam == 0)
            self.lam = lam
            m.setObjective(-1.0 * lam, "minimize")

    def rows_from_solution(self, sol) -> torch.Tensor:
        xv = [self.m.getSolVal(sol, v) for v in self.x]
        return self.F.rows_from(xv)

    def selected(self, sol) -> dict:
        out = {self.uniq[i].name: int(max(blk["s"], key=lambda k: self.m.getSolVal(sol, blk["s"][k])))
               for i, blk in self.krum.items()}
        out.update({self.uniq[i].name: bulyan_exact.selected_rows(self, blk, sol) for i, blk in self.bulyan.items()})
        return out


def _box(inst: Instance, box: float):
    """Per-coordinate ``(lo, hi)`` of the Byzantine rows (normalized units) and whether it is lossless."""
    R = inst.R.double().cpu().numpy()
    o = inst.offset.double().cpu().numpy()
    lo0, hi0 = np.minimum(R.min(0), o), np.maximum(R.max(0), o)
    width = box * np.maximum(hi0 - lo0, 1e-3 * (1 + np.abs(hi0) + np.abs(lo0)))
    uniq, _, _ = unique_rules(inst.rules, inst.weights)
    W = 0.0
    for r in uniq:
        if type(r) is Krum:
            S = _honest_best_score(R, inst.n - r.f - 2, float(r.p))
            W = max(W, 3.003 * math.sqrt(S) + 1e-9)
        elif bulyan_exact.is_bulyan(r):
            W = max(W, bulyan_exact.box_width(R, r))
    lo = np.minimum(lo0 - width, R.min(0) - W) - filter_margin(inst)  # room for eps-apart rows (finding 1)
    hi = np.maximum(hi0 + width, R.max(0) + W) + filter_margin(inst)
    # Krum only: see the module docstring. Not Bulyan: its second tie key sums the squared
    # distances to every row left, B included, so a far B can change the selection (finding 5)
    lossless = all(type(r) is Krum for r in uniq) and not (inst.eps > 0 and inst.f >= 2)
    return lo, hi, lossless


def snap_to_rows(B: torch.Tensor, R: torch.Tensor, tol: float) -> torch.Tensor:
    """``B`` with each row within ``tol`` (l_inf) of a row of ``R`` replaced by that row."""
    B = B.clone()
    Rb = R.to(B)
    for i in range(B.shape[0]):
        dist = (Rb - B[i]).abs().amax(1)
        h = int(torch.argmin(dist))
        if float(dist[h]) <= tol:
            B[i] = Rb[h]
    return B


def _set_param(model, name, value):
    """``model.setParam`` with an error that names the parameter."""
    try:
        model.setParam(name, value)
    except (KeyError, ValueError, TypeError, LookupError) as e:
        raise ValueError(f"solvers.miqcp: scip_params must hold valid SCIP parameters, got {name!r}={value!r} "
                         f"({e})") from None


def method_miqcp(inst: Instance, **options):
    """``solvers.solve(problem, method="miqcp")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.miqcp: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    opts = dict(time_limit=60.0, box=1.0, gap_tol=1e-4, margin=1e-6, tol=1e-6, seed=0, verbose=False,
                max_binaries=5000, scip_params=None)
    opts.update(options)
    opts = check_options("solvers.miqcp", opts)
    if opts["scip_params"] is not None and not isinstance(opts["scip_params"], dict):
        raise ValueError(f"solvers.miqcp: scip_params must be a dict or None, got {opts['scip_params']!r}")
    reason = miqcp_applicable(inst)
    if reason is not None:
        raise ValueError(f"solvers.miqcp: not applicable: {reason}")
    scip = _import_scip()
    if inst.structure != "optimal" and inst.eps > 0 and inst.f >= 2:
        return filter_ignored(inst, method_miqcp, "miqcp", t0, **options)
    orig = inst
    lam = inst.objective == "lambda"
    inst, o_t, sigma, ufac, vscale = normalize(inst)
    lo, hi, lossless = _box(inst, float(opts["box"]))

    def norm_value(v):  # the real value in the model's (normalized, minimized) units
        return -v if lam else v / vscale

    def to_orig(v):
        return -v if lam else v * vscale

    deadline = None if opts["time_limit"] is None else time.perf_counter() + float(opts["time_limit"])
    params = dict(DEFAULT_PARAMS)
    if any(bulyan_exact.is_bulyan(r) for r in inst.rules):
        params.update(BULYAN_PARAMS)
    params.update(opts["scip_params"] or {})
    runs, bound_n, best, first_status, fix, B_exact = [], None, None, None, None, None
    # 1. exact (closure, margin 0): the bound; 2. "repair": the margin model with the
    # binaries of run 1 fixed (a continuous QCP, fast); 3. the full margin model.
    for kind, margin in (("exact", 0.0), ("repair", float(opts["margin"])), ("margin", float(opts["margin"]))):
        if kind == "repair" and fix is None:
            continue
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0.05:
            break
        b = _Builder(scip, inst, lo, hi, margin, int(opts["seed"]), bool(opts["verbose"]))
        if b.nbin > opts["max_binaries"]:
            raise ValueError(f"solvers.miqcp: binaries must be <= max_binaries={opts['max_binaries']}, "
                             f"got {b.nbin}")
        for k, v in params.items():
            _set_param(b.m, k, v)
        if left is not None:
            b.m.setParam("limits/time", max(left, 0.05))
        if kind == "repair":
            for var, val in zip(b.key_vars, fix):
                b.m.fixVar(var, val)
        try:
            b.m.optimize()
        except Exception as e:  # SCIP's LP solver can fail on badly scaled models (huge eps)
            runs.append(dict(kind=kind, margin=margin, scip_status="error", error=str(e)))
            if kind == "exact":
                first_status = "error"
                break
            continue
        st = b.m.getStatus()
        run = dict(kind=kind, margin=margin, scip_status=st, nodes=int(b.m.getNNodes()),
                   time=float(b.m.getSolvingTime()), binaries=b.nbin, variables=int(b.m.getNVars()),
                   constraints=int(b.m.getNConss()))
        if kind == "exact":
            first_status = st
            db = b.m.getDualbound()
            if st != "infeasible" and math.isfinite(db) and abs(db) < 1e19:
                bound_n = float(db)
        if b.m.getNSols() > 0 and st != "infeasible":
            sol = b.m.getBestSol()
            model_obj = float(b.m.getSolObjVal(sol))
            Bn = b.rows_from_solution(sol)
            B = o_t + sigma * Bn.to(o_t)
            if inst.structure == "optimal" and inst.f >= 2 and inst.eps > 0:
                # SCIP meets ||B_i - B_k|| >= eps only to its feasibility tolerance (finding 2)
                B = push_apart(B, float(orig.eps), float(orig.eps_p))
            real = make_solution(orig, B, method="miqcp", status="feasible", t0=t0, tol=opts["tol"])
            rn = norm_value(real.value) if real.status != "infeasible" else math.inf
            box_active = bool(((Bn.numpy() <= lo + 1e-7 * (1 + abs(lo))) |
                               (Bn.numpy() >= hi - 1e-7 * (1 + abs(hi)))).any())
            run.update(model_objective=to_orig(model_obj), real_value=real.value, selected=b.selected(sol),
                       box_active=box_active)
            runs.append(run)
            if best is None or rn < best[0]:
                best = (rn, B, box_active)
            if kind == "exact":
                fix = [float(round(b.m.getSolVal(sol, v))) for v in b.key_vars]
                B_exact = B
            if rn <= (bound_n if bound_n is not None else model_obj) + float(opts["gap_tol"]):
                break  # the real rules agree with the model: no tie trouble
        else:
            runs.append(run)
            if kind == "exact":
                break  # infeasible, or no solution within the limit: a restriction cannot do better
    info = dict(runs=runs, scip_status=first_status, box_lossless=lossless,
                box=dict(lo=(o_t.numpy() + sigma * lo).tolist(), hi=(o_t.numpy() + sigma * hi).tolist()),
                normalization=dict(sigma=sigma, u_factor=ufac), solver=f"SCIP via pyscipopt {scip.__version__}")
    bound = None if bound_n is None else to_orig(bound_n)
    iters = sum(r.get("nodes", 0) for r in runs)
    if first_status == "infeasible":
        return make_solution(orig, line_rows(orig, [0.0])[0], method="miqcp", status="infeasible", t0=t0,
                             info=info, tol=opts["tol"])
    if best is None and first_status == "error":
        info["reason"] = "SCIP failed on the exact model; returning always-feasible rows"
        return make_solution(orig, _fallback_rows(orig), method="miqcp", status="feasible", t0=t0, info=info,
                             iterations=iters, tol=opts["tol"])
    if best is None:
        B = orig.own if orig.own is not None else line_rows(orig, [0.0])[0]
        return make_solution(orig, B, method="miqcp", status="budget", t0=t0, bound=bound, info=info,
                             iterations=iters, tol=opts["tol"])
    rn, B, box_active = best
    if B_exact is not None and B is not B_exact:
        # polish: the exact run's rows sit on a tie that the real rules break the other way;
        # walk from the margin run's rows toward them while the real rules agree (each
        # candidate is evaluated with the real rules; only improvements are kept)
        for k in range(1, 41):
            a = 2.0 ** -k
            Bc = B_exact + a * (B - B_exact)
            ev = evaluate(orig, Bc, opts["tol"])
            if ev["filter_ok"] and ev["feasible_lambda"] is not False and norm_value(ev["value"]) < rn:
                rn, B = norm_value(ev["value"]), Bc
                info["polished"] = a
    target = (bound_n if bound_n is not None else -math.inf) + float(opts["gap_tol"])
    if rn > target:
        # ties (audit finding 6): the optimum can sit on a Krum tie won by index, which SCIP
        # meets only to its tolerance (a Byzantine row 1e-8 off a duplicated honest row,
        # as partial knowledge makes them); try the exact run's rows snapped onto the honest
        # rows they nearly equal, and the line search's rows (which include the honest
        # rows' nearest points); keep what the real rules score better
        tries = []
        if B_exact is not None:
            tries.append(("snapped", snap_to_rows(B_exact, orig.R, 1e-5 * sigma)))
        if deadline is None or time.perf_counter() < deadline:  # the line search has no time limit
            tries.append(("line", line_rows(orig, [solve_line(orig)[0]])[0]))
        for name, Bc in tries:
            ev = evaluate(orig, Bc, opts["tol"])
            if (torch.isfinite(Bc).all() and ev["filter_ok"] and ev["feasible_lambda"] is not False
                    and norm_value(ev["value"]) < rn):
                rn, B = norm_value(ev["value"]), Bc
                info["tie_repair"] = name
    info["box_active"] = box_active
    if problem_unbounded(orig):
        # a mean (or trimmed mean with b < f) decides the objective: no finite optimum (finding 8)
        info["unbounded"] = True
        info["reason"] = "the objective is unbounded (mean, or trimmed mean with b < f): optimum on the box only"
        bound, bound_n = None, None
    elif orig.kind == "max" and any(rule_unbounded(r, orig.f) for r in unique_rules(orig.rules, orig.weights)[0]):
        # P1 / P2 with a mean (or trimmed mean with b < f) beside bounded rules: a finite
        # optimum, but the mean keeps falling beyond the box, so the box's optimum and SCIP's
        # bound say nothing about rows outside it (seen: Krum + mean, rows beyond the box
        # scored -0.051 where the box's "optimal" -0.015 claimed a bound)
        info["reason"] = ("a mean (or trimmed mean with b < f) in the pool keeps falling beyond the box: "
                          "optimum on the box only")
        bound, bound_n = None, None
    proven = first_status == "optimal" and bound_n is not None and rn <= bound_n + float(opts["gap_tol"])
    status = "optimal" if proven else ("budget" if first_status in ("timelimit", "userinterrupt", "memlimit",
                                                                    "nodelimit", "totalnodelimit", "stallnodelimit",
                                                                    "sollimit", "bestsollimit", "restartlimit")
                                       else "feasible")
    return make_solution(orig, B, method="miqcp", status=status, t0=t0, bound=bound, info=info,
                         iterations=iters, tol=opts["tol"])
