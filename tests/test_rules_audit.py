"""Audit of the pre-aggregation wrappers, MixTailor, the registry and the batched paths:
finite rows near the top of their dtype's range, centered clipping of rows whose
difference to the center overflows, the batched geometric median where the minimizers
form a segment, MixTailor's draw frequencies and errors, slow references at the edges
(f = 0, n = 2f + 1, d = 1, equal rows)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from mixtailor_game.rules import (
    Bucketing, CenteredClipping, Comed, Krum, MixTailor, NNM, bucket_means, centered_clip, comed, geomed,
    make_rule, mean, nnm_mix, rule_names, trimmed_mean,
)
from mixtailor_game.rules.geomed import geomed_objective

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _rows(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)


def _equal_rows(n, d, value, dtype):
    G = torch.full((n, d), value, dtype=dtype)
    G[:, 1::2] = -G[:, 1::2]
    return G


# ----------------------------------------------------------------------------- centered clipping


def ref_centered_clip(G, v, tau, iters):
    """Eq. (CC) in exact rational-free float64 arithmetic on values scaled by 2^-k (so the
    differences of rows near float32's maximum do not overflow); NaN / Inf rows add 0."""
    G = np.asarray(G, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    n = len(G)
    for _ in range(iters):
        total = np.zeros_like(v)
        for i in range(n):
            if not np.all(np.isfinite(G[i])):
                continue
            z = G[i] - v
            norm = math.sqrt(float(np.sum(z * z)))
            total += z * min(1.0, tau / norm) if norm > 0 else z
        v = v + total / n
    return v


@pytest.mark.parametrize("dtype, far, center, tau", [
    (torch.float32, 3e38, -1e38, 1e37),       # G_i - v = 4e38: inf in float32
    (torch.float32, -3.4e38, 3.4e38, 1.0),
    (torch.float16, 65504.0, -100.0, 10.0),   # 65604 rounds to inf in float16
    (torch.float16, 60000.0, -60000.0, 1000.0),
    (torch.bfloat16, 3e38, -3e38, 1e37),
])
def test_centered_clip_clips_a_finite_row_whose_difference_to_the_center_overflows(dtype, far, center, tau):
    """Such a row was zeroed like a NaN row (it did not move the center at all); it is a
    far row and must be clipped to length tau. Old: -9.33e37 instead of -9e37 (float32),
    -59328 instead of -59008 (float16)."""
    G = torch.zeros(3, 2, dtype=dtype)
    G[0, 0] = far
    G[2, 1] = float("nan")  # a NaN row still adds 0
    v0 = torch.tensor([center, 0.0], dtype=dtype)
    out = centered_clip(G, v0, tau, iters=1)
    want = ref_centered_clip(G.double().numpy(), v0.double().numpy(), tau, 1)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    torch.testing.assert_close(out.double(), torch.tensor(want, dtype=torch.float64).to(dtype).double(),
                               rtol=2 * torch.finfo(dtype).eps, atol=0.0)


def test_centered_clip_agrees_with_the_reference_at_the_edges():
    """f = 0, n = 2f + 1, d = 1, equal rows and rows at the center, several iterations."""
    cases = [(_rows(1, 1, 0), 0.5, 3), (_rows(3, 1, 1), 0.3, 2), (_rows(5, 4, 2), 0.2, 4),
             (torch.ones(4, 3), 1.0, 2), (torch.zeros(4, 3), 0.1, 1)]
    for G, tau, iters in cases:
        G = G.double()
        v0 = torch.full((G.shape[1],), 0.25, dtype=torch.float64)
        out = centered_clip(G, v0, tau, iters)
        want = torch.tensor(ref_centered_clip(G.numpy(), v0.numpy(), tau, iters))
        torch.testing.assert_close(out, want, rtol=1e-14, atol=1e-15)
        assert float((out - v0).norm()) <= iters * tau * (1 + 1e-12)


def test_centered_clipping_batched_rejects_bad_batches_with_one_line_errors():
    """An empty batch reached torch.stack ("stack expects a non-empty TensorList")."""
    cc = CenteredClipping(base="comed", f=1, tau=1.0)
    with pytest.raises(ValueError, match=r"^centered_clipping: Gb must be a non-empty batch"):
        cc.batched(torch.zeros(0, 3, 2))
    with pytest.raises(ValueError, match=r"^centered_clipping: Gb must be a 3-D tensor"):
        cc.batched(torch.zeros(3, 2))
    Gb = _rows(12, 2, 4).reshape(4, 3, 2)
    want = torch.stack([cc.apply(G) for G in Gb])
    assert torch.equal(cc.batched(Gb), want)
    assert cc.center_ is None  # batched is pure


# ----------------------------------------------------------------------------- rows near the maximum


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("top", [False, True])
def test_means_of_finite_rows_near_the_dtype_maximum_stay_finite(dtype, top):
    """Equal finite rows near the maximum (3e38 in float32) gave inf bucket means (bucketing,
    resampling) and an inf mean: equal rows must come back unchanged."""
    value = torch.finfo(dtype).max if top else 0.9 * torch.finfo(dtype).max
    for n in (10, 11, 12, 14):
        G = _equal_rows(n, 3, value, dtype)
        want = G[0]
        rules = [Bucketing(base="comed", s=2, f=1, generator=0), Bucketing(base="comed", s=3, f=1, generator=0),
                 Bucketing(base="comed", s=2, f=1, generator=0, mode="resample"), make_rule("mean")]
        for rule in rules:
            assert torch.equal(rule(G), want), (rule.name, n)
        assert torch.equal(make_rule("mean").batched(G.unsqueeze(0))[0], want)


@pytest.mark.parametrize("dtype", FLOATS)
def test_nnm_and_trimmed_mean_of_equal_rows_at_the_dtype_maximum_stay_finite(dtype):
    """At finfo.max the NNM weight 1/(n - f), rounded up for some n - f, made W @ G inf
    (float32: n - f = 10), and the trimmed mean's scaled sum rounded past the maximum."""
    value = torch.finfo(dtype).max
    for n in (10, 11, 12, 14, 19, 20):
        G = _equal_rows(n, 3, value, dtype)
        want = G[0]
        for f in range(0, (n - 1) // 2 + 1):
            assert torch.equal(trimmed_mean(G, f), want), (n, f)
            Y = nnm_mix(G, f)
            assert bool(torch.isfinite(Y).all()), (n, f)
            # a sum of n - f rounded terms of the rounded weight: up to (n - f) eps relative
            torch.testing.assert_close(Y, G, rtol=(n - f) * torch.finfo(dtype).eps, atol=0.0)


def test_distance_ranking_of_float64_rows_at_the_maximum():
    """A Byzantine float64 row at finfo.max crashed Krum, Bulyan and NNM (OverflowError:
    2.0 ** floor(log2(top)), log2 of float64's maximum rounds to 1024)."""
    G = _rows(11, 2, 0, torch.float64)
    G[0] = torch.finfo(torch.float64).max
    for name, kw in (("krum", {"f": 1}), ("bulyan", {"f": 2}), ("multi_krum", {"f": 1})):
        out = make_rule(name, **kw)(G)
        assert bool(torch.isfinite(out).all()) and float(out.abs().max()) < 10, name
    Y = nnm_mix(G, 1)
    assert torch.equal(Y[1:].isfinite(), torch.ones_like(Y[1:], dtype=torch.bool))


def test_bucket_means_keep_non_finite_buckets_non_finite():
    """The overflow fallback must not hide a NaN / Inf row in its bucket."""
    G = torch.full((6, 2), 3e38)
    G[0, 0] = float("nan")
    G[1, 1] = float("inf")
    means = bucket_means(G, 2, torch.arange(6))
    assert bool(torch.isnan(means[0, 0])) and means[0, 1] == math.inf
    assert torch.equal(means[1:], torch.full((2, 2), 3e38))
    assert torch.equal(mean(torch.tensor([[float("inf")], [3e38], [3e38]])), torch.tensor([math.inf]))
    assert bool(torch.isnan(mean(torch.tensor([[float("inf")], [-math.inf], [3e38]]))).all())


# ----------------------------------------------------------------------------- NNM and bucketing edges


def ref_nnm_mix(G, f):
    n = len(G)
    out = []
    for i in range(n):
        dist = sorted((-1.0 if j == i else float(np.sum((G[i] - G[j]) ** 2)), j) for j in range(n))
        out.append(sum(G[j] for _, j in dist[: n - f]) / (n - f))
    return np.array(out)


@pytest.mark.parametrize("n, f, d", [(1, 0, 1), (4, 0, 3), (3, 1, 1), (5, 2, 2), (7, 3, 1), (9, 4, 5)])
def test_nnm_at_the_edges_against_the_reference(n, f, d):
    """f = 0 (every mixed row is the mean), n = 2f + 1, d = 1; ties between equal rows."""
    G = _rows(n, d, n + 10 * f, torch.float64)
    if n >= 4:
        G[1] = G[0]  # a tie at distance 0
    torch.testing.assert_close(nnm_mix(G, f), torch.tensor(ref_nnm_mix(G.numpy(), f)), rtol=1e-14, atol=1e-15)
    if f == 0:
        torch.testing.assert_close(make_rule("nnm", base="krum", f=0)(G) if n >= 3 else nnm_mix(G, 0)[0],
                                   G.mean(0), rtol=1e-14, atol=1e-15)


def test_bucketing_edges():
    """s = 1 is the base rule on a permutation; s >= n the mean of all rows."""
    G = _rows(7, 3, 5, torch.float64)
    assert torch.equal(Bucketing(base="comed", s=1, f=0, generator=1)(G), comed(G))
    torch.testing.assert_close(Bucketing(base="comed", s=7, f=0, generator=1)(G), G.mean(0))
    torch.testing.assert_close(Bucketing(base="comed", s=9, f=0, generator=1)(G), G.mean(0))


# ----------------------------------------------------------------------------- batched paths


def test_geomed_batched_returns_the_loops_point_where_the_minimizers_form_a_segment():
    """With an even number of finite rows in d = 1 (or collinear rows) every point between
    the two middle rows minimizes the objective. The single solver returns their comed
    (the midpoint); the batch started at the lower median, a row, and stopped there:
    0.37 of the rows' scale away from the loop (e.g. 11 rows, one NaN)."""
    g = torch.Generator().manual_seed(1)
    Gb = torch.randn(6, 10, 1, generator=g, dtype=torch.float64)
    Gb[1, 0] = float("nan")
    line = torch.randn(4, 10, 1, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, -0.5],
                                                                                 dtype=torch.float64)
    for batch in (Gb, line, torch.cat([Gb, Gb[:, :1]], 1)):
        for p in (1.5, 2.0, 3.0):
            rule = make_rule("geomed", f=2, p=p)
            B = rule.batched(batch)
            L = torch.stack([rule(G) for G in batch])
            torch.testing.assert_close(B, L, rtol=0.0, atol=1e-12)
            for b in range(len(batch)):
                X = batch[b][torch.isfinite(batch[b]).all(1)]
                assert float(geomed_objective(B[b], X, p)) <= float(geomed_objective(L[b], X, p)) * (1 + 1e-12)
    torch.testing.assert_close(geomed(Gb[0]), comed(Gb[0]), rtol=0.0, atol=1e-12)  # the midpoint


def _registry_rules(f):
    out = []
    for name in rule_names():
        if name == "mixtailor":
            continue
        if name == "trimmed_mean":
            out.append(make_rule(name, b=f))
        elif name == "mean":
            out.append(make_rule(name))
        else:
            out.append(make_rule(name, f=f))
    return out + [make_rule("multi_krum", f=f, m=3), make_rule("nnm", base="krum", f=f),
                  make_rule("nnm", base="trimmed_mean", f=f), make_rule("bulyan", f=f, select="comed", aggregate="comed")]


@pytest.mark.parametrize("dtype", FLOATS)
def test_batched_equals_a_loop_of_single_calls_for_every_registry_rule(dtype):
    """``rule.batched(Gb)`` is ``stack([rule(G) for G in Gb])`` bitwise (the geometric median
    within its solver tolerance), with NaN / Inf / huge rows and equal rows in the batch."""
    big = 6e4 if dtype == torch.float16 else 1e30
    Gb = torch.stack([_rows(11, 4, s, dtype) for s in range(5)])
    Gb[0, 0] = float("nan")
    Gb[1, 1, 2] = float("inf")
    Gb[2, :2] = big
    Gb[3] = Gb[3, :1].expand(11, 4)
    for rule in _registry_rules(2):
        if isinstance(rule, Bucketing):
            twin = Bucketing(base=rule.base, s=rule.s, f=rule.f, generator=7)
            rule = Bucketing(base=rule.base, s=rule.s, f=rule.f, generator=7)
            B = rule.batched(Gb)
            L = torch.stack([twin(G) for G in Gb])
        elif isinstance(rule, CenteredClipping):  # stateful: batched is each element from the center
            B = rule.batched(Gb)
            L = torch.stack([rule.apply(G) for G in Gb])
        else:
            B = rule.batched(Gb)
            L = torch.stack([rule(G) for G in Gb])
        assert B.dtype == dtype and B.shape == (5, 4), rule.name
        assert rule.family == "mean" or bool(torch.isfinite(B).all()), rule.name  # mean: f = 0
        if "geomed" in rule.name:
            scale = Gb[:, :, :].nan_to_num(0.0, 0.0, 0.0).double().abs().amax(dim=(1, 2)).clamp_min(1.0)
            err = ((B.double() - L.double()).abs().amax(1) / scale).max()
            assert float(err) <= max(1e-6, 4 * torch.finfo(dtype).eps), (rule.name, float(err))
        else:
            assert torch.equal(torch.isnan(B), torch.isnan(L)) and torch.equal(B.nan_to_num(), L.nan_to_num()), rule.name


# ----------------------------------------------------------------------------- MixTailor


@pytest.mark.parametrize("make_rng", [lambda: np.random.default_rng(1), lambda: torch.Generator().manual_seed(1),
                                      lambda: random.Random(1)])
def test_mixtailor_draw_frequencies_match_the_probabilities(make_rng):
    """Chi-square goodness of fit (fixed seeds; 20,000 draws), zero-probability rules never drawn."""
    from scipy.stats import chisquare

    probs = [0.1, 0.0, 0.25, 0.05, 0.6]
    m = MixTailor([Comed(f=0)] * 5, probs=probs, rng=make_rng())
    N = 20000
    counts = np.bincount([m.draw() for _ in range(N)], minlength=5)
    assert counts[1] == 0
    live = [i for i, p in enumerate(probs) if p > 0]
    assert chisquare(counts[live], np.array(probs)[live] * N).pvalue > 1e-3


def test_mixtailor_generator_is_consumed_only_by_draws():
    g = torch.Generator().manual_seed(0)
    m = MixTailor([Krum(f=1), Comed(f=1)], rng=g)
    state = g.get_state().clone()
    m.check(5), m.name, m.public, m.state_dict(), repr(m), m.f
    with pytest.raises(ValueError, match="^mixtailor: needs n in the regime"):
        m(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="^mixtailor: G must have a floating dtype"):
        m(torch.zeros(5, 2, dtype=torch.long))
    assert torch.equal(state, g.get_state())
    m(torch.zeros(5, 2))
    assert not torch.equal(state, g.get_state())


@pytest.mark.parametrize("probs, match", [
    ("ab", r"^MixTailor: probs must be a sequence of 2 numbers \(one per rule\), got 'ab'$"),
    (0.5, r"^MixTailor: probs must be a sequence of 2 numbers \(one per rule\), got 0.5$"),
    ([0.5, "x"], r"^MixTailor: probs must be a sequence of 2 numbers"),
    ([0.5], r"^MixTailor: probs must be a sequence of 2 numbers"),
    ([0.5, math.nan], r"^MixTailor: probs must be finite and non-negative"),
    ([1.5, -0.5], r"^MixTailor: probs must be finite and non-negative"),
    ([0.5, 0.4], r"^MixTailor: probs must be summing to 1"),
])
def test_mixtailor_bad_probs_get_one_line_errors(probs, match):
    """A string or a number as probs raised numpy's "could not convert string to float" /
    "'float' object is not iterable", naming neither the parameter nor the constraint."""
    with pytest.raises(ValueError, match=match):
        MixTailor([Comed(), Comed()], probs=probs)


def test_make_rule_mixtailor_takes_an_int_seed_for_its_draw():
    """``rng`` "seeds the per-step draw" but an int (all a config can hold) raised TypeError."""
    G = _rows(7, 3, 0)

    def draws():
        m = make_rule("mixtailor", f=1, pool="krum,comed", rng=3)
        return [(m(G), m.last_index)[1] for _ in range(12)]

    assert draws() == draws()
    with pytest.raises(ValueError, match="^MixTailor: rng must be >= 0, got -1$"):
        make_rule("mixtailor", f=1, pool="krum,comed", rng=-1)
    assert isinstance(make_rule("mixtailor", f=1, pool="krum,comed").rng, random.SystemRandom)


@pytest.mark.parametrize("dtype", FLOATS)
def test_bulyan_of_equal_rows_at_the_dtype_maximum_stays_finite(dtype):
    """Bulyan's closest-to-median mean, summed scaled where the plain sum overflows, rounded
    past the maximum to inf (float64: n = 11, 19; float16: n = 11) before it was clamped to
    its window."""
    value = torch.finfo(dtype).max
    for n in (11, 12, 15, 19, 23):
        G = _equal_rows(n, 3, value, dtype)
        assert torch.equal(make_rule("bulyan", f=2)(G), G[0]), n
