"""solvers.scp: input checks, degenerate filter tangents, subproblem failures, scale, filter margin."""

import numpy as np
import cvxpy as cp
import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Krum
from solvers.line import line_rows, solve_line
from solvers.solution import pair_distances


def honest(seed=0, k=5, d=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(k, d, generator=g, dtype=torch.float64) + 0.5).to(dtype)


def p2(V, eps, **kw):
    return solvers.P2(V, 2, [Comed(f=2), Krum(f=2)], eps=eps, **kw)


# F1: identical current rows under the filter (zero distance) used to divide by zero
@pytest.mark.parametrize("p", [2.0, 3.0])
def test_identical_rows_under_the_filter_get_a_unit_tangent(p):
    s = solvers.solve(p2(honest(), 0.3, eps_p=p), method="scp", init=torch.zeros(2, 2), max_iter=20)
    assert s.status == "feasible" and s.filter_ok
    assert float(pair_distances(s.byzantine, p)[0]) >= 0.3


# F4: solver name, failed subproblems, scale
def test_unknown_solver_is_rejected_naming_the_parameter():
    with pytest.raises(ValueError, match=r"^solvers\.scp: solver must be one of .*got 'NOPE'$"):
        solvers.solve(p2(honest(), 0.3), method="scp", solver="NOPE")


def test_failed_subproblems_are_counted_and_never_reported_feasible(monkeypatch):
    def broken(self, *a, **k):
        raise cp.error.SolverError("boom")

    monkeypatch.setattr(cp.Problem, "solve", broken)
    s = solvers.solve(p2(honest(), 0.3), method="scp", max_iter=30)
    assert s.status == "budget"
    assert s.info["failed_subproblems"] > 0 and s.info["accepted"] == 0
    assert "failed" in s.info["reason"]


def test_scp_result_does_not_depend_on_the_data_scale():
    V = honest()
    ref = solvers.solve(p2(V, 0.3), method="scp")
    assert ref.info["accepted"] > 0
    for sc in (1e-3, 1e8):
        s = solvers.solve(p2(V * sc, 0.3 * sc), method="scp")
        assert s.status == "feasible" and s.info["failed_subproblems"] == 0
        assert s.value / sc**2 == pytest.approx(ref.value, rel=1e-6)


# F5: init
@pytest.mark.parametrize("init, msg", [
    (torch.full((2, 2), float("nan")), "NaN/Inf"),
    (torch.full((2, 2), float("inf")), "NaN/Inf"),
    (torch.zeros(3), r"shape \(3,\)"),
    ("abc", "str"),
])
def test_bad_init_is_rejected_in_one_line(init, msg):
    with pytest.raises(ValueError, match=r"^solvers\.scp: init must be a finite Tensor of shape \(2, 2\) or \(2,\), got .*" + msg):
        solvers.solve(solvers.P1(honest(), 2, [Comed(f=2), Krum(f=2)]), method="scp", init=init)


def test_init_of_shape_d_is_broadcast():
    s = solvers.solve(solvers.P1(honest(), 2, [Comed(f=2), Krum(f=2)]), method="scp", init=torch.ones(2), max_iter=0)
    assert torch.equal(s.byzantine, torch.ones(2, 2, dtype=torch.float64))


def test_suboptimal_init_needs_identical_rows():
    T = solvers.TailoredAttack(honest(), 2, Comed(f=2), objective="inner", structure="suboptimal")
    with pytest.raises(ValueError, match=r"^solvers\.scp: init must be identical rows"):
        solvers.solve(T, method="scp", init=torch.tensor([[0.0, 0.0], [5.0, 5.0]]))


# F6: margin in the problem's dtype; phase 1 repairs a start that breaks the filter
def test_float32_rows_keep_the_filter_after_the_cast():
    g = torch.Generator().manual_seed(4)
    V = torch.randn(5, 3, generator=g) + 0.5  # float32
    s = solvers.solve(p2(V, 0.37), method="scp", max_iter=30)
    assert s.status == "feasible" and s.filter_ok


def test_a_start_just_inside_the_filter_is_repaired():
    P = p2(honest() * 0.01 + 3e4, 1e-3)
    inst = P.compile()
    B0 = line_rows(inst, [solve_line(inst)[0]])[0].double()
    gap = B0[1] - B0[0]
    B0[1] = B0[0] + gap * (1e-3 * (1 - 1e-7) / float(gap.norm()))  # breaks the filter by more than its tolerance
    s = solvers.solve(P, method="scp", init=B0, max_iter=20)
    assert s.status == "feasible" and s.filter_ok and s.info["accepted"] > 0


# F8: inner products beyond float64
@pytest.mark.parametrize("make", [
    lambda V: p2(V * 1e160, 0.3e160),
    lambda V: solvers.P1(V * 1e160, 2, [Comed(f=2), Krum(f=2)]),
])
def test_overflowing_inner_products_raise_naming_honest(make):
    # refused when the problem compiles (solvers.problems._check_scale), before any LP
    with pytest.raises(ValueError, match=r"honest must be rows \(minus w_0\) of largest magnitude in"):
        solvers.solve(make(honest()), method="scp")


def test_scp_refuses_a_non_finite_linear_model():
    from solvers.scp import _check_finite
    with pytest.raises(ValueError, match=r"^solvers\.scp: honest must be rows whose inner products fit in float64"):
        _check_finite(np.array([0.0, np.inf]), None)
    _check_finite(np.array([0.0, 1.0]), np.zeros((2, 1, 3)))  # finite: no error


# F10: options
@pytest.mark.parametrize("opt, err, msg", [
    (dict(max_iter=-3), ValueError, "max_iter must be >= 0, got -3"),
    (dict(max_iter=2.5), TypeError, "max_iter must be an integer, got 2.5"),
    (dict(radius=-1), ValueError, "radius must be > 0, got -1.0"),
    (dict(radius=float("nan")), ValueError, "radius must be finite, got nan"),
    (dict(r_min=float("nan")), ValueError, "r_min must be finite, got nan"),
    (dict(r_min=-1), ValueError, "r_min must be >= 0, got -1.0"),
    (dict(line_options=None), ValueError, "line_options must be a dict"),
])
def test_bad_options_fail_in_one_line_naming_the_parameter(opt, err, msg):
    with pytest.raises(err, match=r"^solvers\.scp: " + msg):
        solvers.solve(p2(honest(), 0.3), method="scp", **opt)


def test_scp_through_a_wrapper_that_measures_distances_warns_nothing():
    """NNM's pairwise distances fell back to per-pair float() conversions of rows that
    carry SCP's gradient: torch warned "Converting a tensor with requires_grad=True to a
    scalar" to the user. Those scalars are detached now (they carry no gradient)."""
    import warnings

    from mixtailor_game.rules import NNM

    g = torch.Generator().manual_seed(0)
    V = 0.01 * torch.randn(10, 50, generator=g) + 0.002
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = solvers.solve(solvers.P1(V, 2, [NNM(base="comed", f=2)]), method="scp", max_iter=5)
    assert np.isfinite(s.value)


# F-tie: Bulyan's closest-to-median mean keeps the smaller of two values equally far from the
# median (pinned in the rule); the linear model kept torch.topk's arbitrary one, so at such a
# tie the model's rows averaged to a different vector than the rule's output
def test_bulyan_trimmed_model_breaks_median_ties_like_the_rule():
    from mixtailor_game.rules import Bulyan
    from solvers.linearize import model_weights
    G = torch.tensor([[2.0, 2.0], [1.0, -2.0], [1.0, 2.0], [0.0, 1.0], [0.0, 1.0], [-1.0, -1.0], [-1.0, 2.0]],
                     dtype=torch.float64)
    rule = Bulyan(f=1, select="krum", aggregate="trimmed")
    torch.testing.assert_close((model_weights(rule, G) * G).sum(0), rule(G), rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):  # integer rows: many such ties
        G = torch.randint(-2, 3, (7, 3), generator=g).double()
        torch.testing.assert_close((model_weights(rule, G) * G).sum(0), rule(G), rtol=0, atol=1e-12)
