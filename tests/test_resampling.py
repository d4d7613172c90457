"""s-resampling (``make_rule("bucketing", mode="resample")``) against a slow loop reference."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mixtailor_game.rules.spec import parse_spec
from mixtailor_game.rules import Bucketing, Comed, Krum, make_rule
from mixtailor_game.rules.bucketing import resample, resample_assignment, resample_means


def loop_assignment(n: int, s: int, generator: torch.Generator) -> list[list[int]]:
    """The same draw as :func:`resample_assignment`, written as a loop over the n * s slots."""
    order = torch.randperm(n * s, generator=generator).tolist()
    out = []
    for i in range(n):
        picks = []
        for j in range(s):
            slot = order[i * s + j]
            picks.append(slot // s)  # slots s*r .. s*r + s - 1 are the s copies of row r
        out.append(picks)
    return out


def loop_means(G: torch.Tensor, assignment: list[list[int]]) -> torch.Tensor:
    rows = []
    for picks in assignment:
        acc = torch.zeros(G.shape[1], dtype=torch.float64)
        for r in picks:
            acc += G[r].double()
        rows.append(acc / len(picks))
    return torch.stack(rows).to(G.dtype)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n,s", [(1, 1), (5, 1), (12, 2), (7, 3), (10, 10), (4, 6)])
def test_assignment_matches_the_loop_and_uses_every_row_s_times(n, s):
    for seed in range(5):
        a = resample_assignment(n, s, gen(seed))
        assert a.shape == (n, s) and a.dtype == torch.long
        assert a.tolist() == loop_assignment(n, s, gen(seed))
        assert Counter(a.reshape(-1).tolist()) == {r: s for r in range(n)}


@pytest.mark.parametrize("n,s,d", [(12, 2, 5), (7, 3, 4), (9, 1, 2), (6, 6, 3)])
def test_outputs_are_means_of_s_rows(n, s, d):
    G = torch.randn(n, d, generator=gen(n * 10 + s), dtype=torch.float64)
    for seed in range(4):
        a = resample_assignment(n, s, gen(seed))
        out = resample_means(G, s, a)
        assert out.shape == (n, d)
        torch.testing.assert_close(out, loop_means(G, a.tolist()))
        # the resampled rows keep the mean: each row has weight s / (n s) = 1 / n
        torch.testing.assert_close(out.mean(dim=0), G.mean(dim=0))


def test_rule_equals_base_on_the_loop_reference():
    n, s = 12, 2
    G = torch.randn(n, 6, generator=gen(3))
    base = Krum(f=4)
    rule = make_rule("bucketing", base=base, s=s, f=2, mode="resample", generator=gen(7))
    draws = gen(7)
    for _ in range(3):  # the generator advances by one draw per call
        expected = base(loop_means(G, loop_assignment(n, s, draws)))
        torch.testing.assert_close(rule(G), expected)
    torch.testing.assert_close(resample(G, base, s, gen(1)), base(loop_means(G, loop_assignment(n, s, gen(1)))))


def test_permutation_invariance_exact_and_in_distribution():
    n, s = 6, 2
    G = torch.randn(n, 3, generator=gen(0), dtype=torch.float64)
    pi = torch.randperm(n, generator=gen(1))
    # exact: resampling G[pi] with assignment A is resampling G with pi[A] (same distribution as A)
    a = resample_assignment(n, s, gen(2))
    torch.testing.assert_close(resample_means(G[pi], s, a), resample_means(G, s, pi[a]))
    # in distribution: the multiset of row pairs that output 0 averages
    first = lambda A: tuple(sorted(A[0].tolist()))  # noqa: E731
    g1, g2 = gen(11), gen(12)
    k = 6000
    c1 = Counter(first(pi[resample_assignment(n, s, g1)]) for _ in range(k))
    c2 = Counter(first(resample_assignment(n, s, g2)) for _ in range(k))
    tv = 0.5 * sum(abs(c1[key] - c2[key]) for key in set(c1) | set(c2)) / k
    assert tv < 0.05, tv
    # and the distribution is the exact one: P(pair {a, b}) = 2 s^2 / (ns (ns - 1)), P({a, a}) = s (s-1) / (ns (ns-1))
    m = n * s
    for key, count in c2.items():
        p = (s * (s - 1) if key[0] == key[1] else 2 * s * s) / (m * (m - 1))
        assert abs(count / k - p) < 5 * math.sqrt(p * (1 - p) / k) + 1e-3, (key, count / k, p)


def test_rule_is_permutation_invariant_in_distribution():
    """The mean of a coordinate of the rule's output over many draws does not depend on the row order."""
    n, s = 8, 2
    G = torch.randn(n, 2, generator=gen(5), dtype=torch.float64)
    G[0] += 3.0  # an outlier so that the base rule's choice matters
    pi = torch.randperm(n, generator=gen(6))
    r1 = make_rule("bucketing", base="comed", s=s, f=1, mode="resample", generator=gen(21))
    r2 = make_rule("bucketing", base="comed", s=s, f=1, mode="resample", generator=gen(22))
    k = 3000
    m1 = torch.stack([r1(G) for _ in range(k)]).mean(dim=0)
    m2 = torch.stack([r2(G[pi]) for _ in range(k)]).mean(dim=0)
    sd = torch.stack([r1(G) for _ in range(300)]).std(dim=0)
    assert bool(((m1 - m2).abs() < 5 * sd * math.sqrt(2 / k) + 1e-9).all()), (m1, m2)


@pytest.mark.parametrize("base", ["comed", "krum", "geomed", "trimmed_mean"])
def test_byzantine_nan_and_inf_rows_do_not_crash(base):
    n, s, f = 12, 2, 2
    G = torch.randn(n, 5, generator=gen(9))
    G[3] = math.nan
    G[10, 1] = math.inf
    rule = make_rule("bucketing", base=base, s=s, f=f, mode="resample", generator=gen(0))
    for _ in range(20):
        out = rule(G)
        assert out.shape == (5,) and torch.isfinite(out).all()
    # a NaN row spoils exactly the s outputs that use it
    a = resample_assignment(n, s, gen(4))
    means = resample_means(G, s, a)
    bad = ~torch.isfinite(means).all(dim=1)
    uses = [(a[i] == 3).any().item() or (a[i] == 10).any().item() for i in range(n)]
    assert bad.tolist() == uses and 2 <= int(bad.sum()) <= 2 * s


def test_base_f_is_s_times_f_and_regimes():
    r = make_rule("bucketing", base="krum", s=2, f=2, mode="resample")
    assert (r.f, r.base.f, r.base_f, r.buckets(12)) == (2, 4, 4, 12)
    r.check(12)  # Krum: 12 > 2 * 4 + 2
    with pytest.raises(ValueError, match=r"^bucketing: needs .*krum: needs n > 2f \+ 2, got n=10, f=4.*got n=10, f=2, s=2$"):
        r.check(10)
    with pytest.raises(ValueError, match=r"bulyan: needs n >= 4f \+ 3, got n=12, f=4"):
        make_rule("bucketing", base="bulyan", s=2, f=2, mode="resample").check(12)
    make_rule("bucketing", base="bulyan", s=2, f=2, mode="resample").check(19)
    pool = make_rule("bucketing", base={"name": "mixtailor", "pool": "krum,comed,geomed", "seed": 0}, s=2, f=2,
                     mode="resample")
    assert len(pool.base.pool) == 48 and {r.f for r in pool.base.pool} == {4}
    pool.check(12)
    with pytest.raises(ValueError, match=r"bulyan"):
        make_rule("bucketing", base={"name": "mixtailor", "pool": "paper", "seed": 0}, s=2, f=2,
                  mode="resample").check(12)
    # f=None takes floor(base.f / s); a rule object must have f = s * f
    assert Bucketing(base=Krum(f=5), s=2, mode="resample").f == 2
    assert Bucketing(base=Krum(f=4), s=2, f=2, mode="resample").base.f == 4
    # default mode unchanged: the base keeps f and sees ceil(n/s) bucket means
    b = make_rule("bucketing", base="krum", s=2, f=2)
    assert (b.mode, b.base.f, b.buckets(12), b.name) == ("buckets", 2, 6, "bucketing[base=krum[p=2],s=2]")


def test_errors_are_one_line():
    cases = [
        (dict(mode="shuffle"), ValueError, r"^bucketing: mode must be 'buckets' or 'resample', got 'shuffle'$"),
        (dict(base=Krum(f=2), f=2, mode="resample"), ValueError,
         r"^bucketing: base rule's f must be s \* f = 4 in mode='resample' .*, got 2$"),
        (dict(s=0, mode="resample"), ValueError, r"^bucketing: s must be >= 1, got 0$"),
        (dict(f=-1, mode="resample"), ValueError, r"^bucketing: f must be >= 0, got -1$"),
        (dict(generator=-3, mode="resample"), ValueError, r"^bucketing: generator must be >= 0, got -3$"),
        (dict(generator="x", mode="resample"), TypeError, r"^bucketing: generator must be None or a torch.Generator"),
    ]
    for kw, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            make_rule("bucketing", **kw)
    G = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"^bucketing: assignment must be an integer tensor of shape \(3, 2\) .*"
                                         r"\(row counts shown\), got \[3, 1, 2\]$"):
        resample_means(G, 2, torch.tensor([[0, 0], [0, 1], [2, 2]]))
    with pytest.raises(ValueError, match=r"^bucketing: assignment must be .*, got \(3, 1\)$"):
        resample_means(G, 2, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^bucketing: assignment must be .*, got \[\[0, 1\], \[2, 3\], \[1, 0\]\]$"):
        resample_means(G, 2, torch.tensor([[0, 1], [2, 3], [1, 0]]))
    with pytest.raises(ValueError, match=r"^bucketing: needs s <= n in mode='resample', got n=3, s=4$"):
        make_rule("bucketing", base="mean", s=4, mode="resample")(G)


def test_registry_name_round_trip_and_state():
    r = make_rule("bucketing", base="comed", s=3, f=1, mode="resample", generator=5)
    assert r.name == "bucketing[base=comed,s=3,mode=resample]"
    name, params = parse_spec(r.name)
    params.pop("f", None)
    again = make_rule(name, f=r.f, **params)
    assert again.name == r.name and again.mode == "resample" and again.base.f == 3
    # an int generator is a seed: two rules with the same seed draw the same assignments
    G = torch.randn(9, 4, generator=gen(0))
    a = make_rule("bucketing", base="mean", s=3, mode="resample", generator=5)
    b = make_rule("bucketing", base=Comed(f=0), s=3, mode="resample", generator=5)
    assert isinstance(a.generator, torch.Generator)
    torch.testing.assert_close(a.base(resample_means(G, 3, resample_assignment(9, 3, gen(5)))), a(G))
    assert b.f == 0


def test_does_not_mutate_and_keeps_dtype():
    G = torch.randn(10, 3, dtype=torch.float64, generator=gen(1))
    before = G.clone()
    out = make_rule("bucketing", base="comed", s=2, f=1, mode="resample", generator=0)(G)
    assert out.dtype == torch.float64 and torch.equal(G, before)
