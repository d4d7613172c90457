"""Local linear models of the rules: ``AGG_j(G) ~ sum_i W_ij G_ij`` around ``G``.

SCP (:mod:`solvers.scp`) linearizes each rule at the current Byzantine rows
with its combinatorial choices held fixed, as the issue specifies:

- mean: ``W = 1/n``;
- comed / trimmed mean: the rows at the averaged order statistics of each
  coordinate (a stable sort decides ties), weight ``1 / #averaged``;
- Krum / Multi-Krum (eq. (3)): the selected row(s), weight ``1 / m``;
- geometric median under l_p: the IRLS / Weiszfeld weights at the returned
  point, ``z_j = sum_i W_ij x_ij / sum_i W_ij`` (``W_ij = 1 / max(nu, r_i)`` for p = 2,
  ``(|z_j - x_ij| / r_i)^(p-2) / r_i`` otherwise, ``r_i = max(nu, ||z - x_i||_p)``), held fixed;
  ``p = 1`` is comed (the rule returns the coordinate-wise median);
- Bulyan: the selected rows held fixed, then the model of its aggregation
  rule on them (the closest-to-median mean keeps its ``beta`` rows per coordinate).

Other rules fall back to automatic differentiation of the rule when it is
differentiable, else to a zero model (the rule is treated as locally
constant). The gradient of ``<AGG(G), u>`` with respect to row ``i`` is then
``W_i * u``. The slow check in the tests compares each model with finite
differences of the real rule where the choices do not change.
"""

from __future__ import annotations

import torch

from mixtailor_game.rules import Bulyan, Comed, Geomed, Krum, Mean, MultiKrum, TrimmedMean, lp_norm_rows
from mixtailor_game.rules.bulyan import bulyan_select
from mixtailor_game.rules.krum import scores_from_distances
from mixtailor_game.rules import pairwise_distances


def _positions(G: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """``W[n, d]`` averaging the order statistics at positions ``ks`` of each column."""
    order = torch.sort(G, dim=0, stable=True).indices  # [n, d]
    W = torch.zeros_like(G)
    src = torch.full((len(ks), G.shape[1]), 1.0 / len(ks), dtype=G.dtype, device=G.device)
    W.scatter_add_(0, order[ks], src)
    return W


def _comed_ks(n: int) -> list[int]:
    return [n // 2] if n % 2 == 1 else [n // 2 - 1, n // 2]


def _krum_rows(G: torch.Tensor, f: int, p: float, m: int) -> torch.Tensor:
    n = G.shape[0]
    scores = scores_from_distances(pairwise_distances(G, p), max(n - f - 2, 1))
    idx = torch.sort(scores, stable=True).indices[:m]
    W = torch.zeros_like(G)
    W[idx] = 1.0 / m
    return W


def _geomed_weights(G: torch.Tensor, p: float, nu: float, z: torch.Tensor) -> torch.Tensor:
    if p == 1:
        return _positions(G, _comed_ks(G.shape[0]))
    ok = torch.isfinite(G).all(1)
    X = torch.where(ok[:, None], G, torch.zeros_like(G))
    diff = X - z
    r = lp_norm_rows(diff, p).clamp_min(nu).unsqueeze(1)
    if p == 2:
        W = (1.0 / r).expand_as(X).clone()
    else:
        W = (diff.abs() / r).clamp_min(nu).pow(p - 2) / r
    W = torch.where(ok[:, None], W, torch.zeros_like(W))
    return W / W.sum(0, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)


def _closest_to_median(S: torch.Tensor, beta: int) -> torch.Tensor:
    med_w = _positions(S, _comed_ks(S.shape[0]))
    med = (med_w * S).sum(0)
    idx = torch.topk((S - med).abs(), beta, dim=0, largest=False).indices
    W = torch.zeros_like(S)
    W.scatter_add_(0, idx, torch.full_like(S[:beta], 1.0 / beta))
    return W


def _bulyan_weights(rule, G: torch.Tensor) -> torch.Tensor:
    f, p = rule.f, rule.p
    sel = bulyan_select(G, f, rule.select, p)
    S = G[sel]
    a = rule.aggregate
    if a == "trimmed":
        Ws = _closest_to_median(S, S.shape[0] - 2 * f)
    elif a == "krum":
        Ws = _krum_rows(S, f, p, 1)
    elif a == "average":
        Ws = torch.full_like(S, 1.0 / S.shape[0])
    elif a == "comed":
        Ws = _positions(S, _comed_ks(S.shape[0]))
    else:
        from mixtailor_game.rules import geomed

        Ws = _geomed_weights(S, p, 1e-6, geomed(S, p))
    W = torch.zeros_like(G)
    W[sel] = Ws
    return W


def model_weights(rule, G: torch.Tensor) -> torch.Tensor | None:
    """``W[n, d]`` of the fixed-choice linear model of ``rule`` at ``G``, or None if unknown."""
    n = G.shape[0]
    t = type(rule)
    if t is Mean:
        return torch.full_like(G, 1.0 / n)
    if t is Comed:
        return _positions(G, _comed_ks(n))
    if t is TrimmedMean:
        return _positions(G, list(range(rule.b, n - rule.b)))
    if t is Krum:
        return _krum_rows(G, rule.f, rule.p, 1)
    if t is MultiKrum:
        return _krum_rows(G, rule.f, rule.p, rule.m)
    if t is Geomed:
        return _geomed_weights(G, rule.p, rule.nu, rule(G))
    if t is Bulyan:
        return _bulyan_weights(rule, G)
    return None


def rule_gradient(rule, G: torch.Tensor, u: torch.Tensor, f: int) -> torch.Tensor:
    """Gradient of ``<AGG(G), u>`` with respect to the first ``f`` rows (``Tensor[f, d]``)."""
    W = model_weights(rule, G)
    if W is not None:
        return W[:f] * u
    X = G[:f].clone().requires_grad_(True)
    try:
        out = rule(torch.cat([X, G[f:]], 0))
        (g,) = torch.autograd.grad(out @ u, X, allow_unused=True)
    except RuntimeError:
        g = None
    if g is None:
        return torch.zeros_like(G[:f])
    g = torch.nan_to_num(g.detach())
    return g if bool(torch.isfinite(g).all()) else torch.zeros_like(g)

