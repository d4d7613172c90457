"""``make_rule(name, **params)``: every rule by the name the CLI and configs use."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

from .bucketing import Bucketing
from .bulyan import Bulyan
from .clipping import CenteredClipping
from .geomed import Geomed
from .krum import Krum, MultiKrum
from .mean import Mean
from .median import Comed
from .mixtailor import MixTailor, paper_pool, pool_from_families
from .nnm import NNM
from .spec import parse_spec
from .trimmed import TrimmedMean

_REGISTRY: dict[str, Callable] = {}


def register(name: str, factory: Callable) -> None:
    """Add a rule factory under ``name`` (a dataclass or a function of keyword params)."""
    _REGISTRY[name] = factory


def rule_names() -> list[str]:
    """Every name :func:`make_rule` accepts, sorted."""
    return sorted(_REGISTRY)


def _params_of(factory) -> list[str]:
    if dataclasses.is_dataclass(factory):
        return [f.name for f in dataclasses.fields(factory) if f.init]
    return [p for p in inspect.signature(factory).parameters]


def make_rule(name: str, **params):
    """Build a rule by name: ``make_rule("krum", f=2, p=3.0)(G)``.

    Unknown names or parameters raise ``ValueError`` with the valid ones.
    Nested rules (wrappers, mixtailor pools) accept a rule object or a name.
    """
    if name not in _REGISTRY:
        raise ValueError(f"make_rule: name must be one of {rule_names()}, got {name!r}")
    factory = _REGISTRY[name]
    valid = _params_of(factory)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"make_rule: {name} takes parameters {valid}, got unknown {unknown}")
    return factory(**params)


def as_rule(spec, f: int | None = None):
    """A rule object from a rule object, a name or a dict with a ``"name"``.

    ``"krum"`` is ``make_rule("krum", f=f)``; ``{"name": "krum", "p": 3}`` and the spec
    ``"krum[p=3]"`` (a rule's ``.name``) are ``make_rule("krum", f=f, p=3)`` (a dict's
    or spec's own ``"f"`` wins). ``f`` is passed
    on only to rules that take one (as ``b`` to ``trimmed_mean``), not to ``mean``,
    which tolerates no Byzantine row by definition (``Mean(f=0)``, as the trainer
    builds it: a pool with the mean was refused). Rule objects (any callable) pass through.
    """
    if isinstance(spec, str):
        # a spec as rule names read ("krum[p=3]", "nnm[base=geomed[p=3]]"): the game
        # writes names into probs files and --pool reads them back
        name, params = parse_spec(spec) if "[" in spec else (spec, {})
        spec = {"name": name, **params}
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"as_rule: a rule dict must have a 'name' string, got {spec!r}")
        factory = _REGISTRY.get(name)
        if f is not None and "f" not in params and factory is not None and name != "mean":
            accepted = _params_of(factory)
            if "f" in accepted:
                params["f"] = f
            elif "b" in accepted and "b" not in params:  # trimmed_mean(b) tolerates b rows
                params["b"] = f
        return make_rule(name, **params)
    if callable(spec):
        return spec
    raise TypeError(f"as_rule: expected a rule, a rule name or a dict, got {type(spec).__name__}")


def _mixtailor(f: int = 0, pool="paper", probs=None, seed=None, rng=None):
    """``pool``: "paper" (64 rules), a comma list of families of the paper pool
    ("krum,comed,geomed"), or a sequence of rules / rule names. ``seed`` draws the
    pool's norms; ``rng`` seeds the per-step draw (predictable: experiments only): a
    generator MixTailor takes, or an int seed of a new ``torch.Generator`` (MixTailor
    takes one too; a config can only hold a number)."""
    if isinstance(pool, str):
        if pool == "paper":
            rules = paper_pool(f, seed)
        else:
            rules = pool_from_families(f, [s.strip() for s in pool.split(",") if s.strip()], seed)
    else:
        rules = [as_rule(r, f) for r in pool]
    return MixTailor(rules, probs=probs, rng=rng)


register("mean", Mean)
register("comed", Comed)
register("trimmed_mean", TrimmedMean)
register("krum", Krum)
register("multi_krum", MultiKrum)
register("geomed", Geomed)
register("bulyan", Bulyan)
register("mixtailor", _mixtailor)
register("centered_clipping", CenteredClipping)
register("bucketing", Bucketing)
register("nnm", NNM)
