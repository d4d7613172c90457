"""MixTailor: the draw distribution, where its randomness comes from, probs validation,
logging of the draw, and the paper's pool of 64 rules."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from mixtailor_game.rules import (
    Bulyan, Comed, Geomed, Krum, Mean, MixTailor, RulePool, make_rule, paper_pool, pool_from_families,
)

G = torch.tensor(np.random.default_rng(0).normal(size=(11, 3)))


def _pool(M):
    return [Krum(f=1, p=float(p)) for p in range(1, M + 1)]


PROBS = [0.05, 0.1, 0.15, 0.3, 0.4]


@pytest.mark.parametrize("rng", [None, np.random.default_rng(1), torch.Generator().manual_seed(2),
                                 random.Random(3)], ids=["os", "numpy", "torch", "random"])
def test_draw_frequencies_pass_chi_square(rng):
    mt = MixTailor(_pool(5), probs=PROBS, rng=rng)
    counts = Counter(mt.draw() for _ in range(20_000))
    observed = [counts[i] for i in range(5)]
    assert chisquare(observed, f_exp=[20_000 * p for p in PROBS]).pvalue > 1e-3
    # the chi-square test has power: uniform probs would be rejected
    assert chisquare(observed, f_exp=[4_000] * 5).pvalue < 1e-3


def _seq(mt, k=30):
    out = []
    for _ in range(k):
        mt(G)
        out.append(mt.last_index)
    return out


def _after_global_seeds(**kw):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    return MixTailor(_pool(8), **kw)


def test_default_draws_ignore_global_seeds():
    a, b = _seq(_after_global_seeds()), _seq(_after_global_seeds())
    assert a != b  # 30 uniform draws out of 8 agree with probability 8^-30


@pytest.mark.parametrize("make_rng", [lambda: np.random.default_rng(42), lambda: torch.Generator().manual_seed(42),
                                      lambda: random.Random(42)], ids=["numpy", "torch", "random"])
def test_explicit_generators_give_identical_sequences(make_rng):
    a, b = _seq(_after_global_seeds(rng=make_rng())), _seq(_after_global_seeds(rng=make_rng()))
    assert a == b and len(set(a)) > 1


def test_last_index_last_rule_and_public():
    mt = MixTailor(_pool(4), probs=[0.1, 0.2, 0.3, 0.4], rng=np.random.default_rng(0))
    assert mt.last_index is None and mt.last_rule is None
    for _ in range(10):
        out = mt(G)
        assert mt.last_rule is mt.pool[mt.last_index]
        torch.testing.assert_close(out, mt.last_rule(G))
    assert mt.public == RulePool(tuple(_pool(4)), (0.1, 0.2, 0.3, 0.4))
    assert mt.f == 1 and mt.name == "mixtailor[M=4]"


def test_zero_probability_rules_are_never_drawn():
    probs = [0.0, 0.5, 0.0, 0.5, 0.0]
    for rng in (np.random.default_rng(0), torch.Generator().manual_seed(0), None):
        mt = MixTailor(_pool(5), probs=probs, rng=rng)
        drawn = {mt.draw() for _ in range(3_000)}
        assert drawn == {1, 3}
    one = MixTailor(_pool(3), probs=[0.0, 0.0, 1.0])
    assert {one.draw() for _ in range(200)} == {2}


@pytest.mark.parametrize("probs, message", [
    ([0.5, -0.1, 0.6], r"MixTailor: probs must be finite and non-negative"),
    ([0.5, 0.5], r"MixTailor: probs must be a sequence of 3 numbers \(one per rule\), got \(2,\)"),
    ([0.2, 0.2, 0.2], r"MixTailor: probs must be summing to 1 \(within 1e-6\), got 0.6"),
    ([math.nan, 0.5, 0.5], r"MixTailor: probs must be finite and non-negative"),
    ([math.inf, 0.0, 0.0], r"MixTailor: probs must be finite and non-negative"),
])
def test_probs_validation(probs, message):
    with pytest.raises(ValueError, match=message):
        MixTailor(_pool(3), probs=probs)


def test_pool_and_rng_validation():
    with pytest.raises(ValueError, match=r"MixTailor: pool must be a non-empty sequence of rules"):
        MixTailor([])
    with pytest.raises(TypeError, match=r"MixTailor: pool entries must be callable rules, got int"):
        MixTailor([1, 2])
    with pytest.raises(TypeError, match=r"got the name 'krum' \(make_rule\(\"mixtailor\", f=\.\.\., pool="):
        MixTailor(["krum", "comed"])
    # ... and the way the message names works
    assert [r.name for r in make_rule("mixtailor", f=1, pool=["krum", "comed"]).pool] == ["krum[p=2]", "comed"]
    with pytest.raises(TypeError, match=r"MixTailor: rng must be None, an int seed, numpy.random.Generator"):
        MixTailor(_pool(2), rng="7")
    with pytest.raises(TypeError, match=r"MixTailor: rng must be None, an int seed"):
        MixTailor(_pool(2), rng=True)
    with pytest.raises(ValueError, match=r"MixTailor: rng must be >= 0, got -1"):
        MixTailor(_pool(2), rng=-1)


def test_an_int_rng_seeds_the_draw_as_make_rule_does():
    """An int seed was refused by MixTailor while make_rule("mixtailor", rng=int) took one."""
    def draws(rule):
        out = []
        for _ in range(20):
            rule(G)
            out.append(rule.last_index)
        return out

    seeded = draws(MixTailor(_pool(4), rng=7))
    assert seeded == draws(MixTailor(_pool(4), rng=np.int64(7)))
    assert seeded == draws(make_rule("mixtailor", f=1, pool=list(_pool(4)), rng=7))
    assert seeded == draws(MixTailor(_pool(4), rng=torch.Generator().manual_seed(7)))
    assert len(set(seeded)) > 1


def test_paper_pool_takes_a_torch_generator_and_refuses_other_rngs():
    """partition() and MixTailor take a torch.Generator; paper_pool gave numpy's
    SeedSequence traceback for one."""
    names = lambda seed: [r.name for r in paper_pool(2, torch.Generator().manual_seed(seed))]
    assert names(0) == names(0) and names(0) != names(1)
    with pytest.raises(TypeError, match=r"^paper_pool: rng must be None, an int seed, .* got str$"):
        paper_pool(2, "0")


def test_paper_pool_composition_and_reproducibility():
    pool = paper_pool(2, rng=np.random.default_rng(0))
    assert len(pool) == 64
    families = Counter(type(r).__name__ for r in pool)
    assert families == {"Krum": 16, "Comed": 16, "Geomed": 16, "Bulyan": 16}
    assert all(r.f == 2 for r in pool)
    norms = [r.p for r in pool if not isinstance(r, Comed)]
    assert all(float(p).is_integer() and 1 <= p <= 16 for p in norms) and len(set(norms)) > 4
    pairs = {(r.select, r.aggregate) for r in pool if isinstance(r, Bulyan)}
    assert pairs == {(s, a) for s in ("krum", "average", "geomed", "comed")
                     for a in ("krum", "average", "geomed", "comed")}
    assert [r.name for r in paper_pool(2, 5)] == [r.name for r in paper_pool(2, 5)]
    assert [r.name for r in paper_pool(2, 5)] != [r.name for r in paper_pool(2, 6)]
    # a family subset draws its norms the same way (first family, first 16 draws)
    only = pool_from_families(1, ["geomed"], 3)
    assert len(only) == 16 and [r.p for r in only] == [r.p for r in paper_pool(1, 3)[:16]]


def test_paper_pool_geomed_norm_changes_the_result():
    geomeds = [r for r in paper_pool(1, rng=np.random.default_rng(1)) if isinstance(r, Geomed)]
    by_p = {r.p: r for r in geomeds}
    assert len(by_p) >= 3
    X = torch.tensor(np.random.default_rng(2).normal(size=(9, 4)) ** 3)
    outs = {p: r(X) for p, r in by_p.items()}
    ps = sorted(outs)
    assert all(not torch.allclose(outs[a], outs[b], atol=1e-6) for a, b in zip(ps, ps[1:]))


def test_mixtailor_by_name_and_stateless_pool_entries():
    mt = make_rule("mixtailor", f=1, pool=["krum", {"name": "geomed", "p": 3.0}, "comed"],
                   probs=[0.2, 0.3, 0.5], rng=random.Random(0))
    assert [r.name for r in mt.pool] == ["krum[p=2]", "geomed[p=3]", "comed"]
    assert mt.probs == (0.2, 0.3, 0.5)
    assert torch.isfinite(mt(G)).all()
    only_mean = MixTailor([Mean()])
    torch.testing.assert_close(only_mean(G), G.mean(0))
