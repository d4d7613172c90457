"""Audit of the line search, the relaxation and the solver front end against brute force:
each test failed on the code before its fix."""


import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Geomed, Krum, TrimmedMean


def test_a_t_range_that_leaves_breakpoints_out_is_not_optimal():
    """A caller's ``t_range`` cut the domain short of comed's breakpoints: the line said
    "optimal" 0.0482 and relax gave the bound 0.0482, where the line reaches -0.1378."""
    H = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    prob = solvers.P3(H, 2, [Comed(f=2)])
    best = solvers.solve(prob, method="line")
    assert best.status == "optimal" and best.value == pytest.approx(-0.137799, abs=1e-5)
    short = solvers.solve(prob, method="line", t_range=(-1e-3, 1e-3))
    assert short.status == "feasible" and short.value > best.value
    rel = solvers.solve(prob, method="relax", line_options=dict(t_range=(-1e-3, 1e-3)))
    assert rel.bound is None or rel.bound <= best.value
    # a t_range holding every breakpoint stays exact
    lo, hi = best.info["domain"]
    wide = solvers.solve(prob, method="line", t_range=(lo - 1.0, hi + 1.0))
    assert wide.status == "optimal" and wide.value == pytest.approx(best.value, abs=1e-12)


@pytest.mark.parametrize("structure", ["suboptimal", "optimal"])
def test_lambda_problem_is_never_infeasible_when_the_own_rows_reach_minus_one(structure):
    """The Byzantine workers' own rows give AGG = g, lambda = -1, always feasible; a
    geometric median's line has no anti-aligned point and the problem came back
    ``infeasible`` (value -0.41)."""
    H = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    prob = solvers.TailoredAttack(H, 2, Geomed(p=2.0), objective="lambda", structure=structure)
    sol = solvers.solve(prob)
    assert sol.method == "line" and sol.status == "feasible"
    assert sol.value == pytest.approx(-1.0, abs=1e-9) and sol.residual <= 1e-6
    assert torch.equal(sol.byzantine, prob.compile().own)
    # the line's own answer, when it is feasible and better, is kept (Krum reaches -1 too)
    k = solvers.solve(solvers.TailoredAttack(H, 2, Krum(f=2), objective="lambda", structure=structure))
    assert k.status == "feasible" and k.value >= -1.0 - 1e-12


@pytest.mark.parametrize("which", ["honest", "own", "model"])
def test_rows_that_require_grad_are_taken_as_data(which):
    """A training step's gradients (``requires_grad``) raised ``RuntimeError: Can't call
    numpy() on Tensor that requires grad`` from deep inside the closed forms."""
    g = torch.Generator().manual_seed(0)
    H, own, w0 = torch.randn(6, 3, generator=g), torch.randn(1, 3, generator=g), torch.randn(3, generator=g)
    want = solvers.solve(solvers.P3(H, 1, [Comed(f=1), Krum(f=1)], own=own, space="model", model=w0))
    args = dict(honest=H, own=own, model=w0)
    args[which] = args[which].clone().requires_grad_(True)
    prob = solvers.P3(args["honest"], 1, [Comed(f=1), Krum(f=1)], own=args["own"], space="model", model=args["model"])
    sol = solvers.solve(prob)
    assert sol.value == want.value and not sol.byzantine.requires_grad


def test_no_certificate_for_a_pool_with_a_randomized_rule():
    """Bucketing is random: its stand-in averages 16 draws. P3 returned xi = -0.24 with
    ``certificate=True``, yet the rule's own draws scored > 0 on about a fifth of them:
    the rows do not defeat every rule."""
    from mixtailor_game.rules import Bucketing
    from mixtailor_game.rules.bucketing import bucketing

    H = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.3
    prob = solvers.P3(H, 2, [Bucketing(base="comed", s=2, f=2)])
    sol = solvers.solve(prob)
    assert sol.value < 0 and sol.status != "infeasible"
    inst = prob.compile()
    G = torch.cat([sol.byzantine, inst.R])
    gen = torch.Generator().manual_seed(1)
    draws = [float(bucketing(G, Comed(), 2, generator=gen).double() @ inst.u64) for _ in range(100)]
    assert max(draws) > 0  # some draws are not defeated
    assert sol.certificate is False and "randomized" in sol.info["certificate_note"]
    # a deterministic pool keeps its certificate
    det = solvers.solve(solvers.P3(H, 2, [Comed(f=2)]))
    assert det.value < 0 and det.certificate is True


def test_a_krum_switch_inside_one_grid_interval_is_found_for_any_norm():
    """Krum(p=1) has no closed-form switch points: its last step before dropping the
    Byzantine row (the expectation's minimum, -0.0011) lay inside one dense-grid interval
    and the line answered 0.0227 far away; both sides of every change of choice between
    adjacent candidates are now found by bisection (small rows)."""
    from test_solvers_line_checks import _line_brute

    H = torch.randn(7, 2, generator=torch.Generator().manual_seed(110), dtype=torch.float64) + 0.5
    w = [0.1371586143153044, 0.46687783545634615, 0.3959635502283495]
    prob = solvers.ExpectedValue(H, 1, [Comed(f=1), Krum(f=1, p=1.0), TrimmedMean(b=1)], probs=w)
    sol = solvers.solve(prob, method="line")
    brute = _line_brute(prob.compile(), torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64).tolist())
    assert sol.value <= brute + 1e-12 and sol.value < -1e-3
