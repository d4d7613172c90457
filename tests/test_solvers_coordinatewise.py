"""Method "coordinatewise": exact closed forms for comed / trimmed mean (b >= f), against
brute force (d = 1), the MILP (small d) and at sizes no model reaches."""

import math

import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Krum, Mean, TrimmedMean
from solvers.coordinatewise import coordinatewise_applicable, lambda_range
from solvers.solve import choose_method


def honest(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, dtype=torch.float64, generator=g) + 0.2


def grid_values(inst, rule, lo=-10.0, hi=10.0, m=20001):
    """``rule`` on ``[b; R]`` for a grid of one Byzantine value b (d = 1, f = 1)."""
    grid = torch.linspace(lo, hi, m, dtype=torch.float64)
    G = torch.cat([grid.view(-1, 1, 1), inst.R.unsqueeze(0).expand(len(grid), -1, -1)], 1)
    return rule.batched(G)[:, 0]


@pytest.mark.parametrize("rule", [Comed(f=1), TrimmedMean(b=1), TrimmedMean(b=2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_matches_brute_force_d1(rule, seed):
    """d = 1: every B is anti-aligned, lambda = -(AGG(B) - w_0) / g; its max over a grid."""
    prob = solvers.TailoredAttack(honest(5, 1, seed), 1, rule, objective="lambda")  # n = 6, f = 1
    inst = prob.compile()
    sol = solvers.solve(prob, method="coordinatewise")
    assert sol.status == "optimal" and sol.residual <= 1e-12
    lam = -(grid_values(inst, rule) - inst.offset[0]) / float(inst.u[0])
    assert sol.value == pytest.approx(float(lam.max()), abs=1e-12)  # the range's ends are on the grid
    assert sol.bound == pytest.approx(sol.value, abs=1e-12)


@pytest.mark.parametrize("kind", ["inner", "P1", "P2", "expected"])
@pytest.mark.parametrize("seed", [0, 1])
def test_corner_matches_brute_force_d1(kind, seed):
    V = honest(5, 1, 10 + seed)
    pool = [Comed(f=1), TrimmedMean(b=1), TrimmedMean(b=2)]
    prob = {"inner": solvers.TailoredAttack(V, 1, pool[1], objective="inner"),
            "P1": solvers.P1(V, 1, pool), "P2": solvers.P2(V, 1, pool, eps=0.3),
            "expected": solvers.ExpectedValue(V, 1, pool, probs=[0.2, 0.3, 0.5], structure="optimal")}[kind]
    inst = prob.compile()
    sol = solvers.solve(prob)
    assert sol.method == "coordinatewise" and sol.status == "optimal" and sol.gap == 0.0
    per = torch.stack([(grid_values(inst, r) - inst.offset[0]) * inst.u[0] for r in inst.rules], 1)
    ref = per.max(1).values if inst.kind == "max" else per @ torch.tensor(inst.weights, dtype=torch.float64)
    assert sol.value == pytest.approx(float(ref.min()), abs=1e-12)


@pytest.mark.parametrize("rule", [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)])
@pytest.mark.parametrize("d, seed", [(2, 3), (3, 4)])
@pytest.mark.parametrize("variant", ["full", "suboptimal", "partial", "model"])
def test_lambda_agrees_with_the_milp(rule, d, seed, variant):
    V = honest(6, d, seed)  # n = 8, f = 2
    kw = dict(objective="lambda")
    if variant == "suboptimal":
        kw["structure"] = "suboptimal"
    elif variant == "partial":
        kw["knowledge"] = ("partial", 4)
    elif variant == "model":
        kw.update(space="model", model=torch.full((d,), 0.1, dtype=torch.float64))
    prob = solvers.TailoredAttack(V, 2, rule, **kw)
    exact = solvers.solve(prob)
    model = solvers.solve(prob, method="milp")
    assert exact.method == "coordinatewise" and exact.status == "optimal"
    assert exact.residual <= 1e-9 * max(1.0, abs(exact.value))
    if variant == "suboptimal":
        assert torch.equal(exact.byzantine[0], exact.byzantine[1])
    assert exact.value >= model.value - 1e-7 * max(1.0, abs(model.value))  # never worse than the MILP's rows
    if model.status == "optimal":
        assert exact.value <= model.bound + 1e-7 * max(1.0, abs(model.bound))  # nor above its proof
        assert exact.value == pytest.approx(model.value, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("p", [1.0, math.inf])
@pytest.mark.parametrize("kind", ["P1", "P2", "expected", "suboptimal"])
def test_corner_agrees_with_the_milp_f2_d3(kind, p):
    V = honest(6, 3, 7)  # n = 8, f = 2
    pool = [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)]
    prob = {"P1": solvers.P1(V, 2, pool), "P2": solvers.P2(V, 2, pool, eps=0.7, eps_p=p),
            "expected": solvers.ExpectedValue(V, 2, pool, structure="optimal"),
            "suboptimal": solvers.P1(V, 2, pool, structure="suboptimal")}[kind]
    exact = solvers.solve(prob, method="coordinatewise")
    model = solvers.solve(prob, method="milp")
    assert exact.status == model.status == "optimal" and exact.filter_ok
    assert exact.value == pytest.approx(model.value, rel=1e-9, abs=1e-12)
    assert model.bound <= exact.value + 1e-9


def test_lambda_at_full_scale():
    V = honest(10, 50_000, 5).float()
    prob = solvers.TailoredAttack(V, 2, TrimmedMean(b=3), objective="lambda")
    inst = prob.compile()
    sol = solvers.solve(prob)
    assert sol.method == "coordinatewise" and sol.status == "optimal"
    lo, hi = lambda_range(inst)
    assert lo <= -1.0 <= hi and sol.value == pytest.approx(hi, rel=1e-6)
    # the real rule on the returned rows gives w_0 - lambda g in every coordinate
    out = TrimmedMean(b=3)(torch.cat([sol.byzantine, inst.R]))
    assert torch.allclose(out.double(), inst.offset.double() - sol.value * inst.u.double(), rtol=1e-5, atol=1e-7)


def test_corner_at_scale_equals_the_milp_reduction():
    """d = 10^4: the MILP (reduce=True, no binaries) proves the same corner in ~0.6 s, SCP
    reaches it from the line start; the closed form is one rule call per rule."""
    V = honest(10, 10_000, 8) * 0.01
    prob = solvers.P1(V, 2, [Comed(f=2), TrimmedMean(b=2)])
    assert choose_method(prob.compile()) == "coordinatewise"
    exact = solvers.solve(prob)
    milp = solvers.solve(prob, method="milp")
    assert exact.status == milp.status == "optimal"
    assert exact.value == pytest.approx(milp.value, rel=1e-9)


def test_refuses_what_it_does_not_cover():
    V = honest(6, 2, 6)
    cases = {
        "comed or trimmed mean": solvers.TailoredAttack(V, 2, Krum(f=2), objective="lambda"),
        "b >= f": solvers.TailoredAttack(V, 2, TrimmedMean(b=1), objective="lambda"),
        "rule mean": solvers.P1(V, 2, [Comed(f=2), Mean()]),
        "structure 'optimal' or 'suboptimal'": solvers.P3(V, 2, [Comed(f=2)]),
        "identical rows cannot be eps apart": solvers.P2(V, 2, [Comed(f=2)], eps=0.1, structure="suboptimal"),
    }
    for words, prob in cases.items():
        reason = coordinatewise_applicable(prob.compile())
        assert reason is not None and words in reason, (words, reason)
        with pytest.raises(ValueError, match="solvers.coordinatewise: not applicable"):
            solvers.solve(prob, method="coordinatewise")
    with pytest.raises(ValueError, match=r"solvers.coordinatewise: options must be among \['tol'\]"):
        solvers.solve(solvers.P1(V, 2, [Comed(f=2)]), method="coordinatewise", box=2.0)


def test_corner_rows_stay_eps_apart_in_float32():
    """A spread of eps on rows ~1e3 rounds below eps in float32: it is widened."""
    V = (honest(6, 3, 9) * 1e3).float()
    prob = solvers.P2(V, 2, [Comed(f=2), TrimmedMean(b=2)], eps=1e-5, eps_p=2.0)
    sol = solvers.solve(prob, method="coordinatewise")
    assert sol.status == "optimal" and sol.filter_ok and sol.byzantine.dtype == torch.float32
    assert sol.value == pytest.approx(solvers.solve(solvers.P1(V, 2, [Comed(f=2), TrimmedMean(b=2)])).value)
