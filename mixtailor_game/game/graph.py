"""Vulnerability graph of a pool and Proposition 1's diversity condition.

Bipartite graph (networkx): one node per attack (``bipartite=0``), one per
rule (``bipartite=1``), and an edge (a, r) when attack a compromises rule r,
i.e. ``<AGG_r, honest mean> < -threshold`` (paper Definition 2 with a margin;
``threshold = 0`` is the paper's ``<= 0`` up to the equality case).

For each attack a (paper Proposition 1, Appendix A.3):

- ``q`` = its degree (rules it compromises), ``M`` = pool size, ``q / M``;
- ``beta_min`` = the smallest ``<AGG_m', mean>`` over the resilient rules;
- ``lam`` = the largest ``||AGG_i||`` over the compromised rules (the
  paper's ``lambda = max_i sup_w ||E[U_i(w)]||``, estimated at the sampled w);
- ``L`` = ``sup_w ||grad F(w)||``, estimated by the largest norm of the
  honest mean over the samples (or given);
- the sufficient condition ``M / q > 1 + lam L / beta_min`` via
  :func:`mixtailor_game.theory.proposition1_condition` when ``0 < q < M``;
  ``q = 0`` is trivially resilient (True) and ``q = M`` leaves no resilient
  rule (False);
- ``uniform_inner`` = the mean of ``<AGG_r, mean>`` over the pool: the
  quantity the condition lower-bounds (A.3: ``E[U]^T grad F >= (M-q)/M
  beta_min - q/M lam L``), measured directly; it can be positive when the
  condition fails (the condition is sufficient, not necessary).

The lower bound itself is reported as ``bound``; a test checks
``uniform_inner >= bound`` on measured payoffs.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from .._checks import check_real, fail
from ..theory import proposition1_condition
from .payoff import PayoffMatrix
from .zero_sum import as_loss_matrix


def _inputs(inner, attacks, rules, norms, where):
    if isinstance(inner, PayoffMatrix):
        if inner.payoff != "inner":
            raise fail(where, "payoff", "'inner' (compromise is defined by <AGG, mean> < 0)", inner.payoff)
        pm = inner
        return pm.values, list(pm.attacks), list(pm.rules), pm.norms, pm.grad_norm, pm.stderr
    values = as_loss_matrix(inner, where, "inner")  # one-line errors for ragged / huge input too
    A, M = values.shape
    attacks = list(attacks) if attacks is not None else [f"attack{i}" for i in range(A)]
    rules = list(rules) if rules is not None else [f"rule{j}" for j in range(M)]
    if len(attacks) != A or len(rules) != M:
        raise fail(where, "names", f"{A} attacks and {M} rules", (len(attacks), len(rules)))
    norms = None if norms is None else np.asarray(norms, dtype=np.float64)
    if norms is not None and norms.shape != values.shape:
        raise fail(where, "norms", f"of shape {values.shape}", norms.shape)
    return values, attacks, rules, norms, None, None


def vulnerability_graph(inner, attacks=None, rules=None, *, threshold: float = 0.0) -> nx.Graph:
    """Bipartite ``networkx.Graph`` with an edge where the attack compromises the rule.

    ``inner``: a :class:`PayoffMatrix` with ``payoff="inner"`` or an array
    ``(A, M)`` of ``<AGG_r, honest mean>`` (then ``attacks`` / ``rules`` name
    the rows / columns). Nodes are ``("attack", name)`` and ``("rule", name)``
    with attributes ``bipartite`` (0 / 1), ``kind`` and ``name``; duplicate
    rule names (the paper pool repeats comed) get ``#j`` appended. Edges carry
    ``inner`` (and ``stderr`` from a PayoffMatrix).
    """
    where = "vulnerability_graph"
    threshold = check_real(where, "threshold", threshold, low=0.0)
    values, attacks, rules, _, _, stderr = _inputs(inner, attacks, rules, None, where)
    G = nx.Graph()
    anodes = [("attack", _unique(attacks, i)) for i in range(len(attacks))]
    rnodes = [("rule", _unique(rules, j)) for j in range(len(rules))]
    for node in anodes:
        G.add_node(node, bipartite=0, kind="attack", name=node[1])
    for node in rnodes:
        G.add_node(node, bipartite=1, kind="rule", name=node[1])
    for a, an in enumerate(anodes):
        for r, rn in enumerate(rnodes):
            if values[a, r] < -threshold:
                attrs = {"inner": float(values[a, r])}
                if stderr is not None:
                    attrs["stderr"] = float(stderr[a, r])
                G.add_edge(an, rn, **attrs)
    return G


def _unique(names, i):
    name = names[i]
    return name if names.count(name) == 1 else f"{name}#{i}"


@dataclass(frozen=True)
class AttackSummary:
    """Proposition 1 quantities for one attack (see the module docstring)."""

    attack: str
    q: int
    M: int
    fraction: float
    compromised: tuple
    beta_min: float
    lam: float
    L: float
    condition: bool | None
    bound: float
    uniform_inner: float

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["compromised"] = list(self.compromised)
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def attack_summaries(inner, attacks=None, rules=None, *, norms=None, L: float | None = None,
                     threshold: float = 0.0) -> list[AttackSummary]:
    """Per attack: ``q``, ``q / M``, Proposition 1's condition and the measured uniform mix.

    ``inner``: a :class:`PayoffMatrix` (payoff ``"inner"``; its ``norms`` and
    ``grad_norm`` give lambda and L) or an array with ``norms`` (``(A, M)``,
    the aggregates' norms) and ``L`` given. ``L`` overrides the estimate.
    ``condition`` is None when it cannot be evaluated (``L`` or norms unknown,
    or the smallest resilient inner product is not > 0 because of the margin).
    """
    where = "attack_summaries"
    threshold = check_real(where, "threshold", threshold, low=0.0)
    values, attacks, rules, pm_norms, grad_norm, _ = _inputs(inner, attacks, rules, norms, where)
    norms = pm_norms
    if L is None:
        L = grad_norm
    else:
        L = check_real(where, "L", L, low=0.0, low_open=True)
    A, M = values.shape
    out = []
    for a in range(A):
        bad = values[a] < -threshold
        q = int(bad.sum())
        good = ~bad
        beta_min = float(values[a, good].min()) if good.any() else float("nan")
        lam = float(norms[a, bad].max()) if (q and norms is not None) else (0.0 if q == 0 else float("nan"))
        uniform = float(values[a].mean())
        if q == 0:  # Prop. 1 with q = 0 needs every inner product > 0 (threshold > 0 admits < 0)
            cond, bound = (True, beta_min) if beta_min > 0 else (None, float("nan"))
        elif q == M:
            cond, bound = False, -lam * L if L is not None else float("nan")
        elif L is None or not np.isfinite(lam) or not beta_min > 0:
            cond, bound = None, float("nan")
        else:
            cond = bool(proposition1_condition(M, q, lam, L, beta_min))
            bound = (M - q) / M * beta_min - q / M * lam * L
        out.append(AttackSummary(
            attack=attacks[a], q=q, M=M, fraction=q / M,
            compromised=tuple(rules[j] for j in np.flatnonzero(bad)),
            beta_min=beta_min, lam=lam, L=float(L) if L is not None else float("nan"),
            condition=cond, bound=float(bound), uniform_inner=uniform,
        ))
    return out
