"""The attack problems of the paper as frozen dataclasses (Section 2.3, A.1, A.4).

Symbols: ``V`` the honest rows the adversary sees (``Tensor[k, d]``), ``f`` the
Byzantine rows ``B = (B_1, .., B_f)``, ``n`` workers in all, ``AGG_m`` the rules
of a pool, ``mu = mean(V)``: the mean of the paper's ``n`` rows ``V_1..V_n``
without attack, i.e. of ``own`` and the (completed) honest rows; with ``own``
None (its default is their mean) that is the honest mean.

- :class:`TailoredAttack` (Section 2.3, A.1): ``max lambda`` s.t.
  ``AGG(B, V) = -lambda g`` with ``g = AGG(no attack)`` (objective ``"lambda"``),
  or the relaxed ``min <AGG(B, V), g>`` (objective ``"inner"``).
- :class:`P1` / :class:`P2` (A.4): ``min_B max_m <AGG_m(B, V), mu>`` s.t.
  ``||B_i - B_j|| >= eps``; P2 is the epigraph form with ``xi``; ``xi < 0`` is a
  certificate that the attack defeats every rule of the pool (not with unseen
  honest rows: there ``xi`` is on the adversary's estimate, A.1.2).
- :class:`P3` (A.4): P1 restricted to ``B_i = -lambda sum_i V_i`` (a 1-D problem).
- :class:`ExpectedValue`: ``min_B sum_m p_m <AGG_m(B, V), mu>``: the natural
  attacker of MixTailor when it knows the pool and its probabilities.

Common keyword-only fields (paper A.1.2-A.1.5, footnote 6 for P1-P3):
``knowledge`` = ``"full"`` or ``("partial", k)`` (or ``"partial:k"``, the attacks'
spelling): the first ``k`` honest rows are
seen, the ``n - f - k`` unseen ones are replaced by the mean of the rows the
adversary has, ``own`` and the seen ones (A.1.2's ``g_bar``; the seen ones alone
when ``own`` is None; we count ``k`` in honest rows, the paper counts worker
indices including the ``f`` Byzantine ones); ``space`` = ``"gradient"`` or ``"model"`` (rows are models,
``model = w_0``, the target direction is ``s = AGG(no attack) - w_0`` and
``w' = w_0 - lambda s``, A.1.3); ``n`` (default ``f + len(honest)``); ``own``:
the Byzantine workers' own honest rows ``Tensor[f, d]`` (the rows ``g_1..g_f``
of the paper's no-attack aggregate; default: the mean of the seen rows).

Structures: ``"optimal"`` (f free rows, A.1), ``"suboptimal"`` (one free row
sent f times, A.1.1), ``"line"`` (the row ``w_0 - lambda * sum_i (V_i - w_0)``
sent f times, the restriction of P3).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from functools import cached_property

import torch

from mixtailor_game._checks import as_gradients, check_int, check_real, check_regime, fail
from mixtailor_game.rules.pure import pure
from mixtailor_game.rules.registry import as_rule

STRUCTURES = ("optimal", "suboptimal", "line")
SPACES = ("gradient", "model")
OBJECTIVES = ("lambda", "inner")


def _choice(where: str, param: str, value, choices) -> str:
    if value not in choices:
        raise fail(where, param, f"one of {choices}", value)
    return value


def pure_rules(rules) -> tuple:
    """Each rule as :func:`mixtailor_game.rules.pure` makes it (one stand-in per distinct
    object): the problem's objective is then a function of the rows alone, and solving
    never changes the caller's rules (a centered clipping's stored center, a bucketing
    generator: in training, the server's own)."""
    made: dict[int, object] = {}
    out = []
    for r in rules:
        if id(r) not in made:
            made[id(r)] = pure(r)
        out.append(made[id(r)])
    return tuple(out)


def _built(where: str, entry, f: int):
    """A pool entry given by name, spec or dict as ``as_rule(entry, f)``; others as given."""
    if not isinstance(entry, (str, dict)):
        return entry
    f = check_int(where, "f", f, low=1)  # before as_rule, which takes any f
    try:
        return as_rule(entry, f)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: pool entry {entry!r}: {exc}") from None


def as_pool(where: str, pool, probs=None, f: int | None = None) -> tuple[tuple, tuple]:
    """``(rules, probs)`` from a rule, a sequence of rules, a ``RulePool`` or a ``MixTailor``.

    With ``f``, an entry may also be a rule name or spec (``"krum"``, ``"geomed[p=3]"``,
    as rules' names read and the game writes them) or a dict with a ``"name"``, built by
    ``as_rule(entry, f)``.

    ``probs`` (if given) overrides the pool's own; the default is the pool's
    probabilities, else uniform. Raises ``ValueError`` for an empty pool or bad
    probabilities. The rules come back pure (:func:`pure_rules`): a bucketing rule
    as the mean over 16 fixed draws, a MixTailor entry as its mixture mean, a
    centered clipping from its current center without storing a new one.
    """
    if hasattr(pool, "public") and hasattr(pool.public, "rules"):  # MixTailor
        pool = pool.public
    own_probs = None
    if hasattr(pool, "rules") and hasattr(pool, "probs"):  # RulePool
        rules, own_probs = tuple(pool.rules), tuple(pool.probs)
    elif callable(pool) or isinstance(pool, (str, dict)):
        rules = (pool,)
    else:
        try:
            rules = tuple(pool)
        except TypeError:
            raise TypeError(f"{where}: pool must be a rule, a sequence of rules or a RulePool, "
                            f"got {type(pool).__name__}") from None
    if not rules:
        raise fail(where, "pool", "a non-empty sequence of rules", rules)
    if f is not None:
        rules = tuple(_built(where, r, f) for r in rules)
    for r in rules:
        if not callable(r):
            raise TypeError(f"{where}: pool entries must be callable rules, rule names or specs, "
                            f"got {type(r).__name__}")
    rules = pure_rules(rules)
    if probs is None:
        probs = own_probs
    if probs is None:
        probs = (1.0 / len(rules),) * len(rules)
    if isinstance(probs, (str, bytes, Mapping, Set)):  # a dict iterated its keys: {0: .5, 1: .5} became (0, 1)
        raise fail(where, "probs", f"a sequence of {len(rules)} numbers", probs)
    try:
        probs = tuple(float(p) for p in probs)
    except (TypeError, ValueError):
        raise fail(where, "probs", f"a sequence of {len(rules)} numbers", probs) from None
    if len(probs) != len(rules):
        raise fail(where, "probs", f"a sequence of {len(rules)} numbers (one per rule)", len(probs))
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise fail(where, "probs", "finite and non-negative", probs)
    if abs(sum(probs) - 1.0) > 1e-6:
        raise fail(where, "probs", "summing to 1 (within 1e-6)", sum(probs))
    return rules, probs


@dataclass(frozen=True)
class Instance:
    """A problem compiled to one form every method reads.

    ``R``: ``Tensor[n - f, d]`` honest rows after the knowledge completion;
    ``rules`` / ``weights``: the pool (weights = probabilities for ``"expected"``);
    ``kind``: ``"tailored"``, ``"max"`` or ``"expected"``; ``u``: the direction
    whose inner product is minimized (``g`` for tailored, else ``mean - w_0``, the mean
    over ``[own; R]``: the paper's ``sum_i V_i / n``);
    ``offset``: ``w_0`` in model space, else 0; ``line``: the replicated line
    direction ``-sum_i (V_i - w_0)`` (``-g`` for tailored); ``own``: the f
    reference rows of the Byzantine workers (sending them gives ``lambda = -1``);
    ``unseen``: how many rows of ``R`` are the adversary's estimate (A.1.2's ``g_bar``),
    not honest rows it saw: the values on ``R`` are then the adversary's, not the true ones.
    """

    R: torch.Tensor
    n: int
    f: int
    rules: tuple
    weights: tuple
    kind: str
    objective: str
    structure: str
    u: torch.Tensor
    offset: torch.Tensor
    line: torch.Tensor
    eps: float
    eps_p: float
    name: str
    own: torch.Tensor | None = None
    unseen: int = 0

    @property
    def d(self) -> int:
        return int(self.R.shape[1])

    # float64 copies, made once: the line search reads them at every candidate
    # (each ``.double()`` of a float32 d-vector is a copy, ~0.1 ms at d = 184,586)
    @cached_property
    def u64(self) -> torch.Tensor:
        return self.u.double()

    @cached_property
    def offset64(self) -> torch.Tensor:
        return self.offset.double()

    @cached_property
    def line64(self) -> torch.Tensor:
        return self.line.double()


@dataclass(frozen=True, eq=False)
class _Problem:
    """Shared fields (keyword-only: the adversary's knowledge, gradient or model
    space, the model for model space, n, the adversary's own rows), validation
    and compilation of every problem dataclass."""

    knowledge: object = field(default="full", kw_only=True)
    space: str = field(default="gradient", kw_only=True)
    model: object = field(default=None, kw_only=True, repr=False)
    n: object = field(default=None, kw_only=True)
    own: object = field(default=None, kw_only=True, repr=False)
    where = "solvers"

    def _validate_common(self):
        w = self.where
        honest = as_gradients(self.honest, w, "honest", "k") if isinstance(self.honest, torch.Tensor) else None
        if honest is None:
            raise TypeError(f"{w}: honest must be a torch.Tensor of shape (k, d), got {type(self.honest).__name__}")
        f = check_int(w, "f", self.f, low=1)
        k_all = honest.shape[0]
        n = f + k_all if self.n is None else check_int(w, "n", self.n, low=2)
        check_regime(w, n > 2 * f, "n > 2f", n, f)
        if k_all > n - f:
            raise fail(w, "honest", f"at most n - f = {n - f} rows", k_all)
        kn = self._knowledge()
        if kn == "full":
            if k_all != n - f:
                raise fail(w, "honest", f"n - f = {n - f} rows with knowledge='full' "
                           "(use knowledge=('partial', k))", k_all)
        else:
            check_int(w, "knowledge k", kn[1], low=1, high=min(k_all, n - f))
        _choice(w, "space", self.space, SPACES)
        d = honest.shape[1]
        if self.space == "model":
            if not isinstance(self.model, torch.Tensor) or tuple(self.model.shape) != (d,):
                raise fail(w, "model", f"a Tensor of shape ({d},) (w_0) when space='model'",
                           None if self.model is None else tuple(getattr(self.model, "shape", ())))
        if self.own is not None:
            if not isinstance(self.own, torch.Tensor):
                raise TypeError(f"{w}: own must be None or a torch.Tensor of shape ({f}, {d}), "
                                f"got {type(self.own).__name__}")
            if tuple(self.own.shape) != (f, d):
                raise fail(w, "own", f"None or a Tensor of shape ({f}, {d})",
                           tuple(getattr(self.own, "shape", ())))
        if not bool(torch.isfinite(honest).all()):
            raise fail(w, "honest", "finite", "a tensor with NaN/Inf")
        honest = honest.detach()  # rows that require grad (a training step's) are data here
        for name, value in (("model", self.model if self.space == "model" else None), ("own", self.own)):
            if value is not None and not bool(torch.isfinite(value).all()):
                raise fail(w, name, "finite", "a tensor with NaN/Inf")
        return honest, f, n

    def _check_rules(self, rules):
        """Each rule's own regime for this ``n`` (e.g. ``krum: needs n > 2f + 2``)."""
        _, _, n = self._validate_common()
        for r in rules:
            if hasattr(r, "check"):
                r.check(n)

    def _knowledge(self):
        """``"full"`` or ``("partial", k)``; ``"partial:K"`` (the attacks' spelling,
        ``make_view``) reads as ``("partial", K)``."""
        kn = self.knowledge
        if isinstance(kn, str) and kn.startswith("partial:"):
            try:
                return ("partial", int(kn[len("partial:"):]))
            except ValueError:
                pass
        elif kn == "full" or (isinstance(kn, tuple) and len(kn) == 2 and kn[0] == "partial"):
            return kn
        raise fail(self.where, "knowledge", "'full', ('partial', k) or 'partial:k'", kn)

    def _seen(self, honest) -> int:
        """How many honest rows the adversary sees (the first ones, A.1.2)."""
        kn = self._knowledge()
        return int(honest.shape[0]) if kn == "full" else int(kn[1])

    def _rows(self, honest, f, n):
        """Seen rows, completed to ``n - f`` rows (A.1.2), and the f reference Byzantine rows."""
        seen = honest[: self._seen(honest)]
        # A.1.2's g_bar averages the rows g_1..g_k the adversary has: its own and the seen ones
        own = None if self.own is None else self.own.detach().to(seen)
        mine = seen if own is None else torch.cat([own, seen], 0)
        mbar = mine.mean(0, keepdim=True)
        fill = mbar.expand(n - f - seen.shape[0], -1)
        R = torch.cat([seen, fill], 0)
        own = mbar.expand(f, -1) if own is None else own
        return R, own

    def _compile(self, rules, weights, kind, objective, structure, eps, eps_p, name) -> Instance:
        honest, f, n = self._validate_common()
        for r in rules:
            if hasattr(r, "check"):
                r.check(n)
        R, own = self._rows(honest, f, n)
        offset = self.model.detach().to(R) if self.space == "model" else torch.zeros_like(R[0])
        ref = torch.cat([own, R], 0)  # the paper's g_1..g_n without attack
        if kind == "tailored":
            u = rules[0](ref) - offset
            if not bool(torch.isfinite(u).all()) or float(u.norm()) == 0.0:
                raise fail(self.where, "reference direction g = AGG(no attack) - w_0",
                           "finite and nonzero", float(u.norm()))
            line = -u
        else:
            u = ref.mean(0) - offset
            line = -(ref - offset).sum(0)
            if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(line).all())):
                raise fail(self.where, "honest", "rows whose mean and sum are finite in their dtype "
                           "(rescale them, or pass float64)", f"a sum that overflows {R.dtype}")
        _check_scale(self.where, ref - offset)
        return Instance(R=R, n=n, f=f, rules=tuple(rules), weights=tuple(weights), kind=kind,
                        objective=objective, structure=structure, u=u, offset=offset, line=line,
                        eps=eps, eps_p=eps_p, name=name, own=own, unseen=n - f - self._seen(honest))


# The search reaches rows t_max = 1e3 times beyond the honest ones and multiplies them by
# u (n d terms): room of 1e8 n d on the squares keeps every inner product a float64 number
_SCALE_ROOM = 1e8


def _check_scale(where: str, X: torch.Tensor) -> None:
    """The rows (minus w_0) must be of a magnitude whose squares, times ``1e8 n d``, stay
    normal float64 numbers: beyond it the inner products overflow to -inf (reported as
    attacks of value -inf) or the squared distances underflow to 0 (every Krum score ties)."""
    m = float(X.double().abs().max()) if X.numel() else 0.0
    if m == 0.0:
        return  # no honest signal at all: the objective is identically 0, which the methods report
    n, d = X.shape
    hi = math.sqrt(sys.float_info.max / (_SCALE_ROOM * n * d))
    lo = math.sqrt(sys.float_info.min) * 1e3
    if not lo <= m <= hi:
        raise fail(where, "honest", f"rows (minus w_0) of largest magnitude in [{lo:.1e}, {hi:.1e}] so inner "
                   "products and squared distances stay float64 numbers (rescale them)", f"{m:.3g}")


def _check_eps(where, eps, eps_p):
    eps = check_real(where, "eps", eps, low=0.0)
    eps_p = check_real(where, "eps_p", eps_p, low=1.0, allow_inf=True)
    return eps, eps_p


@dataclass(frozen=True, eq=False)
class TailoredAttack(_Problem):
    """Tailored attack against one rule (paper Section 2.3 and A.1.1-A.1.5).

    ``objective="lambda"``: ``max lambda`` s.t. ``AGG(B, V) - w_0 = -lambda g``
    (exact anti-alignment; often infeasible); ``objective="inner"``: the
    relaxed ``min <AGG(B, V) - w_0, g>``. ``g = AGG(own, V) - w_0`` is the
    no-attack direction. ``structure``: ``"optimal"`` (f free rows) or
    ``"suboptimal"`` (one row replicated, A.1.1).

    >>> from mixtailor_game.rules import Comed
    >>> p = TailoredAttack(torch.ones(4, 2), f=1, rule=Comed(f=1), objective="inner")
    >>> p.compile().kind
    'tailored'
    """

    honest: torch.Tensor
    f: int
    rule: object
    structure: str = "optimal"
    objective: str = "lambda"
    where = "TailoredAttack"

    def __post_init__(self):
        _choice(self.where, "structure", self.structure, ("optimal", "suboptimal"))
        _choice(self.where, "objective", self.objective, OBJECTIVES)
        rule = self._rule()
        if not callable(rule) or isinstance(rule, (list, tuple)):
            raise TypeError(f"{self.where}: rule must be one callable rule, a rule name or spec, "
                            f"got {type(rule).__name__}")
        self._check_rules((rule,))

    def _rule(self):
        """The rule; a name, spec or dict built by ``as_rule(rule, f)``."""
        return _built(self.where, self.rule, self.f)

    def compile(self) -> Instance:
        return self._compile(pure_rules((self._rule(),)), (1.0,), "tailored", self.objective, self.structure,
                             0.0, 2.0, "tailored")


@dataclass(frozen=True, eq=False)
class P1(_Problem):
    """Paper A.4, P1: ``min_B max_m <AGG_m(B, V), mu>`` s.t. ``||B_i - B_j||_{eps_p} >= eps``.

    ``structure`` (default ``"optimal"``: f free rows); ``eps >= 0`` the
    similarity filter, ``eps_p`` its norm (the paper's is unspecified; 2 by
    default). With ``"suboptimal"`` / ``"line"`` and ``f >= 2``, ``eps > 0``
    is infeasible (identical rows).
    """

    honest: torch.Tensor
    f: int
    pool: object
    eps: float = 0.0
    structure: str = "optimal"
    eps_p: float = 2.0
    where = "P1"

    def __post_init__(self):
        _choice(self.where, "structure", self.structure, STRUCTURES)
        _check_eps(self.where, self.eps, self.eps_p)
        self._check_rules(as_pool(self.where, self.pool, f=self.f)[0])

    def compile(self) -> Instance:
        rules, probs = as_pool(self.where, self.pool, f=self.f)
        eps, eps_p = _check_eps(self.where, self.eps, self.eps_p)
        return self._compile(rules, probs, "max", "xi", self.structure, eps, eps_p, self.where)


@dataclass(frozen=True, eq=False)
class P2(P1):
    """Paper A.4, P2: ``min xi`` s.t. ``<AGG_m(B, V), mu> <= xi`` for all m and the
    similarity filter: the epigraph form of :class:`P1` (same optimum).
    ``xi < 0`` certifies that the attack defeats every rule of the pool."""

    where = "P2"


@dataclass(frozen=True, eq=False)
class P3(_Problem):
    """Paper A.4, P3: ``min_lambda max_m <AGG_m(B(lambda), V), mu>`` with every
    Byzantine row ``B(lambda) = -lambda sum_{i=1}^n V_i`` (the sum over the n
    reference rows; in model space ``w_0 - lambda sum_i (w_i - w_0)``).
    No similarity filter (the rows are identical)."""

    honest: torch.Tensor
    f: int
    pool: object
    where = "P3"

    def __post_init__(self):
        self._check_rules(as_pool(self.where, self.pool, f=self.f)[0])

    def compile(self) -> Instance:
        rules, probs = as_pool(self.where, self.pool, f=self.f)
        return self._compile(rules, probs, "max", "xi", "line", 0.0, 2.0, self.where)


@dataclass(frozen=True, eq=False)
class ExpectedValue(_Problem):
    """``min_B sum_m p_m <AGG_m(B, V), mu>`` (the attacker of MixTailor that knows
    the pool and its probabilities ``probs``; default: the pool's, else uniform).

    ``structure`` defaults to ``"line"`` (1-D, scales to any d); ``"optimal"`` /
    ``"suboptimal"`` search f free rows / one replicated row; ``eps`` as in P1.
    """

    honest: torch.Tensor
    f: int
    pool: object
    probs: object = None
    eps: float = 0.0
    structure: str = "line"
    eps_p: float = 2.0
    where = "ExpectedValue"

    def __post_init__(self):
        _choice(self.where, "structure", self.structure, STRUCTURES)
        _check_eps(self.where, self.eps, self.eps_p)
        self._check_rules(as_pool(self.where, self.pool, self.probs, f=self.f)[0])

    def compile(self) -> Instance:
        rules, probs = as_pool(self.where, self.pool, self.probs, f=self.f)
        eps, eps_p = _check_eps(self.where, self.eps, self.eps_p)
        return self._compile(rules, probs, "expected", "expected", self.structure, eps, eps_p, "expected")
