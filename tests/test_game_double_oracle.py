"""double_oracle with a finite (exact) oracle: convergence to the full game's value,
final gap <= tol, recorded exploitability, budget and failure statuses."""

import numpy as np
import pytest
import torch

from mixtailor_game.game import double_oracle, matrix_oracle, solve_zero_sum


@pytest.mark.parametrize("seed", range(6))
def test_converges_on_finite_game(seed):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(30, 6))
    tol = 1e-9
    res = double_oracle(matrix_oracle(L), 6, tol=tol, max_iter=40)
    full = solve_zero_sum(L)
    assert res.status == "converged"
    assert res.gap <= tol
    assert res.value == pytest.approx(full.value, abs=1e-8)
    # the final mix is unexploitable in the full game
    assert np.max(L @ res.defender) <= full.value + 1e-8
    # history: one entry per LP, upper >= lower (exact oracle), restricted values never decrease
    lows = [h["lower"] for h in res.history]
    assert all(h["upper"] >= h["lower"] - 1e-9 for h in res.history)
    assert all(b >= a - 1e-9 for a, b in zip(lows, lows[1:]))
    assert res.exploitability == [h["gap"] for h in res.history]
    assert len(res.attacks) == res.matrix.shape[0] == len(res.attacker)
    np.testing.assert_allclose(res.matrix, L[res.attacks])


def test_initial_set_and_pure_saddle():
    L = np.array([[1.0, 2.0], [0.0, 3.0], [-1.0, 0.5]])  # saddle: attack 0 vs rule 0, value 1
    res = double_oracle(matrix_oracle(L), 2, initial=[(2, L[2])])
    assert res.status == "converged" and res.value == pytest.approx(1.0)
    np.testing.assert_allclose(res.defender, [1.0, 0.0], atol=1e-9)


def test_budget_status():
    rng = np.random.default_rng(1)
    L = rng.normal(size=(30, 6))
    res = double_oracle(matrix_oracle(L), 6, tol=0.0, max_iter=1)
    assert res.status == "budget" and len(res.history) == 1
    assert len(res.attacks) == 1


def test_oracle_failure_is_a_status():
    calls = []

    def oracle(p):
        calls.append(p)
        return None if len(calls) > 1 else ("a", np.array([1.0, -1.0]))

    res = double_oracle(oracle, 2)
    assert res.status == "oracle_failed"
    assert double_oracle(lambda p: None, 2).status == "oracle_failed"


def test_bad_oracle_row():
    with pytest.raises(ValueError, match="double_oracle: oracle loss row must be 3 finite numbers"):
        double_oracle(lambda p: ("a", [1.0, np.nan, 0.0]), 3)
    # an M that is not the matrix's number of rules: named, not numpy's matmul error
    with pytest.raises(ValueError, match=r"matrix_oracle: mix p must be 3 probabilities .*double_oracle's M.*got 2"):
        double_oracle(matrix_oracle(np.eye(3)), 2)
    with pytest.raises(ValueError, match=r"matrix_oracle: L must be a non-empty 2-D matrix"):
        matrix_oracle(np.ones(3))


def test_continuous_attack_space_with_exact_oracle():
    # Attacker picks a unit vector x in R^2; loss against rule r is <x, c_r>: the best
    # response to p is x = Cp / ||Cp||, the game value is min_p ||C p||.
    C = np.array([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]]).T  # columns c_r

    def oracle(p):
        v = C @ p
        x = v / np.linalg.norm(v) if np.linalg.norm(v) > 0 else np.array([1.0, 0.0])
        return x, C.T @ x

    res = double_oracle(oracle, 3, tol=1e-4, max_iter=200)
    assert res.status == "converged" and res.gap <= 1e-4
    # min over the simplex of ||C p||: the three c_r surround 0 only if 0 is in their hull
    import cvxpy as cp
    p = cp.Variable(3, nonneg=True)
    target = cp.Problem(cp.Minimize(cp.norm(C @ p)), [cp.sum(p) == 1]).solve()
    assert res.upper == pytest.approx(target, abs=2e-4)


def test_solvers_oracle_end_to_end():
    solvers = pytest.importorskip("solvers")
    if not hasattr(solvers, "ExpectedValue"):
        pytest.skip("solvers.ExpectedValue not written yet")
    from mixtailor_game.game import solvers_oracle
    from mixtailor_game.rules import make_rule

    gen = torch.Generator().manual_seed(0)
    honest = torch.randn(10, 5, generator=gen, dtype=torch.float64) + 1.0
    pool = [make_rule("comed", f=2), make_rule("krum", f=2), make_rule("trimmed_mean", b=2)]
    res = double_oracle(solvers_oracle(honest, 2, pool), len(pool), tol=1e-3, max_iter=5)
    assert res.status in ("converged", "budget")
    assert res.defender is not None and res.defender.sum() == pytest.approx(1.0)
    assert len(res.history) >= 1


def test_failed_oracle_leaves_no_stale_bound():
    # the last reply answered the previous mix: its upper / gap must not be reported for the final one
    L = np.array([[1.0, 0.0], [0.0, 1.0]])
    replies = iter([("a1", L[1])])
    res = double_oracle(lambda p: next(replies, None), 2, initial=[("a0", L[0])])
    assert res.status == "oracle_failed" and res.value == pytest.approx(0.5)
    assert np.isnan(res.upper) and res.gap == float("inf")


@pytest.mark.parametrize("L, tol", [
    # tol = 0: a gap of 1e-16 (round-off) re-added an attack of the set until the budget ran out
    (np.array([[0.0, -1, -1], [0, -1, 1], [0, 1, -1], [-1, 1, -1], [0, -1, -1], [-1, -1, -1], [1, 1, 0],
               [1, 1, 0]]), 0.0),
    # payoffs ~1e12: round-off (1.2e-4) above an absolute tol
    (np.array([[1000e9, 1001e9, 999e9, 1000e9], [1001e9, 999e9, 1001e9, 999e9]]), 1e-9),
])
def test_exact_oracle_stops_when_its_reply_is_already_in_the_set(L, tol):
    res = double_oracle(matrix_oracle(L), L.shape[1], tol=tol, max_iter=len(L) + 5)
    assert res.status == "converged"
    assert len(set(res.attacks)) == len(res.attacks) <= len(L)  # no attack added twice
    full = solve_zero_sum(L)
    scale = np.abs(L).max()
    assert res.value == pytest.approx(full.value, abs=1e-9 * scale)
    assert np.max(L @ res.defender) <= full.value + 1e-9 * scale


def test_weaker_heuristic_reply_does_not_lower_the_bound():
    # the known attack costs the defender 1 against any mix; a heuristic oracle that only
    # finds a harmless attack gave upper 0 and exploitability -1 for a mix that loses 1
    res = double_oracle(lambda p: ("weak", np.zeros(2)), 2, initial=[("a0", np.ones(2))])
    assert res.status == "converged"
    assert res.upper == pytest.approx(1.0) and res.gap == pytest.approx(0.0, abs=1e-12)
    assert all(g >= -1e-12 for g in res.exploitability)
