"""make_rule: every rule by the name the CLI uses; strict names and parameters; nested bases."""

from __future__ import annotations

import pytest
import torch

from mixtailor_game.rules import (
    NNM, Bucketing, Bulyan, CenteredClipping, Comed, Geomed, Krum, Mean, MixTailor, MultiKrum, TrimmedMean,
    as_rule, make_rule, rule_names,
)

CLI_NAMES = {"mean", "comed", "trimmed_mean", "krum", "multi_krum", "geomed", "bulyan", "centered_clipping",
             "bucketing", "nnm", "mixtailor"}

BUILDS = [
    ("mean", {}, Mean),
    ("comed", {"f": 2}, Comed),
    ("trimmed_mean", {"b": 2}, TrimmedMean),
    ("krum", {"f": 2, "p": 3.0}, Krum),
    ("multi_krum", {"f": 2, "m": 3, "p": 1.0}, MultiKrum),
    ("geomed", {"f": 2, "p": 1.5, "tol": 1e-8}, Geomed),
    ("bulyan", {"f": 1, "select": "geomed", "aggregate": "comed", "p": 4.0}, Bulyan),
    ("centered_clipping", {"base": "krum", "tau": 0.5, "iters": 2, "f": 1}, CenteredClipping),
    ("bucketing", {"base": {"name": "krum", "p": 3}, "s": 2, "f": 1}, Bucketing),
    ("nnm", {"base": "geomed", "f": 2}, NNM),
    ("mixtailor", {"f": 1, "pool": "paper", "seed": 0}, MixTailor),
]


def test_names_are_the_cli_names():
    assert set(rule_names()) == CLI_NAMES
    assert {b[0] for b in BUILDS} == CLI_NAMES


@pytest.mark.parametrize("rule", [make_rule(n, **p) for n, p, _ in BUILDS if n != "mixtailor"] + [
    MultiKrum(f=2), Krum(f=1, p=float("inf")), Bulyan(f=1), Geomed(f=2, p=3.5)], ids=lambda r: r.name)
def test_a_rule_name_is_a_spec_that_builds_the_rule_again(rule):
    """game writes rule names into probs files and train's --pool reads them as specs:
    a name must parse back into the same rule (MultiKrum's default m once read m=n-f)."""
    from mixtailor_game.rules.spec import parse_spec

    name, params = parse_spec(rule.name)
    again = as_rule(dict(name=name, **params), rule.f)
    assert type(again) is type(rule) and again.name == rule.name
    if rule.family == "bucketing":
        return  # it draws its buckets at each call (the name holds no seed)
    G = torch.randn(11, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # tuning fields (a geomed's tol) are not in the name: equal up to the default tolerance
    torch.testing.assert_close(again(G), rule(G), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, params, cls", BUILDS, ids=[b[0] for b in BUILDS])
def test_every_name_builds_and_aggregates(name, params, cls):
    rule = make_rule(name, **params)
    assert isinstance(rule, cls)
    G = torch.randn(11, 3, generator=torch.Generator().manual_seed(0))
    out = rule(G)
    assert out.shape == (3,) and torch.isfinite(out).all()
    if "f" in params:
        assert rule.f == params["f"]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"make_rule: name must be one of \['bucketing', 'bulyan', .*'trimmed_mean'\], "
                                         r"got 'krun'"):
        make_rule("krun", f=1)


@pytest.mark.parametrize("name, bad", [("krum", "q"), ("bucketing", "size"), ("nnm", "tau"),
                                       ("centered_clipping", "s"), ("mixtailor", "p")])
def test_unknown_parameter_lists_valid_parameters(name, bad):
    with pytest.raises(ValueError, match=rf"make_rule: {name} takes parameters \[.*\], got unknown \['{bad}'\]"):
        make_rule(name, **{bad: 1})


def test_nested_bases_accept_names_dicts_and_objects():
    by_name = make_rule("bucketing", base="krum", s=2, f=2)
    by_dict = make_rule("bucketing", base={"name": "krum", "p": 2.0}, s=2, f=2)
    by_obj = make_rule("bucketing", base=Krum(f=2), s=2)
    assert by_name.base == by_dict.base == by_obj.base == Krum(f=2, p=2.0)
    assert make_rule("nnm", base={"name": "krum", "f": 2}).f == 2  # the dict's own f wins
    assert make_rule("nnm", base="trimmed_mean", f=2).base == TrimmedMean(b=2)  # f passed on as b
    deep = make_rule("centered_clipping", base={"name": "bucketing", "base": {"name": "geomed", "p": 3}, "s": 2},
                     f=1)
    assert isinstance(deep.base, Bucketing) and deep.base.base == Geomed(f=1, p=3.0)
    with pytest.raises(ValueError, match=r"make_rule: krum takes parameters \['f', 'p'\], got unknown \['q'\]"):
        make_rule("nnm", base={"name": "krum", "q": 1}, f=1)
    with pytest.raises(ValueError, match=r"as_rule: a rule dict must have a 'name' string"):
        make_rule("nnm", base={"p": 3}, f=1)
    with pytest.raises(ValueError, match=r"make_rule: name must be one of"):
        make_rule("bucketing", base="krun")
    with pytest.raises(TypeError, match=r"as_rule: expected a rule, a rule name or a dict, got int"):
        as_rule(3)


def test_a_pool_may_hold_the_mean():
    """"mean" in a pool with f > 0 raised "mean: f must be <= 0": it is the mean
    (tolerating 0 rows by definition), as the trainer's aggregator="mean" is."""
    assert as_rule("mean", 2) == Mean(f=0)
    mt = make_rule("mixtailor", f=2, pool=["mean", "krum"], rng=1)
    assert mt.pool == (Mean(f=0), Krum(f=2, p=2.0))
    G = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    # buckets of 2 of 12 rows: the mean of the bucket means is the mean
    torch.testing.assert_close(make_rule("bucketing", base="mean", s=2, generator=0)(G), G.mean(0))
    torch.testing.assert_close(mt.pool[0](G), G.mean(0))
    with pytest.raises(ValueError, match=r"mean: f must be <= 0, got 2"):  # asked for explicitly: still refused
        make_rule("mean", f=2)


def test_mixtailor_pool_specs():
    mt = make_rule("mixtailor", f=1, pool="krum,comed", seed=1)
    assert len(mt.pool) == 32
    mt = make_rule("mixtailor", f=1, pool=["krum", {"name": "bucketing", "base": "comed", "s": 2}])
    assert mt.pool[1].name == "bucketing[base=comed,s=2]" and mt.pool[1].f == 1
    with pytest.raises(ValueError, match=r"paper_pool: families must be a subset of"):
        make_rule("mixtailor", f=1, pool="krum,median")
