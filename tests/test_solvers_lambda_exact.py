"""The closed form of the tailored "lambda" attack on comed / trimmed mean (b >= f):
against brute force (d = 1), the MILP (small d) and at a size no model reaches."""

import math

import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Krum, TrimmedMean
from solvers.lambda_exact import lambda_closed_form_applicable, lambda_range
from solvers.solve import choose_method


def honest(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, dtype=torch.float64, generator=g) + 0.2


@pytest.mark.parametrize("rule", [Comed(f=1), TrimmedMean(b=1), TrimmedMean(b=2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lambda_closed_form_matches_brute_force_d1(rule, seed):
    """d = 1: every B is anti-aligned, lambda = -(AGG(B) - w_0) / g; its max over a grid."""
    V = honest(5, 1, seed)  # n = 6, f = 1
    prob = solvers.TailoredAttack(V, 1, rule, objective="lambda")
    inst = prob.compile()
    sol = solvers.solve(prob, method="milp")
    assert sol.status == "optimal" and sol.info["closed_form"] and sol.residual <= 1e-12
    g = float(inst.u[0])
    grid = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    G = torch.cat([grid.view(-1, 1, 1), inst.R.unsqueeze(0).expand(len(grid), -1, -1)], 1)
    lam = -(rule.batched(G)[:, 0] - inst.offset[0]) / g
    best = float(lam.max())
    assert sol.value == pytest.approx(best, abs=1e-12)   # the ends of the honest range are on the grid
    assert sol.bound == pytest.approx(sol.value, abs=1e-12)


@pytest.mark.parametrize("rule", [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)])
@pytest.mark.parametrize("d, seed", [(2, 3), (3, 4)])
@pytest.mark.parametrize("variant", ["full", "suboptimal", "partial", "model"])
def test_lambda_closed_form_agrees_with_the_milp(rule, d, seed, variant):
    V = honest(6, d, seed)  # n = 8, f = 2
    kw = dict(objective="lambda")
    if variant == "suboptimal":
        kw["structure"] = "suboptimal"
    elif variant == "partial":
        kw["knowledge"] = ("partial", 4)
    elif variant == "model":
        kw.update(space="model", model=torch.full((d,), 0.1, dtype=torch.float64))
    prob = solvers.TailoredAttack(V, 2, rule, **kw)
    exact = solvers.solve(prob, method="milp")
    model = solvers.solve(prob, method="milp", closed_form=False)
    assert exact.status == "optimal" and exact.info["closed_form"] and "closed_form" not in model.info
    assert exact.residual <= 1e-9 * max(1.0, abs(exact.value))
    if variant == "suboptimal":
        assert torch.equal(exact.byzantine[0], exact.byzantine[1])
    assert exact.value >= model.value - 1e-7 * max(1.0, abs(model.value))  # never worse than the MILP's rows
    if model.status == "optimal":
        assert exact.value <= model.bound + 1e-7 * max(1.0, abs(model.bound))  # nor above its proof
        assert exact.value == pytest.approx(model.value, rel=1e-6, abs=1e-7)


def test_lambda_closed_form_at_full_scale_and_auto_choice():
    V = honest(10, 50_000, 5).float()
    prob = solvers.TailoredAttack(V, 2, TrimmedMean(b=3), objective="lambda")
    inst = prob.compile()
    assert choose_method(inst) == "milp"
    sol = solvers.solve(prob)
    assert sol.method == "milp" and sol.status == "optimal" and sol.info["closed_form"]
    lo, hi = lambda_range(inst)
    assert lo <= -1.0 <= hi and sol.value == pytest.approx(hi, rel=1e-6)
    # the real rule on the returned rows gives w_0 - lambda g in every coordinate
    out = TrimmedMean(b=3)(torch.cat([sol.byzantine, inst.R]))
    assert torch.allclose(out.double(), inst.offset.double() - sol.value * inst.u.double(), rtol=1e-5, atol=1e-7)


def test_lambda_closed_form_refuses_what_it_does_not_cover():
    V = honest(6, 2, 6)
    cases = {
        "comed or trimmed mean": solvers.TailoredAttack(V, 2, Krum(f=2), objective="lambda"),
        "b >= f": solvers.TailoredAttack(V, 2, TrimmedMean(b=1), objective="lambda"),
        "objective='lambda'": solvers.TailoredAttack(V, 2, Comed(f=2), objective="inner"),
    }
    for words, prob in cases.items():
        reason = lambda_closed_form_applicable(prob.compile())
        assert reason is not None and words in reason, (words, reason)
    sol = solvers.solve(cases["b >= f"], method="milp")  # the MILP itself still runs
    assert "closed_form" not in sol.info and math.isfinite(sol.value)
