"""Method ``"relax"``: a convex relaxation of the 1-D problem P3 (paper A.4).

The paper suggests relaxing P3's nonconvex constraints ``v_m(lambda)^T mu <= xi``
to convex ones. Here each ``phi_m(t) = <AGG_m(B(t), R) - w_0, u>`` is sampled on
the candidates of :mod:`solvers.line` and replaced by the lower convex hull of
its samples, a piecewise-linear convex envelope ``env_m(t) = max_k (a_mk t + c_mk)``.
The relaxation

    min_{t, xi} xi   s.t.  a_mk t + c_mk <= xi  for all m, k;   lo <= t <= hi

(``sum_m p_m env_m`` for the expectation) is an LP in two variables, solved
exactly as what it is, the minimum of a convex piecewise-linear function of
``t`` (:func:`minimize_max_of_envelopes`: the best vertex, then the crossings
of the lines next to it; HiGHS took 50 s on the 76,000 lines of a comed +
trimmed-mean envelope sampled at all 1.8M breakpoints at d = 184,586). Its value
is a valid lower bound on the 1-D optimum when every ``phi_m`` is piecewise
linear and all its breakpoints are sampled (mean, comed, trimmed mean; the
envelope of the exact function is then below it); otherwise it is only the
value of the relaxation of the sampled interpolant (``info["bound_valid"]``).
The bound is lowered by 8 ulps (in the rows' dtype) of ``||u||_1 max|row|``
(``info["rounding_slack"]``): the real rules round, the envelope does not; and
by ``(8 + 2 sqrt(N))`` float64 ulps of ``||u||_1`` times the rows near the optimum
(``info["closed_form_slack"]``): the closed forms' running sums round too. The
rows at the LP's ``t`` are evaluated with the real rules (``value``), and
the solution reports ``info["line_value"]`` (the 1-D search) and
``info["gap_to_line"] = value - line_value``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from mixtailor_game._checks import fail

from .line import (EXACT_BREAKPOINTS, LineObjective, candidates, check_line_options, decreases_past, line_length,
                   line_rows, solve_line)
from .problems import Instance
from .solution import make_solution

OPTIONS = ("line_options",)


def minimize_max_of_envelopes(envelopes, lo: float, hi: float) -> tuple[float, float]:
    """``(t, value)`` minimizing ``max_m env_m(t)`` on ``[lo, hi]``, each ``env_m`` a convex
    piecewise-linear function given by its vertices ``(t_k, v_k)`` (sorted ``t``,
    covering ``[lo, hi]``).

    The max is convex and linear between consecutive points of the union ``T`` of
    all vertices: its minimum over ``T`` at ``T_i`` brackets the minimizer in
    ``[T_{i-1}, T_{i+1}]``, where every envelope is one line on each side of ``T_i``,
    so the minimum is at ``T_i`` or where two of those lines cross (exact, as the LP's
    vertex)."""
    T = np.unique(np.concatenate([tv for tv, _ in envelopes] + [np.array([lo, hi])]))
    T = T[(T >= lo) & (T <= hi)]

    def at(x):
        return np.max([np.interp(x, tv, vv) for tv, vv in envelopes], axis=0)

    F = at(T)
    i = int(np.argmin(F))
    best_t, best = float(T[i]), float(F[i])
    for x0, x1 in ((T[max(i - 1, 0)], T[i]), (T[i], T[min(i + 1, len(T) - 1)])):
        if x1 <= x0:
            continue
        y0 = np.array([np.interp(x0, tv, vv) for tv, vv in envelopes])
        slope = (np.array([np.interp(x1, tv, vv) for tv, vv in envelopes]) - y0) / (x1 - x0)
        for a in range(len(envelopes)):
            for b in range(a + 1, len(envelopes)):
                if slope[a] == slope[b]:
                    continue
                x = x0 + (y0[b] - y0[a]) / (slope[a] - slope[b])
                if x0 < x < x1:
                    value = float(np.max(y0 + slope * (x - x0)))
                    if value < best:
                        best_t, best = float(x), value
    return best_t, best


def hull_indices(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indices of the lower convex hull's vertices of the points ``(t_i, v_i)`` (t sorted,
    distinct), left to right. A point on or above the segment between its neighbours
    is on no lower hull; such points are dropped in vectorized passes first (1.8M
    samples: 2 s of Python loop -> a fraction), then a monotone chain runs on the rest."""
    idx = np.arange(len(t))
    while len(idx) > 2:
        tt, vv = t[idx], v[idx]
        above = ((vv[1:-1] - vv[:-2]) * (tt[2:] - tt[:-2]) >= (vv[2:] - vv[:-2]) * (tt[1:-1] - tt[:-2]))
        if above.sum() < 0.01 * len(idx):  # a nearly convex rest: passes would cost O(n) per few drops
            break
        # never two neighbours at once (each drop is justified by two points that
        # stay): the points of one parity per pass
        even = np.arange(len(above)) % 2 == 0
        drop = above & even if (above & even).any() else above & ~even
        idx = np.concatenate([idx[:1], idx[1:-1][~drop], idx[-1:]])
    hull: list[int] = []
    for i in idx:
        while len(hull) >= 2:
            i1, i2 = hull[-2], hull[-1]
            # drop i2 if it lies on or above the segment i1 -> i
            if (v[i2] - v[i1]) * (t[i] - t[i1]) >= (v[i] - v[i1]) * (t[i2] - t[i1]):
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.asarray(hull)


def hull_vertices(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(t_k, v_k)``: the vertices of the lower convex hull (the envelope ``env``)."""
    h = hull_indices(t, v)
    return t[h], v[h]


def rounding_slack(inst: Instance, ts, obj=None) -> float:
    """8 ulps (of ``R``'s dtype) of ``||u||_1`` times the largest entry the rules' outputs
    can be made of: how far the real rules' rounded value can sit below the exact function.

    That entry is the largest of ``R`` and of the rows at ``ts``, except when every rule of
    ``obj`` is an order statistic kept inside the honest range (comed, trimmed mean with
    ``b >= f``: each kept value lies between two honest values of its column). Then the
    Byzantine rows' size cannot reach the output (at ``|t| ~ 2e4`` on a float32 trimmed mean
    at d = 184,586 it made the slack 2.2 against a value of 0.83) and ``R`` bounds it."""
    m = max(float(inst.R.double().abs().max()), float(inst.offset.double().abs().max()))
    if not (obj is not None and all(honest_range_only(e, inst) for e in obj.evals)):
        m = max(m, float(line_rows(inst, list(ts)).double().abs().max()))
    return 8.0 * float(torch.finfo(inst.R.dtype).eps) * float(inst.u.double().abs().sum()) * m


def closed_form_slack(inst: Instance, obj, t: np.ndarray, ts) -> float:
    """How far the closed forms' float64 values (the envelope's samples) can sit above the
    exact function near the optimum: ``(8 + 2 sqrt(N))`` ulps of ``||u||_1`` times the
    largest row at ``ts`` and their neighbouring samples (``N``: the running sums' terms).

    An order statistic's running sums cancel ``slope * t`` against hinge sums, terms of
    the size of the Byzantine rows, which :func:`rounding_slack` leaves out for order
    statistics (at d = 2,000, t = 661 a float64 trimmed mean's closed form was 5.1e-9
    above the rule, 5 ulps of that size: relax's bound exceeded the 1-D optimum)."""
    i = np.searchsorted(t, np.asarray(ts, dtype=np.float64))
    near = t[np.clip(np.concatenate([i - 1, i]), 0, len(t) - 1)]
    m = max(float(inst.R.double().abs().max()), float(inst.offset.double().abs().max()),
            float(line_rows(inst, list(ts) + list(near)).double().abs().max()))
    terms = sum(len(e.left[0]) + len(e.right[0]) if hasattr(e, "left") else inst.d for e in obj.evals)
    ulp = float(torch.finfo(torch.float64).eps)
    return (8.0 + 2.0 * math.sqrt(terms)) * ulp * float(inst.u.double().abs().sum()) * m


def honest_range_only(evaluator, inst: Instance) -> bool:
    """Whether every value the closed form keeps is an order statistic between the honest
    column's smallest and largest value (positions ``f <= k < n - f`` of the merged column)."""
    ks = getattr(evaluator, "positions", None)
    return ks is not None and all(inst.f <= k < inst.n - inst.f for k in ks)


def _combined(inst: Instance, obj, t: np.ndarray) -> np.ndarray:
    """The objective itself at ``t`` from the closed forms (max, expectation or one rule)."""
    vals = np.stack([e(t) for e in obj.evals], 1)
    if inst.kind == "max":
        return vals.max(1)
    return vals @ obj.w if inst.kind == "expected" else vals[:, 0]


def method_relax(inst: Instance, **options):
    """``solvers.solve(problem, method="relax")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.relax: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    if inst.structure != "line" or inst.objective == "lambda":
        raise ValueError("solvers.relax: needs the 1-D problem (P3, or structure='line' with an inner, xi "
                         f"or expected objective), got structure={inst.structure!r}, objective={inst.objective!r}")
    lopts = dict(t_max=1e3, n_geo=16, n_lin=17, n_dense=101, max_breakpoints=20000, rounds=3, zoom=7, keep=2,
                 chunk_elems=2 ** 23, fast=True, tol=1e-6, t_range=None)
    line_options = options.get("line_options", {})
    if not isinstance(line_options, dict):
        raise fail("solvers.relax", "line_options", "a dict of line-search options", type(line_options).__name__)
    lopts.update(line_options)
    lopts = check_line_options(lopts, "solvers.relax")
    if not line_length(inst) > 0:
        # honest rows summing to zero: the line is one point (the grid would be NaN)
        sol = make_solution(inst, line_rows(inst, [0.0])[0], method="relax", status="optimal", t0=t0,
                            iterations=1, info=dict(t=0.0, bound_valid=True, domain=(0.0, 0.0),
                                                    reason="the line is a single point"))
        return dataclasses.replace(sol, bound=sol.value, gap=0.0)
    obj = LineObjective(inst, lopts["chunk_elems"], lopts["fast"], lopts["tol"])
    # closed-form rules (O(log d) per candidate): every breakpoint is sampled, so the
    # bound stays valid at any d (up to EXACT_BREAKPOINTS)
    cap = lopts["max_breakpoints"] if not obj.piecewise_linear else max(lopts["max_breakpoints"], EXACT_BREAKPOINTS)
    t, used_bp, (lo, hi) = candidates(inst, obj, {**lopts, "max_breakpoints": cap})
    t = np.unique(np.concatenate([t, obj.critical_points(lo, hi)]))  # an l_2 Krum's windows sampled too
    vals = np.stack([e(t) for e in obj.evals], 1)  # [T, U]
    if inst.kind == "max":
        curves = [vals[:, m] for m in range(vals.shape[1])]
    elif inst.kind == "expected":
        curves = [vals @ obj.w]
    else:
        curves = [vals[:, 0]]
    envelopes = [hull_vertices(t, c) for c in curves]
    n_lines = sum(max(len(tv) - 1, 1) for tv, _ in envelopes)
    t_r, relaxed = minimize_max_of_envelopes(envelopes, lo, hi)
    t_line, _, linfo = solve_line(inst, **lopts)
    line_sol = make_solution(inst, line_rows(inst, [t_line])[0], method="line", status="feasible", t0=t0)
    bound_valid = bool(used_bp and obj.piecewise_linear)
    unbounded = bound_valid and decreases_past(lambda ts: _combined(inst, obj, ts), lo, hi)
    slack = cf_slack = 0.0
    if unbounded:  # linear past the domain and still decreasing: no finite lower bound
        relaxed = -math.inf
    elif bound_valid:
        # the envelope is of the exact (float64) function; the real rules round in R's
        # dtype (float32: values up to ~5 ulps of |<x, u>| off, bounds 4.5e-7 relative above
        # the value were seen), so the bound is lowered by 8 ulps of the largest |row| |u|_1
        slack = rounding_slack(inst, [t_r, t_line], obj)
        # and the envelope's samples are the closed forms' own float64 values, not exact
        cf_slack = closed_form_slack(inst, obj, t, [t_r, t_line])
        relaxed -= slack + cf_slack
    info = dict(t=t_r, relaxed_value=relaxed, bound_valid=bound_valid, envelope_lines=n_lines,
                line_value=line_sol.value, line_t=t_line, samples=len(t), domain=(lo, hi), unbounded=unbounded,
                rounding_slack=slack, closed_form_slack=cf_slack)
    sol = make_solution(inst, line_rows(inst, [t_r])[0], method="relax", status="feasible", t0=t0,
                        bound=relaxed if bound_valid else None, iterations=len(t), info=info)
    sol.info["gap_to_line"] = sol.value - line_sol.value
    return sol
