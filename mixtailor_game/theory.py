"""The paper's quantities for generalized Krum and mixed pools, as functions.

Symbols (Section 4 of Ramezani-Kebrya et al., "MixTailor"):

* ``n`` workers, ``f`` of them Byzantine, ``d`` the dimension, ``p >= 1`` the
  norm of generalized Krum, eq. (3);
* ``sigma2`` bounds the variance of an honest worker,
  ``E||V_i - g_i||_2^2 <= sigma^2`` (Theorem 1; Assumption 1);
* ``delta2`` bounds the heterogeneity of the honest means,
  ``1/(n-f) sum_i ||g_i - grad F||_2^2 <= Delta^2`` (Assumption 1);
* ``M`` rules in a pool, ``q`` of them compromised, ``lam`` the largest norm of
  a compromised rule's mean output, ``L`` the largest gradient norm and
  ``beta_min`` the smallest ``E[U_m']^T grad F`` of a resilient rule
  (Proposition 1).

The functions only evaluate the paper's formulas; ``mixtailor_game.verify``
tests them against Monte Carlo estimates. Two steps of the proofs (Appendix
A.5 and A.6) deserve that test: the first equality treats the mean of the
data-dependent neighbour set ``N_g(i*)`` as unbiased for ``grad F``, and the
bound ``E||V_i - V_zeta(i)||^2 <= 2 sigma^2`` is applied to a worker
``zeta(i)`` that is chosen after seeing the data. The formulas below are the
statements as printed, not repaired versions.

Out-of-regime arguments raise a one-line ``ValueError`` in the project's
format, e.g. ``"C: needs n > 2f + 2, got n=6, f=2"``. Integer arguments may
be arbitrarily large: the formulas are evaluated without converting them to
float first, and a result beyond the float range is ``inf`` (a zero factor
still gives 0). A real argument too large for a float (``sigma2=10**400``)
is refused as not finite.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

from mixtailor_game._checks import check_int, check_real, check_regime, show_value

__all__ = [
    "C",
    "Lambda",
    "theorem1_bound",
    "theorem2_constants",
    "theorem2_bound",
    "proposition1_threshold",
    "proposition1_condition",
]


def _ratio(a: int, b: int) -> float:
    """``a / b`` for ints ``b > 0``, correctly rounded; ``inf`` beyond the float range."""
    try:
        return a / b  # int / int is exact before rounding, whatever the sizes
    except OverflowError:
        return math.inf if a > 0 else -math.inf


def _times(a: float, b: float) -> float:
    """``a * b`` with ``0 * inf = 0`` (a zero bound stays zero)."""
    return 0.0 if a == 0.0 or b == 0.0 else a * b


def _check_nf(where: str, n, f) -> tuple[int, int]:
    n = check_int(where, "n", n, low=1)
    f = check_int(where, "f", f, low=0)
    check_regime(where, n > 2 * f + 2, "n > 2f + 2", n, f)
    return n, f


def C(n: int, f: int) -> float:
    """``C(n, f) = 1 + 2f / (n - 2f - 2)`` (Theorem 1, Section 4.1).

    It is ``(n - f - 2) / (n - 2f - 2) + f / (n - 2f - 2)``, the two ratios of
    neighbour counts (Lemma 2) summed at the end of the proof in Appendix A.5.

    Parameters
    ----------
    n : int, number of workers, ``n > 2f + 2``.
    f : int, number of Byzantine workers, ``f >= 0``.

    Raises
    ------
    ValueError  outside the regime ``n > 2f + 2`` or for ``f < 0``.
    TypeError   for non-integers.

    >>> C(7, 2)
    5.0
    >>> C(10, 0)
    1.0
    """
    n, f = _check_nf("C", n, f)
    return 1.0 + _ratio(2 * f, n - 2 * f - 2)


def _norm_factor(d: int, p: float) -> float:
    # C_{d,p} = d^((max(p,2) - min(p,2)) / p): Lemma 1 applied once (Appendix A.5).
    e = (max(p, 2.0) - min(p, 2.0)) / p
    if e == 0.0:
        return 1.0
    try:
        return float(d) ** e
    except OverflowError:  # d beyond the float range (e <= 1, so d^e <= d): log space
        try:
            return math.exp(e * math.log(d))
        except OverflowError:
            return math.inf


def Lambda(n: int, f: int, d: int, p: float) -> float:
    """``Lambda(n, f, d, p) = d^((max(p,2) - min(p,2)) / p) * C(n, f)`` (Theorem 1).

    The power of ``d`` is the price of comparing l_p and l_2 distances
    (Lemma 1): ``d^(1 - 2/p)`` for ``p >= 2`` and ``d^(2/p - 1)`` for
    ``1 <= p <= 2``; it is 1 for ``p = 2`` or ``d = 1``.

    Parameters
    ----------
    n, f : ints with ``n > 2f + 2``, ``f >= 0``.
    d : int, dimension, ``d >= 1``.
    p : real, norm of generalized Krum, ``p >= 1`` (finite).

    Raises
    ------
    ValueError  for ``n <= 2f + 2``, ``d < 1`` or ``p < 1``.

    >>> Lambda(7, 2, 16, 1.0)   # 16^((2-1)/1) * 5
    80.0
    >>> Lambda(7, 2, 16, 4.0)   # 16^((4-2)/4) * 5
    20.0
    """
    n, f = _check_nf("Lambda", n, f)
    d = check_int("Lambda", "d", d, low=1)
    p = check_real("Lambda", "p", p, low=1.0)
    return _norm_factor(d, p) * C(n, f)


def theorem1_bound(sigma2: float, n: int, f: int, d: int, p: float) -> float:
    """Theorem 1: ``||E[U] - grad F||_2^2 <= 2 sigma^2 (1 + Lambda(n, f, d, p))``.

    ``U`` is the output of generalized Krum, eq. (3), when every honest worker
    satisfies ``E||V_i - grad F||_2^2 <= sigma^2`` and f rows are arbitrary
    (Section 4.1; proof in Appendix A.5).

    Parameters
    ----------
    sigma2 : real, variance bound ``sigma^2 >= 0``.
    n, f, d, p : as in :func:`Lambda`.

    Raises
    ------
    ValueError  for ``sigma2 < 0`` or the regime errors of :func:`Lambda`.

    >>> theorem1_bound(1.0, 7, 2, 1, 2.0)   # 2 * (1 + 5)
    12.0
    """
    sigma2 = check_real("theorem1_bound", "sigma2", sigma2, low=0.0)
    return _times(2.0 * sigma2, 1.0 + Lambda(n, f, d, p))


def theorem2_constants(sigma2: float, delta2: float, n: int, f: int) -> tuple[float, float]:
    """``(C_1, C_2)`` of Theorem 2 (Section 4.2; proof in Appendix A.6).

    ``C_1 = 6 sigma^2 + 2 (n - f + 3 + 2 (n - f) / (n - 2f - 2)) Delta^2`` and
    ``C_2 = 4 sigma^2 + 8 (n - f) Delta^2``.

    >>> theorem2_constants(1.0, 0.0, 7, 2)
    (6.0, 4.0)
    """
    sigma2 = check_real("theorem2_constants", "sigma2", sigma2, low=0.0)
    delta2 = check_real("theorem2_constants", "delta2", delta2, low=0.0)
    n, f = _check_nf("theorem2_constants", n, f)
    k = n - f
    c1 = 6.0 * sigma2 + _times(2.0 * (_ratio(k + 3, 1) + 2.0 * _ratio(k, n - 2 * f - 2)), delta2)
    c2 = 4.0 * sigma2 + _times(8.0 * _ratio(k, 1), delta2)
    return c1, c2


def theorem2_bound(sigma2: float, delta2: float, n: int, f: int, d: int, p: float) -> float:
    """Theorem 2: ``||E[U] - grad F||_2^2 <= C_1 + C_2 Lambda(n, f, d, p)``.

    Non-iid setting of Assumption 1: honest worker i has mean ``g_i`` with
    ``E||V_i - g_i||^2 <= sigma^2`` and ``1/(n-f) sum ||g_i - grad F||^2 <=
    Delta^2``; ``C_1, C_2`` from :func:`theorem2_constants`. With
    ``Delta = 0`` it reads ``6 sigma^2 + 4 sigma^2 Lambda``, larger than
    Theorem 1's bound, as the paper notes.

    Parameters
    ----------
    sigma2 : real ``>= 0``; delta2 : real ``>= 0``; n, f, d, p as in :func:`Lambda`.

    Raises
    ------
    ValueError  for negative ``sigma2`` / ``delta2`` or the regime errors of :func:`Lambda`.

    >>> theorem2_bound(1.0, 0.5, 7, 2, 1, 2.0)   # C1 = 6 + 2*(5+3+10)*0.5, C2 = 4 + 8*5*0.5
    144.0
    """
    c1, c2 = theorem2_constants(sigma2, delta2, n, f)
    return c1 + _times(c2, Lambda(n, f, d, p))


def _check_prop1(where: str, lam, L, beta_min) -> tuple[float, float, float]:
    lam = check_real(where, "lam", lam, low=0.0)
    L = check_real(where, "L", L, low=0.0, low_open=True)
    beta_min = check_real(where, "beta_min", beta_min, low=0.0, low_open=True)
    return lam, L, beta_min


def proposition1_threshold(lam: float, L: float, beta_min: float) -> float:
    """The ratio ``1 + lambda L / min_m' beta_m'`` that ``M / q`` must exceed (Proposition 1).

    Appendix A.3: ``E[U]^T grad F >= (M - q)/M beta_min - q/M lambda L``,
    positive exactly when ``M / q`` exceeds this threshold.

    Parameters
    ----------
    lam : real ``>= 0``, ``max_i sup_w ||E[U_i(w)]||`` over the compromised rules.
    L : real ``> 0``, ``sup_w ||grad F(w)||``.
    beta_min : real ``> 0``, ``min_m' beta_m'`` over the resilient rules.

    Where the product ``lam * L`` alone leaves the normal float range
    (``1e200 * 1e200`` overflows, ``1e-160 * 1e-160`` is subnormal) while the
    threshold need not, it is evaluated in exact rationals and rounded once.

    >>> proposition1_threshold(2.0, 3.0, 1.5)
    5.0
    >>> proposition1_threshold(1e200, 1e200, 1e200)   # lam * L alone overflows
    1e+200
    """
    lam, L, beta_min = _check_prop1("proposition1_threshold", lam, L, beta_min)
    prod = lam * L
    if math.isinf(prod) or (lam > 0.0 and abs(prod) < sys.float_info.min):
        t = 1 + Fraction(lam) * Fraction(L) / Fraction(beta_min)
        return _ratio(t.numerator, t.denominator)
    return 1.0 + prod / beta_min


def proposition1_condition(M: int, q: int, lam: float, L: float, beta_min: float) -> bool:
    """Proposition 1's sufficient condition ``M / q > 1 + lambda L / min_m' beta_m'``.

    True means the paper guarantees ``E[U]^T grad F > 0`` for the uniform
    mixture of ``M`` rules of which ``q`` are compromised (Section 4,
    Appendix A.3). False means nothing is guaranteed, not that the mixture
    fails. It compares ``M / q`` with :func:`proposition1_threshold` in
    floats, so a decimal tie (``1 + 1.0 * 0.3 / 0.1`` vs ``4 / 1``) is
    decided by their rounding.

    Parameters
    ----------
    M : int, pool size; q : int, compromised rules, ``0 < q < M``.
    lam, L, beta_min : as in :func:`proposition1_threshold`.

    Raises
    ------
    ValueError  unless ``0 < q < M``, ``lam >= 0``, ``L > 0``, ``beta_min > 0``.

    >>> proposition1_condition(12, 2, 2.0, 3.0, 1.5)   # 6 > 5
    True
    >>> proposition1_condition(10, 2, 2.0, 3.0, 1.5)   # 5 > 5 is false
    False
    >>> proposition1_condition(10**300, 1, 1e200, 1e200, 1e200)   # 1e300 > 1 + 1e200
    True
    """
    M = check_int("proposition1_condition", "M", M, low=2)
    q = check_int("proposition1_condition", "q", q, low=1)
    if not q < M:
        raise ValueError(f"proposition1_condition: q must be < M, got q={show_value(q, str)}, M={show_value(M, str)}")
    threshold = proposition1_threshold(lam, L, beta_min)
    return _ratio(M, q) > threshold
