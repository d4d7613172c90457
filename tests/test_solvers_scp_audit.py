"""Audit of relax / coordinatewise at the edges of float ranges: bounds that must stay
below the exact optimum, and corner rows that must stay finite and eps apart."""

import numpy as np
import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, TrimmedMean
from solvers.line import LineObjective


def _rows(seed, k, d, scale=1.0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.normal(size=(k, d)) + rng.normal(size=d), dtype=torch.float64) * scale).to(dtype)


# relax: the envelope's samples are the closed forms' float64 running sums; at d = 2,000 and
# t = 661 a trimmed mean's was 5.1e-9 above the rule, and the bound (lowered by 5e-12 only:
# the order-statistic slack leaves the Byzantine rows out) was 5.1e-9 above the 1-D optimum
def test_relax_bound_stays_below_the_exact_1d_optimum_at_large_d():
    V = torch.tensor(np.random.default_rng(1).normal(size=(4, 2000)))
    prob = solvers.ExpectedValue(V, 1, [TrimmedMean(b=1)])
    sol = solvers.solve(prob, method="relax")
    line = solvers.solve(prob, method="line")
    assert line.status == "optimal" and sol.info["bound_valid"]
    # the closed form itself is off by more than the real rules' rounding slack here
    obj = LineObjective(prob.compile(), 2 ** 23, True, 1e-6)
    t = np.array([sol.info["t"]])
    assert abs(obj.evals[0](t)[0] - obj.evals[0]._clamped(t)[0]) > sol.info["rounding_slack"]
    assert sol.bound <= line.value and sol.bound <= sol.value
    assert sol.info["closed_form_slack"] > 0
    assert sol.gap <= 1e-8 * abs(sol.value)  # still a tight bound


# coordinatewise: float32 rows near the top of float32's range; the rows beyond the honest
# range went to -inf (P1 "infeasible", value from -inf rows)
def test_corner_rows_stay_finite_near_float32_max():
    V = torch.tensor([[3e38, 1.0], [-3e38, 2.0], [2.9e38, 0.5], [-2.9e38, 3.0], [1e37, 1.5]], dtype=torch.float32)
    pool = [Comed(f=1), TrimmedMean(b=1)]
    for prob in (solvers.P1(V, 1, pool), solvers.TailoredAttack(V, 1, Comed(f=1), objective="inner")):
        sol = solvers.solve(prob, method="coordinatewise")
        assert sol.status == "optimal" and bool(torch.isfinite(sol.byzantine).all())
    for eps, status in ((1.0, "optimal"), (1e36, "optimal"), (1e38, "feasible")):  # 1e38: no room left
        sol = solvers.solve(solvers.P2(V, 2, [Comed(f=2), TrimmedMean(b=2)], eps=eps), method="coordinatewise")
        assert sol.status == status and sol.filter_ok and bool(torch.isfinite(sol.byzantine).all())


# coordinatewise: eps-apart rows for huge / tiny float32 rows: the spread (eps = 1 at rows
# ~1e30; eps = 3e-31 at rows ~1e-30, moved to -1 by a unit width) rounded away through
# all 64 doublings and the answer was "infeasible"
@pytest.mark.parametrize("scale, eps", [(1e30, 1e-3), (1e30, 1.0), (1e-30, 3e-31)])
def test_corner_rows_are_eps_apart_for_huge_and_tiny_float32_rows(scale, eps):
    V = _rows(0, 6, 3, scale, torch.float32)
    pool = [Comed(f=2), TrimmedMean(b=2)]
    sol = solvers.solve(solvers.P2(V, 2, pool, eps=eps), method="coordinatewise")
    assert sol.status == "optimal" and sol.filter_ok
    ref = solvers.solve(solvers.P1(V, 2, pool), method="coordinatewise")
    assert sol.value == pytest.approx(ref.value, rel=1e-6)
