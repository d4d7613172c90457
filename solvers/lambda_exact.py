"""The exact tailored ``"lambda"`` attack on one coordinate-wise rule, at any size.

Problem (paper A.1): ``max lambda`` s.t. ``AGG(B_1..B_f, R) = w_0 - lambda g``, for
``AGG`` = comed, or trimmed mean with ``b >= f`` (tailored problems have no
similarity filter).

Why a closed form: coordinate ``j`` of these rules depends only on column ``j``, is
non-decreasing and continuous in each Byzantine entry of that column, and Byzantine
entries beyond the honest range act like the range's ends (``b >= f``: they are all
trimmed or sorted past the median). So column ``j`` reaches exactly the interval
``[lo_j, hi_j]``: the rule with every Byzantine entry below / above the honest range
(run by the rule itself). ``lambda`` is feasible iff ``w_0j - lambda g_j`` lies in
``[lo_j, hi_j]`` for every ``j``, an intersection of intervals in ``lambda``; the
optimum is its upper end (the interval holds ``lambda = -1``: the reference rows
reproduce ``g``). Rows reaching it: in every column one common value (the f rows
identical, so the ``suboptimal`` structure is met too) found by bisection on the rule
itself, all columns at once: ``O(n d)`` per step, 200 steps at most.

The MILP (:mod:`solvers.milp`) needs a binary per order statistic and was declared
infeasible by HiGHS at d = 20 (it then reports ``lambda = -1``, ``feasible``);
this is exact at any d.
"""

from __future__ import annotations

import math
import time

import torch

from mixtailor_game.rules import Comed, TrimmedMean

from .problems import Instance
from .solution import make_solution


def lambda_closed_form_applicable(inst: Instance) -> str | None:
    """``None`` if :func:`solve_lambda` applies to ``inst``, else why not."""
    if inst.kind != "tailored" or inst.objective != "lambda":
        return "needs a tailored problem with objective='lambda'"
    if inst.structure not in ("optimal", "suboptimal"):
        return f"needs structure 'optimal' or 'suboptimal', got {inst.structure!r}"
    r = inst.rules[0]
    if type(r) is Comed or (type(r) is TrimmedMean and r.b >= inst.f):
        return None
    return f"rule {getattr(r, 'name', type(r).__name__)}: needs comed or trimmed mean with b >= f"


def _column_rows(inst: Instance, s: torch.Tensor) -> torch.Tensor:
    """``[f copies of the row s; R]`` in ``R``'s dtype."""
    return torch.cat([s.to(inst.R).expand(inst.f, -1), inst.R], 0)


def reachable_interval(inst: Instance) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lo, hi, below, above)``: the rule's output per coordinate with every Byzantine
    entry below (``lo``) / above (``hi``) the honest range, and those rows (float64)."""
    R = inst.R.double()
    width = (R.max(0).values - R.min(0).values).clamp_min(1.0)
    below, above = R.min(0).values - width, R.max(0).values + width
    rule = inst.rules[0]
    lo = rule(_column_rows(inst, below)).double()
    hi = rule(_column_rows(inst, above)).double()
    return lo, hi, below, above


def lambda_range(inst: Instance) -> tuple[float, float]:
    """``(lambda_min, lambda_max)``: every feasible lambda, from :func:`reachable_interval`."""
    lo, hi, _, _ = reachable_interval(inst)
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
    _, _, a, b = reachable_interval(inst)
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


def solve_lambda(inst: Instance, tol: float = 1e-6, t0: float | None = None, method: str = "milp"):
    """The exact optimum (module docstring) as an :class:`AttackSolution`; ``bound`` is
    the interval's upper end, the value is recomputed by the real rule."""
    t0 = time.perf_counter() if t0 is None else t0
    lam_lo, lam_hi = lambda_range(inst)
    target = inst.offset.double() - lam_hi * inst.u.double()
    B = rows_for(inst, target)
    info = dict(closed_form=True, lambda_range=(lam_lo, lam_hi),
                reason="coordinate-wise rule: max lambda is the upper end of an intersection of intervals")
    return make_solution(inst, B, method=method, status="optimal", t0=t0, bound=lam_hi, info=info, tol=tol)
