"""Compiled kernels (``rules/_compile.py``): same numbers as the eager code, safe fallback, switches."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from mixtailor_game.rules import _compile, geomed_solve, make_rule
from mixtailor_game.rules._distances import (_lp_distances_fused, _pair_power_sums_fused, _power_sums, lp_distances_to,
                                              squared_distances, squared_distances_from)
from mixtailor_game.rules.geomed import (_column_average, _distances_and_weights, _power_floor, _row_weights,
                                         _weighted_average)


def _rows(seed=0, n=9, d=300, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    X[1] = 1e30  # a huge (finite) Byzantine row
    X[2] = X[3]  # duplicates
    return X


@pytest.mark.parametrize("p", [3.0, 5.5, 8.0, 16.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_step_kernels_are_the_eager_step(p, dtype):
    X = _rows(dtype=dtype)
    z = X[4:].median(0).values
    z_on_row = X[5].clone()  # the start on a data row: distance 0 there
    for start in (z, z_on_row):
        r_ref, _, W = _distances_and_weights(start, X, p, 1e-6)
        target_ref = _weighted_average(W, X, start)
        floor = _power_floor(2.0 * (p - 2), dtype)
        r, _, s, coef = _row_weights(X, start, p, 1e-6, floor)
        target = _column_average(X, start, s, coef, p, floor)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(r, r_ref, rtol=tol, atol=0.0)
        torch.testing.assert_close(target, target_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 7.5])
def test_fused_distances_are_the_chunked_ones(p, monkeypatch):
    X = _rows(d=70_000)  # more than one float64 chunk
    z = X[3:].mean(0)
    X[6, 5] = math.nan  # a NaN row is infinitely far
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")  # 9 x 70,000 would take the compiled kernel
    chunked = lp_distances_to(X, z, p)
    torch.testing.assert_close(_lp_distances_fused(X, z, p), chunked, rtol=1e-12, atol=0.0)
    assert math.isinf(float(_lp_distances_fused(X, z, p)[6]))
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")  # the compiled kernel (p = 1, 2 since session 22)
    torch.testing.assert_close(lp_distances_to(X, z, p), chunked, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("p", [3.0, 6.5, 16.0])
def test_fused_pair_power_sums_are_the_chunked_ones(p, monkeypatch):
    X = _rows(d=20_000)[2:]  # finite rows (the caller drops the others); duplicates give 0
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    ref = _power_sums(X, p)
    i, j = torch.triu_indices(X.shape[0], X.shape[0], 1)
    torch.testing.assert_close(_pair_power_sums_fused(X, i, j, p), ref[i, j], rtol=1e-12, atol=0.0)


def test_compiled_geomed_matches_eager(monkeypatch):
    """One real compilation (seconds, once per test session): the compiled IRLS and distances
    give the eager solver's median."""
    X = _rows(n=11, d=2000, dtype=torch.float32)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    eager = geomed_solve(X, 6.0)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure would warn: fail instead
        compiled = geomed_solve(X, 6.0)
    assert compiled.converged and eager.converged
    assert math.isclose(compiled.objective, eager.objective, rel_tol=1e-6)
    scale = float(eager.z.abs().max())
    assert float((compiled.z - eager.z).abs().max()) <= 1e-3 * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled_krum = make_rule("krum", f=2, p=6.0)(X)  # compiled pairwise power sums
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    assert torch.equal(compiled_krum, make_rule("krum", f=2, p=6.0)(X))


def test_objective_false_reports_the_solvers_value():
    X = _rows(n=7, d=50)
    full = geomed_solve(X, 4.0)
    quick = geomed_solve(X, 4.0, objective=False)
    assert torch.equal(full.z, quick.z)
    assert math.isclose(quick.objective, full.objective, rel_tol=1e-9)


def _kernel_whose_compile_raises(monkeypatch, exc: Exception) -> _compile.CompiledKernel:
    def compile_(fn, **kwargs):
        raise exc

    monkeypatch.setattr(torch, "compile", compile_)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    return _compile.CompiledKernel(_lp_distances_fused)


def test_a_failing_compiler_falls_back_to_eager_once(monkeypatch):
    kernel = _kernel_whose_compile_raises(monkeypatch, RuntimeError("no C++ compiler\nsecond line"))
    X = _rows(d=40)
    z = X.mean(0)
    with pytest.warns(RuntimeWarning, match="torch.compile of _lp_distances_fused failed .RuntimeError: no C"):
        out = kernel(X, z, 3.0)
    torch.testing.assert_close(out, _lp_distances_fused(X, z, 3.0))
    assert kernel.failed is not None and not kernel.wanted(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernel(X, z, 3.0)  # eager from now on, without another warning


def test_mode_switch_and_size_rule(monkeypatch):
    kernel = _compile.CompiledKernel(_lp_distances_fused)
    small, large = torch.zeros(4, 10), torch.zeros(2, _compile.MIN_ELEMENTS // 2)
    monkeypatch.delenv("MIXTAILOR_COMPILE", raising=False)
    assert _compile.compile_mode() == "auto"
    assert not kernel.wanted(small) and kernel.wanted(large)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "0")
    assert not kernel.wanted(large)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    assert kernel.wanted(small)
    monkeypatch.setenv("MIXTAILOR_COMPILE", "sometimes")
    with pytest.raises(ValueError, match="MIXTAILOR_COMPILE must be one of auto, 0, off, 1, always, got 'sometimes'"):
        kernel.wanted(small)


def test_inputs_that_need_gradients_stay_eager(monkeypatch):
    kernel = _kernel_whose_compile_raises(monkeypatch, AssertionError("compiled although autograd tracks the input"))
    X = _rows(d=30).requires_grad_(True)
    out = kernel(X, X.detach().mean(0), 3.0)
    out[0].backward()
    assert X.grad is not None and kernel.failed is None


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 7.5, 16.0])
def test_float32_screen_distances_are_within_their_error_bound(p):
    from mixtailor_game.rules._distances import SCREEN_GAP, _lp_distances_float32

    g = torch.Generator().manual_seed(1)
    X = torch.randn(8, 5000, generator=g) * torch.logspace(-20, 3, 5000)  # entries over 23 decades
    z = torch.randn(5000, generator=g)
    X[3] = z  # distance 0
    floor = _power_floor(p, torch.float32)
    ref = lp_distances_to(X, z, p)
    got = _lp_distances_float32(X, z, p, floor)
    assert float(got[3]) == 0.0
    assert float(((got - ref).abs() / ref.clamp_min(1e-300)).max()) < SCREEN_GAP / 50


def _eager_screen(monkeypatch):
    """nearest_row's float32 screen on every input, run eagerly (no compile in this test)."""
    from mixtailor_game.rules import _distances

    class Eager:
        wanted = staticmethod(lambda X: True)
        __call__ = staticmethod(_distances._lp_distances_float32)

    monkeypatch.setattr(_distances, "_FLOAT32_DISTANCES", Eager())
    return _distances.nearest_row


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 7.5, 16.0, math.inf])
def test_nearest_row_is_the_float64_argmin(p, monkeypatch):
    nearest_row = _eager_screen(monkeypatch)
    g = torch.Generator().manual_seed(2)
    for trial in range(20):
        X = torch.randn(9, 300, generator=g)
        z = torch.randn(300, generator=g) * 0.3
        allowed = torch.rand(9, generator=g) > 0.3
        allowed[trial % 9] = True
        want = int(torch.argmin(lp_distances_to(X, z, p).masked_fill(~allowed, math.inf)))
        assert nearest_row(X, z, p, allowed) == want
        assert nearest_row(X, z, p) == int(torch.argmin(lp_distances_to(X, z, p)))


@pytest.mark.parametrize("p", [1.0, 3.0, 16.0])
def test_nearest_row_near_ties_and_bad_rows_follow_the_float64_distances(p, monkeypatch):
    nearest_row = _eager_screen(monkeypatch)
    from mixtailor_game.rules import _distances

    exact_calls = []
    exact = _distances.lp_distances_to
    monkeypatch.setattr(_distances, "lp_distances_to", lambda *a: exact_calls.append(1) or exact(*a))
    z = torch.zeros(4)
    one_ulp = 1.0 + 2.0**-23  # below the screen's resolution: float64 must decide
    X = torch.tensor([[math.nan, 0, 0, 0], [0, 0, 0, one_ulp], [math.inf, 0, 0, 0], [0, 0, 1.0, 0], [1e30, 0, 0, 0]])
    assert nearest_row(X, z, p) == 3
    assert len(exact_calls) == 1  # the screen could not separate rows 1 and 3
    X[1, 3] = 2.0 - one_ulp  # now row 1 is nearer by one ulp
    assert nearest_row(X, z, p) == 1
    X[1] = X[3]  # copies tie exactly: the lower index, settled by the screen
    calls = len(exact_calls)
    assert nearest_row(X, z, p) == 1
    assert len(exact_calls) == calls
    allowed = torch.tensor([True, False, True, False, True])
    calls = len(exact_calls)
    assert nearest_row(X, z, p, allowed) == 4  # the only finite allowed row
    assert len(exact_calls) == calls  # settled by the screen


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0, 7.0, 16.0])
def test_geomed_distances_are_within_their_error_bound(p):
    """GeomedResult.distances: the IRLS's own distances at the returned z, within the
    2.2e-6 relative that nearest_row's KNOWN_GAP (45x that) relies on, for float32
    rows over a wide range of magnitudes (d = 20,000, summed in blocks)."""
    from mixtailor_game.rules._distances import KNOWN_GAP

    g = torch.Generator().manual_seed(3)
    X = torch.randn(9, 20000, generator=g) * torch.logspace(-6, 2, 20000)
    X[0] = X[0] * 50 + 3.0  # a far row
    res = geomed_solve(X, p, objective=False)
    assert res.distances is not None and res.distances.dtype == torch.float64
    ref = lp_distances_to(X, res.z, p)
    assert float(((res.distances - ref).abs() / ref).max()) < KNOWN_GAP / 45
    X[4, 5] = math.nan  # a dropped row: no distances (they would not index G's rows)
    assert geomed_solve(X, p, objective=False).distances is None


def test_nearest_row_keeps_known_distances_only_beyond_their_gap(monkeypatch):
    """nearest_row(known=...): the known distances decide when the runner-up is farther
    by more than KNOWN_GAP (relative), without a pass over X; closer than that, the
    rows' own distances decide."""
    from mixtailor_game.rules import _distances

    nearest_row = _eager_screen(monkeypatch)
    screened = []
    real = _distances._FLOAT32_DISTANCES
    monkeypatch.setattr(_distances, "_FLOAT32_DISTANCES", type("Spy", (), {
        "wanted": staticmethod(lambda X: True),
        "__call__": staticmethod(lambda *a: screened.append(1) or real(*a))})())
    g = torch.Generator().manual_seed(4)
    X = torch.randn(6, 400, generator=g)
    z = X[2] + 0.01 * torch.randn(400, generator=g)
    exact = lp_distances_to(X, z, 3.0)
    assert nearest_row(X, z, 3.0, known=exact) == 2 and screened == []
    allowed = torch.ones(6, dtype=torch.bool)
    allowed[2] = False
    want = int(torch.argmin(exact.masked_fill(~allowed, math.inf)))
    assert nearest_row(X, z, 3.0, allowed, known=exact) == want and screened == []
    lying = exact.clone()
    lying[5] = lying[2] * (1 - 0.5 * _distances.KNOWN_GAP)  # "nearer", within the gap: X decides
    assert nearest_row(X, z, 3.0, known=lying) == 2 and screened == [1]


def test_compiled_rules_with_byzantine_rows_match_eager(monkeypatch):
    """NaN, Inf and huge rows through the compiled kernels (IRLS pair, nearest-row
    screen): finite outputs, the eager rules' answers (same p as the test above, so
    only the screen compiles anew)."""
    X = _rows(n=11, d=2000, dtype=torch.float32)
    X[5, 7], X[8, 3] = math.nan, -math.inf
    X[9] = X[10]  # copies, as colluding rows send
    rules = [make_rule("geomed", f=2, p=6.0),
             make_rule("bulyan", f=2, select="geomed", aggregate="average", p=6.0),
             make_rule("bulyan", f=2, select="comed", aggregate="comed", p=6.0)]
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    eager = [rule(X) for rule in rules]
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        compiled = [rule(X) for rule in rules]
    for a, b in zip(compiled, eager):
        assert bool(torch.isfinite(a).all())
        scale = float(b.abs().max())
        assert float((a - b).abs().max()) <= 1e-4 * scale


@pytest.mark.parametrize("n", [3, 4, 5, 8, 11, 12])
def test_network_pass_kernel_is_the_chunked_network(n, monkeypatch):
    """comed and trimmed mean through the one-function network pass (run eagerly here)
    give bitwise the chunked network's numbers. A chunk with a NaN / Inf output is
    redone by the chunked NaN-as-inf pass, so the input is several chunks wide and
    only its first chunk holds non-finite entries: the others keep the kernel's values."""
    from mixtailor_game.rules import _network, comed, trimmed_mean
    from mixtailor_game.rules._network import median_rows
    from mixtailor_game.rules.median import median_of_sorted, sorted_columns

    g = torch.Generator().manual_seed(n)
    d = 2 * _network.CHUNK + 100  # chunks of CHUNK columns per matrix of the batch
    G = torch.randn(n, d, generator=g)
    G[:, -50:] = torch.randint(-3, 3, (n, 50), generator=g).float()  # ties
    G[0, 60], G[-1, 61], G[1, 62] = math.nan, math.inf, -math.inf
    Gb = torch.stack([G, G.flip(0) * 2])
    b = (n - 1) // 3
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    want = [comed(G), trimmed_mean(G, b), median_rows(Gb)]

    class Eager:
        wanted = staticmethod(lambda X: True)
        __call__ = staticmethod(_network._network_pass)

    monkeypatch.setattr(_network, "_NETWORK_PASS", Eager())
    got = [comed(G), trimmed_mean(G, b), median_rows(Gb)]
    for a, w in zip(got, want):  # (b = 0 at n = 3: a plain mean, NaN where a row is)
        torch.testing.assert_close(a, w, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got[0], median_of_sorted(sorted_columns(G)), rtol=0, atol=0)


def test_compiled_comed_matches_eager_with_byzantine_rows(monkeypatch):
    from mixtailor_game.rules import comed, trimmed_mean

    X = _rows(n=11, d=3000, dtype=torch.float32)
    X[4, :10] = math.nan
    X[6, 20:30] = -math.inf
    monkeypatch.setenv("MIXTAILOR_COMPILE", "off")
    want = (comed(X), trimmed_mean(X, 2))
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = (comed(X), trimmed_mean(X, 2))
    for a, w in zip(got, want):
        assert torch.equal(a, w) and bool(torch.isfinite(a).all())


def _weighted_rows(X, z, p):
    return ((X - z).abs() ** p).sum(1)


def test_views_and_plain_tensors_share_one_compilation(monkeypatch):
    # A row block cut from a batch (the line search's Gb[0]) is a view; dynamo guards
    # on view-ness, so without detaching such inputs every norm p compiled twice.
    from torch._dynamo.utils import counters
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    kernel = _compile.CompiledKernel(_weighted_rows)
    batch = _rows(d=50).expand(3, -1, -1).contiguous()
    z = batch[0, 0].clone()
    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]
    view_out = kernel(batch[0], z, 3.0)  # a view at storage offset 0, as Gb[0] is
    plain_out = kernel(batch[0].clone(), z, 3.0)
    assert counters["stats"]["unique_graphs"] - before == 1
    torch.testing.assert_close(view_out, _weighted_rows(batch[0], z, 3.0))
    torch.testing.assert_close(plain_out, view_out)


def test_one_row_of_distances_shares_the_pairwise_compilation(monkeypatch):
    """squared_distances_from calls the pairwise power sums with the same layout (column
    chunks of the rows, one unpacked (2, m) index tensor): the specialization the
    matrix compiled serves it, bitwise equal to the matrix's row."""
    from torch._dynamo.utils import counters
    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    X = _rows(n=11, d=2000, dtype=torch.float32)
    D2 = squared_distances(X, 6.0)
    before = counters["stats"]["unique_graphs"]
    rows = [squared_distances_from(X, k, 6.0) for k in (0, 4, 10)]
    assert counters["stats"]["unique_graphs"] == before
    for k, row in zip((0, 4, 10), rows):
        assert torch.equal(row, D2[k])


@pytest.mark.parametrize("mode", ["always", "off"])
def test_distances_for_several_norms_in_one_pass_are_each_norms_own(monkeypatch, mode):
    """squared_distances_from_norms (one compiled pass for every norm that takes the power
    sums; p = 1, 2, inf and eager mode one norm at a time) is bitwise
    squared_distances_from for each norm: a huge row (the redo path), duplicates, a
    non-finite row, several chunks (d > CHUNK_COLS)."""
    from mixtailor_game.rules import _distances
    from mixtailor_game.rules._distances import squared_distances_from_norms

    monkeypatch.setenv("MIXTAILOR_COMPILE", mode)
    X = _rows(n=11, d=_distances.CHUNK_COLS + 1234, dtype=torch.float32)
    X[5, 7] = float("nan")
    ps = [1.0, 2.0, 2.5, 3.0, 7.0, 14.0, 16.0, math.inf]
    for k in (0, 4):
        many = squared_distances_from_norms(X, k, ps)
        assert sorted(many) == ps
        for p in ps:
            assert torch.equal(many[p], squared_distances_from(X, k, p)), (k, p)


def test_the_line_prefetches_every_krum_norm_bitwise(monkeypatch):
    """An expectation's Krum-based rules read the line's distances for all their norms from
    one pass (_LineDistances.prefetch): the same matrices as one norm at a time. Compiled
    kernels forced on: these rows are below the auto threshold, where each norm would take
    its own eager pass and the shared one would go untested."""
    import solvers
    from mixtailor_game.rules import Bulyan, Krum
    from solvers import line

    monkeypatch.setenv("MIXTAILOR_COMPILE", "always")
    g = torch.Generator().manual_seed(3)
    V = torch.randn(9, 8000, generator=g)
    inst = solvers.ExpectedValue(V, 2, [Krum(f=2, p=3.0), Krum(f=2, p=9.0), Bulyan(f=2, p=5.0)]).compile()
    assert inst.n * inst.d >= line.SMALL_ELEMENTS
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    assert obj.krum_norms == [3.0, 5.0, 9.0]
    alone = line._LineDistances(inst)
    for t in (0.0, 0.37, -2.5):
        obj.distances.prefetch(t, obj.krum_norms)
        assert all((p, t) in obj.distances.to_line for p in obj.krum_norms)
        for p in obj.krum_norms:
            assert torch.equal(obj.distances.matrix(p, t), alone.matrix(p, t))


def test_a_chunked_caller_keeps_the_compiled_kernel_on_its_last_small_chunk(monkeypatch):
    """The power sums are compiled per column chunk, decided on the whole rows: the last
    chunk, below MIN_ELEMENTS alone, ran the eager function, whose float64 temporaries
    the compiled loop never holds (Krum p = 3 at d = 10^5: 12x size(G) extra memory)."""
    from mixtailor_game.rules import _distances

    monkeypatch.setenv("MIXTAILOR_COMPILE", "auto")
    X = torch.randn(12, _distances.CHUNK_COLS + 300, generator=torch.Generator().manual_seed(0))
    assert _distances._FUSED_POWER_SUMS.wanted(X) and not _distances._FUSED_POWER_SUMS.wanted(X[:, -300:])
    ref = _distances._power_sums(X, 3.0)  # compiles (or has compiled) the kernel itself
    if _distances._FUSED_POWER_SUMS.failed is not None:
        pytest.skip(f"torch.compile unavailable: {_distances._FUSED_POWER_SUMS.failed}")
    eager_calls = []
    plain = _distances._FUSED_POWER_SUMS.fn
    monkeypatch.setattr(_distances._FUSED_POWER_SUMS, "fn",
                        lambda *a: eager_calls.append(a[0].shape) or plain(*a))
    torch.testing.assert_close(_distances._power_sums(X, 3.0), ref, rtol=1e-12, atol=0.0)
    assert eager_calls == []
