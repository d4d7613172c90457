"""AdversaryView, make_view and the attack registry: validation and knowledge levels."""

import re

import pytest
import torch

from mixtailor_game.attacks import AdversaryView, attack_names, attack_params, make_attack, make_view
from mixtailor_game.rules import Krum, MixTailor, RulePool, paper_pool

H = torch.arange(30, dtype=torch.float32).reshape(10, 3)


def test_make_view_knowledge_levels():
    full = make_view(H, n=12, f=2)
    assert (full.k, full.knowledge) == (10, "full") and torch.equal(full.honest, H)
    part = make_view(H, n=12, f=2, knowledge="partial:4")
    assert (part.k, part.knowledge) == (4, "partial") and torch.equal(part.honest, H[:4])
    own = make_view(H, n=12, f=2, knowledge="own", own=torch.ones(2, 3))
    assert (own.k, own.knowledge, own.d) == (0, "own", 3)
    assert torch.equal(own.visible("x"), torch.ones(2, 3))
    assert torch.equal(part.visible("x"), H[:4])


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        (dict(knowledge="partial:11"), ValueError, "make_view: knowledge must be 'partial:K' with 0 <= K <= n - f = 10"),
        (dict(knowledge="partial:x"), ValueError, "knowledge must be 'full', 'partial:K' (K an integer) or 'own'"),
        (dict(knowledge="half"), ValueError, "knowledge must be 'full', 'partial:K' or 'own', got 'half'"),
        (dict(knowledge=3), TypeError, "knowledge must be a string"),
        (dict(f=0), ValueError, "make_view: f must be >= 1, got 0"),
        (dict(n=13), ValueError, "honest_all must be of shape (11, d)"),
        (dict(own=torch.ones(3, 3)), ValueError, "AdversaryView: own must be of shape (2, d)"),
        (dict(model=torch.ones(4)), ValueError, "AdversaryView: model must be of shape (3,)"),
        (dict(rng="0"), TypeError, "rng must be None or a torch.Generator"),
        (dict(rng=-1), ValueError, "make_view: rng must be >= 0, got -1"),
        (dict(defense=5), TypeError, "defense must be None, a rule or a RulePool"),
    ],
)
def test_make_view_rejects_bad_input(kwargs, exc, msg):
    params = dict(n=12, f=2)
    params.update(kwargs)
    with pytest.raises(exc, match=re.escape(msg)):
        make_view(H, **params)


def test_make_view_takes_an_int_seed():
    """An int seed was refused (MixTailor and make_rule take one): the same draws as a
    torch.Generator seeded with it."""
    a = make_attack("gaussian")(make_view(H, n=12, f=2, rng=5))
    b = make_attack("gaussian")(make_view(H, n=12, f=2, rng=torch.Generator().manual_seed(5)))
    assert torch.equal(a, b)


def test_view_rejects_more_honest_rows_than_n_minus_f():
    with pytest.raises(ValueError, match=re.escape("AdversaryView: k must be <= n - f = 9, got 10")):
        AdversaryView(H, n=12, f=3)
    with pytest.raises(TypeError, match="honest must have a floating dtype"):
        AdversaryView(torch.ones(3, 2, dtype=torch.long), n=5, f=2)


def test_view_with_nothing_visible_raises_in_attacks():
    v = make_view(H, n=12, f=2, knowledge="own")
    with pytest.raises(ValueError, match=re.escape("ipm: needs visible honest rows or view.own, got k=0 and own=None")):
        make_attack("ipm")(v)


@pytest.mark.parametrize("name", ["ipm", "random_eps", "alie", "min_max", "min_sum", "sign_flip", "fang_trim",
                                  "fang_krum", "mimic", "gaussian"])
def test_non_finite_visible_rows_are_left_out(name):
    """One NaN / Inf honest row made every Byzantine row of IPM, ALIE, min-max, sign flip and
    Fang-trim NaN (a NaN attack, silently): the attacks now see the finite rows only, and
    send what they send on those rows."""
    g = torch.Generator().manual_seed(3)
    H = torch.randn(10, 6, dtype=torch.float64, generator=g)
    bad = H.clone()
    bad[3, 2], bad[5, 0] = float("nan"), float("inf")
    keep = [i for i in range(10) if i not in (3, 5)]
    out = make_attack(name)(AdversaryView(bad, n=12, f=2))
    assert bool(torch.isfinite(out).all())
    # the same rows as on the finite ones (fang_krum / fang_trim read k = n - f as full
    # knowledge, random_eps draws from the view's generator state)
    if name not in ("fang_krum", "fang_trim", "random_eps"):
        view = AdversaryView(H[keep], n=12, f=2)
        torch.testing.assert_close(out, make_attack(name)(view))
    with pytest.raises(ValueError, match=r"^ipm: needs at least one finite visible row, got none \(3 rows, all with NaN/Inf\)$"):
        make_attack("ipm")(AdversaryView(torch.full((3, 2), float("nan")), n=12, f=2))
    with pytest.raises(ValueError, match=r"^min_sum: visible rows must be >= 2"):  # it said min_max
        make_attack("min_sum", perturbation="std")(AdversaryView(torch.randn(1, 3), n=12, f=2))


def test_mixtailor_defense_is_reduced_to_its_public_pool():
    mt = MixTailor(paper_pool(2, 0), rng=torch.Generator().manual_seed(0))
    v = make_view(H, n=12, f=2, defense=mt)
    assert isinstance(v.defense, RulePool) and not hasattr(v.defense, "rng")
    assert v.defense.rules == mt.pool
    assert make_view(H, n=12, f=2, defense=Krum(f=2)).defense == Krum(f=2)


@pytest.mark.parametrize("wrapper", ["bucketing", "centered_clipping", "nnm"])
def test_mixtailor_inside_a_wrapper_is_reduced_to_its_public_pool(wrapper):
    from mixtailor_game.rules import make_rule

    mt = MixTailor(paper_pool(2, 0), rng=torch.Generator().manual_seed(0))
    v = make_view(H, n=12, f=2, defense=make_rule(wrapper, base=mt))
    assert isinstance(v.defense, RulePool) and v.defense.rules == mt.pool


@pytest.mark.parametrize("knowledge", ["full", "partial:2", "own"])
def test_view_rows_are_copies_of_the_callers(knowledge):
    # a slice would keep every honest row reachable through its storage, and an
    # attack writing into its view would change the rows the server aggregates
    Hc, own = H.clone(), torch.ones(2, 3)
    v = make_view(Hc, n=12, f=2, knowledge=knowledge, own=own)
    assert v.honest.untyped_storage().nbytes() == v.honest.numel() * v.honest.element_size()
    v.honest.mul_(0.0)
    v.own.mul_(0.0)
    assert torch.equal(Hc, H) and torch.equal(own, torch.ones(2, 3))


def test_default_generator_is_deterministic_per_step_and_rng_is_used_when_given():
    a = make_view(H, n=12, f=2, step=3).generator()
    b = make_view(H, n=12, f=2, step=3).generator()
    c = make_view(H, n=12, f=2, step=4).generator()
    x, y, z = torch.rand(5, generator=a), torch.rand(5, generator=b), torch.rand(5, generator=c)
    assert torch.equal(x, y) and not torch.equal(x, z)
    g = torch.Generator().manual_seed(7)
    assert make_view(H, n=12, f=2, rng=g).generator() is g


def test_registry_names_and_errors():
    names = attack_names()
    for name in ["ipm", "random_eps", "alie", "fang_krum", "fang_trim", "min_max", "min_sum",
                 "mimic", "gaussian", "sign_flip", "label_flip", "adaptive"]:
        assert name in names
    with pytest.raises(ValueError, match=r"make_attack: name must be one of \[.*'ipm'.*\], got 'nope'"):
        make_attack("nope")
    with pytest.raises(ValueError, match=re.escape("make_attack: ipm takes parameters ['space', 'eps'], got unknown ['epsilon']")):
        make_attack("ipm", epsilon=0.1)
    assert attack_params("alie") == ["space", "z"]
    assert "problem" in attack_params("adaptive")
    with pytest.raises(ValueError, match=re.escape("make_attack: adaptive takes parameters [") + ".*got unknown \\['bogus'\\]"):
        make_attack("adaptive", bogus=1)


@pytest.mark.parametrize(
    "name, params, msg",
    [
        ("ipm", dict(eps=float("inf")), "ipm: eps must be finite, got inf"),
        ("ipm", dict(eps=float("nan")), "ipm: eps must be finite, got nan"),
        ("ipm", dict(eps=-1.0), "ipm: eps must be >= 0, got -1.0"),
        ("ipm", dict(space="weights"), "ipm: space must be one of ('gradient', 'model'), got 'weights'"),
        ("random_eps", dict(eps_set=()), "random_eps: eps_set must be a non-empty sequence of numbers"),
        ("random_eps", dict(eps_set=(0.1, float("inf"))), "random_eps: eps_set entry must be finite"),
        ("random_eps", dict(eps_set=(0.1, 1.0), probs=(0.5,)), "random_eps: probs must be 2 numbers (one per eps)"),
        ("random_eps", dict(probs=(0.5, 0.6)), "random_eps: probs must be summing to 1"),
        ("alie", dict(z=float("inf")), "alie: z must be finite"),
        ("fang_krum", dict(p=0.5), "fang_krum: p must be >= 1, got 0.5"),
        ("fang_krum", dict(direction="up"), "fang_krum: direction must be one of ('mean', 'aggregate')"),
        ("fang_krum", dict(lam_min=0.0), "fang_krum: lam_min must be > 0"),
        ("fang_trim", dict(b=1.0), "fang_trim: b must be > 1, got 1.0"),
        ("fang_trim", dict(variant="x"), "fang_trim: variant must be one of ('auto', 'full', 'partial')"),
        ("min_max", dict(perturbation="l1"), "min_max: perturbation must be one of ('unit', 'sign', 'std')"),
        ("min_sum", dict(search="golden"), "min_sum: search must be one of ('binary', 'paper')"),
        ("min_max", dict(gamma_init=0.0), "min_max: gamma_init must be > 0"),
        ("min_max", dict(tol=2.0), "min_max: tol must be < 1"),
        ("min_sum", dict(tol=1.0), "min_sum: tol must be < 1, got 1.0"),
        ("random_eps", dict(probs=0.5), "random_eps: probs must be None or a sequence of numbers (one per eps)"),
        ("mimic", dict(target="first"), "mimic: target must be 'auto' or an integer >= 0"),
        ("mimic", dict(target=-1), "mimic: target must be >= 0, got -1"),
        ("gaussian", dict(sigma=-1.0), "gaussian: sigma must be >= 0"),
        ("gaussian", dict(center="median"), "gaussian: center must be one of ('zero', 'honest')"),
        ("sign_flip", dict(scale=float("nan")), "sign_flip: scale must be finite"),
    ],
)
def test_attacks_reject_bad_params(name, params, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        make_attack(name, **params)


def test_type_errors_for_non_numbers_and_non_views():
    with pytest.raises(TypeError, match="ipm: eps must be a real number, got '0.1'"):
        make_attack("ipm", eps="0.1")
    with pytest.raises(TypeError, match="ipm: view must be an AdversaryView, got Tensor"):
        make_attack("ipm")(H)


def test_attack_names_show_hyperparameters():
    assert make_attack("ipm", eps=0.1).name == "ipm[eps=0.1]"
    assert make_attack("ipm", eps=0.1, space="model").name == "ipm[space=model,eps=0.1]"
    assert make_attack("min_max", perturbation="sign").name.startswith("min_max[perturbation=sign,")
