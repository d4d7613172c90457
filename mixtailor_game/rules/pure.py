"""Pure stand-ins for the rules whose output depends on more than ``G``.

A solver evaluates a rule hundreds of times at hypothetical rows. Three rules
would make that objective depend on the history of those calls, and change
the object the caller holds (in training: the server's own rule):

- :class:`~.clipping.CenteredClipping` aggregates from its stored center (the
  previous aggregate) and stores its output as the next one;
- :class:`~.bucketing.Bucketing` draws a fresh permutation (or resampling
  assignment) from its generator at every call;
- :class:`~.mixtailor.MixTailor` draws a fresh rule at every call.

:func:`pure` returns a rule that is a deterministic function of ``G`` and
never touches the original:

- centered clipping -> :class:`ClippingAt`: the original's next call, from a
  copy of its center taken now (``base(G)`` when it has none), stored nowhere;
- bucketing -> :class:`AveragedBucketing`: the mean of the base rule's outputs
  over ``draws`` fixed draws (a generator seeded with ``seed``, the same draws
  for every ``G``). Its inner product with any vector is the sample average of
  the inner products, the sample-average estimate of the expectation over
  draws that an attacker who knows the rule but not the draw faces;
- MixTailor -> :class:`MixtureMean`: ``sum_m p_m AGG_m(G)``, whose inner
  product with any vector is exactly ``E_m <AGG_m(G), u>``;
- NNM / bucketing / clipping get a pure base; every other rule is returned
  as it is (the same object).

The averages are exact for the objectives linear in the aggregate (the inner
products of every problem in :mod:`solvers`) and for bases inside the linear
wrappers (NNM, bucketing). Centered clipping started from a random base's
output (no center yet) is not linear in that start: there the mixture mean
starts it, an approximation.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_int, fail
from .base import Rule, check_gradients, mean_rows
from .bucketing import Bucketing, bucket_means, bucket_permutation, resample_assignment, resample_means
from .clipping import CenteredClipping, centered_clip, initial_center
from .mixtailor import MixTailor, RulePool
from .nnm import NNM

# Draws averaged for a bucketing rule by default: the sample average's standard error is
# a quarter of one draw's spread.
DRAWS = 16


@dataclass(frozen=True, eq=False)
class ClippingAt(Rule):
    """Centered clipping from a fixed ``center`` (``None``: from ``base(G)``), pure: the
    output of ``rule``'s next call, without storing it. ``rule``'s base is used as
    given (pass a pure one)."""

    family: ClassVar[str] = "centered_clipping"
    rule: Any = None
    center: Any = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if not isinstance(self.rule, CenteredClipping):
            raise TypeError(f"ClippingAt: rule must be a CenteredClipping, got {type(self.rule).__name__}")
        c = self.center
        if c is not None:
            if not isinstance(c, torch.Tensor) or c.dim() != 1 or not c.is_floating_point():
                raise fail("ClippingAt", "center", "None or a floating Tensor[d]", getattr(c, "shape", type(c)))
            object.__setattr__(self, "center", c.detach().clone())

    @property
    def f(self) -> int:
        return self.rule.f

    @property
    def name(self) -> str:
        return self.rule.name

    def check(self, n: int) -> None:
        self.rule.check(n)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "centered_clipping")
        self.check(G.shape[0])
        if self.center is None:
            v0 = initial_center(self.rule.base, G)
        else:
            if self.center.shape != G.shape[1:]:
                raise fail("centered_clipping", "G", f"of width {self.center.shape[0]} like the stored center",
                           tuple(G.shape))
            v0 = self.center.to(dtype=G.dtype, device=G.device)
        return centered_clip(G, v0, self.rule.tau, self.rule.iters)


@dataclass(frozen=True, eq=False)
class AveragedBucketing(Rule):
    """The mean of ``rule``'s base outputs over ``draws`` fixed draws (bucketing's
    permutations, or resampling's assignments, drawn from a CPU generator seeded
    with ``seed`` in the order the rule itself would draw them). ``base``: the
    base rule to run (default ``rule.base``; pass a pure one)."""

    family: ClassVar[str] = "bucketing"
    rule: Any = None
    draws: int = DRAWS
    seed: int = 0
    base: Any = None

    def __post_init__(self):
        if not isinstance(self.rule, Bucketing):
            raise TypeError(f"AveragedBucketing: rule must be a Bucketing, got {type(self.rule).__name__}")
        check_int("AveragedBucketing", "draws", self.draws, low=1)
        check_int("AveragedBucketing", "seed", self.seed, low=0)
        if self.base is None:
            object.__setattr__(self, "base", self.rule.base)

    @property
    def f(self) -> int:
        return self.rule.f

    @property
    def name(self) -> str:
        return f"{self.rule.name}@draws={self.draws},seed={self.seed}"

    def check(self, n: int) -> None:
        self.rule.check(n)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "bucketing")
        n = G.shape[0]
        self.check(n)
        gen = torch.Generator().manual_seed(self.seed)
        s = self.rule.s
        outs = []
        for _ in range(self.draws):
            if self.rule.mode == "resample":
                rows = resample_means(G, s, resample_assignment(n, s, gen))
            else:
                rows = bucket_means(G, s, bucket_permutation(n, gen))
            outs.append(self.base(rows))
        return mean_rows(torch.stack(outs))


@dataclass(frozen=True, eq=False)
class MixtureMean(Rule):
    """``sum_m probs[m] * rules[m](G)`` (zero-probability rules are not run), summed in
    float64: MixTailor's output in expectation over its draw."""

    family: ClassVar[str] = "mixture_mean"
    rules: tuple = ()
    probs: tuple = ()

    def __post_init__(self):
        pool = RulePool(tuple(self.rules), tuple(self.probs))  # checks both
        object.__setattr__(self, "rules", pool.rules)
        object.__setattr__(self, "probs", pool.probs)

    @property
    def f(self) -> int:
        return max(int(getattr(r, "f", 0)) for r in self.rules)

    @property
    def name(self) -> str:
        return f"mixture_mean[M={len(self.rules)}]"

    def check(self, n: int) -> None:
        for r in self.rules:
            if hasattr(r, "check"):
                r.check(n)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "mixture_mean")
        total = None
        for r, p in zip(self.rules, self.probs):
            if p == 0.0:
                continue
            term = p * r(G).double()
            total = term if total is None else total + term
        return total.to(G.dtype)


def pure(rule, draws: int | None = DRAWS, seed: int = 0):
    """A deterministic, side-effect-free stand-in for ``rule`` (see the module docstring);
    ``rule`` itself when it already is one. ``draws``, ``seed``: for bucketing.
    ``draws=None`` removes state only: bucketing and MixTailor keep drawing (a
    Monte Carlo over draws, as the game's payoffs are), from copies of their
    generators (the caller's do not advance), around pure bases and pool rules."""
    if draws is not None:
        draws = check_int("pure", "draws", draws, low=1)
    if isinstance(rule, MixTailor):
        if draws is None:  # a new object: a call also records last_index
            return MixTailor(tuple(pure(r, None, seed) for r in rule.pool), rule.probs,
                             rng=_copy_generator(rule.rng))
        rule = rule.public
    if isinstance(rule, RulePool):
        return MixtureMean(tuple(pure(r, draws, seed) for r in rule.rules), rule.probs)
    if isinstance(rule, CenteredClipping):
        base = pure(rule.base, draws, seed)
        # dataclasses.replace would drop the center (init=False): keep it separately
        inner = rule if base is rule.base else dataclasses.replace(rule, base=base)
        return ClippingAt(inner, rule.center_)
    if isinstance(rule, (Bucketing, NNM)):
        base = pure(rule.base, draws, seed)
        if isinstance(rule, Bucketing):
            if draws is not None:
                return AveragedBucketing(rule, draws, seed, base)
            if rule.generator is not None:  # OS entropy (None) has no state to protect
                return dataclasses.replace(rule, base=base, generator=_copy_generator(rule.generator))
        return rule if base is rule.base else dataclasses.replace(rule, base=base)
    return rule


def _copy_generator(gen):
    """An independent generator in ``gen``'s current state (OS entropy as it is)."""
    if isinstance(gen, torch.Generator):
        out = torch.Generator(device=gen.device)
        out.set_state(gen.get_state())
        return out
    if isinstance(gen, random.SystemRandom) or gen is None:
        return gen
    return copy.deepcopy(gen)  # numpy.random.Generator, random.Random
