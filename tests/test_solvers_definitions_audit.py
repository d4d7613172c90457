"""Audit of the problem definitions (paper 2.3, A.1-A.1.5, A.4) and of what AttackSolution
reports: certificates under partial knowledge, non-finite per-rule values, bad input."""

import itertools
import math

import numpy as np
import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Mean, TrimmedMean
from solvers.solution import evaluate, make_solution


def test_partial_knowledge_xi_below_zero_is_no_certificate():
    """A.1.2 fills the unseen rows with the mean of the rows the adversary has: xi < 0 there
    is on its estimate, not on the true rows (old code: certificate=True, xi = +1005 on them)."""
    H = torch.tensor([[1.0], [2.0], [-6.0], [-7.0]], dtype=torch.float64)
    sol = solvers.solve(solvers.P3(H, 1, [Mean()], knowledge=("partial", 2)))
    assert sol.value < 0 and sol.status != "infeasible"
    assert sol.certificate is False and "estimate" in sol.info["certificate_note"]
    assert evaluate(solvers.P3(H, 1, [Mean()]).compile(), sol.byzantine)["value"] > 0  # the true rows
    # every honest row seen (k = n - f): the value is on the true rows, the certificate stands
    full = solvers.solve(solvers.P3(H, 1, [Mean()], knowledge=("partial", 4)))
    assert full.value < 0 and full.certificate is True and "certificate_note" not in full.info
    assert solvers.P3(H, 1, [Mean()], knowledge=("partial", 2)).compile().unseen == 2


def test_a_rule_whose_inner_product_is_not_finite_makes_the_solution_infeasible():
    """P1's max read 6.5 with status feasible beside a mean's -inf (and a NaN cosine)."""
    H = torch.tensor([[2.0, 1.0], [3.0, 2.0], [2.5, 1.5]], dtype=torch.float64)
    B = torch.full((2, 2), -1.7e308, dtype=torch.float64)  # the mean is finite, <mean, mu> is -inf
    for prob in (solvers.P1(H, 2, [Mean(), Comed(f=2)]), solvers.ExpectedValue(H, 2, [Mean(), Comed(f=2)])):
        sol = make_solution(prob.compile(), B, method="line", status="feasible", t0=0.0)
        assert sol.status == "infeasible" and "not finite" in sol.info["reason"]
        assert sol.per_rule_inner[0] == -math.inf and math.isnan(sol.per_rule_cosine[0])
        assert sol.certificate in (False, None)


def test_cosines_of_huge_aggregates_are_not_zero():
    """||a|| ||u|| (and ||a||'s squares) overflowed: the cosine of a = -4e307 rows read -0.0."""
    H = torch.tensor([[2.0, 1.0], [3.0, 2.0], [2.5, 1.5]], dtype=torch.float64)
    inst = solvers.P1(H, 2, [Mean(), Comed(f=2)]).compile()
    B = torch.full((2, 2), -1e308, dtype=torch.float64)
    sol = make_solution(inst, B, method="line", status="feasible", t0=0.0)
    a = (Mean()(torch.cat([B, H])) / 1e307).double()
    mu = inst.u.double()
    want = float(a @ mu) / float(a.norm()) / float(mu.norm())
    assert sol.per_rule_cosine[0] == pytest.approx(want, rel=1e-12) and want < -0.9
    assert sol.status == "feasible" and math.isfinite(sol.per_rule_inner[0])


def test_probabilities_from_a_mapping_or_set_are_rejected():
    """A dict iterated its keys: probs={0: 0.5, 1: 0.5} became (0.0, 1.0) and passed."""
    H = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for bad in ({0: 0.5, 1: 0.5}, {0.5, 0.25}, "01"):
        with pytest.raises(ValueError, match=r"ExpectedValue: probs must be a sequence of 2 numbers, got") as exc:
            solvers.ExpectedValue(H, 1, [Comed(f=1), TrimmedMean(b=1)], probs=bad)
        assert "\n" not in str(exc.value)


def _p1():
    H = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return solvers.P1(H, 1, [Comed(f=1)])


def test_an_unhashable_method_is_a_one_line_value_error():
    with pytest.raises(ValueError, match=r"solvers.solve: method must be one of .* or None, got \[\]"):
        solvers.solve(_p1(), method=[])  # old code: TypeError "unhashable type: 'list'"


def test_a_bad_milp_max_size_is_rejected():
    with pytest.raises(TypeError, match="solvers.solve: milp_max_size must be an integer, got 'x'"):
        solvers.solve(_p1(), milp_max_size="x")  # old code: ignored (the closed forms answered first)


def test_own_that_is_not_a_tensor_is_a_type_error_naming_its_type():
    with pytest.raises(TypeError, match=r"P1: own must be None or a torch.Tensor of shape \(1, 2\), got list"):
        solvers.P1(_p1().honest, 1, [Comed(f=1)], own=[[0.0, 0.0]])  # old code: "..., got ()"


@pytest.mark.parametrize("case", ["full", "partial", "model", "model+partial"])
def test_tailored_lambda_matches_the_paper_by_brute_force(case):
    """A.1-A.1.5 written out independently (n = 5, f = 1, d = 1, comed): g_hat =
    AGG(g_1..g_k, g_bar x (n - k)), g_bar the mean of g_1..g_k (own and seen), and
    w' = w_0 - lambda s_hat; the solver's lambda equals the best over a fine grid of B."""
    g = torch.Generator().manual_seed(3)
    H = torch.randn(4, 1, generator=g, dtype=torch.float64) + 0.5
    own = torch.randn(1, 1, generator=g, dtype=torch.float64)
    rule, kw, k, w0 = Comed(f=1), dict(own=own, objective="lambda"), 4, torch.zeros(1, dtype=torch.float64)
    if "partial" in case:
        k, kw["knowledge"] = 2, ("partial", 2)
    if "model" in case:
        w0 = torch.tensor([0.3], dtype=torch.float64)
        kw.update(space="model", model=w0)
    gbar = torch.cat([own, H[:k]]).mean(0, keepdim=True)
    R = torch.cat([H[:k], gbar.expand(4 - k, -1)])
    s_hat = rule(torch.cat([own, R])) - w0
    grid = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    best = max(float(-(rule(torch.cat([b.view(1, 1), R])) - w0) / s_hat) for b in grid)
    sol = solvers.solve(solvers.TailoredAttack(H, 1, rule, **kw))
    assert sol.objective == "lambda" and sol.status == "optimal"
    assert sol.value == pytest.approx(best, abs=1e-9)


def test_p1_and_expected_match_a_brute_force_grid():
    """A.4's P1 (min_B max_m <AGG_m(B, V), mean(V)>) and the expectation under known
    probabilities, n = 5, f = 1, d = 2, comed and trimmed mean: the solver is at least
    as good as a grid over B, and its value is the real rules' on its rows."""
    H = torch.randn(4, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64) + 0.5
    pool, probs = [Comed(f=1), TrimmedMean(b=1)], (0.3, 0.7)
    mu = H.mean(0)
    ax = np.linspace(-4, 4, 81)
    vals = np.array([[float(r(torch.cat([torch.tensor([b], dtype=torch.float64), H])) @ mu) for r in pool]
                     for b in itertools.product(ax, ax)])
    p1 = solvers.solve(solvers.P1(H, 1, pool))
    ev = solvers.solve(solvers.ExpectedValue(H, 1, pool, probs=probs, structure="optimal"))
    assert p1.value <= vals.max(1).min() + 1e-9 and ev.value <= (vals @ np.array(probs)).min() + 1e-9
    G = torch.cat([p1.byzantine, H])
    assert p1.value == pytest.approx(max(float(r(G) @ mu) for r in pool), rel=1e-12)
    G = torch.cat([ev.byzantine, H])
    assert ev.value == pytest.approx(sum(p * float(r(G) @ mu) for p, r in zip(probs, pool)), rel=1e-12)
