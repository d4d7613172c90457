"""Checkers of Theorems 1 and 2: the bias of generalized Krum under a worst-case search.

For each case (noise law, n, f, d, p and, for Theorem 2, Delta^2) the checker

1. draws ``grad F`` (norm ``grad_norm``, random direction) and, for Theorem 2,
   heterogeneous means ``g_i = grad F + h_i`` of each shape of
   :data:`~mixtailor_game.verify.sampling.HETEROGENEITY` (Assumption 1 with
   equality);
2. **search**: on ``T`` trials of honest rows it evaluates every adversary of
   :mod:`~mixtailor_game.verify.adversaries` (same honest rows for all: common
   random numbers) and keeps the one with the largest estimated
   ``||E[U] - grad F||^2``, ``U = krum(G, f, p)`` from ``mixtailor_game.rules``;
3. **confirm**: it re-estimates the winner on ``T`` fresh trials, so that the
   reported estimate and its 95% CI are not inflated by the maximum over many
   noisy candidates (winner's curse);
4. compares with ``bound_scale * bound`` (Theorem 1: ``2 sigma^2 (1 + Lambda)``,
   Theorem 2: ``C_1 + C_2 Lambda``): VIOLATED when the CI lies above the bound,
   holds when it lies at or below, inconclusive otherwise.

It also reports ``E||U||^r / E||G||^r`` for r = 2, 3, 4 (the theorems only
claim that some constant bounds them; ``None`` where ``E||G||^r`` is infinite,
r >= 3 under ``student-t``, as the sample ratio estimates nothing there) and how
often Krum output a Byzantine row.
"""

from __future__ import annotations

import itertools
import time
import zlib

import numpy as np
import torch

from .. import theory
from .._checks import fail
from .adversaries import aggregate, builtin_families, outputs_byzantine, registry_families
from .estimate import bias_squared, moment_ratios
from .report import upper_bound_verdict
from .sampling import (DIRECTIONS, HETEROGENEITY, LAWS, MOMENT_LIMIT, gradient_vector, heterogeneous_offsets,
                       sample_noise, search_directions)


def case_generator(seed: int, key: tuple) -> torch.Generator:
    """A generator for one case, derived from the run seed and the case's parameters."""
    words = [int(seed) % 2**32, zlib.crc32(repr(key).encode())]
    state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def grid_cases(ns, fs, ds, ps, laws, delta2s=(0.0,), pairs=None):
    """The product grid, keeping the (n, f) pairs with n > 2f + 2; returns (cases, skipped).

    ``pairs`` (a list of (n, f)) replaces the product ``ns x fs``."""
    cases, skipped = [], []
    for law in laws:
        if law not in LAWS:
            raise fail("verify", "law", f"one of {LAWS}", law)
    nfs = list(pairs) if pairs is not None else list(itertools.product(ns, fs))
    for law, (n, f), d, p, delta2 in itertools.product(laws, nfs, ds, ps, delta2s):
        if not n > 2 * f + 2:
            skipped.append(f"n={n}, f={f}: needs n > 2f + 2")
            continue
        cases.append(dict(law=law, n=int(n), f=int(f), d=int(d), p=float(p), delta2=float(delta2)))
    return cases, sorted(set(skipped))


def run_case(case: dict, *, theorem: int, trials: int, sigma2: float = 1.0, grad_norm: float = 1.0,
             bound_scale: float = 1.0, seed: int = 0, registry: bool = True, registry_budget: float = 1.0,
             hetero=HETEROGENEITY, directions=DIRECTIONS, search_trials: int | None = None,
             families=None, rule=None, level: float = 0.95) -> dict:
    """Search the worst adversary for one case and confirm it on fresh trials (see module doc).

    The search uses ``search_trials`` trials (default ``trials``), the
    confirmation ``trials`` fresh ones.
    ``families`` (a list of :class:`~.adversaries.Family`) replaces the built-in search
    when given; ``rule`` replaces ``make_rule("krum", f=f, p=p)`` (tests only).
    """
    from mixtailor_game.rules import make_rule

    law, n, f, d, p, delta2 = (case[k] for k in ("law", "n", "f", "d", "p", "delta2"))
    m = n - f
    t0 = time.perf_counter()
    gen = case_generator(seed, (theorem, law, n, f, d, p, delta2))
    if rule is None:
        rule = make_rule("krum", f=f, p=p)
    rule.check(n)
    sigma = sigma2 ** 0.5
    g = gradient_vector(d, grad_norm, gen)
    kinds = ("iid",) if theorem == 1 else tuple(hetero)
    offsets = {k: (torch.zeros(m, d, dtype=torch.float64) if k == "iid"
                   else heterogeneous_offsets(k, m, d, delta2, gen)) for k in kinds}

    def sample(kind, T):
        return g + offsets[kind] + sample_noise(law, (T, m, d), sigma2, gen)

    Ts = trials if search_trials is None else search_trials

    notes = []
    if families is None:
        families = builtin_families(n=n, f=f, g=g, sigma=sigma, rule=rule,
                                    directions=search_directions(g, gen, directions))
        if registry:
            extra, notes = registry_families(n=n, f=f, rule=rule, H_probe=sample(kinds[0], 1),
                                             budget_s=registry_budget, calls=Ts + trials, gen=gen)
            families = families + extra
    best = None
    searched = 0
    for kind in kinds:
        H = sample(kind, Ts)
        for fam in families:
            B = fam.make(H)  # (K, T, f, d)
            K = B.shape[0]
            G = torch.cat([H.expand(K, -1, -1, -1), B], dim=2).reshape(K * Ts, n, d)
            U = aggregate(rule, G).reshape(K, Ts, d)
            for k in range(K):
                value = bias_squared(U[k], g, level).value
                searched += 1
                if best is None or value > best[0]:
                    best = (value, kind, fam, k)
    search_value, kind, fam, k = best
    H = sample(kind, trials)
    U, hit = outputs_byzantine(rule, H, fam.pick(H, k))
    est = bias_squared(U, g, level)
    if theorem == 1:
        bound = theory.theorem1_bound(sigma2, n, f, d, p)
    else:
        bound = theory.theorem2_bound(sigma2, delta2, n, f, d, p)
    scaled = bound_scale * bound
    status = upper_bound_verdict(est.lo, est.hi, scaled)
    # a ratio of two sample means of infinite expectations is not an estimate: print none
    moments = {r: (v if r < MOMENT_LIMIT[law] else None) for r, v in moment_ratios(U, H).items()}
    return dict(
        theorem=theorem, law=law, n=n, f=f, d=d, p=p, delta2=delta2 if theorem == 2 else None,
        heterogeneity=kind if theorem == 2 else None, sigma2=sigma2, grad_norm=grad_norm,
        estimate=est.to_dict(), search_estimate=search_value, bound=bound, bound_scale=bound_scale,
        scaled_bound=scaled, ratio=est.value / scaled if scaled > 0 else float("inf"),
        status=status, worst_adversary=fam.labels[k], worst_family=fam.name,
        byzantine_selected=float(hit.double().mean()), moment_ratios=moments,
        candidates=searched, notes=notes, wall_s=time.perf_counter() - t0,
    )
