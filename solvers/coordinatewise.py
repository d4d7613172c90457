"""Method ``"coordinatewise"``: exact closed forms, at any size, for problems whose
rules are all comed or trimmed mean with ``b >= f`` (coordinate-wise, bounded).

Why closed forms: coordinate ``j`` of these rules depends only on column ``j``, is
non-decreasing and continuous in each Byzantine entry of that column, and Byzantine
entries beyond the honest range act like the range's ends (``b >= f``: they are all
trimmed, or sorted past the median). So column ``j`` reaches exactly the interval
``[lo_j, hi_j]``: the rule with every Byzantine entry below / above the honest range
(run by the rule itself).

- ``"inner"`` / ``"xi"`` / ``"expected"`` objectives (tailored, P1 / P2, the
  expectation; structures ``optimal`` and ``suboptimal``): every term
  ``<AGG_m, u> = sum_j u_j AGG_mj`` is minimized coordinate by coordinate by the
  Byzantine entries beyond the end that ``-sign(u_j)`` points to, the same point
  for every rule, so the max and the expectation are minimized there too (the
  corner that :mod:`solvers.milp` proves with ``reduce=True``, without a model:
  ``O(n d)``). With the similarity filter the rows are spread further out along
  one coordinate, ``eps`` apart: values beyond the range still act as its end.
- ``"lambda"`` (tailored, paper A.1: ``max lambda`` s.t. ``AGG(B, R) = w_0 - lambda
  g``): ``lambda`` is feasible iff ``w_0j - lambda g_j`` lies in ``[lo_j, hi_j]``
  for every ``j``, an intersection of intervals in ``lambda``; the optimum is its
  upper end (the interval holds ``lambda = -1``: the reference rows reproduce
  ``g``). Rows reaching it: in every column one common value (the f rows
  identical, so the ``suboptimal`` structure is met too) found by bisection on the
  rule itself, all columns at once: ``O(n d)`` per step, 200 steps at most. The
  MILP was declared infeasible by HiGHS at d = 20 (it then reports ``lambda =
  -1``, ``feasible``); this is exact at any d.

The ``"line"`` structure (P3) has its own exact path in :mod:`solvers.line`.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch

from mixtailor_game._checks import check_real
from mixtailor_game.rules import Comed, TrimmedMean

from .problems import Instance
from .solution import filter_holds, make_solution


OPTIONS = ("tol",)


def coordinatewise_applicable(inst: Instance) -> str | None:
    """``None`` if the closed forms (module docstring) apply to ``inst``, else why not."""
    if inst.structure not in ("optimal", "suboptimal"):
        return f"needs structure 'optimal' or 'suboptimal', got {inst.structure!r}"
    if inst.structure == "suboptimal" and inst.eps > 0 and inst.f >= 2:
        return "identical rows cannot be eps apart"
    for r in inst.rules:
        if not (type(r) is Comed or (type(r) is TrimmedMean and r.b >= inst.f)):
            return f"rule {getattr(r, 'name', type(r).__name__)}: needs comed or trimmed mean with b >= f"
    return None


def _column_rows(inst: Instance, s: torch.Tensor) -> torch.Tensor:
    """``[f copies of the row s; R]`` in ``R``'s dtype."""
    return torch.cat([s.to(inst.R).expand(inst.f, -1), inst.R], 0)


def outside_rows(inst: Instance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(below, above)``: float64 rows below / above the honest range in every coordinate
    (or at its end, where R's dtype has no room beyond it: an end acts like what is beyond)."""
    R = inst.R.double()
    # a column without spread: a width of the rows' own size (1.0 moved float32 rows ~1e-30
    # to -1, where spreading them eps = 3e-31 apart rounded away: "infeasible")
    floor = float(R.abs().max()) or 1.0
    width = R.max(0).values - R.min(0).values
    width = torch.where(width > 0, width, torch.full_like(width, floor))
    # float32 rows near 3e38 went to -inf when cast back (P1: rows -inf, "infeasible")
    top = float(torch.finfo(inst.R.dtype).max)
    return (R.min(0).values - width).clamp_min(-top), (R.max(0).values + width).clamp_max(top)


def reachable_interval(inst: Instance) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lo, hi)``: the rule's output per coordinate with every Byzantine entry below /
    above the honest range (:func:`outside_rows`)."""
    below, above = outside_rows(inst)
    rule = inst.rules[0]
    return rule(_column_rows(inst, below)).double(), rule(_column_rows(inst, above)).double()


def lambda_range(inst: Instance) -> tuple[float, float]:
    """``(lambda_min, lambda_max)``: every feasible lambda, from :func:`reachable_interval`."""
    lo, hi = reachable_interval(inst)
    g = inst.u.double()
    o = inst.offset.double()
    pos, neg = g > 0, g < 0
    # o - lambda g in [lo, hi]: g > 0: lambda in [(o - hi) / g, (o - lo) / g]; g < 0: swapped
    up = torch.full_like(g, math.inf)
    down = torch.full_like(g, -math.inf)
    up[pos] = ((o - lo) / g)[pos]
    down[pos] = ((o - hi) / g)[pos]
    up[neg] = ((o - hi) / g)[neg]
    down[neg] = ((o - lo) / g)[neg]
    return float(down.max()), float(up.min())


def rows_for(inst: Instance, target: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """Identical rows ``[f, d]`` with ``rule([B; R]) = target`` per coordinate (to the
    rule's rounding), by bisection on one common value per column (the rule is
    non-decreasing in it); targets outside the reachable interval end at its end."""
    a, b = outside_rows(inst)
    rule = inst.rules[0]
    target = target.double()
    for _ in range(steps):
        mid = 0.5 * (a + b)
        if bool(((mid == a) | (mid == b)).all()):
            break
        high = rule(_column_rows(inst, mid)).double() >= target
        b = torch.where(high, mid, b)
        a = torch.where(high, a, mid)
    # the end whose output is nearer the target, per column
    ea = (rule(_column_rows(inst, a)).double() - target).abs()
    eb = (rule(_column_rows(inst, b)).double() - target).abs()
    s = torch.where(eb <= ea, b, a)
    return s.to(inst.R).expand(inst.f, -1).clone()


def corner_rows(inst: Instance) -> torch.Tensor:
    """Rows beyond the honest range on the side ``-sign(u_j)`` of every coordinate; with
    the similarity filter, row ``i`` moved ``i eps`` further out along one coordinate."""
    below, above = outside_rows(inst)
    u = inst.u.double()
    B = torch.where(u > 0, below, above).expand(inst.f, -1).clone()
    if not (inst.eps > 0 and inst.f >= 2):
        return B.to(inst.R)
    k = int(torch.argmax(u.abs()))
    out = -1.0 if float(u[k]) > 0 else 1.0  # further beyond the same end
    top = float(torch.finfo(inst.R.dtype).max)
    # at least a few ulps of the column in R's dtype: eps = 1 on float32 rows ~1e30 stayed
    # below their spacing through all 64 doublings ("infeasible")
    step = max(float(inst.eps) * (1 + 1e-9), 4 * float(torch.finfo(inst.R.dtype).eps) * float(B[0, k].abs()))
    for _ in range(64):  # wider where R's dtype rounds the spread below eps
        Bs = B.clone()
        Bs[:, k] += out * step * torch.arange(inst.f, dtype=B.dtype)
        # no room beyond R's dtype range (float32 ~3e38): the outermost row at its end
        Bs[:, k] -= out * max(float(Bs[:, k].abs().max()) - top, 0.0)
        if filter_holds(inst, Bs.to(inst.R)):
            break
        step *= 2.0
    return Bs.to(inst.R)


def at_corner(inst: Instance, B: torch.Tensor) -> bool:
    """Whether every Byzantine entry is at or beyond the honest end ``-sign(u_j)`` points
    to (for ``u_j = 0`` anywhere): the rows :func:`corner_rows` claims optimal."""
    R, Bd, u = inst.R.double(), B.double(), inst.u.double()
    low = (Bd <= R.min(0).values) | (u <= 0)
    high = (Bd >= R.max(0).values) | (u >= 0)
    return bool((low & high).all())


def solve_lambda(inst: Instance, tol: float, t0: float):
    """The exact ``"lambda"`` optimum; ``bound`` is the interval's upper end, the value
    is recomputed by the real rule."""
    lam_lo, lam_hi = lambda_range(inst)
    target = inst.offset.double() - lam_hi * inst.u.double()
    B = rows_for(inst, target)
    info = dict(lambda_range=(lam_lo, lam_hi),
                reason="max lambda is the upper end of an intersection of per-coordinate intervals")
    return make_solution(inst, B, method="coordinatewise", status="optimal", t0=t0, bound=lam_hi, info=info,
                         tol=tol)


def method_coordinatewise(inst: Instance, **options):
    """``solvers.solve(problem, method="coordinatewise")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.coordinatewise: options must be among {list(OPTIONS)}, got unknown {unknown}")
    tol = check_real("solvers.coordinatewise", "tol", options.get("tol", 1e-6), low=0.0)
    reason = coordinatewise_applicable(inst)
    if reason is not None:
        raise ValueError(f"solvers.coordinatewise: not applicable: {reason}")
    if inst.objective == "lambda":
        return solve_lambda(inst, tol, t0)
    B = corner_rows(inst)
    if at_corner(inst, B):
        status, reason = "optimal", "every rule is minimized coordinate by coordinate at the same corner"
    else:  # eps-apart rows found no room beyond the honest range in R's dtype
        status, reason = "feasible", "the filter's spread left the corner (no room beyond the honest range)"
    sol = make_solution(inst, B, method="coordinatewise", status=status, t0=t0, tol=tol, info=dict(reason=reason))
    # the corner's value is the optimum: it is its own bound (gap 0)
    return dataclasses.replace(sol, bound=sol.value, gap=0.0) if sol.status == "optimal" else sol
