"""``make_attack(name, **params)``: every attack by the name configs and the CLI use."""

from __future__ import annotations

import dataclasses

from ..rules.spec import parse_spec
from .alie import ALIE
from .fang_krum import FangKrum
from .fang_trim import FangTrim
from .ipm import IPM, RandomEps
from .labelflip import LabelFlip
from .mimic import Mimic
from .minmax import MinMax, MinSum
from .noise import GaussianNoise
from .signflip import SignFlip

_REGISTRY = {
    cls.family: cls
    for cls in (IPM, RandomEps, ALIE, FangKrum, FangTrim, MinMax, MinSum, Mimic, GaussianNoise, SignFlip, LabelFlip)
}
_LAZY = ("adaptive",)  # mixtailor_game.attacks.adaptive.AdaptiveAttack (calls the solvers)


def attack_names() -> list[str]:
    """Every name :func:`make_attack` accepts, sorted."""
    return sorted([*_REGISTRY, *_LAZY])


def _attack_class(name: str):
    if name == "adaptive":  # imported on first use: it calls the solvers
        from .adaptive import AdaptiveAttack

        return AdaptiveAttack
    if name not in _REGISTRY:
        raise ValueError(f"make_attack: name must be one of {attack_names()}, got {name!r}")
    return _REGISTRY[name]


def attack_params(name: str) -> list[str]:
    """The parameters attack ``name`` takes."""
    return [f.name for f in dataclasses.fields(_attack_class(name)) if f.init]


def make_attack(name: str, **params):
    """Build an attack: ``make_attack("ipm", eps=0.1)(view) -> Tensor[f, d]``.

    ``name`` may be a spec as attacks' names read (``"ipm[eps=0.1]"``, as the game's
    ``--attacks`` takes them); a parameter given both ways must agree. Unknown names
    or parameters raise ``ValueError`` listing the valid ones. ``"adaptive"`` is
    imported on first use from :mod:`mixtailor_game.attacks.adaptive`.

    >>> make_attack("ipm", eps=10.0).name
    'ipm[eps=10]'
    >>> make_attack("ipm[eps=10]") == make_attack("ipm", eps=10.0)
    True
    """
    if isinstance(name, str) and "[" in name:
        spec_name, spec_params = parse_spec(name)
        clash = sorted(k for k in set(spec_params) & set(params) if spec_params[k] != params[k])
        if clash:
            raise ValueError(f"make_attack: {clash} given in the spec {name!r} and as keywords with other values")
        name, params = spec_name, {**spec_params, **params}
    valid = attack_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"make_attack: {name} takes parameters {valid}, got unknown {unknown}")
    return _attack_class(name)(**params)
