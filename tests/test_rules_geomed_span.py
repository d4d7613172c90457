"""The l_2 geometric median solved in the rows' span (rules/geomed.py, ``_span_solve``):
the same minimizer as iterating on the rows, one pass of work instead of ~10 IRLS steps."""

import importlib

import pytest
import torch

from mixtailor_game.rules import Bulyan, Geomed

gm = importlib.import_module("mixtailor_game.rules.geomed")
D = 8192  # 12 x 8192 entries: above SPAN_MIN_ELEMENTS, so the span path applies


def _iterate_on_rows(X, **kw):
    """The rule without the span path (IRLS on the rows)."""
    return gm.geomed_solve(X, 2.0, span=False, **kw)


def _objective(z, X):
    return float(torch.linalg.vector_norm(X.double() - z.double(), dim=1).sum())


def _honest(k=10, d=D, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (0.01 * torch.randn(k, d, generator=g, dtype=torch.float64) + 0.002).to(dtype)


def _cases():
    V = _honest()
    s = V.sum(0)
    g = torch.Generator().manual_seed(1)
    out = {f"line t={t}": torch.cat([(-t * s).expand(2, -1), V]) for t in (0.0, 0.15, 1.0, 100.0)}
    out["7 copies"] = torch.cat([V[:1].expand(7, -1), V[1:6]])
    out["collinear"] = torch.linspace(0, 1, 11)[:, None] * torch.randn(1, D, generator=g)
    out["float64"] = _honest(dtype=torch.float64)
    out["offset 100"] = V + 100.0
    out["tiny"] = V * 1e-20
    with torch.random.fork_rng():  # the global generator's seed differs per process here
        torch.manual_seed(2)
        out["heavy tails"] = torch.distributions.StudentT(1.5).sample((12, D))
    return out


@pytest.mark.parametrize("name", list(_cases()))
def test_span_solve_matches_iterating_on_the_rows(name):
    X = _cases()[name].contiguous()
    assert gm._span_solve(X, 1e-6) is not None  # the path under test ran
    span, rows = gm.geomed_solve(X, 2.0), _iterate_on_rows(X)
    f_span, f_rows = _objective(span.z, X), _objective(rows.z, X)
    # never worse than the IRLS (which stops at its tolerance), up to the output's rounding
    assert f_span <= f_rows * (1 + 2e-7), (f_span, f_rows)
    assert f_span >= f_rows * (1 - 1e-6), (f_span, f_rows)
    assert span.converged and torch.isfinite(span.z).all() and span.z.dtype == X.dtype
    # the reported distances are those of the returned z (Bulyan picks its nearest row from
    # them), up to their float32 arithmetic: the difference, its scaling and its square round
    # by 2^-24 each, ~2.5 x 2^-24 on a distance (an unseeded heavy-tailed draw read 1.06e-7)
    exact = torch.linalg.vector_norm(X.double() - span.z.double(), dim=1)
    rtol = 3 * 2.0 ** -24 if X.dtype == torch.float32 else 1e-12
    assert torch.allclose(span.distances, exact, rtol=rtol, atol=0.0)


def test_span_solve_is_the_minimizer_to_float64_precision():
    X = torch.cat([_honest(dtype=torch.float64)[:2] * 40.0, _honest(dtype=torch.float64)])
    z = gm.geomed_solve(X, 2.0).z
    # the optimality condition of the l_2 median: the unit vectors to z sum to zero
    U = z - X
    grad = (U / torch.linalg.vector_norm(U, dim=1, keepdim=True)).sum(0)
    assert float(grad.norm()) < 1e-8
    # and every nearby point is worse
    g = torch.Generator().manual_seed(3)
    f0 = _objective(z, X)
    for _ in range(20):
        step = torch.randn(X.shape[1], generator=g, dtype=torch.float64)
        assert _objective(z + 1e-4 * step / step.norm(), X) > f0


def test_a_majority_of_copies_is_the_median_exactly():
    V = _honest()
    X = torch.cat([V[:1].expand(7, -1), V[1:6]])
    res = gm.geomed_solve(X, 2.0)
    assert torch.equal(res.z, V[0])


def test_copies_of_one_row_are_one_point():
    X = _honest()[:1].expand(12, -1).contiguous()
    assert torch.equal(gm.geomed_solve(X, 2.0).z, X[0])


def test_a_row_too_far_for_the_gram_matrix_is_iterated_on():
    V = _honest()
    X = torch.cat([V, torch.full((1, D), 1e20)])
    assert gm._span_solve(X, 1e-6) is None
    res, rows = gm.geomed_solve(X, 2.0), _iterate_on_rows(X)
    assert torch.equal(res.z, rows.z)


def test_non_finite_rows_are_dropped_before_the_span():
    V = _honest()
    X = torch.cat([V, torch.full((2, D), float("nan"))])
    assert torch.allclose(gm.geomed_solve(X, 2.0).z, gm.geomed_solve(V, 2.0).z, rtol=0, atol=1e-9)


def test_a_start_is_checked_and_not_needed():
    X = _honest(k=12)
    z = gm.geomed_solve(X, 2.0).z
    assert torch.equal(gm.geomed_solve(X, 2.0, start=X[3]).z, z)
    with pytest.raises(ValueError, match="start"):
        gm.geomed_solve(X, 2.0, start=torch.zeros(5))


def test_rules_built_on_the_median_agree_with_iterating_on_the_rows():
    V = _honest()
    X = torch.cat([(-0.15 * V.sum(0)).expand(2, -1), V])
    old = gm.SPAN_MIN_ELEMENTS
    try:
        gm.SPAN_MIN_ELEMENTS = 10**18
        rows = {a: Bulyan(f=2, select="geomed", aggregate=a, p=2)(X) for a in ("average", "comed")}
        g_rows = Geomed(f=2)(X)
    finally:
        gm.SPAN_MIN_ELEMENTS = old
    for a, out in rows.items():  # the same selection, so the same output
        assert torch.allclose(Bulyan(f=2, select="geomed", aggregate=a, p=2)(X), out, rtol=0, atol=1e-7)
    assert torch.allclose(Geomed(f=2)(X), g_rows, rtol=0, atol=1e-6)


def test_small_median_settles_the_three_cases():
    import numpy as np

    Y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    w = gm._small_l2_median(Y, np.ones(5), 1.0)  # the centre is a row and the median
    assert np.allclose(w, [1, 0, 0, 0, 0])
    tri = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.8]])
    w = gm._small_l2_median(tri, np.ones(3), 1.0)  # Fermat point: 120 degrees between the unit vectors
    z = w @ tri
    U = (tri - z) / np.linalg.norm(tri - z, axis=1, keepdims=True)
    assert np.allclose(U.sum(0), 0.0, atol=1e-10)
    line = np.array([[0.0], [1.0], [2.0], [3.0]])  # collinear, even count: every point of [1, 2]
    w = gm._small_l2_median(line, np.ones(4), 1.0)
    assert abs(np.abs(line - w @ line).sum() - 4.0) < 1e-12
    # copies count through their multiplicity: 3 copies of 0 against 1 and 2
    w = gm._small_l2_median(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]), np.array([3.0, 1.0, 1.0]), 1.0)
    assert np.allclose(w, [1, 0, 0])


def test_where_newton_does_not_settle_it_the_small_problem_is_iterated(monkeypatch):
    V = _honest()
    X = torch.cat([(-0.15 * V.sum(0)).expand(2, -1), V])
    newton = gm.geomed_solve(X, 2.0)
    monkeypatch.setattr(gm, "_small_l2_median", lambda Y, m, scale: None)
    iterated = gm.geomed_solve(X, 2.0)
    assert iterated.iterations > 1  # the small IRLS ran
    f_newton, f_iterated = _objective(newton.z, X), _objective(iterated.z, X)
    assert abs(f_iterated - f_newton) <= 1e-7 * f_newton


def test_span_option_picks_the_path():
    X = _honest(k=12)
    assert gm.geomed_solve(X, 2.0).iterations == 1  # auto: in the span at this size
    assert gm.geomed_solve(X, 2.0, span=False).iterations > 1
    small = _honest(k=5, d=40, dtype=torch.float64)  # below SPAN_MIN_ELEMENTS: iterated unless asked
    assert gm.geomed_solve(small, 2.0).iterations > 1
    forced, rows = gm.geomed_solve(small, 2.0, span=True), gm.geomed_solve(small, 2.0, span=False)
    assert forced.iterations == 1
    assert _objective(forced.z, small) <= _objective(rows.z, small) * (1 + 1e-12)
    with pytest.raises(TypeError, match="span"):
        from mixtailor_game.rules import geomed
        geomed(X, 2.0, spam=True)


@pytest.mark.parametrize("t", [1.0, 100.0, 1e4])
def test_far_copies_leave_the_median_of_float32_rows_exact(t):
    # Byzantine copies far out pull the rows' mean away from the honest ones: the Gram
    # matrix is then recentred on the medoid row (float32) so the honest rows' products
    # do not round at the far rows' scale. The IRLS on the same float32 rows is ~3e-4 of
    # the spread off at t = 100 and 1e4 (its objective's rounding floor).
    V = _honest()
    X = torch.cat([(-t * V.sum(0)).expand(2, -1), V]).contiguous()
    reference = gm.geomed_solve(X.double(), 2.0, span=False, tol=1e-13, max_iter=5000).z
    spread = float(torch.linalg.vector_norm(V.double() - V.double().mean(0), dim=1).mean())
    z = gm.geomed_solve(X, 2.0).z
    assert float((z.double() - reference).norm()) <= 1e-6 * spread
    reps, _ = gm._distinct_rows(X)
    assert gm._centered_gram(X, reps) is not None  # resolved in float32 or float64, not given up


bl = importlib.import_module("mixtailor_game.rules.bulyan")


def _select_iterating(X, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(bl, "span_applies", lambda X, p: False)
        m.setattr(gm, "SPAN_MIN_ELEMENTS", 10**18)
        return bl.bulyan_select(X, 2, "geomed", 2.0)


@pytest.mark.parametrize("seed", range(6))
def test_bulyan_geomed_selection_from_one_gram_matches_the_irls_rounds(seed, monkeypatch):
    V = _honest(seed=seed)
    for t in (0.0, 0.1, 0.3, 3.0, 300.0):
        X = torch.cat([(-t * V.sum(0)).expand(2, -1), V]).contiguous()
        calls = []
        real = gm.SpanMedian.of
        monkeypatch.setattr(gm.SpanMedian, "of", classmethod(lambda cls, X: calls.append(1) or real(X)))
        shared = bl.bulyan_select(X, 2, "geomed", 2.0)
        monkeypatch.setattr(gm.SpanMedian, "of", real)
        assert calls == [1]  # one Gram for the whole selection
        assert shared == _select_iterating(X, monkeypatch), t


def _counting_nearest_row(monkeypatch):
    calls = []
    real = bl.nearest_row
    monkeypatch.setattr(bl, "nearest_row", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_span_pick_falls_back_to_the_rows_on_a_tie(monkeypatch):
    g = torch.Generator().manual_seed(5)
    c = torch.randn(D, generator=g)
    vs = [torch.randn(D, generator=g) for _ in range(3)]
    X = torch.stack([c + s * v for v in vs for s in (1.0, -1.0)] + [c + 0.5 * vs[0], c - 0.5 * vs[0]]).contiguous()
    span = gm.SpanMedian.of(X)
    ok = torch.ones(X.shape[0], dtype=torch.bool)
    calls = _counting_nearest_row(monkeypatch)
    j, target = bl._pick_span(X, ok, span, list(range(X.shape[0])))
    # rows 6 and 7 are equally near the median c: the Gram cannot split them, the rows do
    assert calls == [1]
    assert j in (6, 7)
    dist = torch.linalg.vector_norm(X.double() - target.double(), dim=1)
    assert dist[j] == dist.min()


def test_copies_tie_to_the_lowest_index_in_a_span_pick(monkeypatch):
    V = _honest()
    X = torch.cat([V[:1], V[:1], V[1:]]).contiguous()  # two copies pull the median to them
    span = gm.SpanMedian.of(X)
    ok = torch.ones(X.shape[0], dtype=torch.bool)
    calls = _counting_nearest_row(monkeypatch)
    j, target = bl._pick_span(X, ok, span, list(range(X.shape[0])))
    assert calls == []  # decided from the Gram distances, the copies' tie included
    assert j == 0


def test_a_gram_matrix_that_disagrees_with_the_rows_is_not_used(monkeypatch):
    """The span path checks its Gram matrix against the rows' true distances at the
    median of all rows (no extra pass): a matrix off by more than its error model
    (here one entry off by 1e-3 of the rows' squared norms, as a wrong rounding bound
    would leave it) is refused, and the median and Bulyan's selection are the IRLS's."""
    V = _honest()
    X = torch.cat([(-0.3 * V.sum(0)).expand(2, -1), V]).contiguous()
    real = gm._centered_gram

    def corrupted(X_, rows):
        K, eps = real(X_, rows)
        K = K.clone()
        bump = 1e-3 * float(K.diagonal().mean())
        K[1, 2] += bump
        K[2, 1] += bump
        return K, eps

    reps, owner = gm._distinct_rows(X)
    unchecked = gm.SpanMedian(X, reps, owner, *corrupted(X, reps))
    w, _, _ = unchecked.weights(list(range(X.shape[0])), 1e-6)
    rows = _iterate_on_rows(X)

    def unit_sum(z):  # the l_2 median's optimality condition: the unit vectors to z sum to 0
        U = z.double() - X.double()
        return float((U / torch.linalg.vector_norm(U, dim=1, keepdim=True)).sum(0).norm())

    # used unchecked, the matrix gives a median far off the optimality condition (1e-4 of
    # the n = 12 unit vectors' sum; the IRLS's and the checked span's: ~2e-7)
    assert unit_sum(unchecked.median(w)) > 100 * unit_sum(rows.z)
    monkeypatch.setattr(gm, "_centered_gram", corrupted)
    assert gm.SpanMedian.of(X) is None
    assert gm._span_solve(X, 1e-6) is None
    assert torch.equal(gm.geomed_solve(X, 2.0).z, rows.z)
    selected = bl.bulyan_select(X, 2, "geomed", 2.0)
    monkeypatch.setattr(gm, "_centered_gram", real)
    assert selected == _select_iterating(X, monkeypatch)


def test_rows_that_carry_a_gradient_are_iterated_on():
    X = _honest(k=12).requires_grad_()
    res = gm.geomed_solve(X, 2.0)
    assert res.iterations > 1  # the IRLS, whose torch ops autograd can follow
    assert not gm.span_applies(X, 2.0)
    with torch.no_grad():
        assert gm.span_applies(X, 2.0)


def test_bulyan_with_a_non_finite_row_selects_round_by_round():
    V = _honest()
    X = torch.cat([torch.full((1, D), float("inf")), (-0.1 * V.sum(0)).unsqueeze(0), V]).contiguous()
    out = Bulyan(f=2, select="geomed", aggregate="average", p=2)(X)
    assert torch.isfinite(out).all()
    chosen = bl.bulyan_select(X, 2, "geomed", 2.0)
    assert 0 not in chosen and len(chosen) == 8


def test_float64_rows_with_far_copies_use_the_span():
    V = _honest(dtype=torch.float64)
    X = torch.cat([(-1e3 * V.sum(0)).expand(2, -1), V]).contiguous()
    res = gm.geomed_solve(X, 2.0)
    assert res.iterations == 1
    ref = gm.geomed_solve(X, 2.0, span=False, tol=1e-14, max_iter=5000).z

    def unit_sum(z):  # the l_2 median's optimality condition: the unit vectors to z sum to 0
        U = z - X
        return float((U / torch.linalg.vector_norm(U, dim=1, keepdim=True)).sum(0).norm())

    assert unit_sum(res.z) < 1e-8  # measured 1.2e-9; the IRLS to tol 1e-14: 2.8e-8
    assert unit_sum(res.z) <= unit_sum(ref)


def test_reduced_precision_float32_products_take_the_float64_gram(monkeypatch):
    V = _honest()
    reps, _ = gm._distinct_rows(V)
    assert gm._centered_gram(V, reps)[1] == torch.finfo(torch.float32).eps
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "medium")
    K, eps = gm._centered_gram(V, reps)
    assert eps == torch.finfo(torch.float64).eps
