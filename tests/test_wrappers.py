"""The pre-aggregation wrappers against slow references (plain numpy loops, float64),
centered clipping's state, bucketing's generator, NNM's mixing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixtailor_game.rules import (
    Bucketing, CenteredClipping, Krum, NNM, bucket_means, bucket_permutation, centered_clip, comed, krum,
    make_rule, nnm_mix,
)

# ----------------------------------------------------------------------------- references


def ref_comed(Y):
    out = []
    for j in range(Y.shape[1]):
        col = sorted(Y[:, j])
        k = len(col)
        out.append(col[k // 2] if k % 2 else 0.5 * (col[k // 2 - 1] + col[k // 2]))
    return np.array(out)


def ref_krum(Y, f):
    n = len(Y)
    scores = []
    for i in range(n):
        d2 = sorted(float(np.sum((Y[i] - Y[j]) ** 2)) for j in range(n) if j != i)
        scores.append(sum(d2[: n - f - 2]))
    return Y[int(np.argmin(scores))]


def ref_centered_clip(G, v, tau, iters):
    v = np.array(v, dtype=np.float64)
    n = len(G)
    for _ in range(iters):
        total = np.zeros_like(v)
        for i in range(n):
            z = G[i] - v
            if not np.all(np.isfinite(z)):
                continue
            norm = math.sqrt(sum(x * x for x in z))
            total += z * min(1.0, tau / norm) if norm > 0 else z
        v = v + total / n
    return v


def ref_bucket_means(G, s, perm):
    n = len(G)
    means = []
    for start in range(0, n, s):
        members = [G[perm[k]] for k in range(start, min(n, start + s))]
        means.append(sum(members) / len(members))
    return np.array(means)


def ref_nnm_mix(G, f):
    n = len(G)
    out = []
    for i in range(n):
        dist = []
        for j in range(n):
            with np.errstate(invalid="ignore"):
                diff = G[i] - G[j]
            dd = math.sqrt(float(np.sum(diff * diff))) if np.all(np.isfinite(diff)) else math.inf
            dist.append((-1.0 if j == i else dd, j))
        nb = [j for _, j in sorted(dist)[: n - f]]
        out.append(sum(G[j] for j in nb) / (n - f))
    return np.array(out)


def rows(seed, n, d):
    return np.random.default_rng(seed).normal(size=(n, d))


CONFIGS = [(5, 1, 3), (8, 2, 2), (9, 3, 5), (12, 2, 1)]  # (n, f, d)

# ----------------------------------------------------------------------------- centered clipping


@pytest.mark.parametrize("n, f, d", CONFIGS)
@pytest.mark.parametrize("tau, iters", [(0.1, 1), (0.5, 3), (100.0, 2)])
def test_centered_clip_matches_reference(n, f, d, tau, iters):
    G = rows(n * d, n, d)
    G[0] = 1e30  # a far Byzantine row is clipped to length tau
    v = np.random.default_rng(1).normal(size=d)
    out = centered_clip(torch.tensor(G), torch.tensor(v), tau, iters)
    np.testing.assert_allclose(out.numpy(), ref_centered_clip(G, v, tau, iters), rtol=1e-12, atol=1e-12)
    assert float(torch.linalg.vector_norm(out - torch.tensor(v))) <= iters * tau * (1 + 1e-12)


def test_centered_clipping_state_reset_and_purity():
    G1, G2 = torch.tensor(rows(0, 7, 3)), torch.tensor(rows(1, 7, 3))
    rule = CenteredClipping(base="comed", tau=0.2, iters=2, f=2)
    assert rule.center_ is None
    out1 = rule(G1)  # first call: centered at comed(G1)
    np.testing.assert_allclose(out1.numpy(), ref_centered_clip(G1.numpy(), ref_comed(G1.numpy()), 0.2, 2))
    assert torch.equal(rule.center_, out1)
    # apply and batched read the state but never update it
    peek = rule.apply(G2)
    rule.batched(torch.stack([G2, G1]))
    assert torch.equal(rule.center_, out1)
    out2 = rule(G2)  # second call: centered at the previous aggregate
    assert torch.equal(out2, peek)
    np.testing.assert_allclose(out2.numpy(), ref_centered_clip(G2.numpy(), out1.numpy(), 0.2, 2))
    assert not torch.allclose(out2, CenteredClipping(base="comed", tau=0.2, iters=2, f=2)(G2))
    rule.reset()
    assert rule.center_ is None
    torch.testing.assert_close(rule(G2), CenteredClipping(base="comed", tau=0.2, iters=2, f=2)(G2))
    # with a stored center the rule is not translation equivariant (documented)
    rule.reset()
    rule(G1)
    c = torch.full((3,), 5.0, dtype=torch.float64)
    assert not torch.allclose(rule.apply(G2 + c), rule.apply(G2) + c)


def test_centered_clipping_non_finite_rows_never_poison_the_center():
    G = torch.tensor(rows(3, 6, 4), dtype=torch.float32)
    G[1] = math.nan
    G[4, 2] = -math.inf
    rule = make_rule("centered_clipping", base="comed", tau=0.5, iters=3, f=2)
    for _ in range(3):
        out = rule(G)
        assert torch.isfinite(out).all() and torch.isfinite(rule.center_).all()
    # the bad rows contribute nothing: same as the reference that skips them
    ref = ref_centered_clip(G.double().numpy(), rule.center_.double().numpy(), 0.5, 3)
    np.testing.assert_allclose(rule.apply(G).double().numpy(), ref, rtol=1e-5, atol=1e-6)
    # a non-robust base (mean) gives a NaN first center: its coordinates start at 0
    mean_cc = make_rule("centered_clipping", base="mean", tau=0.5)
    out = mean_cc(G)
    np.testing.assert_allclose(out.double().numpy(), ref_centered_clip(G.double().numpy(), np.zeros(4), 0.5, 1),
                               rtol=1e-5, atol=1e-6)


def test_centered_clipping_errors():
    rule = make_rule("centered_clipping", base="comed", tau=1.0)
    rule(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"centered_clipping: G must be of width 3 like the stored center"):
        rule(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"centered_clipping: tau must be > 0, got 0.0"):
        make_rule("centered_clipping", base="comed", tau=0.0)
    with pytest.raises(ValueError, match=r"centered_clipping: iters must be >= 1, got 0"):
        make_rule("centered_clipping", base="comed", iters=0)
    with pytest.raises(ValueError, match=r"centered_clipping: center must be finite"):
        centered_clip(torch.zeros(3, 2), torch.tensor([math.nan, 0.0]), 1.0)
    with pytest.raises(ValueError, match=r"centered_clipping: center must be a Tensor of shape \(2,\)"):
        centered_clip(torch.zeros(3, 2), torch.zeros(3), 1.0)


# ----------------------------------------------------------------------------- bucketing


@pytest.mark.parametrize("n, f, d", CONFIGS)
@pytest.mark.parametrize("s", [1, 2, 3, 5])
def test_bucketing_with_fixed_generator_matches_reference(n, f, d, s):
    G = rows(n + s, n, d)
    seed = 10 * n + s
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    expected_means = ref_bucket_means(G, s, perm)
    assert len(expected_means) == math.ceil(n / s)
    rule = Bucketing(base="comed", s=s, generator=torch.Generator().manual_seed(seed))
    np.testing.assert_allclose(rule(torch.tensor(G)).numpy(), ref_comed(expected_means), rtol=1e-12)
    np.testing.assert_allclose(bucket_means(torch.tensor(G), s, torch.tensor(perm)).numpy(), expected_means,
                               rtol=1e-12)


def test_bucketing_krum_base_and_f_passed_on():
    n, s, f = 12, 2, 1  # 6 buckets > 2f + 2
    G = rows(5, n, 3)
    rule = make_rule("bucketing", base="krum", s=s, f=f, generator=torch.Generator().manual_seed(4))
    assert isinstance(rule.base, Krum) and rule.base.f == f and rule.f == f
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(4)).tolist()
    np.testing.assert_allclose(rule(torch.tensor(G)).numpy(), ref_krum(ref_bucket_means(G, s, perm), f))
    # the generator advances: a second call uses the next permutation
    g = torch.Generator().manual_seed(4)
    torch.randperm(n, generator=g)
    perm2 = torch.randperm(n, generator=g).tolist()
    np.testing.assert_allclose(rule(torch.tensor(G)).numpy(), ref_krum(ref_bucket_means(G, s, perm2), f))


def test_bucketing_default_draws_from_os_entropy():
    G = torch.tensor(rows(6, 12, 2))
    torch.manual_seed(0)
    a = [tuple(make_rule("bucketing", base="krum", s=2, f=1)(G).tolist()) for _ in range(5)]
    torch.manual_seed(0)
    b = [tuple(make_rule("bucketing", base="krum", s=2, f=1)(G).tolist()) for _ in range(5)]
    assert a != b  # 10 permutations of 12 rows would all agree with probability ~0


def test_bucketing_nan_rows_reach_a_robust_base():
    G = torch.tensor(rows(7, 10, 3))
    G[2] = math.nan
    G[7, 0] = math.inf
    out = make_rule("bucketing", base="comed", s=2, f=2, generator=torch.Generator().manual_seed(0))(G)
    assert torch.isfinite(out).all()


def test_bucketing_errors():
    with pytest.raises(ValueError, match=r"bucketing: s must be >= 1, got 0"):
        make_rule("bucketing", base="comed", s=0)
    with pytest.raises(TypeError, match=r"bucketing: generator must be None or a torch.Generator, got Generator"):
        make_rule("bucketing", base="comed", generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"bucketing: perm must be a permutation of range\(3\)"):
        bucket_means(torch.zeros(3, 2), 2, torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match=r"bucketing: base must be a rule, a rule name or a dict"):
        Bucketing(base=3)
    with pytest.raises(ValueError, match=r"bucketing: f must be equal to the base rule's f \(2\) or None, got 1"):
        Bucketing(base=Krum(f=2), f=1)
    assert Bucketing(base=Krum(f=2)).f == 2
    assert bucket_permutation(5, torch.Generator().manual_seed(1)).sort().values.tolist() == list(range(5))


# ----------------------------------------------------------------------------- NNM


@pytest.mark.parametrize("n, f, d", CONFIGS)
def test_nnm_mix_matches_reference(n, f, d):
    G = rows(100 + n, n, d)
    np.testing.assert_allclose(nnm_mix(torch.tensor(G), f).numpy(), ref_nnm_mix(G, f), rtol=1e-12, atol=1e-14)
    rule = NNM(base={"name": "krum", "p": 2.0}, f=f) if n > 2 * f + 2 else NNM(base="comed", f=f)
    expected = ref_krum(ref_nnm_mix(G, f), f) if n > 2 * f + 2 else ref_comed(ref_nnm_mix(G, f))
    np.testing.assert_allclose(rule(torch.tensor(G)).numpy(), expected, rtol=1e-12, atol=1e-14)


def test_nnm_with_ties_and_non_finite_rows():
    G = rows(9, 8, 3)
    G[3] = G[1]  # a duplicate: ties at distance 0 go to the lower index, i itself first
    G[5] = math.nan
    G[6, 1] = math.inf
    Y = nnm_mix(torch.tensor(G), 2)
    ref = ref_nnm_mix(G, 2)
    for i in range(8):
        if i in (5, 6):  # the bad rows keep their own non-finite values
            assert not torch.isfinite(Y[i]).all()
        else:
            np.testing.assert_allclose(Y[i].numpy(), ref[i], rtol=1e-12)
    assert torch.isfinite(make_rule("nnm", base="krum", f=2)(torch.tensor(G))).all()


def test_nnm_batched_mixes_each_problem_and_batches_the_base(monkeypatch):
    """The base rule runs once on the stacked mixed rows (its vectorized form), with the
    same result as the loop of NNM calls; NaN rows never reach the output."""
    G = torch.randn(40, 9, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    G[::3, 0] = math.nan
    G[::4, 1, 2] = math.inf
    for base in ("comed", "krum", "trimmed_mean"):
        rule = NNM(base=base, f=2)
        calls = []
        real = type(rule.base).batched
        monkeypatch.setattr(type(rule.base), "batched", lambda self, Gb: calls.append(Gb.shape) or real(self, Gb))
        out = rule.batched(G)
        monkeypatch.undo()
        assert calls == [(40, 9, 4)]
        assert torch.equal(out, torch.stack([rule(x) for x in G])) and bool(torch.isfinite(out).all())
    # a plain callable base (no batched form) is looped over: it raised AttributeError
    def med(X):
        return comed(X)

    med.f = 2
    plain = NNM(base=med, f=2)
    assert torch.equal(plain.batched(G), torch.stack([plain(x) for x in G]))


def test_nnm_errors():
    with pytest.raises(ValueError, match=r"nnm: f must be >= 0, got -1"):
        make_rule("nnm", base="comed", f=-1)
    with pytest.raises(ValueError, match=r"nnm: needs n > 2f, got n=4, f=2"):
        nnm_mix(torch.zeros(4, 2), 2)


def test_wrapper_names_show_base_and_params():
    assert make_rule("bucketing", base="krum", s=2, f=1).name == "bucketing[base=krum[p=2],s=2]"
    assert make_rule("nnm", base={"name": "krum", "p": 3}, f=1).name == "nnm[base=krum[p=3]]"
    assert make_rule("centered_clipping", base="comed", tau=0.5, iters=2).name == \
        "centered_clipping[base=comed,tau=0.5,iters=2]"
    nested = make_rule("bucketing", base={"name": "nnm", "base": "comed"}, s=2, f=1)
    assert nested.name == "bucketing[base=nnm[base=comed],s=2]" and nested.base.base.f == 1
    G = torch.tensor(rows(1, 12, 2))
    assert torch.allclose(comed(G), make_rule("bucketing", base="comed", s=1)(G))
    assert torch.allclose(krum(G, 1), make_rule("bucketing", base=Krum(f=1), s=1)(G))
