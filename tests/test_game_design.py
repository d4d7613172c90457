"""Pool designer: greedy <= ILP = brute force on small instances."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mixtailor_game.game import design_brute_force, design_greedy, design_ilp, design_pool, worst_fraction


@given(arrays(bool, st.tuples(st.integers(1, 4), st.integers(1, 7))), st.data())
def test_greedy_le_ilp_eq_brute_force(C, data):
    K = data.draw(st.integers(1, C.shape[1]))
    g, i, b = design_greedy(C, K), design_ilp(C, K), design_brute_force(C, K)
    assert i.status == "optimal"
    assert i.worst_fraction == pytest.approx(b.worst_fraction)
    assert g.worst_fraction <= i.worst_fraction + 1e-12
    for d in (g, i, b):
        assert len(d.indices) == K == len(set(d.indices))
        assert d.worst_fraction == pytest.approx(worst_fraction(C, d.indices))


def test_greedy_strictly_worse_than_ilp_on_a_known_instance():
    # R[a, r] = rule r resists attack a. K = 3: {r0, r2, r3} resists every attack at least
    # once (worst 1/3). Greedy takes r1 (resists most), then r0 (ties broken by index), and
    # then cannot cover both a0 (only r3) and a1 (only r2): worst 0.
    R = np.array([
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
    ], dtype=bool)
    C = ~R
    g, i, b = design_greedy(C, 3), design_ilp(C, 3), design_brute_force(C, 3)
    assert g.indices == (0, 1, 2) and g.worst_fraction == 0.0
    assert i.worst_fraction == b.worst_fraction == pytest.approx(1 / 3)


def test_all_compromised_and_none_compromised():
    assert design_ilp(np.ones((2, 3), bool), 2).worst_fraction == 0.0
    assert design_greedy(np.zeros((2, 3), bool), 3).worst_fraction == 1.0


def test_design_pool_auto_and_names():
    C = np.array([[1, 0, 0], [0, 1, 0]], dtype=bool)
    d = design_pool(C, 1)
    assert d.indices == (2,) and d.names(["a", "b", "c"]) == ["c"]


@pytest.mark.parametrize("K, msg", [(0, "design_greedy: K must be >= 1, got 0"),
                                    (4, "design_greedy: K must be <= 3, got 4")])
def test_validation(K, msg):
    with pytest.raises(ValueError, match=msg):
        design_greedy(np.zeros((2, 3), bool), K)


@pytest.mark.parametrize("method", ["auto", "ilp", "greedy"])
def test_design_pool_errors_name_design_pool(method):
    """Its errors name the function the user called, whichever method it picks (auto
    said design_ilp)."""
    with pytest.raises(ValueError, match=r"design_pool: K must be <= 3, got 9"):
        design_pool(np.zeros((2, 3), bool), 9, method=method)
    with pytest.raises(ValueError, match=r"design_pool: C must be boolean"):
        design_pool(np.array([[0.5, 1.0]]), 1, method=method)


def test_non_boolean_input_rejected():
    with pytest.raises(ValueError, match="design_ilp: C must be boolean"):
        design_ilp(np.array([[0.5, 1.0]]), 1)


def test_worst_fraction_checks_its_indices_and_matrix():
    assert worst_fraction([[True, False]], [1]) == 1.0
    with pytest.raises(ValueError, match="worst_fraction: indices entry must be <= 1, got 5"):
        worst_fraction([[True, False]], [5])
    with pytest.raises(ValueError, match="worst_fraction: C must be boolean"):
        worst_fraction(np.array([[np.nan, 1.0]]), [0])


@pytest.mark.parametrize("limit", [-1.0, 0, float("nan")])
def test_bad_time_limit_refused(limit):
    # HiGHS warned "Invalid option value" and ran without a limit (design_ilp), or design_pool
    # fell back to greedy without saying why
    C = np.eye(3, dtype=bool)
    with pytest.raises(ValueError, match="design_ilp: time_limit must be"):
        design_ilp(C, 2, time_limit=limit)
    with pytest.raises(ValueError, match="design_ilp: time_limit must be"):
        design_pool(C, 2, time_limit=limit)
