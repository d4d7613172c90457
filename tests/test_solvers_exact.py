"""Exact methods of solvers/ against brute force on tiny instances (n = 5, f = 1, d = 1 or 2).

The brute force is a slow, obviously-correct reference: every point of a fine
grid of Byzantine rows is evaluated with the real rules (numpy float64 inner
products), and the best is taken.
"""

import itertools
import math

import numpy as np
import pytest
import torch

import solvers
from solvers.line import make_evaluator, _BlackBox
from mixtailor_game.rules import Comed, Krum, Mean, TrimmedMean


def honest(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + 0.7


def box(inst, width=1.0):
    """The MILP's default box per coordinate (see solvers.milp)."""
    R = inst.R.numpy()
    o = inst.offset.numpy()
    lo, hi = np.minimum(R.min(0), o), np.maximum(R.max(0), o)
    w = width * np.maximum(hi - lo, 1e-3 * (1 + abs(hi) + abs(lo)))
    return lo - w, hi + w


def brute(inst, points):
    """Best objective over candidate Byzantine row sets ``points`` (list of Tensor[f, d]).

    Every rule runs on every point through ``rule.batched``; a few points are
    re-run one by one through ``rule(G)`` as a check of the batched path.
    """
    Bb = torch.stack(points)
    Gb = torch.cat([Bb, inst.R.unsqueeze(0).expand(len(points), -1, -1)], 1)
    vals = np.stack([((r.batched(Gb) - inst.offset) @ inst.u).numpy() for r in inst.rules], 1)
    for i in (0, len(points) // 2, len(points) - 1):
        one = [float((r(Gb[i]) - inst.offset) @ inst.u) for r in inst.rules]
        np.testing.assert_allclose(one, vals[i], rtol=1e-12, atol=1e-12)
    if inst.kind == "max":
        v = vals.max(1)
    elif inst.kind == "expected":
        v = vals @ np.asarray(inst.weights)
    else:
        v = vals[:, 0]
    return float(v.min())


def grid_rows(inst, m):
    lo, hi = box(inst)
    axes = [np.linspace(lo[j], hi[j], m) for j in range(inst.d)]
    pts = np.array(list(itertools.product(*axes)))
    return [torch.tensor(p, dtype=torch.float64).reshape(1, -1) for p in pts]


POOLS = {
    "comed": [Comed(f=1)],
    "trimmed": [TrimmedMean(b=1)],
    "comed+trimmed": [Comed(f=1), TrimmedMean(b=1)],
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("kind", ["P1", "expected"])
def test_milp_matches_brute_force_d1(seed, pool, kind):
    V = honest(4, 1, seed)
    p = (solvers.P1(V, 1, POOLS[pool]) if kind == "P1"
         else solvers.ExpectedValue(V, 1, POOLS[pool], structure="optimal"))
    sol = solvers.solve(p, method="milp")
    assert sol.status == "optimal" and sol.method == "milp"
    inst = p.compile()
    ref = brute(inst, grid_rows(inst, 2001))
    lip = float(inst.u.abs().sum())
    step = float((box(inst)[1] - box(inst)[0]).max()) / 2000
    assert sol.value <= ref + 1e-9                       # exact: never worse than the grid
    assert sol.value >= ref - lip * step - 1e-9          # and the grid is that close to it
    assert sol.bound <= sol.value + 1e-7 and sol.gap <= 1e-6


@pytest.mark.parametrize("seed", [2, 3])
def test_milp_matches_brute_force_d2(seed):
    V = honest(4, 2, seed)
    p = solvers.P1(V, 1, [Comed(f=1), TrimmedMean(b=1)])
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    ref = brute(inst, grid_rows(inst, 81))
    step = float((box(inst)[1] - box(inst)[0]).max()) / 80
    assert sol.status == "optimal"
    assert sol.value <= ref + 1e-9
    assert sol.value >= ref - float(inst.u.abs().sum()) * step - 1e-9


def test_milp_mean_optimum_is_at_the_box_corner():
    V = honest(4, 2, 5)
    p = solvers.TailoredAttack(V, 1, Mean(), objective="inner")
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    lo, hi = box(inst)
    corner = np.where(inst.u.numpy() > 0, lo, hi)
    assert sol.status == "optimal"
    np.testing.assert_allclose(sol.byzantine[0].numpy(), corner, atol=1e-7)


def test_milp_with_similarity_filter_f2_matches_brute_force():
    V = honest(3, 1, 7)  # n = 5, f = 2 (comed needs n > 2f)
    eps = 0.8
    p = solvers.P2(V, 2, [Comed(f=2)], eps=eps)
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    lo, hi = box(inst)
    axis = np.linspace(lo[0], hi[0], 301)
    pts = [torch.tensor([[a], [b]], dtype=torch.float64) for a in axis for b in axis if abs(a - b) >= eps]
    ref = brute(inst, pts)
    assert sol.status == "optimal" and sol.filter_ok
    assert abs(float(sol.byzantine[0, 0] - sol.byzantine[1, 0])) >= eps - 1e-9
    assert ref - float(inst.u.abs().sum()) * (axis[1] - axis[0]) - 1e-9 <= sol.value <= ref + 1e-9


def test_milp_infeasible_filter_is_a_status_not_an_exception():
    V = honest(3, 1, 7)
    p = solvers.P2(V, 2, [Comed(f=2)], eps=1e6)  # wider than the whole box
    sol = solvers.solve(p, method="milp")
    assert sol.status == "infeasible" and sol.certificate is False and sol.gap is None


def test_milp_lambda_objective_matches_brute_force_d1():
    V = honest(4, 1, 11)
    p = solvers.TailoredAttack(V, 1, TrimmedMean(b=1), structure="optimal", objective="lambda")
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    g = float(inst.u[0])
    best = max(-float(TrimmedMean(b=1)(torch.cat([B, inst.R]))[0]) / g for B in grid_rows(inst, 2001))
    assert sol.status == "optimal" and sol.objective == "lambda"
    assert sol.residual <= 1e-6
    assert best - 1e-9 <= sol.value <= best + 1e-2


def test_milp_lambda_d2_solution_is_exactly_anti_aligned():
    V = honest(4, 2, 13)
    sol = solvers.solve(solvers.TailoredAttack(V, 1, Comed(f=1), objective="lambda"), method="milp")
    assert sol.status == "optimal"
    assert sol.residual <= 1e-6 * max(1, abs(sol.value))  # the documented tolerance


@pytest.mark.parametrize("rule", [Mean(), Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3),
                                  Krum(f=2, p=1.0), Krum(f=2, p=2.0), Krum(f=1, p=3.0), Krum(f=2, p=math.inf)])
@pytest.mark.parametrize("n", [7, 8])
def test_line_closed_forms_agree_with_the_real_rules(rule, n):
    V = honest(n - 2, 5, n)
    inst = solvers.P3(V, 2, [rule]).compile()
    fast = make_evaluator(inst, rule, 2 ** 20)
    assert not isinstance(fast, _BlackBox)
    slow = _BlackBox(inst, rule, 2 ** 20)
    t = np.concatenate([np.linspace(-3, 3, 61), [0.0, 1e-3, -1e-3, 50.0, -50.0]])
    np.testing.assert_allclose(fast(t), slow(t), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_line_is_exact_for_piecewise_linear_p3(seed):
    V = honest(6, 3, seed)
    pool = [Comed(f=2), TrimmedMean(b=2)]
    p = solvers.ExpectedValue(V, 2, pool, probs=[0.3, 0.7])
    sol = solvers.solve(p)
    ref = solvers.solve(p, method="milp")
    assert sol.method == "line" and sol.status == "optimal"
    assert ref.status == "optimal"
    assert sol.value == pytest.approx(ref.value, abs=1e-9)
