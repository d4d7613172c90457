"""State of stateful rules and attacks, collected and restored by a stable path.

The protocol: an object whose behaviour depends on what happened at earlier
calls implements

    ``state_dict() -> dict``   tensors, plain Python values, numpy arrays and
                               generator states (see :func:`generator_state`);
    ``load_state_dict(d)``     puts that state back (``d`` as returned above).

Implemented by :class:`~mixtailor_game.rules.clipping.CenteredClipping` (its
center) and :class:`~mixtailor_game.rules.mixtailor.MixTailor` (its draw
generator and the last index drawn). Objects without these methods but with a
public ``generator`` or ``rng`` attribute holding a seeded generator
(bucketing's permutation generator) are handled here through that attribute.

:func:`collect_state` walks an object tree and returns ``{path: state}`` for
every stateful object in it; :func:`restore_state` puts such a dict back into
an identically built tree. Paths are stable for a given configuration:
``""`` is the root, ``"base"`` a wrapper's base rule (centered clipping,
bucketing, NNM: any dataclass field that holds a rule), ``"pool.3"`` the
fourth rule of a MixTailor pool, joined with dots (``"base.pool.3.base"``).
An object reachable by two paths (the same rule object twice in a pool) is
kept once, under its first path. The walker is duck-typed, so it serves
attacks (layer 3) as well as rules: anything with ``state_dict`` /
``load_state_dict`` is stateful.

>>> from mixtailor_game.rules import CenteredClipping, Comed, MixTailor
>>> m = MixTailor([CenteredClipping(base="comed", tau=1.0), Comed()], rng=torch.Generator().manual_seed(0))
>>> sorted(collect_state(m))
['', 'pool.0']
"""

from __future__ import annotations

import dataclasses
import random
from numbers import Integral
from typing import Any, Iterator

import numpy as np
import torch

from .._checks import check_int

GENERATOR_ATTRS = ("generator", "rng")


# --------------------------------------------------------------------------- generators
def seeded_generator(where: str, param: str, value):
    """``value`` itself, or a new CPU ``torch.Generator`` seeded with it when it is an int
    seed (``>= 0``; ``bool`` is not one): what an int passed as a generator means,
    since a config can only hold a number (bucketing, MixTailor, ``make_view``)."""
    if isinstance(value, Integral) and not isinstance(value, bool):
        return torch.Generator().manual_seed(check_int(where, param, value, low=0))
    return value


def generator_state(gen) -> dict | None:
    """A serializable snapshot of ``gen``'s state, or ``None`` when it has none to keep.

    ``torch.Generator`` -> ``{"kind": "torch", "state": ByteTensor}``;
    ``numpy.random.Generator`` -> ``{"kind": "numpy", "state": dict}`` (its bit
    generator's state: plain Python ints and strings); ``random.Random`` ->
    ``{"kind": "random", "state": tuple}``. ``None`` and
    ``random.SystemRandom`` (OS entropy, nothing to replay) give ``None``.
    """
    if gen is None or isinstance(gen, random.SystemRandom):
        return None
    if isinstance(gen, torch.Generator):
        return {"kind": "torch", "state": gen.get_state()}
    if isinstance(gen, np.random.Generator):
        return {"kind": "numpy", "state": gen.bit_generator.state}
    if isinstance(gen, random.Random):
        return {"kind": "random", "state": gen.getstate()}
    raise TypeError(f"generator_state: unsupported generator type {type(gen).__name__}")


def set_generator_state(gen, state: dict | None) -> None:
    """Restore ``gen`` from :func:`generator_state`'s output (``None``: nothing to do)."""
    if state is None or gen is None or isinstance(gen, random.SystemRandom):
        return
    kind = state.get("kind") if isinstance(state, dict) else None
    expected = ("torch" if isinstance(gen, torch.Generator) else "numpy" if isinstance(gen, np.random.Generator)
                else "random" if isinstance(gen, random.Random) else None)
    if kind != expected:
        raise ValueError(f"set_generator_state: state of kind {kind!r} cannot restore a {type(gen).__name__}")
    if kind == "torch":
        gen.set_state(state["state"])
    elif kind == "numpy":
        gen.bit_generator.state = state["state"]
    else:
        gen.setstate(state["state"])


# --------------------------------------------------------------------------- the walk
def has_state_methods(obj) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


def _is_node(obj) -> bool:
    """Worth walking into: a rule/attack-like object, not a tensor, string, number or generator."""
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, torch.Tensor, np.ndarray, torch.Generator,
                                       np.random.Generator, random.Random, type)):
        return False
    return callable(obj) or has_state_methods(obj) or dataclasses.is_dataclass(obj)


def _children(obj) -> Iterator[tuple[str, Any]]:
    """The sub-objects of ``obj`` that may hold state, with their path component."""
    pool = getattr(obj, "pool", None) if not dataclasses.is_dataclass(obj) else None
    if isinstance(pool, (tuple, list)):  # MixTailor (and any pool-like rule)
        for i, r in enumerate(pool):
            yield f"pool.{i}", r
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for fld in dataclasses.fields(obj):
            if fld.name.startswith("_") or fld.name in GENERATOR_ATTRS:
                continue
            value = getattr(obj, fld.name, None)
            if isinstance(value, (tuple, list)):
                for i, v in enumerate(value):
                    if _is_node(v):
                        yield f"{fld.name}.{i}", v
            elif _is_node(value):
                yield fld.name, value


def _generator_attrs(obj) -> dict:
    out = {}
    for attr in GENERATOR_ATTRS:
        gen = getattr(obj, attr, None)
        if isinstance(gen, (torch.Generator, np.random.Generator, random.Random)) and \
                not isinstance(gen, random.SystemRandom):
            out[attr] = gen
    return out


def iter_stateful(obj, prefix: str = "", _seen: set | None = None) -> Iterator[tuple[str, Any]]:
    """``(path, object)`` for every object of the tree under ``obj`` that holds state
    (has ``state_dict``/``load_state_dict`` or a seeded ``generator``/``rng``)."""
    seen = set() if _seen is None else _seen
    if obj is None or id(obj) in seen:
        return
    seen.add(id(obj))
    if has_state_methods(obj) or _generator_attrs(obj):
        yield prefix, obj
    for name, child in _children(obj):
        yield from iter_stateful(child, f"{prefix}.{name}" if prefix else name, seen)


def object_state(obj) -> dict:
    """The state of one object: its ``state_dict()``, or its seeded generators' states."""
    if has_state_methods(obj):
        return obj.state_dict()
    return {attr: generator_state(gen) for attr, gen in _generator_attrs(obj).items()}


def load_object_state(obj, state: dict) -> None:
    """Inverse of :func:`object_state`."""
    if has_state_methods(obj):
        obj.load_state_dict(state)
        return
    gens = _generator_attrs(obj)
    for attr, s in state.items():
        if attr in gens:
            set_generator_state(gens[attr], s)


def collect_state(obj) -> dict:
    """``{path: state}`` for every stateful object in the tree under ``obj`` (``{}``: none)."""
    return {path: object_state(o) for path, o in iter_stateful(obj)}


def restore_state(obj, states: dict) -> list[str]:
    """Put ``states`` (from :func:`collect_state` on an identically built tree) back.

    Returns the list of mismatched paths, each as ``"missing: path"`` (a
    stateful object of ``obj`` with no saved state: it keeps its fresh state)
    or ``"unused: path"`` (a saved state with no object at that path: ignored),
    for the caller to warn about. Raises ``ValueError`` when a state cannot be
    loaded into the object at its path (another type of generator, a center of
    another width, ...).
    """
    if not isinstance(states, dict):
        raise TypeError(f"restore_state: states must be a dict of path -> state, got {type(states).__name__}")
    problems = []
    here = dict(iter_stateful(obj))
    for path, o in here.items():
        if path not in states:
            problems.append(f"missing: {path or '<root>'}")
            continue
        try:
            load_object_state(o, states[path])
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise ValueError(f"restore_state: cannot restore the state at {path or '<root>'!r} "
                             f"({type(o).__name__}): {exc}") from None
    problems += [f"unused: {p or '<root>'}" for p in states if p not in here]
    return problems
