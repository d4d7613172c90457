"""What the adversary sees at one step: :class:`AdversaryView` and :func:`make_view`.

Knowledge levels (paper Section 2.1, A.1.2, A.1.5):

- ``"full"`` (omniscient): all ``n - f`` honest rows;
- ``"partial:K"``: the first ``K`` honest rows (``0 <= K <= n - f``);
- ``"own"``: no honest row, only what the Byzantine workers computed on their
  own data (``own``, ``Tensor[f, d]``), as in Fang et al. 2020's
  partial-knowledge attacks.

The defense the adversary knows is one rule or a pool with probabilities; a
``MixTailor`` object is reduced to its public pool (``.public``), so an attack
can never read the generator that draws the rule of this step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .._checks import check_int, fail
from ..rules import MixTailor, RulePool
from ..rules.base import finite_rows
from ..rules.state import seeded_generator

KNOWLEDGE = ("full", "partial:K", "own")


def _check_rows(where: str, param: str, X, rows: int | None, d: int | None) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{where}: {param} must be a torch.Tensor, got {type(X).__name__}")
    if X.dim() != 2:
        raise fail(where, param, "2-D of shape (rows, d)", tuple(X.shape))
    if not X.is_floating_point():
        raise TypeError(f"{where}: {param} must have a floating dtype, got {X.dtype}")
    if rows is not None and X.shape[0] != rows:
        raise fail(where, param, f"of shape ({rows}, d)", tuple(X.shape))
    if d is not None and X.shape[1] != d:
        raise fail(where, param, f"of shape (rows, {d})", tuple(X.shape))
    if X.shape[1] < 1:
        raise fail(where, param, "of dimension d >= 1", tuple(X.shape))
    return X


@dataclass(frozen=True)
class AdversaryView:
    """The information an attack may use at one step.

    ``honest``: ``Tensor[k, d]``, the honest rows the adversary sees
    (``k = n - f`` omniscient, ``0 < k < n - f`` partial, ``k = 0`` own data only);
    ``n``: number of workers; ``f >= 1``: Byzantine workers (``n > f``, ``k <= n - f``);
    ``defense``: ``None``, a rule, or a :class:`~mixtailor_game.rules.RulePool`
    (a ``MixTailor`` is replaced by its public pool);
    ``model``: the previous global model ``w_0`` (``Tensor[d]``), needed by
    model-space attacks (paper A.1.3-A.1.5);
    ``step``: the training step; ``rng``: a ``torch.Generator`` or ``None``;
    ``own``: ``Tensor[f, d]`` or ``None``, the Byzantine workers' own honest rows.

    Errors: ``TypeError`` / ``ValueError`` naming the field, e.g.
    ``"AdversaryView: k must be <= n - f = 10, got 11"``.
    """

    honest: torch.Tensor
    n: int
    f: int
    defense: object = None
    model: torch.Tensor | None = None
    step: int = 0
    rng: torch.Generator | None = None
    own: torch.Tensor | None = None

    def __post_init__(self):
        w = "AdversaryView"
        honest = _check_rows(w, "honest", self.honest, None, None)
        d = honest.shape[1]
        n = check_int(w, "n", self.n, low=2)
        f = check_int(w, "f", self.f, low=1, high=n - 1)
        k = honest.shape[0]
        if k > n - f:
            raise fail(w, "k", f"<= n - f = {n - f}", k)
        check_int(w, "step", self.step, low=0)
        if self.rng is not None and not isinstance(self.rng, torch.Generator):
            raise TypeError(f"{w}: rng must be None or a torch.Generator, got {type(self.rng).__name__}")
        if self.own is not None:
            _check_rows(w, "own", self.own, f, d)
        if self.model is not None:
            if not isinstance(self.model, torch.Tensor):
                raise TypeError(f"{w}: model must be a torch.Tensor of shape (d,), got {type(self.model).__name__}")
            if tuple(self.model.shape) != (d,):
                raise fail(w, "model", f"of shape ({d},)", tuple(self.model.shape))
        defense = _public(self.defense)
        if defense is not None and not (isinstance(defense, RulePool) or callable(defense)):
            raise TypeError(f"{w}: defense must be None, a rule or a RulePool, got {type(defense).__name__}")
        object.__setattr__(self, "defense", defense)

    @property
    def k(self) -> int:
        """Number of honest rows the adversary sees."""
        return int(self.honest.shape[0])

    @property
    def d(self) -> int:
        return int(self.honest.shape[1])

    @property
    def knowledge(self) -> str:
        """``"full"`` (k = n - f), ``"partial"`` (0 < k < n - f) or ``"own"`` (k = 0)."""
        if self.k == self.n - self.f:
            return "full"
        return "partial" if self.k > 0 else "own"

    def visible(self, where: str) -> torch.Tensor:
        """The rows an attack estimates honest statistics from: the visible honest
        rows, or ``own`` when none is visible (raises ``ValueError`` if neither).

        Rows with a NaN / Inf entry are left out (one such row made every Byzantine row
        of IPM, ALIE, min-max, sign flip and Fang-trim NaN, silently: a NaN attack,
        not the one asked for); ``ValueError`` when no finite row is left."""
        if self.k > 0:
            rows = self.honest
        elif self.own is not None:
            rows = self.own
        else:
            raise ValueError(f"{where}: needs visible honest rows or view.own, got k=0 and own=None")
        ok = finite_rows(rows)
        if bool(ok.all()):
            return rows
        if not bool(ok.any()):
            raise ValueError(f"{where}: needs at least one finite visible row, got none ({rows.shape[0]} rows, "
                             "all with NaN/Inf)")
        return rows[ok]

    def generator(self) -> torch.Generator:
        """``rng`` if given; otherwise a fresh CPU generator seeded with ``step``.

        The default is deterministic on purpose (reproducible runs without global
        state), so two attacks at the same step draw the same numbers; pass
        ``rng`` for independent draws.
        """
        if self.rng is not None:
            return self.rng
        return torch.Generator().manual_seed(1_000_003 + self.step)

    def replace(self, **changes) -> "AdversaryView":
        return dataclasses.replace(self, **changes)


def _public(defense):
    """What the adversary may know of ``defense``: a MixTailor, also one inside a
    wrapper (bucketing, clipping, NNM: their ``base``), becomes its pool of rules
    and probabilities, as the trainer passes it; its generator stays hidden."""
    rule, seen = defense, set()
    while rule is not None and id(rule) not in seen:
        if isinstance(rule, MixTailor):
            return rule.public
        seen.add(id(rule))
        rule = getattr(rule, "base", None)
    return defense


def parse_knowledge(knowledge, m: int) -> int:
    """Number of honest rows a knowledge spec keeps out of ``m = n - f``."""
    w = "make_view"
    if not isinstance(knowledge, str):
        raise TypeError(f"{w}: knowledge must be a string in {KNOWLEDGE}, got {type(knowledge).__name__}")
    if knowledge == "full":
        return m
    if knowledge == "own":
        return 0
    if knowledge.startswith("partial:"):
        text = knowledge[len("partial:"):]
        try:
            K = int(text)
        except ValueError:
            raise fail(w, "knowledge", "'full', 'partial:K' (K an integer) or 'own'", knowledge) from None
        if not 0 <= K <= m:
            raise fail(w, "knowledge", f"'partial:K' with 0 <= K <= n - f = {m}", knowledge)
        return K
    raise fail(w, "knowledge", "'full', 'partial:K' or 'own'", knowledge)


def make_view(honest_all, *, n, f, knowledge="full", defense=None, model=None, step=0, rng=None, own=None):
    """Build the :class:`AdversaryView` a knowledge level allows.

    ``honest_all``: ``Tensor[n - f, d]``, every honest row of the step;
    ``knowledge``: ``"full"``, ``"partial:K"`` (keeps the first ``K`` rows) or
    ``"own"`` (keeps none; attacks then use ``own``); ``rng``: ``None``, a
    ``torch.Generator`` or an int seed of a new one.

    >>> v = make_view(torch.zeros(10, 3), n=12, f=2, knowledge="partial:4")
    >>> (v.k, v.knowledge)
    (4, 'partial')
    """
    n = check_int("make_view", "n", n, low=2)
    f = check_int("make_view", "f", f, low=1, high=n - 1)
    _check_rows("make_view", "honest_all", honest_all, n - f, None)
    K = parse_knowledge(knowledge, n - f)
    # copies: a slice would keep every honest row reachable through its storage, and an
    # attack writing into its view would change the rows the server aggregates
    own = own.clone() if isinstance(own, torch.Tensor) else own
    rng = seeded_generator("make_view", "rng", rng)  # an int seed, as MixTailor takes one
    return AdversaryView(honest_all[:K].clone(), n, f, defense=defense, model=model, step=step, rng=rng, own=own)
