"""The family of adversaries over which the checkers search for the worst case.

A :class:`Family` maps the honest rows of ``T`` trials, ``H`` of shape
``(T, n - f, d)``, to the Byzantine rows ``(K, T, f, d)`` of its K candidates
(built together so that the rule runs once on all of them). It may look at every honest
row (omniscient) and at the rule (it knows which Krum it faces), never at the
trial's future. Built-in families (batched over trials; the formulas follow
the cited papers, the parameter grids are ours):

* ``fixed(u, a)``: ``B = grad F + a sigma u`` (a fixed offset, the same for all
  f rows, not data dependent);
* ``mean+offset(u, a)``: ``B = mean(H) + a sigma u`` (colluding, omniscient);
* ``top+offset(u, a)``: ``B = V_top + a sigma u`` with ``V_top`` the honest row
  with the largest ``u^T V``: it lends its f votes to an honest outlier, the
  data-dependent ``zeta(i)`` of the proofs of Theorems 1-2;
* ``ipm(eps)``: ``B = -eps mean(H)`` (inner-product manipulation, Xie et al.
  2020), eps over four decades;
* ``alie(z)``: ``B = mu - z s`` with the coordinate-wise mean ``mu`` and
  standard deviation ``s`` of the honest rows (Baruch et al. 2019); ``z``
  includes their ``z_max = Phi^-1((n - s_min) / n)``, ``s_min = floor(n/2 + 1) - f``;
* ``krum-edge(center, u)``: all f rows at ``center + lam u`` with, per trial,
  the largest ``lam`` for which the rule still outputs a Byzantine row
  (doubling then 10 bisection steps, all pairs in one batch); ``center`` is ``mean(H)`` or ``V_top``;
* ``fang-krum``: Fang et al. (2020)'s full-knowledge attack on Krum in
  gradient form, ``B = -lam sign(mean(H))`` for all f rows (their f - 1
  supporting rows at distance 0, the extreme of their epsilon-ball), with the
  largest ``lam`` that Krum selects found by bisection instead of their halving.

Registry families (added when importable, run one trial at a time):
``attacks:<name>`` for every name of ``mixtailor_game.attacks.attack_names()``
that builds without parameters and ``solver:tailored`` (``solvers.solve`` of a
``solvers.TailoredAttack``). A family that cannot be imported, built or run
within the time budget is skipped with a note; the note is reported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable

import torch


@dataclass(frozen=True)
class Family:
    """A group of K candidates built together: ``make(H) -> B`` of shape ``(K, T, f, d)``
    for honest rows ``H (T, m, d)``; ``labels[k]`` names candidate k."""

    name: str
    labels: tuple
    make: Callable[..., torch.Tensor]

    def pick(self, H: torch.Tensor, k: int) -> torch.Tensor:
        """Byzantine rows ``(T, f, d)`` of candidate ``k`` alone."""
        return self.make(H, only=[k])[0]


def _copies(x: torch.Tensor, f: int) -> torch.Tensor:
    """(..., d) -> (..., f, d): f identical Byzantine rows."""
    return x.unsqueeze(-2).expand(*x.shape[:-1], f, x.shape[-1]).clone()


def _top(H: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per trial, the honest row with the largest ``u^T V``: (T, m, d), (d,) -> (T, d)."""
    idx = torch.argmax(H @ u, dim=1)
    return H[torch.arange(H.shape[0]), idx]


MAX_ELEMENTS = 4_000_000  # rows of G per rule call are chunked to about 32 MB of float64


def aggregate(rule, G: torch.Tensor) -> torch.Tensor:
    """``rule.batched`` over ``G (B, n, d)`` in chunks that bound the memory."""
    step = max(1, MAX_ELEMENTS // (G.shape[1] * G.shape[2]))
    return torch.cat([rule.batched(G[i:i + step]) for i in range(0, G.shape[0], step)])


def outputs_byzantine(rule, H: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the rule on ``[H; B]`` (``H (T, m, d)``, ``B (T, f, d)``); return the outputs
    (T, d) and whether each output is one of the Byzantine rows."""
    U = aggregate(rule, torch.cat([H, B], dim=1))
    hit = (U[:, None, :] == B).all(-1).any(-1)
    return U, hit


def largest_selected(rule, H, center, u, f, scale, bisections: int = 10) -> torch.Tensor:
    """Per row, the largest ``lam >= 0`` (doubling from ``scale``, then bisection) for which
    ``rule`` outputs one of the f rows placed at ``center + lam u``; 0 if none is.

    ``H (T, m, d)``, ``center (T, d)``, ``u (T, d)``; returns ``lam (T,)``."""
    T = H.shape[0]

    def hit(lam):
        return outputs_byzantine(rule, H, _copies(center + lam[:, None] * u, f))[1]

    lo = torch.zeros(T, dtype=H.dtype)
    hi = torch.full((T,), float(scale), dtype=H.dtype)
    for _ in range(40):
        s = hit(hi)
        if not bool(s.any()):
            break
        lo = torch.where(s, hi, lo)
        hi = torch.where(s, 2.0 * hi, hi)
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        s = hit(mid)
        lo = torch.where(s, mid, lo)
        hi = torch.where(s, hi, mid)
    return lo


def _formula_family(name, labels, row_fns, f):
    """A family whose candidate k is ``_copies(row_fns[k](H), f)``."""
    def make(H, only=None):
        ks = range(len(row_fns)) if only is None else only
        return _copies(torch.stack([row_fns[k](H) for k in ks]), f)  # (K, T, f, d)
    return Family(name, tuple(labels), make)


def builtin_families(*, n: int, f: int, g: torch.Tensor, sigma: float, rule, directions: dict) -> list:
    """The batched built-in families listed in the module docstring."""
    dirs = list(directions.items())
    fam = []
    fixed = [(un, u, a) for un, u in dirs for a in (0.5, 1.0, 2.0, 4.0, 8.0)]
    fam.append(_formula_family(
        "fixed", [f"fixed({un},a={a:g})" for un, _, a in fixed],
        [lambda H, u=u, a=a: (g + a * sigma * u).expand(H.shape[0], -1) for _, u, a in fixed], f))
    moff = [(un, u, a) for un, u in dirs for a in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)]
    fam.append(_formula_family(
        "mean+offset", [f"mean+offset({un},a={a:g})" for un, _, a in moff],
        [lambda H, u=u, a=a: H.mean(1) + a * sigma * u for _, u, a in moff], f))
    toff = [(un, u, a) for un, u in dirs for a in (0.0, 0.5, 1.0, 2.0)]
    fam.append(_formula_family(
        "top+offset", [f"top+offset({un},a={a:g})" for un, _, a in toff],
        [lambda H, u=u, a=a: _top(H, u) + a * sigma * u for _, u, a in toff], f))
    epss = (0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0)
    fam.append(_formula_family("ipm", [f"ipm(eps={e:g})" for e in epss],
                               [lambda H, e=e: -e * H.mean(1) for e in epss], f))
    s_min = math.floor(n / 2 + 1) - f
    z_max = NormalDist().inv_cdf((n - s_min) / n) if 0 < (n - s_min) / n < 1 else 1.0
    zs = sorted({round(z_max, 3), -3.0, -1.0, 0.5, 1.0, 2.0, 3.0})
    fam.append(_formula_family("alie", [f"alie(z={z:g})" for z in zs],
                               [lambda H, z=z: H.mean(1) - z * H.std(1, unbiased=False) for z in zs], f))

    def starts(H):
        """(center, direction) pairs, each (T, d): mean / top of every direction, then Fang."""
        T = H.shape[0]
        out = []
        for _, u in dirs:
            out += [(H.mean(1), u.expand(T, -1)), (_top(H, u), u.expand(T, -1))]
        s = -torch.sign(H.mean(1))  # Fang et al.: against the direction of the honest change
        out.append((torch.zeros_like(s), s / torch.linalg.vector_norm(s, dim=1, keepdim=True).clamp_min(1e-300)))
        return out

    def edge(H, only=None):
        # every selected (center, direction) pair searched in one batched bisection
        T = H.shape[0]
        pairs = starts(H)
        pairs = pairs if only is None else [pairs[k] for k in only]
        K = len(pairs)
        C = torch.cat([c for c, _ in pairs])
        Us = torch.cat([u for _, u in pairs])
        lam = largest_selected(rule, H.repeat(K, 1, 1), C, Us, f, sigma)
        return _copies(C + lam[:, None] * Us, f).reshape(K, T, f, H.shape[-1])

    labels = [f"krum-edge({c},{un})" for un, _ in dirs for c in ("mean", "top")] + ["fang-krum"]
    fam.append(Family("krum-edge", tuple(labels), edge))
    return fam


def _per_trial(fn, f: int):
    def make(H, only=None):
        rows = [torch.as_tensor(fn(H[t], t)).to(torch.float64).reshape(f, H.shape[-1])
                for t in range(H.shape[0])]
        return torch.stack(rows)[None]
    return make


def registry_families(*, n: int, f: int, rule, H_probe: torch.Tensor, budget_s: float,
                         calls: int, gen: torch.Generator) -> tuple[list, list]:
    """Adversaries from ``mixtailor_game.attacks`` and ``solvers`` (imported lazily).

    Each candidate is probed once on ``H_probe[0]``; it is kept only if it runs,
    returns ``(f, d)`` finite-or-not rows, and ``calls`` calls fit in ``budget_s``.
    Returns ``(families, notes)`` (one candidate per family).
    """
    advs, notes = [], []
    candidates = []
    try:
        from mixtailor_game.attacks import attack_names, make_attack, make_view
    except Exception as exc:  # not written yet, or broken: skip the family, say so
        notes.append(f"attacks: not importable ({type(exc).__name__}: {exc}); family skipped")
    else:
        for name in attack_names():
            try:
                atk = make_attack(name)
            except Exception as exc:
                notes.append(f"attacks:{name}: not built without parameters ({exc}); skipped")
                continue
            if getattr(atk, "data_hook", None) is not None:
                notes.append(f"attacks:{name}: data-level attack; skipped")
                continue

            def call(h, t, atk=atk):
                view = make_view(h, n=n, f=f, knowledge="full", defense=rule, rng=gen, step=t)
                return atk(view)

            candidates.append((f"attacks:{name}", "attacks", call))
    try:
        import solvers
        solve, problem_cls = solvers.solve, solvers.TailoredAttack
    except Exception as exc:
        notes.append(f"solvers: not importable ({type(exc).__name__}: {exc}); family skipped")
    else:
        def call(h, t):
            return solve(problem_cls(honest=h, f=f, rule=rule)).byzantine

        candidates.append(("solver:tailored", "solver", call))
    for name, family, call in candidates:
        try:
            t0 = time.perf_counter()
            out = call(H_probe[0], 0)
            dt = time.perf_counter() - t0
            out = torch.as_tensor(out)
            if tuple(out.shape) != (f, H_probe.shape[-1]):
                raise ValueError(f"returned shape {tuple(out.shape)}, expected {(f, H_probe.shape[-1])}")
        except Exception as exc:
            notes.append(f"{name}: failed on a probe ({type(exc).__name__}: {exc}); skipped")
            continue
        if dt * calls > budget_s:
            notes.append(f"{name}: skipped, {calls} calls would take ~{dt * calls:.1f} s "
                         f"> budget {budget_s:g} s (raise --registry-budget)")
            continue
        advs.append(Family(name, (name,), _per_trial(call, f)))
    if advs:
        notes.append("registry: families searched: " + ", ".join(a.name for a in advs))
    return advs, notes
