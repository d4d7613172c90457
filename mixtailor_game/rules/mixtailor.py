"""MixTailor: draw one aggregation rule at random from a pool at every call (paper eq. (2))."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .._checks import check_int, fail
from .base import Rule, check_batch, check_gradients
from .bulyan import Bulyan
from .krum import Krum
from .geomed import Geomed
from .median import Comed
from .state import seeded_generator


@dataclass(frozen=True)
class RulePool:
    """What an informed adversary may know of a MixTailor defense: the rules and
    their probabilities, never the rule drawn at a step."""

    rules: tuple
    probs: tuple

    def __post_init__(self):
        rules = tuple(self.rules)
        if not rules:
            raise fail("MixTailor", "pool", "a non-empty sequence of rules", rules)
        for r in rules:
            if isinstance(r, str):  # a name has no f to be built with: say where names work
                raise TypeError(f"MixTailor: pool entries must be callable rules, got the name {r!r} "
                                "(make_rule(\"mixtailor\", f=..., pool=[...names...]) builds rules from names)")
            if not callable(r):
                raise TypeError(f"MixTailor: pool entries must be callable rules, got {type(r).__name__}")
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "probs", _check_probs(self.probs, len(rules)))

    @property
    def f(self) -> int:
        return max(int(getattr(r, "f", 0)) for r in self.rules)

    def check(self, n: int) -> None:
        for r in self.rules:
            if hasattr(r, "check"):
                r.check(n)


def _check_probs(probs, M: int) -> tuple:
    if probs is None:
        return tuple([1.0 / M] * M)
    want = f"a sequence of {M} numbers (one per rule)"
    if isinstance(probs, (str, bytes)) or not np.iterable(probs):
        raise fail("MixTailor", "probs", want, probs)
    try:
        arr = np.asarray(list(probs), dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("MixTailor", "probs", want, probs) from None
    if arr.ndim != 1 or arr.shape[0] != M:
        raise fail("MixTailor", "probs", want, tuple(arr.shape))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise fail("MixTailor", "probs", "finite and non-negative", arr.tolist())
    if abs(arr.sum() - 1.0) > 1e-6:
        raise fail("MixTailor", "probs", "summing to 1 (within 1e-6)", float(arr.sum()))
    return tuple((arr / arr.sum()).tolist())


def _uniform(rng) -> float:
    """One uniform draw in [0, 1) from any supported generator."""
    if isinstance(rng, np.random.Generator):
        return float(rng.random())
    if isinstance(rng, torch.Generator):
        return float(torch.rand((), generator=rng, dtype=torch.float64, device=rng.device))
    return rng.random()  # random.Random / random.SystemRandom


class MixTailor(Rule):
    """Mixed aggregation (paper eq. (2)): ``U = AGG_m(G)`` with ``m ~ probs``.

    The draw happens inside the call, after the gradients arrive. By default it
    comes from OS entropy (``random.SystemRandom``), so it does not depend on
    ``torch.manual_seed`` / ``numpy.random.seed`` and an adversary that knows
    the experiment seed cannot predict it. Passing ``rng`` (an int seed of a new
    ``torch.Generator``, a ``numpy.random.Generator``, ``torch.Generator`` or
    ``random.Random``) makes
    the draws reproducible, and therefore predictable to whoever knows the
    seed: use it for experiments, not for defense. ``probs`` defaults to
    uniform (the paper); arbitrary probabilities are honoured (the authors'
    code ignores them). ``last_index`` / ``last_rule`` give the rule drawn by
    the latest call, for logging; ``public`` is what an adversary may know.
    ``state_dict()`` / ``load_state_dict(d)`` save and restore the draw's
    generator state (checkpoints, :mod:`.state`).
    """

    family = "mixtailor"

    def __init__(self, pool: Sequence, probs=None, rng=None):
        self._pool = RulePool(tuple(pool), probs)
        rng = seeded_generator("MixTailor", "rng", rng)  # an int seed, as paper_pool takes one
        if rng is None:
            rng = random.SystemRandom()
        elif not isinstance(rng, (np.random.Generator, torch.Generator, random.Random)):
            raise TypeError(
                "MixTailor: rng must be None, an int seed, numpy.random.Generator, torch.Generator or "
                f"random.Random, got {type(rng).__name__}"
            )
        self.rng = rng
        self._cum = np.cumsum(self._pool.probs)
        self.last_index: int | None = None

    @property
    def pool(self) -> tuple:
        return self._pool.rules

    @property
    def probs(self) -> tuple:
        return self._pool.probs

    @property
    def public(self) -> RulePool:
        return self._pool

    @property
    def f(self) -> int:
        return self._pool.f

    @property
    def name(self) -> str:
        return f"mixtailor[M={len(self.pool)}]"

    @property
    def last_rule(self):
        return None if self.last_index is None else self.pool[self.last_index]

    def __repr__(self) -> str:
        return f"MixTailor(M={len(self.pool)}, probs={'uniform' if len(set(self.probs)) == 1 else self.probs})"

    def check(self, n: int) -> None:
        """Every rule of the pool must be in its regime (a draw must never fail on ``n``)."""
        try:
            self._pool.check(n)
        except ValueError as exc:
            raise ValueError(f"mixtailor: needs n in the regime of every pool rule ({exc}), "
                             f"got n={n}, f={self.f}") from None

    def draw(self) -> int:
        """Draw the index of the next rule (also stored in ``last_index``)."""
        u = _uniform(self.rng)
        idx = int(np.searchsorted(self._cum, u, side="right"))
        idx = min(idx, len(self.pool) - 1)
        while self.probs[idx] == 0.0:  # float round-off at the top end of cum
            idx -= 1
        self.last_index = idx
        return idx

    def state_dict(self) -> dict:
        """``{"rng": generator state | None, "last_index": int | None}`` for checkpoints.

        ``rng`` is ``None`` for the default OS-entropy draw (nothing to replay).
        The pool's own stateful rules are saved by :func:`.state.collect_state`.
        """
        from .state import generator_state

        return {"rng": generator_state(self.rng), "last_index": self.last_index}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (the draw continues where it stopped)."""
        from .state import set_generator_state

        set_generator_state(self.rng, state.get("rng"))
        idx = state.get("last_index")
        if idx is not None and not (isinstance(idx, int) and 0 <= idx < len(self.pool)):
            raise fail("MixTailor", "state last_index", f"None or an integer in [0, {len(self.pool)})", idx)
        self.last_index = idx

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        check_gradients(G, "mixtailor")
        self.check(G.shape[0])
        return self.pool[self.draw()](G)

    def batched(self, Gb: torch.Tensor) -> torch.Tensor:
        """One independent draw per batch element."""
        return torch.stack([self(G) for G in check_batch(Gb, "mixtailor").unbind(0)])


def paper_pool(f: int, rng=None) -> list:
    """The paper's pool of 64 rules (Section 5).

    16 Krum, 16 comed, 16 geometric medians and 16 Bulyan, where Bulyan takes
    each of the 4 x 4 (selection, aggregation) pairs from {krum, average,
    geomed, comed} once. Every rule with a norm (Krum, geomed, Bulyan) gets an
    integer ``p`` drawn uniformly from 1..16 with ``rng`` (a
    ``numpy.random.Generator``, a ``torch.Generator`` or an int seed; ``None``
    draws fresh norms).

    Coinciding entries: the 16 comed entries are identical (comed has no norm);
    Krum or geomed entries that draw the same ``p`` are identical; a geomed
    with ``p = 1`` equals comed (the l_1 objective separates by coordinate);
    Bulyan(comed, comed) depends on ``p`` only through the nearest-row choice.
    Bulyan needs ``n >= 4f + 3``, so with f = 2 the pool needs n >= 11; the
    paper drops Bulyan for f = 4 at n = 12 (use :func:`pool_from_families` with
    ``families=("krum", "comed", "geomed")`` for that).
    """
    return pool_from_families(f, ("krum", "comed", "geomed", "bulyan"), rng)


def pool_from_families(f: int, families: Sequence[str], rng=None) -> list:
    """The paper's pool restricted to some families (16 rules each), e.g. for Fig. 4b / 5."""
    f = check_int("paper_pool", "f", f, low=0)
    allowed = ("krum", "comed", "geomed", "bulyan")
    for fam in families:
        if fam not in allowed:
            raise fail("paper_pool", "families", f"a subset of {allowed}", tuple(families))
    if isinstance(rng, torch.Generator):  # as partition() and MixTailor take one
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device).item()))
    elif rng is not None and not isinstance(rng, np.random.Generator) and (
            isinstance(rng, bool) or not isinstance(rng, (int, np.integer))):
        raise TypeError("paper_pool: rng must be None, an int seed, a numpy.random.Generator or a "
                        f"torch.Generator, got {type(rng).__name__}")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    pool: list = []
    for fam in families:
        norms = [float(x) for x in rng.integers(1, 17, size=16)]
        if fam == "krum":
            pool += [Krum(f=f, p=p) for p in norms]
        elif fam == "comed":
            pool += [Comed(f=f) for _ in norms]
        elif fam == "geomed":
            pool += [Geomed(f=f, p=p) for p in norms]
        else:
            pairs = [(s, a) for s in ("krum", "average", "geomed", "comed")
                     for a in ("krum", "average", "geomed", "comed")]
            pool += [Bulyan(f=f, select=s, aggregate=a, p=p) for (s, a), p in zip(pairs, norms)]
    return pool
