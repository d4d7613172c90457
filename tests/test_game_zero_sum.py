"""solve_zero_sum: known games, agreement with nashpy and an independent LP (cvxpy),
best-response certificates, degenerate payoffs and input validation."""

import cvxpy as cp
import nashpy
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mixtailor_game.game import best_response_gaps, solve_zero_sum, uniform_exploitability
from mixtailor_game.game import zero_sum as zs


def cvxpy_value(L):
    """Independent LP: min_p max_a (L p)_a with cvxpy's default solver."""
    p = cp.Variable(L.shape[1], nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.max(L @ p)), [cp.sum(p) == 1])
    prob.solve()
    return prob.value


def check_certificate(L, res, tol=1e-7):
    """Every action in a support is a best response; the gap is ~0."""
    scale = max(1.0, np.abs(L).max())
    assert res.ok
    assert res.gap <= tol * scale
    assert np.isclose(res.defender.sum(), 1) and (res.defender >= 0).all()
    assert np.isclose(res.attacker.sum(), 1) and (res.attacker >= 0).all()
    Lp, qL = L @ res.defender, res.attacker @ L
    for a in np.flatnonzero(res.attacker > 1e-9):
        assert Lp[a] >= Lp.max() - tol * scale
    for r in np.flatnonzero(res.defender > 1e-9):
        assert qL[r] <= qL.min() + tol * scale


def test_matching_pennies():
    res = solve_zero_sum([[1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(res.defender, [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(res.attacker, [0.5, 0.5], atol=1e-9)
    assert abs(res.value) < 1e-12 and res.gap < 1e-12


def test_rock_paper_scissors():
    L = np.array([[0, 1, -1], [-1, 0, 1], [1, -1, 0]], dtype=float)
    res = solve_zero_sum(L)
    np.testing.assert_allclose(res.defender, [1 / 3] * 3, atol=1e-9)
    np.testing.assert_allclose(res.attacker, [1 / 3] * 3, atol=1e-9)
    assert abs(res.value) < 1e-12


def test_known_value_asymmetric():
    # defender loss [[3, 0], [1, 2]]: p = (1/2, 1/2), value 3/2; attacker q = (1/4, 3/4)
    res = solve_zero_sum([[3.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(res.defender, [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(res.attacker, [0.25, 0.75], atol=1e-9)
    assert res.value == pytest.approx(1.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_random_games_agree_with_nashpy_and_cvxpy(seed):
    rng = np.random.default_rng(seed)
    A, M = rng.integers(2, 6, size=2)
    L = rng.normal(size=(A, M))
    res = solve_zero_sum(L)
    check_certificate(L, res)
    # nashpy: the attacker is the row player with payoff L, the defender the column player with -L.
    eqs = list(nashpy.Game(L, -L).vertex_enumeration())
    assert len(eqs) == 1
    q, p = eqs[0]
    assert float(q @ L @ p) == pytest.approx(res.value, abs=1e-8)
    # Random continuous games have a unique equilibrium: the strategies agree too.
    np.testing.assert_allclose(res.defender, p, atol=1e-7)
    np.testing.assert_allclose(res.attacker, q, atol=1e-7)
    assert cvxpy_value(L) == pytest.approx(res.value, abs=1e-6)


@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
              elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False)))
def test_property_certificate_and_bounds(L):
    res = solve_zero_sum(L)
    check_certificate(L, res, tol=1e-7)
    # max_a min_r L <= value <= min_r max_a L (pure-strategy security levels)
    assert L.min(axis=1).max() - 1e-7 * max(1, np.abs(L).max()) <= res.value
    assert res.value <= L.max(axis=0).min() + 1e-7 * max(1, np.abs(L).max())


@given(arrays(np.float64, (3, 4), elements=st.floats(-10, 10, allow_nan=False)),
       st.floats(0.01, 1000), st.floats(-1000, 1000))
def test_affine_invariance(L, s, c):
    a, b = solve_zero_sum(L), solve_zero_sum(s * L + c)
    assert b.value == pytest.approx(s * a.value + c, abs=1e-6 * max(1.0, s * 10, abs(c)))


def test_degenerate_all_equal():
    res = solve_zero_sum(np.full((3, 4), 2.5))
    assert res.ok and res.value == pytest.approx(2.5) and res.gap == pytest.approx(0, abs=1e-12)


def test_degenerate_dominated_rule_gets_zero():
    # rule 2 is worse than rule 0 against every attack: never played
    L = np.array([[1.0, -1.0, 2.0], [-1.0, 1.0, 0.0]])
    res = solve_zero_sum(L)
    check_certificate(L, res)
    assert res.defender[2] < 1e-9
    np.testing.assert_allclose(res.defender[:2], [0.5, 0.5], atol=1e-9)


def test_degenerate_single_rule_and_single_attack():
    res = solve_zero_sum([[0.3], [-2.0], [1.5]])
    np.testing.assert_allclose(res.defender, [1.0])
    assert res.value == pytest.approx(1.5)
    np.testing.assert_allclose(res.attacker, [0, 0, 1], atol=1e-9)
    res = solve_zero_sum([[0.3, -2.0, 1.5]])
    np.testing.assert_allclose(res.defender, [0, 1, 0], atol=1e-9)
    assert res.value == pytest.approx(-2.0)


def test_large_magnitudes():
    L = 1e9 * np.array([[1.0, -1.0], [-1.0, 1.0]]) + 5e9
    res = solve_zero_sum(L)
    np.testing.assert_allclose(res.defender, [0.5, 0.5], atol=1e-9)
    assert res.value == pytest.approx(5e9, rel=1e-12)


def test_best_response_gaps_of_non_equilibrium():
    L = np.array([[1.0, -1.0], [-1.0, 1.0]])
    dg, ag = best_response_gaps(L, [1.0, 0.0], [0.5, 0.5])
    assert dg == pytest.approx(1.0) and ag == pytest.approx(0.0)


def test_uniform_exploitability():
    L = np.array([[1.0, -1.0, 2.0], [-1.0, 1.0, 0.0]])
    # uniform: L u = (2/3, 0) -> 2/3; minimax value 0
    assert uniform_exploitability(L) == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad, msg", [
    ([[1.0, np.nan]], "solve_zero_sum: L must be finite everywhere"),
    ([1.0, 2.0], r"solve_zero_sum: L must be a non-empty 2-D array \(attacks, rules\), got \(2,\)"),
    (np.zeros((0, 3)), "solve_zero_sum: L must be a non-empty 2-D array"),
])
def test_validation(bad, msg):
    with pytest.raises(ValueError, match=msg):
        solve_zero_sum(bad)


def test_time_limit_validation():
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="solve_zero_sum: time_limit must be > 0"):
            solve_zero_sum([[1.0]], time_limit=bad)
    with pytest.raises(ValueError, match="solve_zero_sum: time_limit must be finite"):
        solve_zero_sum([[1.0]], time_limit=float("nan"))


@pytest.mark.parametrize("bad", [True, "5"])
def test_time_limit_rejects_bools_and_non_numbers(bad):
    # True was taken as a 1 s limit
    with pytest.raises(TypeError, match="solve_zero_sum: time_limit must be a real number"):
        solve_zero_sum([[1.0]], time_limit=bad)


@pytest.mark.parametrize("limit", [np.float32(2.5), 10**400, float("inf")], ids=["float32", "huge-int", "inf"])
def test_time_limit_numpy_reals_and_unbounded(limit):
    # numpy reals were refused; a huge int crashed float(); inf means no limit
    res = solve_zero_sum([[1.0, -1.0], [-1.0, 1.0]], time_limit=limit)
    assert res.status == "optimal" and abs(res.value) < 1e-9


def test_solver_failure_is_a_status(monkeypatch):
    class Fake:
        status, x, message = 4, None, "numerical trouble"

    monkeypatch.setattr(zs, "linprog", lambda *a, **k: Fake())
    res = solve_zero_sum([[1.0, 0.0], [0.0, 1.0]])
    assert res.status == "numerical" and not res.ok
    assert res.defender is None and np.isnan(res.value) and res.gap == np.inf


def test_best_response_gaps_needs_probability_vectors():
    L = [[1.0, 0.0], [0.0, 1.0]]
    assert best_response_gaps(L, [0.5, 0.5], [0.5, 0.5]) == (0.0, 0.0)
    for p in ([0.9, 0.9], [1.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="best_response_gaps: defender must be 2 finite probabilities"):
            best_response_gaps(L, p, [0.5, 0.5])


def test_payoffs_near_the_float64_maximum_are_solved():
    # their mean and differences overflowed: HiGHS got inf and scipy raised
    r = solve_zero_sum([[1e308, 1e308]])
    assert r.ok and r.value == 1e308
    r = solve_zero_sum([[1e308, -1e308], [-1e308, 1e308]])
    assert r.ok and np.allclose(r.defender, [0.5, 0.5])


def test_out_of_range_or_ragged_input_is_one_line_error():
    # numpy's "int too large to convert to float" / "inhomogeneous shape" named nothing
    with pytest.raises(ValueError, match="solve_zero_sum: L must be finite everywhere, got 'an entry too large"):
        solve_zero_sum([[10**400, 1]])
    with pytest.raises(ValueError, match="best_response_gaps: L must be finite everywhere"):
        best_response_gaps([[10**400, 1]], [0.5, 0.5], [1.0])
    with pytest.raises(TypeError, match="best_response_gaps: L must be a 2-D array of real numbers"):
        best_response_gaps([[1.0, 2.0], [3.0]], [0.5, 0.5], [0.5, 0.5])
