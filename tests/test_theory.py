"""mixtailor_game.theory against hand-computed values and its regime checks."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixtailor_game import theory


@pytest.mark.parametrize("n, f, expected", [(7, 2, 5.0), (10, 0, 1.0), (11, 4, 9.0), (11, 1, 1 + 2 / 7)])
def test_C_hand_values(n, f, expected):
    assert theory.C(n, f) == pytest.approx(expected)


@pytest.mark.parametrize("n, f, d, p, expected", [
    (7, 2, 16, 1.0, 16 * 5.0),            # d^((2-1)/1) C
    (7, 2, 16, 4.0, 4 * 5.0),             # d^((4-2)/4) C = sqrt(16) C
    (11, 4, 100, 2.0, 9.0),               # p = 2: no dimension factor
    (11, 4, 1, 7.0, 9.0),                 # d = 1: no dimension factor
    (11, 1, 8, 3.0, 8 ** (1 / 3) * (1 + 2 / 7)),
    (9, 1, 4, 1.5, 4 ** ((2 - 1.5) / 1.5) * (1 + 2 / 5)),
])
def test_Lambda_hand_values(n, f, d, p, expected):
    assert theory.Lambda(n, f, d, p) == pytest.approx(expected)


def test_theorem1_bound_hand_values():
    assert theory.theorem1_bound(1.0, 7, 2, 1, 2.0) == pytest.approx(12.0)      # 2 (1 + 5)
    assert theory.theorem1_bound(0.5, 11, 4, 10, 2.0) == pytest.approx(10.0)    # 1 (1 + 9)
    assert theory.theorem1_bound(2.0, 7, 2, 16, 1.0) == pytest.approx(4 * 81)   # 4 (1 + 80)
    assert theory.theorem1_bound(0.0, 7, 2, 16, 1.0) == 0.0


def test_theorem2_bound_hand_values():
    # C1 = 6 + 2 (5 + 3 + 2*5/1) 0.5 = 24, C2 = 4 + 8*5*0.5 = 24, Lambda = 5
    assert theory.theorem2_constants(1.0, 0.5, 7, 2) == pytest.approx((24.0, 24.0))
    assert theory.theorem2_bound(1.0, 0.5, 7, 2, 1, 2.0) == pytest.approx(144.0)
    # Delta = 0: 6 sigma^2 + 4 sigma^2 Lambda, above Theorem 1's 2 sigma^2 (1 + Lambda)
    assert theory.theorem2_bound(1.0, 0.0, 11, 4, 10, 2.0) == pytest.approx(6 + 4 * 9)
    assert theory.theorem2_bound(1.0, 0.0, 11, 4, 10, 2.0) > theory.theorem1_bound(1.0, 11, 4, 10, 2.0)


def test_proposition1_hand_values():
    assert theory.proposition1_threshold(2.0, 3.0, 1.5) == pytest.approx(5.0)
    assert theory.proposition1_condition(12, 2, 2.0, 3.0, 1.5) is True     # 6 > 5
    assert theory.proposition1_condition(10, 2, 2.0, 3.0, 1.5) is False    # 5 > 5 fails
    assert theory.proposition1_condition(3, 2, 0.0, 1.0, 1.0) is True      # lambda = 0: any M > q


@given(st.integers(0, 20), st.integers(1, 30))
def test_C_is_the_sum_of_the_proofs_neighbour_ratios(f, extra):
    n = 2 * f + 2 + extra
    ratio = (n - f - 2) / (n - 2 * f - 2) + f / (n - 2 * f - 2)   # end of Appendix A.5
    assert theory.C(n, f) == pytest.approx(ratio)


@given(st.integers(1, 64), st.floats(1.0, 16.0))
def test_Lambda_power_matches_lemma1_exponents(d, p):
    expected = d ** (1 - 2 / p) if p >= 2 else d ** (2 / p - 1)
    assert theory.Lambda(7, 2, d, p) / theory.C(7, 2) == pytest.approx(expected)


@pytest.mark.parametrize("call, message", [
    (lambda: theory.C(6, 2), "C: needs n > 2f + 2, got n=6, f=2"),
    (lambda: theory.C(4, 1), "C: needs n > 2f + 2, got n=4, f=1"),
    (lambda: theory.C(5, -1), "C: f must be >= 0, got -1"),
    (lambda: theory.Lambda(7, 2, 10, 0.5), "Lambda: p must be >= 1, got 0.5"),
    (lambda: theory.Lambda(7, 2, 0, 2.0), "Lambda: d must be >= 1, got 0"),
    (lambda: theory.Lambda(6, 2, 10, 2.0), "Lambda: needs n > 2f + 2, got n=6, f=2"),
    (lambda: theory.theorem1_bound(-1.0, 7, 2, 1, 2.0), "theorem1_bound: sigma2 must be >= 0, got -1.0"),
    (lambda: theory.theorem1_bound(1.0, 6, 2, 1, 2.0), "Lambda: needs n > 2f + 2, got n=6, f=2"),
    (lambda: theory.theorem2_bound(1.0, -0.1, 7, 2, 1, 2.0), "theorem2_constants: delta2 must be >= 0, got -0.1"),
    (lambda: theory.theorem2_bound(1.0, 0.1, 6, 2, 1, 2.0), "theorem2_constants: needs n > 2f + 2, got n=6, f=2"),
    (lambda: theory.proposition1_condition(4, 4, 1.0, 1.0, 1.0), "proposition1_condition: q must be < M, got q=4, M=4"),
    (lambda: theory.proposition1_condition(4, 0, 1.0, 1.0, 1.0), "proposition1_condition: q must be >= 1, got 0"),
    (lambda: theory.proposition1_condition(4, 1, 1.0, 1.0, 0.0), "beta_min must be > 0, got 0.0"),
    (lambda: theory.proposition1_condition(4, 1, 1.0, 0.0, 1.0), "L must be > 0, got 0.0"),
    (lambda: theory.proposition1_condition(4, 1, -1.0, 1.0, 1.0), "lam must be >= 0, got -1.0"),
    (lambda: theory.theorem1_bound(math.nan, 7, 2, 1, 2.0), "sigma2 must be finite, got nan"),
])
def test_out_of_regime_raises_one_line_value_error(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_non_integers_raise_type_error():
    with pytest.raises(TypeError, match="C: n must be an integer"):
        theory.C(7.5, 2)
    with pytest.raises(TypeError, match="Lambda: d must be an integer"):
        theory.Lambda(7, 2, 2.0, 2.0)


# ----------------------------------------------------------------------------- huge Python ints (found by audit)
@pytest.mark.parametrize("call, message", [
    (lambda: theory.theorem1_bound(10**400, 7, 2, 1, 2.0), "theorem1_bound: sigma2 must be finite, got an int of about 1e+400"),
    (lambda: theory.theorem2_bound(1.0, -10**400, 7, 2, 1, 2.0), "theorem2_constants: delta2 must be finite, got an int of about -1e+400"),
    (lambda: theory.Lambda(7, 2, 16, 10**5000), "Lambda: p must be finite, got an int of about 1e+5000"),
    (lambda: theory.proposition1_threshold(10**400, 1.0, 1.0), "proposition1_threshold: lam must be finite, got an int of about 1e+400"),
    (lambda: theory.C(10**5000, 10**5000), "C: needs n > 2f + 2, got n=an int of about 1e+5000, f=an int of about 1e+5000"),
    (lambda: theory.proposition1_condition(10**60, 10**60, 1.0, 1.0, 1.0), "q must be < M, got q=an int of about 1e+60, M=an int"),
])
def test_huge_real_arguments_give_the_one_line_value_error(call, message):
    """A real too large for a float was an ``OverflowError`` traceback; an int past 4,300
    digits cannot even be printed by Python, so the message shows its magnitude."""
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_huge_integer_arguments_give_exact_or_infinite_values():
    big = 10**400
    assert theory.Lambda(7, 2, big, 2.0) == 5.0  # d^0 = 1 for p = 2, whatever d
    assert theory.Lambda(7, 2, big, 1.0) == math.inf  # d^1 is beyond the float range
    assert theory.Lambda(7, 2, big, 2 / 0.99) == pytest.approx(5 * 10.0**4)  # d^0.01 = 10^4: log space
    assert theory.C(big, big // 10) == pytest.approx(1.25)  # 1 + 2f/(n - 2f - 2) without float(f)
    assert theory.C(2 * big + 3, big) == math.inf  # 2f / 1
    assert theory.theorem1_bound(1.0, 7, 2, big, 1.0) == math.inf
    assert theory.theorem1_bound(0.0, 7, 2, big, 1.0) == 0.0  # sigma = 0: the bound is 0, not 0 * inf = nan
    assert theory.theorem2_constants(1.0, 0.0, big, 0) == (6.0, 4.0)
    assert theory.theorem2_constants(1.0, 1.0, big, 0) == (math.inf, math.inf)
    assert theory.theorem2_bound(0.0, 0.0, 7, 2, big, 1.0) == 0.0
    assert theory.theorem2_bound(1.0, 0.0, 7, 2, big, 1.0) == math.inf
    assert theory.proposition1_condition(big, 1, 2.0, 3.0, 1.5) is True
    assert theory.proposition1_condition(big, big - 1, 2.0, 3.0, 1.5) is False
    assert theory.proposition1_condition(10**400 * big, 1, 2.0, 3.0, 1.5) is True  # M / q = inf


def test_check_real_huge_values():
    from fractions import Fraction

    from mixtailor_game._checks import check_real

    with pytest.raises(ValueError, match=r"^w: x must be finite, got a Fraction of about 3.33e\+399$"):
        check_real("w", "x", Fraction(10**400, 3))
    assert check_real("w", "x", 10**400, allow_inf=True) == math.inf
    assert check_real("w", "x", -10**400, allow_inf=True) == -math.inf
    with pytest.raises(ValueError, match=r"^w: x must be >= 1, got -inf$"):
        check_real("w", "x", -10**400, low=1.0, allow_inf=True)
    assert check_real("w", "x", 10**300) == 1e300  # large but in range: unchanged behaviour


def test_proposition1_threshold_when_lam_times_L_leaves_the_float_range():
    """lam * L = 1e400 overflowed to inf: the threshold 1 + 1e200 read inf and M/q = 1e300
    was said not to satisfy it; a subnormal product lost digits (exact: 2.0000111...)."""
    from fractions import Fraction

    assert theory.proposition1_threshold(1e200, 1e200, 1e200) == pytest.approx(1e200)
    assert theory.proposition1_condition(10**300, 1, 1e200, 1e200, 1e200) is True
    exact = 1 + Fraction(1e-160) ** 2 / Fraction(1e-320)
    assert theory.proposition1_threshold(1e-160, 1e-160, 1e-320) == float(exact)
    assert theory.proposition1_threshold(1e300, 1e300, 1e-300) == math.inf  # beyond the float range


@given(st.integers(2, 40), st.floats(0.0, 50.0), st.floats(0.01, 10.0), st.floats(0.01, 10.0))
def test_proposition1_condition_matches_exact_rationals_off_ties(M, lam, L, beta):
    """Brute force against Fraction arithmetic of the same floats (ties excluded: the strict
    inequality is decided by float rounding there, as documented)."""
    from fractions import Fraction

    q = 1 + M // 3
    if q >= M:
        return
    lhs, rhs = (M - q) * Fraction(beta), q * Fraction(lam) * Fraction(L)
    if abs(lhs - rhs) <= Fraction(1, 10**9) * rhs:
        return
    assert theory.proposition1_condition(M, q, lam, L, beta) is (lhs > rhs)
