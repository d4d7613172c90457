"""solve_stackelberg: a known general-sum game, the zero-sum limit, the
commitment advantage over Nash equilibria (nashpy) and a grid brute force."""

import nashpy
import numpy as np
import pytest

from mixtailor_game.game import solve_stackelberg, solve_zero_sum


def test_known_commitment_game():
    # Leader (defender, columns U/D) payoffs: (U,L)=1 (U,R)=3 (D,L)=0 (D,R)=2; follower: 1,0,0,1.
    # Nash: leader plays its dominant U, follower L -> leader gets 1. Committing to 1/2-1/2
    # makes the follower (ties to the leader) play R -> leader gets 2.5.
    leader = np.array([[1.0, 0.0], [3.0, 2.0]])  # rows: follower L, R; columns: leader U, D
    follower = np.array([[1.0, 0.0], [0.0, 1.0]])
    res = solve_stackelberg(-leader, follower)
    assert res.ok and res.attack == 1
    np.testing.assert_allclose(res.defender, [0.5, 0.5], atol=1e-9)
    assert res.value == pytest.approx(-2.5)
    assert res.follower_regret <= 1e-9
    assert res.candidates[0] == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(6))
def test_zero_sum_limit_equals_minimax(seed):
    L = np.random.default_rng(seed).normal(size=(4, 3))
    assert solve_stackelberg(L).value == pytest.approx(solve_zero_sum(L).value, abs=1e-8)


@pytest.mark.parametrize("seed", range(6))
def test_commitment_at_least_as_good_as_every_nash(seed):
    rng = np.random.default_rng(100 + seed)
    L, U = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    res = solve_stackelberg(L, U)
    assert res.ok and res.follower_regret <= 1e-8
    # nashpy: attacker rows with payoff U, defender columns with payoff -L
    for q, p in nashpy.Game(U, -L).vertex_enumeration():
        assert res.value <= float(q @ L @ p) + 1e-8


@pytest.mark.parametrize("seed", range(4))
def test_two_rules_against_grid(seed):
    rng = np.random.default_rng(200 + seed)
    L, U = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    res = solve_stackelberg(L, U)
    best = np.inf
    for t in np.linspace(0, 1, 20001):
        p = np.array([t, 1 - t])
        Up = U @ p
        replies = np.flatnonzero(Up >= Up.max() - 1e-12)
        best = min(best, min(L[a] @ p for a in replies))
    assert res.value <= best + 1e-9          # the LP is at least as good as any grid point
    assert res.value >= best - 1e-3          # and the grid comes close to it


def test_single_attack_and_single_rule():
    res = solve_stackelberg([[2.0, -1.0, 0.5]], [[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(res.defender, [0, 1, 0], atol=1e-9)
    res = solve_stackelberg([[2.0], [1.0]], [[0.0], [3.0]])
    assert res.attack == 1 and res.value == pytest.approx(1.0)


def test_follower_ties_broken_for_leader():
    U = np.zeros((2, 2))
    L = np.array([[1.0, 1.0], [-1.0, 0.0]])
    res = solve_stackelberg(L, U)
    assert res.attack == 1 and res.value == pytest.approx(-1.0)


def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"solve_stackelberg: U must be of the same shape as L \(2, 2\)"):
        solve_stackelberg(np.zeros((2, 2)), np.zeros((2, 3)))


def test_bad_follower_matrix_is_named_u():
    # a NaN in U was reported as "L must be finite everywhere"
    with pytest.raises(ValueError, match="solve_stackelberg: U must be finite everywhere"):
        solve_stackelberg([[1.0, 0.0]], [[0.0, np.nan]])
