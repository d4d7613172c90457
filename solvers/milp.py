"""Method ``"milp"``: exact mixed-integer linear programs for coordinate-wise rules.

For one coordinate ``j``, let ``h_1 <= .. <= h_m`` be the sorted honest values
(``m = n - f``), ``H_c = h_1 + .. + h_c`` and ``b_1j .. b_fj`` the Byzantine
values. The sum of the ``k`` smallest values of the merged column is

    S_k = min over subsets T of [f] with k - m <= |T| <= k of  sum_{i in T} b_ij + H_{k - |T|},

a minimum of affine functions of ``B``. The rules are linear in these sums:
mean ``= S_n / n``, comed ``= S_k - S_{k-1}`` (odd n, ``k = (n+1)/2``) or
``(S_{n/2+1} - S_{n/2-1}) / 2`` (even n), trimmed mean(b) ``= (S_{n-b} - S_b) / (n - 2b)``.
Each minimum is modelled exactly with one binary per subset (``z <= L_T``,
``z >= L_T - M_T (1 - y_T)``, ``sum_T y_T = 1``, big-M from the box bounds), so
the program is exact, not a relaxation. With identical rows (``suboptimal``,
``line``) the subsets collapse to their sizes. The similarity filter
``||B_i - B_j|| >= eps`` is a disjunction over coordinates (l_inf, one binary
per coordinate and sign) or over signs (l_1); in d = 1 every norm is the same.

Domain: each ``b_ij`` lies in the honest range of coordinate j widened by
``box`` times its width (``box=1.0``; for the line, ``|t| <= t_max * s0`` as in
:mod:`solvers.line`). For comed and trimmed mean with ``b >= f`` values
beyond the honest range act like the range's ends, so the box loses nothing
and the optimum is global; for the mean (unbounded below) it is the optimum
on the box. Solved with ``scipy.optimize.milp`` (HiGHS branch and cut), which
returns a proven dual bound: ``bound`` and ``gap`` in the solution.

Strengthening (exactness kept): the model is built in normalized coordinates
``(G - w_0) / sigma`` (the rules are affine equivariant); a minimum that the
objective can only push up needs no binaries (``z <= L_T`` suffices: the
optimum sets ``z`` to the minimum and the real rules at the returned rows can
only do better); without a filter each column of ``B`` is taken sorted
(coordinate-wise rules see column multisets only), which breaks the f!
symmetry and leaves ``f + 1`` terms per minimum instead of ``2^f``. The
lambda problem is always feasible (sending the reference rows gives
``lambda = -1``); its equality is imposed to ``1e-8`` in normalized units, and
if HiGHS still calls the model infeasible (a numerical failure we have seen
at d = 20) the solution reports that point with status ``feasible``.

Not covered (and ``milp_applicable`` says so): Krum / Bulyan, whose eq. (3)
scores square the distances (piecewise quadratic in ``B``, an MIQCP), and
geometric medians (not piecewise linear).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

import torch

from mixtailor_game.rules import Comed, Mean, TrimmedMean

from .line import line_rows
from .problems import Instance
from .solution import make_solution, unique_rules

OPTIONS = ("box", "time_limit", "mip_rel_gap", "t_max", "max_binaries", "tol")


def milp_applicable(inst: Instance, max_binaries: int = 20000) -> str | None:
    """``None`` when the MILP models the instance exactly, else the reason it does not."""
    uniq, _, _ = unique_rules(inst.rules, inst.weights)
    for r in uniq:
        if type(r) not in (Mean, Comed, TrimmedMean):
            return f"rule {getattr(r, 'name', type(r).__name__)} is not mean / comed / trimmed mean"
    if inst.f > 4:
        return f"f = {inst.f} > 4 (2^f binaries per order statistic)"
    if (inst.structure == "optimal" and inst.eps > 0 and inst.f >= 2 and inst.d > 1
            and inst.eps_p not in (1.0, math.inf)):
        return f"the filter norm p = {inst.eps_p:g} is not 1 or inf (d > 1)"
    return None


class _Model:
    """A tiny builder of ``min c^T x`` s.t. ``lo <= A x <= hi``, integrality."""

    def __init__(self):
        self.presolve = True
        self.lb, self.ub, self.integ, self.rows, self.rlo, self.rhi = [], [], [], [], [], []

    def var(self, lb=-np.inf, ub=np.inf, binary=False) -> int:
        self.lb.append(0.0 if binary else lb)
        self.ub.append(1.0 if binary else ub)
        self.integ.append(1 if binary else 0)
        return len(self.lb) - 1

    def add(self, expr: dict, lo=-np.inf, hi=np.inf):
        """Constraint ``lo <= sum(coef * x) + const <= hi`` (``expr`` holds ``None: const``)."""
        const = expr.get(None, 0.0)
        self.rows.append({k: v for k, v in expr.items() if k is not None and v != 0.0})
        self.rlo.append(lo - const)
        self.rhi.append(hi - const)

    def solve(self, c: dict, time_limit, mip_rel_gap):
        nv = len(self.lb)
        cost = np.zeros(nv)
        for k, v in c.items():
            if k is not None:
                cost[k] += v
        data, ri, ci = [], [], []
        for r, row in enumerate(self.rows):
            for k, v in row.items():
                ri.append(r)
                ci.append(k)
                data.append(v)
        A = sp.csr_array((data, (ri, ci)), shape=(len(self.rows), nv))
        cons = [LinearConstraint(A, np.array(self.rlo), np.array(self.rhi))] if self.rows else []
        opts = {"disp": False, "mip_rel_gap": mip_rel_gap, "presolve": self.presolve}
        if time_limit is not None:
            opts["time_limit"] = time_limit
        return milp(cost, constraints=cons, integrality=np.array(self.integ),
                    bounds=Bounds(np.array(self.lb), np.array(self.ub)), options=opts)


def _add(*exprs, scale=None):
    out: dict = {}
    for k, e in enumerate(exprs):
        s = 1.0 if scale is None else scale[k]
        for key, v in e.items():
            out[key] = out.get(key, 0.0) + s * v
    return out


def _bounds(expr: dict, vb) -> tuple[float, float]:
    lo = hi = expr.get(None, 0.0)
    for k, v in expr.items():
        if k is None:
            continue
        a, b = vb[k]
        lo += min(v * a, v * b)
        hi += max(v * a, v * b)
    return lo, hi


class _Formulation:
    def __init__(self, inst: Instance, box: float, t_max: float):
        self.inst = inst
        self.m = _Model()
        R = inst.R.double().cpu().numpy()
        self.Hs = np.sort(R, 0)
        self.Hpre = np.vstack([np.zeros((1, R.shape[1])), np.cumsum(self.Hs, 0)])
        o = inst.offset.double().cpu().numpy()
        self.vb = {}
        f, d = inst.f, inst.d
        if inst.structure == "line":
            l = inst.line.double().cpu().numpy()
            s0 = float(np.linalg.norm(R - o, axis=1).max()) / float(np.linalg.norm(l))
            T = t_max * (s0 if s0 > 0 else 1.0 / float(np.linalg.norm(l)))
            self.t = self._var(-T, T)
            self.b = [[{self.t: float(l[j]), None: float(o[j])} for j in range(d)]] * f
        else:
            lo = np.minimum(R.min(0), o)
            hi = np.maximum(R.max(0), o)
            w = box * np.maximum(hi - lo, 1e-3 * (1 + np.abs(hi) + np.abs(lo)))
            if inst.structure == "suboptimal":
                row = [{self._var(lo[j] - w[j], hi[j] + w[j]): 1.0} for j in range(d)]
                self.b = [row] * f
            else:
                self.b = [[{self._var(lo[j] - w[j], hi[j] + w[j]): 1.0} for j in range(d)] for _ in range(f)]
        self.S: dict = {}
        self.down: dict = {}

    def _var(self, lb=-np.inf, ub=np.inf, binary=False):
        k = self.m.var(lb, ub, binary)
        self.vb[k] = (self.m.lb[k], self.m.ub[k])
        return k

    def sorted_rows(self) -> bool:
        """Whether the Byzantine values of each column may be taken sorted (symmetry breaking).

        Coordinate-wise rules see only the multiset of each column, so sorting
        every column of ``B`` changes no rule's output; the filter (rows) forbids it.
        """
        inst = self.inst
        return inst.structure == "optimal" and inst.f >= 2 and not (inst.eps > 0)

    def add_order(self):
        if self.sorted_rows():
            for i in range(self.inst.f - 1):
                for j in range(self.inst.d):
                    self.m.add(_add(self.b[i][j], self.b[i + 1][j], scale=[1.0, -1.0]), hi=0.0)

    def smallest_sum(self, k: int, j: int) -> dict:
        """``S_k`` of coordinate j as an expression (a new variable when it is a minimum).

        ``self.down[(k, j)]`` says whether the objective can push ``S_k`` down; if
        not, ``z <= L_T`` for all T suffices (the optimum sets ``z`` to the minimum,
        and at any returned B the real rules can only do better), else the
        exact disjunction with binaries is added.
        """
        if (k, j) in self.S:
            return self.S[(k, j)]
        inst = self.inst
        f, m = inst.f, inst.R.shape[0]
        terms = []
        sizes = range(max(0, k - m), min(f, k) + 1)
        if inst.structure != "optimal":
            for a in sizes:
                terms.append(_add(*([self.b[0][j]] * a), {None: float(self.Hpre[k - a, j])}))
        elif self.sorted_rows():
            for a in sizes:  # the a smallest Byzantine values are b_1j .. b_aj
                terms.append(_add(*[self.b[i][j] for i in range(a)], {None: float(self.Hpre[k - a, j])}))
        else:
            for a in sizes:
                for T in itertools.combinations(range(f), a):
                    terms.append(_add(*[self.b[i][j] for i in T], {None: float(self.Hpre[k - a, j])}))
        if len(terms) == 1:
            expr = terms[0]
        else:
            bnds = [_bounds(e, self.vb) for e in terms]
            zlo = min(b[0] for b in bnds)
            z = self._var(zlo, min(b[1] for b in bnds))
            for e in terms:
                self.m.add(_add({z: 1.0}, e, scale=[1.0, -1.0]), hi=0.0)           # z <= L_T
            if self.down.get((k, j), True):
                ys = [self._var(binary=True) for _ in terms]
                self.m.add({y: 1.0 for y in ys}, 1.0, 1.0)
                for e, (elo, ehi), y in zip(terms, bnds, ys):
                    M = max(ehi - zlo, 0.0)
                    self.m.add(_add({z: 1.0}, e, {y: -M}, scale=[1.0, -1.0, 1.0]), lo=-M)  # z >= L_T - M(1-y)
            expr = {z: 1.0}
        self.S[(k, j)] = expr
        return expr

    def s_coefficients(self, rule) -> dict:
        """``{k: c_k}`` with ``AGG_j = sum_k c_k S_k(j)`` (the same for every coordinate)."""
        n = self.inst.n
        if type(rule) is Mean:
            return {n: 1.0 / n}
        if type(rule) is Comed:
            if n % 2 == 1:
                k = (n + 1) // 2
                return {k: 1.0, k - 1: -1.0}
            return {n // 2 + 1: 0.5, n // 2 - 1: -0.5}
        b = rule.b
        return {n - b: 1.0 / (n - 2 * b), b: -1.0 / (n - 2 * b)}

    def plan(self, uniq, w, u):
        """Fill ``self.down``: which ``S_k(j)`` the objective may push down (see smallest_sum)."""
        inst = self.inst
        self.down = {}
        if inst.objective == "lambda":
            return  # equality constraints: every minimum exact (the default)
        for j in range(inst.d):
            total: dict = {}
            for r, wt in zip(uniq, w):
                for k, ck in self.s_coefficients(r).items():
                    if inst.kind == "max":
                        total[k] = total.get(k, False) or ck * float(u[j]) > 0
                    else:
                        total[k] = total.get(k, 0.0) + ck * float(u[j]) * float(wt)
            for k, v in total.items():
                self.down[(k, j)] = bool(v) if inst.kind == "max" else v > 0

    def aggregate(self, rule, j: int) -> dict:
        coefs = self.s_coefficients(rule)
        return _add(*[self.smallest_sum(k, j) for k in coefs], scale=list(coefs.values()))

    def add_filter(self):
        inst = self.inst
        if not (inst.structure == "optimal" and inst.eps > 0 and inst.f >= 2):
            return
        eps, d = inst.eps, inst.d
        for i, k in itertools.combinations(range(inst.f), 2):
            diffs = [_add(self.b[i][j], self.b[k][j], scale=[1.0, -1.0]) for j in range(d)]
            if inst.eps_p == 1.0 and d > 1:
                tot = {}
                for e in diffs:
                    lo, hi = _bounds(e, self.vb)
                    M = max(abs(lo), abs(hi))
                    P, N, z = self._var(0, M), self._var(0, M), self._var(binary=True)
                    self.m.add(_add(e, {P: -1.0, N: 1.0}), 0.0, 0.0)
                    self.m.add({P: 1.0, z: -M}, hi=0.0)
                    self.m.add({N: 1.0, z: M}, hi=M)
                    tot = _add(tot, {P: 1.0, N: 1.0})
                self.m.add(tot, lo=eps)
            else:
                sig = []
                for e in diffs:
                    lo, hi = _bounds(e, self.vb)
                    M = max(abs(lo), abs(hi)) + eps
                    sp_, sn = self._var(binary=True), self._var(binary=True)
                    self.m.add(_add(e, {sp_: -M}), lo=eps - M)     # e >= eps - M(1 - s+)
                    self.m.add(_add(e, {sn: M}), hi=M - eps)       # e <= -eps + M(1 - s-)
                    sig += [sp_, sn]
                self.m.add({s: 1.0 for s in sig}, lo=1.0)

    def rows_from(self, x) -> torch.Tensor:
        vals = [[_eval(e, x) for e in row] for row in self.b]
        return torch.tensor(vals, dtype=torch.float64)


def _eval(expr: dict, x) -> float:
    return expr.get(None, 0.0) + sum(v * x[k] for k, v in expr.items() if k is not None)


def method_milp(inst: Instance, **options):
    """``solvers.solve(problem, method="milp")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.milp: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    opts = dict(box=1.0, time_limit=60.0, mip_rel_gap=1e-9, t_max=1e3, max_binaries=20000, tol=1e-6)
    opts.update(options)
    reason = milp_applicable(inst)
    if reason is not None:
        raise ValueError(f"solvers.milp: not applicable: {reason}")
    if inst.structure != "optimal" and inst.eps > 0 and inst.f >= 2:
        return make_solution(inst, line_rows(inst, [0.0])[0], method="milp", status="infeasible", t0=t0,
                             info=dict(reason="identical rows cannot be eps apart"))
    # Solve in normalized coordinates (G - w_0) / sigma: the rules here are affine
    # equivariant, and HiGHS's absolute tolerances misjudge feasibility at gradient scales.
    orig = inst
    o_t = inst.offset.double()
    sigma = float((inst.R.double() - o_t).abs().max()) or 1.0
    if inst.objective == "lambda":
        ufac = 1.0 / sigma
    else:
        ufac = 1.0 / (float(inst.u.double().abs().max()) or 1.0)
    vscale = 1.0 if inst.objective == "lambda" else sigma / ufac  # value = vscale * normalized value
    inst = dataclasses.replace(inst, R=(inst.R.double() - o_t) / sigma, offset=torch.zeros_like(o_t),
                               u=inst.u.double() * ufac, line=inst.line.double() / sigma, eps=inst.eps / sigma)
    F = _Formulation(inst, opts["box"], opts["t_max"])
    uniq, _, w = unique_rules(inst.rules, inst.weights)
    u = inst.u.double().cpu().numpy()
    o = inst.offset.double().cpu().numpy()
    d = inst.d
    F.plan(uniq, w, u)
    F.add_order()
    aggs = [[F.aggregate(r, j) for j in range(d)] for r in uniq]
    inner = [_add(*aggs[m], {None: -float(o @ u)}, scale=[*u.tolist(), 1.0]) for m in range(len(uniq))]
    sign = 1.0
    if inst.kind == "max":
        xi = F._var()
        for e in inner:
            F.m.add(_add(e, {xi: -1.0}), hi=0.0)
        c = {xi: 1.0}
    elif inst.kind == "expected":
        c = _add(*inner, scale=w.tolist())
    elif inst.objective == "inner":
        c = inner[0]
    else:
        lam = F._var()
        for j in range(d):
            # |AGG_j - w_0j + lambda g_j| <= 1e-8 (normalized units): an exact equality
            # makes HiGHS's presolve declare some feasible instances infeasible
            F.m.add(_add(aggs[0][j], {lam: float(u[j]), None: -float(o[j])}), -1e-8, 1e-8)
        c, sign = {lam: -1.0}, -1.0
    F.add_filter()
    nbin = sum(F.m.integ)
    if nbin > opts["max_binaries"]:
        raise ValueError(f"solvers.milp: binaries must be <= max_binaries={opts['max_binaries']}, got {nbin}")
    # HiGHS also stops at an absolute gap of 1e-6: scale inner-product objectives to O(1)
    scale = 1.0
    if inst.objective != "lambda":
        R = inst.R.double().cpu().numpy()
        scale = float(np.abs(u).sum() * max(np.abs(R).max(), np.abs(o).max())) or 1.0
    c = {k: v / scale for k, v in c.items()}
    res = F.m.solve(c, opts["time_limit"], opts["mip_rel_gap"])
    if res.status == 2:
        # HiGHS's presolve sometimes declares a feasible big-M model infeasible
        # (seen on equality-constrained lambda problems): confirm without it
        F.m.presolve = False
        res = F.m.solve(c, opts["time_limit"], opts["mip_rel_gap"])
    info = dict(binaries=nbin, variables=len(F.m.lb), constraints=len(F.m.rows),
                milp_status=int(res.status), milp_message=str(res.message),
                milp_objective=None if res.x is None else vscale * sign * scale * (float(res.fun) + c.get(None, 0.0)),
                normalization=dict(sigma=sigma, u_factor=ufac))
    bound = getattr(res, "mip_dual_bound", None)
    if bound is not None and np.isfinite(bound):
        bound = vscale * sign * scale * (float(bound) + c.get(None, 0.0))
    else:
        bound = None
    info["domain"] = "box" if inst.structure != "line" else "t in [-T, T]"
    if res.status == 2 and orig.objective == "lambda" and orig.own is not None:
        # Sending the reference rows reproduces g, so lambda = -1 is always feasible:
        # HiGHS's "infeasible" is a numerical failure of the big-M model. Report
        # that point (recomputed), not a false infeasibility.
        info["reason"] = "HiGHS declared the big-M model infeasible; lambda = -1 (the honest rows) is feasible"
        return make_solution(orig, orig.own, method="milp", status="feasible", t0=t0, info=info, tol=opts["tol"])
    if res.status == 2:
        return make_solution(orig, line_rows(orig, [0.0])[0], method="milp", status="infeasible", t0=t0,
                             info=info, tol=opts["tol"])
    if res.x is None:
        B = line_rows(orig, [0.0])[0]
        return make_solution(orig, B, method="milp", status="budget", t0=t0, info=info, tol=opts["tol"])
    B = o_t + sigma * F.rows_from(res.x).to(o_t)
    status = "optimal" if res.status == 0 else "budget"
    return make_solution(orig, B, method="milp", status=status, t0=t0, bound=bound,
                         iterations=int(getattr(res, "mip_node_count", 0) or 0), info=info, tol=opts["tol"])
