"""Payoff matrices attacks x rules, measured on honest gradient samples.

For an honest sample ``V`` (``Tensor[k, d]``, the ``n - f`` honest rows of one
step), an attack ``a`` produces Byzantine rows ``B_a = a(view(V))``
(``Tensor[f, d]``) and rule ``r`` aggregates ``G = [V; B_a]``:
``U_{a,r} = AGG_r(G)``. The payoff of the pair is, with ``g = mean(V)`` the
honest mean (the estimate of ``grad F(w)`` the paper's Definition 2 uses):

- ``"inner"``:  ``<U_{a,r}, g>``      (Definition 1 / Proposition 1: > 0 means
  the rule still descends, < 0 means the attack compromises it);
- ``"cosine"``: ``<U_{a,r}, g> / (||U_{a,r}|| ||g||)`` (0 when a norm is 0);
- ``"loss"``:   ``loss(U_{a,r})``, a callable that returns the training loss
  after one step along the aggregate (e.g. ``lambda u: F(w - lr * u)``).

Each entry is the average over the samples (snapshots of a training run, or
synthetic draws), with its standard error ``std(ddof=1) / sqrt(S)`` (NaN when
``S = 1``). The defender's loss matrix, the input of the equilibrium solvers,
is ``-payoff`` for ``inner`` and ``cosine`` and ``payoff`` for ``loss``.

Also recorded, for Proposition 1: ``norms[a, r]``, the average of
``||U_{a,r}||`` (an estimate of ``||E[U_i]||``, so of lambda), and
``grad_norm``, the largest ``||g||`` over the samples (an estimate of L).

Samples: :func:`load_snapshots` reads a trainer run's
``snapshots/step_XXXXXX.pt`` files (``{"step", "honest", "byzantine"}``,
pinned in notes/PINNED_API.md); :func:`synthetic_samples` draws Gaussian
honest rows around a common mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .._checks import check_int, check_real, fail
from ..rules.pure import pure
from ..rules.spec import parse_spec

PAYOFFS = ("inner", "cosine", "loss")


# --------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Snapshot:
    """One saved training step: its honest rows ``Tensor[n-f, d]`` and Byzantine rows ``Tensor[f, d]``."""

    step: int
    honest: torch.Tensor
    byzantine: torch.Tensor
    path: str = ""


def load_snapshots(directory, *, limit: int | None = None) -> list[Snapshot]:
    """Read ``directory/step_XXXXXX.pt`` files (or ``directory/snapshots/...``) in step order.

    ``limit`` keeps that many snapshots, evenly spaced over the run (first and
    last included). Raises ``ValueError`` for a missing directory, no snapshot
    files, or a file without the pinned keys / shapes.
    """
    where = "load_snapshots"
    path = Path(directory)
    if path.is_dir() and not any(path.glob("step_*.pt")) and (path / "snapshots").is_dir():
        path = path / "snapshots"
    if not path.is_dir():
        raise fail(where, "directory", "an existing directory of step_XXXXXX.pt files", str(directory))
    files = sorted(path.glob("step_*.pt"))
    if not files:
        raise fail(where, "directory", "a directory holding step_XXXXXX.pt files", str(directory))
    if limit is not None:
        limit = check_int(where, "limit", limit, low=1)
        if limit < len(files):
            idx = np.unique(np.round(np.linspace(0, len(files) - 1, limit)).astype(int))
            files = [files[i] for i in idx]
    out = []
    for fp in files:
        data = torch.load(fp, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or not {"step", "honest", "byzantine"} <= set(data):
            raise fail(where, "snapshot", "a dict with keys step, honest, byzantine", fp.name)
        h, b = data["honest"], data["byzantine"]
        if not (isinstance(h, torch.Tensor) and h.dim() == 2 and h.shape[0] >= 1 and h.is_floating_point()):
            raise fail(where, "honest", "a floating Tensor[n-f, d]", f"{fp.name}: {getattr(h, 'shape', h)}")
        if not (isinstance(b, torch.Tensor) and b.dim() == 2 and b.shape[1] == h.shape[1]):
            raise fail(where, "byzantine", f"a Tensor[f, {h.shape[1]}]", f"{fp.name}: {getattr(b, 'shape', b)}")
        out.append(Snapshot(int(data["step"]), h, b, str(fp)))
    return out


def synthetic_samples(
    k: int,
    d: int,
    *,
    samples: int = 8,
    mean_norm: float = 1.0,
    noise: float = 3.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """``samples`` honest draws ``Tensor[k, d]``: rows ``mu + (noise / sqrt(d)) z``, ``z ~ N(0, I)``.

    ``mu`` has norm ``mean_norm`` along a direction drawn once from
    ``generator``; each row's noise has expected squared norm ``noise**2``, so
    ``noise / mean_norm`` is the noise-to-signal ratio of one honest gradient
    (large in deep learning, which is what tailored attacks exploit). The
    same ``mu`` is used for every sample (a fixed point ``w``).
    """
    where = "synthetic_samples"
    k = check_int(where, "k", k, low=1)
    d = check_int(where, "d", d, low=1)
    samples = check_int(where, "samples", samples, low=1)
    mean_norm = check_real(where, "mean_norm", mean_norm, low=0.0, low_open=True)
    noise = check_real(where, "noise", noise, low=0.0)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    u = torch.randn(d, generator=gen, dtype=torch.float64)
    mu = mean_norm * u / u.norm()
    sigma = noise / math.sqrt(d)
    return [(mu + sigma * torch.randn(k, d, generator=gen, dtype=torch.float64)).to(dtype) for _ in range(samples)]


# --------------------------------------------------------------------------- attacks / rules
def _label(obj, fallback: str) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else fallback


def resolve_rules(rules, f: int) -> list:
    """Rule objects from rule objects, names or specs (``"krum[p=3]"``, built with ``f``)."""
    from ..rules import as_rule

    out = []
    for r in rules:
        if isinstance(r, str):
            name, params = parse_spec(r)
            rule = as_rule(name, f)
            if params:
                if not dataclasses.is_dataclass(rule):
                    raise fail("payoff_matrix", "rules", "plain names for non-dataclass rules", r)
                try:
                    rule = dataclasses.replace(rule, **params)
                except TypeError:
                    valid = [x.name for x in dataclasses.fields(rule) if x.init]
                    raise fail("payoff_matrix", "rules", f"parameters of {name} among {valid}", r) from None
            out.append(rule)
        elif callable(r):
            out.append(r)
        else:
            raise TypeError(f"payoff_matrix: rules must be rules or rule names, got {type(r).__name__}")
    if not out:
        raise fail("payoff_matrix", "rules", "a non-empty sequence", list(rules))
    return out


def resolve_attacks(attacks) -> list:
    """Attack callables from callables, names or specs (``"ipm[eps=0.5]"`` -> ``make_attack("ipm", eps=0.5)``)."""
    out = []
    for a in attacks:
        if isinstance(a, str):
            from ..attacks import make_attack

            out.append((a, make_attack(a)))  # make_attack reads specs itself
        elif isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], dict):
            from ..attacks import make_attack

            label = a[0] + ("[" + ",".join(f"{k}={v}" for k, v in a[1].items()) + "]" if a[1] else "")
            out.append((label, make_attack(a[0], **a[1])))
        elif callable(a):
            out.append((_label(a, f"attack{len(out)}"), a))
        else:
            raise TypeError(f"payoff_matrix: attacks must be attacks, names or (name, params), got {type(a).__name__}")
    if not out:
        raise fail("payoff_matrix", "attacks", "a non-empty sequence", list(attacks))
    return out


# --------------------------------------------------------------------------- one sample
def aggregates(honest: torch.Tensor, byzantine: torch.Tensor, rules: Sequence) -> torch.Tensor:
    """``Tensor[R, d]``: every rule applied to ``G = [honest; byzantine]`` (honest rows first)."""
    G = torch.cat([honest, byzantine.to(dtype=honest.dtype, device=honest.device)], dim=0)
    return torch.stack([r(G) for r in rules])


def payoff_values(
    honest: torch.Tensor,
    byzantine: torch.Tensor,
    rules: Sequence,
    payoff: str = "inner",
    loss: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Payoff of each rule against one set of Byzantine rows, and the aggregates' norms.

    Returns ``(values[R], norms[R])`` in float64 (see the module docstring for
    the payoffs). Raises ``ValueError`` if a rule returns a non-finite
    aggregate or the loss callable a non-finite number.
    """
    where = "payoff_values"
    if payoff not in PAYOFFS:
        raise fail(where, "payoff", f"one of {PAYOFFS}", payoff)
    if payoff == "loss" and loss is None:
        raise fail(where, "loss", "a callable (aggregate -> loss after one step) when payoff='loss'", loss)
    U = aggregates(honest, byzantine, rules)
    if not torch.isfinite(U).all():
        bad = [getattr(rules[i], "name", str(i)) for i in range(len(rules)) if not torch.isfinite(U[i]).all()]
        raise ValueError(f"{where}: rules {bad} returned a non-finite aggregate")
    U64 = U.detach().to(device="cpu", dtype=torch.float64)
    g = honest.detach().to(device="cpu", dtype=torch.float64).mean(dim=0)
    norms = U64.norm(dim=1).numpy()
    inner = (U64 @ g).numpy()
    if payoff == "inner":
        values = inner
    elif payoff == "cosine":
        den = norms * float(g.norm())
        values = np.divide(inner, den, out=np.zeros_like(inner), where=den > 0)
    else:
        values = np.array([float(loss(U[i])) for i in range(U.shape[0])], dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"{where}: the loss callable returned non-finite values {values.tolist()}")
    return values, norms


def defender_loss(values, payoff: str) -> np.ndarray:
    """The defender's loss from payoff values: ``-values`` for inner / cosine, ``values`` for loss."""
    if payoff not in PAYOFFS:
        raise fail("defender_loss", "payoff", f"one of {PAYOFFS}", payoff)
    values = np.asarray(values, dtype=np.float64)
    return values if payoff == "loss" else -values


# --------------------------------------------------------------------------- the matrix
@dataclass(frozen=True)
class PayoffMatrix:
    """Payoffs ``values[a, r]`` (mean over samples) with standard errors.

    ``attacks`` / ``rules``: display names; ``payoff``: which payoff;
    ``norms[a, r]``: mean ``||AGG_r||``; ``grad_norm``: max ``||honest mean||``;
    ``samples``: number of samples; ``n``, ``f``: workers and Byzantine rows.
    ``loss`` is the defender's loss matrix the equilibrium solvers take.
    """

    values: np.ndarray
    stderr: np.ndarray
    norms: np.ndarray
    grad_norm: float
    attacks: tuple
    rules: tuple
    payoff: str
    samples: int
    n: int
    f: int
    per_sample: np.ndarray = field(repr=False, default=None)

    @property
    def loss(self) -> np.ndarray:
        return defender_loss(self.values, self.payoff)

    def to_dict(self) -> dict:
        def clean(x):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(x)]

        return {
            "payoff": self.payoff, "attacks": list(self.attacks), "rules": list(self.rules),
            "values": clean(self.values), "stderr": clean(self.stderr), "norms": clean(self.norms),
            "grad_norm": self.grad_norm, "samples": self.samples, "n": self.n, "f": self.f,
        }


def payoff_matrix(
    attacks,
    rules,
    samples,
    *,
    f: int,
    n: int | None = None,
    payoff: str = "inner",
    loss: Callable | None = None,
    knowledge: str = "full",
    defense=None,
    generator: torch.Generator | None = None,
) -> PayoffMatrix:
    """Measure every (attack, rule) pair on every honest sample and average.

    Parameters
    ----------
    attacks : sequence of attack callables (``attack(view) -> Tensor[f, d]``),
        names / specs (``"ipm[eps=0.5]"``) or ``(name, params)`` pairs, built
        with ``mixtailor_game.attacks.make_attack``.
    rules : sequence of rules (any callable ``G -> Tensor[d]``) or names /
        specs (``"krum[p=3]"``, built with ``f``). A centered clipping is
        measured from its center at the call (``base(G)`` when it has none) and
        stores nothing (``rules.pure(rule, draws=None)``): each cell is then
        independent of the others; bucketing and MixTailor keep drawing.
    samples : sequence of honest ``Tensor[k, d]`` or :class:`Snapshot`.
    f : int >= 1, Byzantine rows each attack produces.
    n : total workers (default ``k + f``; every sample must hold ``n - f``
        honest rows).
    payoff, loss : see the module docstring.
    knowledge, defense : passed to ``mixtailor_game.attacks.make_view`` (what
        the adversary sees and knows: ``None``, a rule or a ``RulePool``; the
        same for every attack and sample: a pure strategy of the game does not
        see the rule drawn).
    generator : ``torch.Generator`` for the attacks' randomness (default: seeded 0).

    Raises ``ValueError`` for empty inputs, a sample of the wrong shape, an
    attack that returns rows of the wrong shape or an unknown payoff.
    """
    from ..attacks import make_view

    where = "payoff_matrix"
    f = check_int(where, "f", f, low=1)
    if payoff not in PAYOFFS:
        raise fail(where, "payoff", f"one of {PAYOFFS}", payoff)
    if payoff == "loss" and loss is None:
        raise fail(where, "loss", "a callable when payoff='loss'", loss)
    honest_list = [s.honest if isinstance(s, Snapshot) else s for s in samples]
    if not honest_list:
        raise fail(where, "samples", "a non-empty sequence of honest Tensor[k, d]", list(samples))
    k, d = None, None
    for h in honest_list:
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or not h.is_floating_point():
            raise fail(where, "samples", "floating 2-D tensors (k, d)", getattr(h, "shape", type(h).__name__))
        if d is not None and h.shape[1] != d:
            raise fail(where, "samples", f"tensors with d={d} columns", tuple(h.shape))
        if not bool(torch.isfinite(h).all()):  # g = mean(V) would make every payoff NaN
            raise fail(where, "samples", "finite honest rows (no NaN / Inf)", "a tensor with NaN/Inf")
        k, d = (k if k is not None else h.shape[0]), h.shape[1]
    n = k + f if n is None else check_int(where, "n", n, low=f + 1)
    for h in honest_list:
        if h.shape[0] != n - f:
            raise fail(where, "samples", f"tensors with n - f = {n - f} honest rows", tuple(h.shape))
    # stateful rules (centered clipping) from their state now, never stored: a payoff
    # must not depend on the order the cells are measured in; random draws stay random
    rule_objs = [pure(r, draws=None) for r in resolve_rules(rules, f)]
    attack_objs = resolve_attacks(attacks)
    for r in rule_objs:
        if hasattr(r, "check"):
            r.check(n)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    S, A, R = len(honest_list), len(attack_objs), len(rule_objs)
    per = np.empty((S, A, R))
    norms = np.empty((S, A, R))
    for s, h in enumerate(honest_list):
        for a, (label, att) in enumerate(attack_objs):
            view = make_view(h, n=n, f=f, knowledge=knowledge, defense=defense, step=s, rng=gen)
            B = att(view)
            if not isinstance(B, torch.Tensor) or tuple(B.shape) != (f, d):
                raise fail(where, f"attack {label!r} output", f"a Tensor[{f}, {d}]", getattr(B, "shape", B))
            per[s, a], norms[s, a] = payoff_values(h, B, rule_objs, payoff, loss)
    values = per.mean(axis=0)
    stderr = per.std(axis=0, ddof=1) / math.sqrt(S) if S > 1 else np.full((A, R), np.nan)
    grad_norm = max(float(h.double().mean(dim=0).norm()) for h in honest_list)
    return PayoffMatrix(
        values=values, stderr=stderr, norms=norms.mean(axis=0), grad_norm=grad_norm,
        attacks=tuple(lbl for lbl, _ in attack_objs), rules=tuple(_label(r, f"rule{i}") for i, r in enumerate(rule_objs)),
        payoff=payoff, samples=S, n=n, f=f, per_sample=per,
    )
