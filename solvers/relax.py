"""Method ``"relax"``: a convex relaxation of the 1-D problem P3 (paper A.4).

The paper suggests relaxing P3's nonconvex constraints ``v_m(lambda)^T mu <= xi``
to convex ones. Here each ``phi_m(t) = <AGG_m(B(t), R) - w_0, u>`` is sampled on
the candidates of :mod:`solvers.line` and replaced by the lower convex hull of
its samples, a piecewise-linear convex envelope ``env_m(t) = max_k (a_mk t + c_mk)``.
The relaxation

    min_{t, xi} xi   s.t.  a_mk t + c_mk <= xi  for all m, k;   lo <= t <= hi

(``sum_m p_m env_m`` for the expectation) is an LP (``scipy.optimize.linprog``, HiGHS: an exact vertex). Its value
is a valid lower bound on the 1-D optimum when every ``phi_m`` is piecewise
linear and all its breakpoints are sampled (mean, comed, trimmed mean; the
envelope of the exact function is then below it); otherwise it is only the
value of the relaxation of the sampled interpolant (``info["bound_valid"]``).
The rows at the LP's ``t`` are evaluated with the real rules (``value``), and
the solution reports ``info["line_value"]`` (the 1-D search) and
``info["gap_to_line"] = value - line_value``.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.optimize import linprog

from .line import LineObjective, candidates, line_rows, solve_line
from .problems import Instance
from .solution import make_solution

OPTIONS = ("line_options",)


def lower_hull(t: np.ndarray, v: np.ndarray) -> list[tuple[float, float]]:
    """Lines ``(a, c)`` of the lower convex hull of the points ``(t_i, v_i)`` (t sorted, distinct)."""
    hull: list[int] = []
    for i in range(len(t)):
        while len(hull) >= 2:
            i1, i2 = hull[-2], hull[-1]
            # drop i2 if it lies on or above the segment i1 -> i
            if (v[i2] - v[i1]) * (t[i] - t[i1]) >= (v[i] - v[i1]) * (t[i2] - t[i1]):
                hull.pop()
            else:
                break
        hull.append(i)
    if len(hull) == 1:
        return [(0.0, float(v[hull[0]]))]
    lines = []
    for i1, i2 in zip(hull[:-1], hull[1:]):
        a = (v[i2] - v[i1]) / (t[i2] - t[i1])
        lines.append((float(a), float(v[i1] - a * t[i1])))
    return lines


def method_relax(inst: Instance, **options):
    """``solvers.solve(problem, method="relax")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.relax: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    if inst.structure != "line" or inst.objective == "lambda":
        raise ValueError("solvers.relax: needs the 1-D problem (P3, or structure='line' with an inner, xi "
                         f"or expected objective), got structure={inst.structure!r}, objective={inst.objective!r}")
    lopts = dict(t_max=1e3, n_geo=16, n_lin=17, max_breakpoints=20000, rounds=3, zoom=7, keep=2,
                 chunk_elems=2 ** 23, fast=True, tol=1e-6, t_range=None)
    lopts.update(options.get("line_options", {}))
    obj = LineObjective(inst, lopts["chunk_elems"], lopts["fast"], lopts["tol"])
    t, used_bp, (lo, hi) = candidates(inst, obj, lopts)
    vals = np.stack([e(t) for e in obj.evals], 1)  # [T, U]
    if inst.kind == "max":
        curves = [vals[:, m] for m in range(vals.shape[1])]
    elif inst.kind == "expected":
        curves = [vals @ obj.w]
    else:
        curves = [vals[:, 0]]
    A, b = [], []
    for c in curves:
        for a, c0 in lower_hull(t, c):
            A.append([a, -1.0])  # a t + c0 <= xi
            b.append(-c0)
    res = linprog([0.0, 1.0], A_ub=np.array(A), b_ub=np.array(b), bounds=[(lo, hi), (None, None)],
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"solvers.relax: the LP failed ({res.message})")
    t_r, relaxed, n_lines = float(np.clip(res.x[0], lo, hi)), float(res.fun), len(A)
    t_line, _, linfo = solve_line(inst, **lopts)
    line_sol = make_solution(inst, line_rows(inst, [t_line])[0], method="line", status="feasible", t0=t0)
    bound_valid = bool(used_bp and obj.piecewise_linear)
    info = dict(t=t_r, relaxed_value=relaxed, bound_valid=bound_valid, envelope_lines=n_lines,
                line_value=line_sol.value, line_t=t_line, samples=len(t), domain=(lo, hi))
    sol = make_solution(inst, line_rows(inst, [t_r])[0], method="relax", status="feasible", t0=t0,
                        bound=relaxed if bound_valid else None, iterations=len(t), info=info)
    sol.info["gap_to_line"] = sol.value - line_sol.value
    return sol
