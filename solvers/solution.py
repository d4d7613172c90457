"""``AttackSolution`` and the evaluation of Byzantine rows with the real rules.

Every value a solver reports comes from running the real rules on the
returned rows (never from a relaxation or a surrogate model): here, or, for
rules the line search already ran on exactly these rows, from that run
(``evaluate(known=...)``):
``inner_m = <AGG_m(B, R) - w_0, u>`` and ``cos_m = inner_m / (||AGG_m - w_0|| ||u||)``
with the Byzantine rows first (the paper's convention; rules break ties by
the lowest index, so ties go to the Byzantine rows). ``R`` and ``u`` are the
problem's: under partial knowledge (A.1.2, A.1.5) the adversary's completed
rows and its estimate of the honest mean (or of ``g``), not the true ones;
``u`` is the honest mean ``mu`` for P1-P3 / expected, and the no-attack
direction ``g`` (``s`` in model space) for tailored attacks. The objective is then

- ``"xi"`` (P1-P3): ``max_m inner_m``;
- ``"expected"``: ``sum_m p_m inner_m``;
- ``"inner"`` (tailored, relaxed): ``inner`` of the single rule;
- ``"lambda"`` (tailored, exact): ``lambda = -<a, g> / ||g||^2`` with
  ``a = AGG - w_0``, feasible when ``||a + lambda g|| <= tol max(1, |lambda|) ||g||``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mixtailor_game.rules import Bucketing, MixTailor
from mixtailor_game.rules._distances import lp_norm_rows
from mixtailor_game.rules.pure import AveragedBucketing, MixtureMean

from .problems import Instance

STATUSES = ("optimal", "feasible", "infeasible", "budget")


@dataclass(frozen=True)
class AttackSolution:
    """The result of :func:`solvers.solve` (a result, never an exception, for infeasible problems).

    ``byzantine``: ``Tensor[f, d]`` (for an infeasible problem: the best rows
    found when the violated constraint is ignored); ``value``: the objective
    recomputed with the real rules (``objective`` says which: ``"lambda"``,
    ``"inner"``, ``"xi"``, ``"expected"``); ``per_rule_inner`` /
    ``per_rule_cosine``: one entry per rule of the problem's pool, in pool
    order; ``status`` in ``optimal`` / ``feasible`` / ``infeasible`` /
    ``budget``; ``bound``: a proven bound on the optimum where the method has
    one (a lower bound for minimization, an upper bound on lambda); ``gap``:
    ``|value - bound|``; ``certificate``: for P1-P3, ``True`` when ``xi < 0``
    and the similarity filter holds (the rows defeat every rule of the pool,
    paper A.4), else ``False`` (also for a pool with a randomized rule, bucketing
    or a MixTailor entry: its value is an average over draws, and under partial
    knowledge with unseen honest rows: its value is on the adversary's estimate,
    ``info["certificate_note"]``); ``None`` for other problems. Every value is on
    the problem's rows and direction (see the module docstring: the adversary's
    estimate under partial knowledge; ``g`` for tailored attacks, else ``mu``).
    A non-finite row, value or per-rule inner product makes the status ``infeasible``.
    """

    byzantine: torch.Tensor
    value: float
    per_rule_inner: tuple
    per_rule_cosine: tuple
    status: str
    gap: float | None
    bound: float | None
    iterations: int
    wall_time: float
    method: str
    certificate: bool | None
    objective: str
    problem: str
    rule_names: tuple = ()
    residual: float | None = None
    filter_ok: bool = True
    info: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        gap = "-" if self.gap is None else f"{self.gap:.3g}"
        return (f"{self.problem}/{self.method}: {self.objective}={self.value:.6g} status={self.status} "
                f"gap={gap} certificate={self.certificate} time={self.wall_time:.3g}s")


def unique_rules(rules, weights):
    """Deduplicate equal rules (frozen dataclasses compare by value).

    Returns ``(uniq, index, w)``: the distinct rules, the position in ``uniq``
    of each pool entry and the summed weight of each distinct rule.
    """
    uniq: list = []
    pos: dict = {}
    index = []
    for r in rules:
        try:
            key = r
            hash(key)
        except TypeError:
            key = id(r)
        if key not in pos:
            pos[key] = len(uniq)
            uniq.append(r)
        index.append(pos[key])
    w = np.zeros(len(uniq))
    for i, wt in zip(index, weights):
        w[i] += wt
    return uniq, np.asarray(index), w


def full_rows(inst: Instance, B: torch.Tensor) -> torch.Tensor:
    """``G = [B; R]`` (Byzantine rows first), in the dtype and device of ``R``."""
    return torch.cat([B.to(inst.R), inst.R], 0)


def rule_output(rule, G: torch.Tensor) -> torch.Tensor:
    return rule(G)


def evaluate(inst: Instance, B: torch.Tensor, tol: float = 1e-6, known: dict | None = None) -> dict:
    """Run every distinct rule once on ``[B; R]`` and return inner products, cosines,
    the objective value, the lambda residual and whether the filter holds.

    ``known`` maps a distinct rule's position to ``(<a, u>, ||a||)`` of its output
    ``a`` (minus w_0) already computed by running that rule on these same rows (a
    method's search did); those rules are not run again. Not used for the
    ``"lambda"`` objective, whose residual needs the output itself."""
    uniq, index, w = unique_rules(inst.rules, inst.weights)
    known = {} if known is None or inst.objective == "lambda" else known
    G = full_rows(inst, B)
    u = inst.u.double()
    un = _norm(u)
    inner_u, cos_u, outs = [], [], []
    for k, r in enumerate(uniq):
        if k in known:
            ip, an = known[k]
            inner_u.append(ip)
            cos_u.append(_cosine(ip, an, un))
            continue
        a = (rule_output(r, G).double() - inst.offset.double())
        outs.append(a)
        ip = float(a @ u)
        an = _norm(a)
        inner_u.append(ip)
        cos_u.append(_cosine(ip, an, un))
    inner_u = np.asarray(inner_u)
    residual = None
    if inst.kind == "max":
        value = float(inner_u.max())
    elif inst.kind == "expected":
        on = w > 0  # a rule drawn with probability 0 adds 0, even when its value is not finite
        value = float(inner_u[on] @ w[on])
    elif inst.objective == "inner":
        value = float(inner_u[0])
    else:
        g = u
        lam = -inner_u[0] / (un * un)
        residual = float((outs[0] + lam * g).norm()) / un
        value = float(lam)
    filt = filter_holds(inst, B)
    return dict(
        finite=bool(np.isfinite(inner_u).all() and np.isfinite(cos_u).all()),
        inner=tuple(float(inner_u[i]) for i in index),
        cosine=tuple(float(cos_u[i]) for i in index),
        value=value,
        residual=residual,
        feasible_lambda=None if residual is None else residual <= tol * max(1.0, abs(value)),
        filter_ok=filt,
    )


def _norm(x: torch.Tensor) -> float:
    """``||x||_2`` by the rules' overflow-safe row norm: the plain norm's squares
    overflowed to inf for entries past ~1e154 (and the cosine then read 0)."""
    return float(lp_norm_rows(x.reshape(1, -1), 2.0)[0])


def _cosine(ip: float, an: float, un: float) -> float:
    """``ip / (an un)`` divided one norm at a time: the product of the norms overflows
    first (``a = -4e307`` rows gave ``cos = -0.0`` where it is -0.97); NaN for an inner
    product that is not finite (no cosine, and the solution is infeasible)."""
    if not math.isfinite(ip):
        return math.nan
    return ip / an / un if an > 0 and un > 0 else 0.0


def pair_distances(B: torch.Tensor, p: float) -> torch.Tensor:
    """``||B_i - B_j||_p`` for all pairs ``i < j`` (float64)."""
    B = B.double()
    f = B.shape[0]
    out = []
    for i in range(f):
        for j in range(i + 1, f):
            out.append(torch.linalg.vector_norm(B[i] - B[j], ord=p))
    return torch.stack(out) if out else B.new_zeros(0)


def filter_holds(inst: Instance, B: torch.Tensor, rel: float = 1e-9) -> bool:
    """Whether ``||B_i - B_j||_{eps_p} >= eps`` for every pair (up to ``rel * eps``)."""
    if inst.eps <= 0 or B.shape[0] < 2:
        return True
    return bool((pair_distances(B, inst.eps_p) >= inst.eps * (1 - rel)).all())


def make_solution(inst: Instance, B: torch.Tensor, *, method: str, status: str, t0: float,
                  iterations: int = 0, bound: float | None = None, info: dict | None = None,
                  tol: float = 1e-6, known: dict | None = None) -> AttackSolution:
    """Evaluate ``B`` with the real rules and package an :class:`AttackSolution`
    (``known``: rule outputs a method already ran on ``B``, see :func:`evaluate`).

    ``status`` is the method's claim; it is downgraded when the real rules
    disagree: a ``"lambda"`` problem whose rows are not exactly anti-aligned, or
    rows that break the similarity filter, and rows or a value that are not
    finite, are not ``optimal`` / ``feasible``.
    """
    if status not in STATUSES:
        raise ValueError(f"solvers: status must be one of {STATUSES}, got {status!r}")
    B = B.detach().to(inst.R).clone()
    ev = evaluate(inst, B, tol, known)
    info = dict(info or {})
    if not (bool(torch.isfinite(B).all()) and math.isfinite(ev["value"]) and ev["finite"]):
        # an attack is finite vectors, and its value a number; anything else is no attack
        # (also a rule's inner product: P1's max read 6.5 "feasible" beside a mean's -inf)
        status = "infeasible"
        info.setdefault("reason", "the rows or their value (or a rule's inner product) are not finite")
    if status != "infeasible":
        if not ev["filter_ok"] or (ev["feasible_lambda"] is False):
            status = "infeasible"
        elif status == "feasible" and inst.kind != "tailored" and not bool(inst.u.any()):
            # mu = 0: <AGG, mu> = 0 for any rows, so rows passing the filter are optimal
            status = "optimal"
            info.setdefault("reason", "the honest mean is zero: every Byzantine row scores 0")
    gap = None
    if bound is not None and status != "infeasible" and math.isfinite(bound):
        gap = abs(ev["value"] - bound)
    cert = None
    if inst.kind == "max":
        cert = bool(status != "infeasible" and ev["filter_ok"] and ev["value"] < 0)
        if cert and any(randomized(r) for r in inst.rules):
            # the stand-in's value is an average over draws: some draws are not defeated
            # (P3 on a bucketing comed: xi = -0.24, yet 21% of the rule's draws scored > 0)
            cert = False
            info.setdefault("certificate_note", "xi < 0 for the average over the draws of a randomized rule "
                            "(bucketing, a MixTailor entry), not for every draw: no certificate")
        if cert and inst.unseen > 0:
            # A.1.2: xi < 0 on the adversary's estimate (unseen rows = g_bar), not on the true rows
            # (P3, seen [1, 2] of [1, 2, -6, -7]: xi = -598 estimated, +1005 on the true rows)
            cert = False
            info.setdefault("certificate_note", f"xi < 0 on the adversary's estimate ({inst.unseen} unseen honest "
                            "rows filled with the mean of the rows it has, paper A.1.2), not on the true "
                            "rows: no certificate")
    names = tuple(getattr(r, "name", type(r).__name__) for r in inst.rules)
    return AttackSolution(
        byzantine=B, value=ev["value"], per_rule_inner=ev["inner"], per_rule_cosine=ev["cosine"],
        status=status, gap=gap, bound=bound, iterations=int(iterations),
        wall_time=time.perf_counter() - t0, method=method, certificate=cert,
        objective=inst.objective, problem=inst.name, rule_names=names, residual=ev["residual"],
        filter_ok=ev["filter_ok"], info=info,
    )


def randomized(rule) -> bool:
    """Whether ``rule`` (as :func:`mixtailor_game.rules.pure` made it) averages over random
    draws, at any depth of wrappers: bucketing, or a MixTailor entry (its mixture mean)."""
    if type(rule) in (AveragedBucketing, MixtureMean, Bucketing, MixTailor):
        return True
    return any(randomized(getattr(rule, a)) for a in ("base", "rule") if callable(getattr(rule, a, None)))


def filter_ignored(inst: Instance, method_fn, method: str, t0: float, **options) -> AttackSolution:
    """Identical rows (``structure`` line / suboptimal, ``f >= 2``) cannot be ``eps > 0``
    apart: the answer is ``infeasible`` with the best rows ``method_fn`` finds when the
    filter is ignored (``eps = 0``), as :class:`AttackSolution` promises (zero rows were
    returned before, 0.5144 where the line reaches 0.4644)."""
    best = method_fn(dataclasses.replace(inst, eps=0.0), **options)
    info = dict(best.info, reason="identical rows cannot be eps apart; the rows are the best found with "
                "the filter ignored (eps = 0)")
    return make_solution(inst, best.byzantine, method=method, status="infeasible", t0=t0,
                         iterations=best.iterations, info=info, tol=options.get("tol", 1e-6))
