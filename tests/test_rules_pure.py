"""rules.pure: deterministic, side-effect-free stand-ins for stateful and random rules,
and their use by the solvers (which must never change the caller's rules) and the game."""

from __future__ import annotations

import math

import pytest
import torch

import solvers
from mixtailor_game.attacks import make_attack, make_view
from mixtailor_game.game import payoff_matrix
from mixtailor_game.game.payoff import synthetic_samples
from mixtailor_game.rules import (
    NNM, AveragedBucketing, Bucketing, CenteredClipping, ClippingAt, Comed, Geomed, Krum, MixTailor,
    MixtureMean, RulePool, TrimmedMean, make_rule, pure,
)


def rows(n=10, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + 0.5


def test_stateless_rules_come_back_as_they_are():
    for r in (Comed(f=2), Krum(f=2, p=3.0), TrimmedMean(b=2), Geomed(f=2), NNM(base="krum", f=2)):
        assert pure(r) is r


def test_clipping_at_is_the_next_call_and_stores_nothing():
    G = rows()
    cc = CenteredClipping(base="comed", tau=0.3, f=2)
    fresh = pure(cc)
    assert isinstance(fresh, ClippingAt) and fresh.name == cc.name
    out = fresh(G)
    assert cc.center_ is None and fresh(G).equal(out)
    assert cc(G).equal(out)  # the rule's own first call: from base(G)
    center = cc.center_.clone()
    at = pure(cc)
    G2 = rows(seed=1)
    expected = cc.apply(G2)  # pure: from the stored center
    for _ in range(3):
        assert at(G2).equal(expected)
    assert cc.center_.equal(center)
    cc(G2)  # the rule moves on; the stand-in keeps the center of when it was made
    assert at(G2).equal(expected) and not cc.center_.equal(center)


def _bucketing_reference(rule: Bucketing, G, draws, seed):
    """The mean of ``draws`` calls of the same bucketing with a generator seeded ``seed``."""
    twin = Bucketing(base=rule.base, s=rule.s, f=rule.f, generator=seed, mode=rule.mode)
    return torch.stack([twin(G) for _ in range(draws)]).mean(0)


@pytest.mark.parametrize("mode,base,s", [("buckets", "comed", 2), ("buckets", "krum", 2), ("resample", "comed", 2),
                                         ("buckets", "geomed", 3)])
def test_averaged_bucketing_is_the_mean_over_fixed_draws(mode, base, s):
    G = rows(12, 5, seed=3)
    rule = make_rule("bucketing", base=base, s=s, f=1, mode=mode, generator=7)
    state = rule.generator.get_state().clone()
    avg = pure(rule, draws=8, seed=4)
    assert isinstance(avg, AveragedBucketing)
    assert avg.name.endswith("@draws=8,seed=4")
    out = avg(G)
    torch.testing.assert_close(out, _bucketing_reference(rule, G, 8, 4))
    assert avg(G).equal(out)  # the same draws at every call
    assert rule.generator.get_state().equal(state)  # the rule's own generator untouched


def test_mixture_mean_is_the_expectation_over_the_draw():
    G = rows(9, 4, seed=5)
    pool = [Comed(f=2), Krum(f=2, p=1.0), Geomed(f=2, p=3.0)]
    probs = (0.5, 0.3, 0.2)
    m = MixTailor(pool, probs, rng=torch.Generator().manual_seed(0))
    mix = pure(m)
    assert isinstance(mix, MixtureMean) and mix.probs == probs
    expected = sum(p * r(G).double() for r, p in zip(pool, probs))
    torch.testing.assert_close(mix(G).double(), expected)
    u = G.mean(0)
    inner = sum(p * float(r(G) @ u) for r, p in zip(pool, probs))
    assert float(mix(G) @ u) == pytest.approx(inner, rel=1e-12)
    assert isinstance(pure(RulePool(tuple(pool), probs)), MixtureMean)


def test_wrappers_get_pure_bases():
    cc = CenteredClipping(base="comed", tau=0.5, f=2)
    nn = NNM(base=cc, f=2)
    p = pure(nn)
    assert isinstance(p, NNM) and isinstance(p.base, ClippingAt)
    b = Bucketing(base=MixTailor([Comed(f=1), Krum(f=1)], rng=torch.Generator().manual_seed(1)), s=2, f=1)
    pb = pure(b)
    assert isinstance(pb, AveragedBucketing) and isinstance(pb.base, MixtureMean)
    m = MixTailor([cc, Comed(f=2)], rng=torch.Generator().manual_seed(2))
    pm = pure(m, draws=None)
    assert isinstance(pm, MixTailor) and isinstance(pm.pool[0], ClippingAt)


def test_state_only_stand_ins_keep_drawing_from_copies_of_the_generators():
    """draws=None (the game's payoffs): bucketing and MixTailor stay random, drawing what
    the rule would have drawn next, but the caller's generators and last_index stay put."""
    G = rows(12, 4, seed=2)
    b = Bucketing(base="comed", s=2, f=1, generator=5)
    state = b.generator.get_state().clone()
    kb = pure(b, draws=None)
    assert isinstance(kb, Bucketing) and kb.generator is not b.generator
    first = kb(G)
    assert b.generator.get_state().equal(state)
    assert first.equal(b(G))  # the same draw the rule makes next
    m = MixTailor([Comed(f=2), Krum(f=2), Geomed(f=2)], rng=torch.Generator().manual_seed(3))
    km = pure(m, draws=None)
    picks = [km(G) for _ in range(5)]
    assert m.last_index is None and m.rng.get_state().equal(torch.Generator().manual_seed(3).get_state())
    for out in picks:
        assert out.equal(m(G))
    assert pure(Bucketing(base="comed", s=2, f=1), draws=None).generator is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e30])
def test_byzantine_rows_do_not_poison_the_stand_ins(bad):
    G = rows(12, 5, seed=6).float()
    G[:2] = bad
    for r in (pure(CenteredClipping(base="comed", tau=0.5, f=2)),
              pure(Bucketing(base="comed", s=2, f=2, generator=0)),
              pure(MixTailor([Comed(f=2), Krum(f=2)], rng=torch.Generator().manual_seed(0)))):
        out = r(G)
        assert out.dtype == G.dtype and bool(torch.isfinite(out).all()), r.name
        assert float(out.abs().max()) < 10.0


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="draws"):
        pure(Bucketing(base="comed", s=2, f=1), draws=0)
    with pytest.raises(TypeError, match="CenteredClipping"):
        ClippingAt(Comed(f=1))
    with pytest.raises(ValueError, match="center"):
        ClippingAt(CenteredClipping(base="comed", f=1), center=torch.zeros(2, 2))


def test_solving_never_changes_the_callers_rules_and_is_repeatable():
    """Before, every evaluation of a centered clipping stored its output as the next
    center (two identical P3 solves: 0.000312 then 0.000238) and bucketing drew from
    the caller's generator: in training, the server's own rule."""
    V = 0.01 * rows(10, 40, seed=8).float() + 0.002
    G = torch.cat([V[:2], V])
    cc = make_rule("centered_clipping", f=2, tau=0.1)
    cc(G)
    center = cc.center_.clone()
    b = make_rule("bucketing", f=2, base="comed", s=2, generator=3)
    state = b.generator.get_state().clone()
    for P in (solvers.P3, solvers.ExpectedValue):
        first = solvers.solve(P(V, 2, [b, cc]))
        again = solvers.solve(P(V, 2, [b, cc]))
        assert first.value == again.value
        assert first.rule_names == ("bucketing[base=comed,s=2]@draws=16,seed=0", cc.name)
        # the value is the stand-ins' own at the returned rows
        stand_ins = (pure(b), pure(cc))
        Gb = torch.cat([first.byzantine.to(V), V])
        u = V.double().mean(0)  # the honest mean (own rows default to it)
        vals = [float(r(Gb).double() @ u) for r in stand_ins]
        want = max(vals) if P is solvers.P3 else sum(vals) / 2
        assert first.value == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert cc.center_.equal(center) and b.generator.get_state().equal(state)
    tailored = solvers.solve(solvers.TailoredAttack(V, 2, cc, structure="suboptimal", objective="inner"))
    assert math.isfinite(tailored.value) and cc.center_.equal(center)


def test_the_adaptive_attack_leaves_the_servers_rule_alone():
    V = 0.01 * rows(10, 30, seed=9).float() + 0.002
    cc = make_rule("centered_clipping", f=2, tau=0.1)
    cc(torch.cat([V[:2], V]))
    center = cc.center_.clone()
    view = make_view(V, n=12, f=2, defense=cc)
    B = make_attack("adaptive", problem="p3")(view)
    assert B.shape == (2, 30) and cc.center_.equal(center)


def test_game_payoffs_of_a_clipping_do_not_depend_on_the_order_of_the_cells():
    """Before, the clipping's center carried from cell to cell: ipm's payoff was 1.245 or
    1.840 depending on which attack was measured first."""
    S = synthetic_samples(10, 20, samples=3)
    rule = "centered_clipping[tau=0.1]"
    a = payoff_matrix(["ipm[eps=0.5]", "alie"], [rule], S, f=2)
    b = payoff_matrix(["alie", "ipm[eps=0.5]"], [rule], S, f=2)
    assert a.values[0, 0] == pytest.approx(b.values[1, 0], rel=1e-12)
    assert a.values[1, 0] == pytest.approx(b.values[0, 0], rel=1e-12)
