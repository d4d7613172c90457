"""Bulyan(select, aggregate) (El Mhamdi et al. 2018) with any l_p norm."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, check_regime, fail
from ._distances import check_p, nearest_row, ranking_squared_distances, squared_distances
from ._network import closest_to_median_rows
from .base import Rule, check_gradients, finite_rows, mean_rows, name_field
from .geomed import SpanMedian, check_geomed_p, geomed, geomed_solve, span_applies
from .krum import krum, scores_from_squared
from .median import comed

SELECTIONS = ("krum", "average", "geomed", "comed")
AGGREGATIONS = ("trimmed", "krum", "average", "geomed", "comed")


def check_bulyan_regime(n: int, f: int) -> None:
    """Bulyan needs ``n >= 4f + 3``."""
    check_regime("bulyan", n >= 4 * f + 3, "n >= 4f + 3", n, f)


def _pick_krum(D2: torch.Tensor, remaining: list[int], f: int) -> int:
    idx = torch.tensor(remaining, device=D2.device)
    sub = D2.index_select(0, idx).index_select(1, idx)
    # The last rounds run Krum on 2f + 1 .. 2f + 2 rows, below its own regime
    # (n - f - 2 < f neighbours). There f identical Byzantine rows would score 0
    # and be picked, so every round uses at least f neighbours (and at least 1):
    # a row then always counts a distance to a row outside any group of f.
    neighbours = max(len(remaining) - f - 2, f, 1)
    scores = scores_from_squared(sub, neighbours)
    # With one neighbour the two rows of the closest pair always tie; breaking
    # the tie by row index would make the selection depend on the row order.
    # Ties go to the lower sum of squared distances to all rows left, then to
    # the lower index.
    second = sub.nan_to_num(posinf=math.inf).sum(dim=1)
    best = min(range(len(remaining)), key=lambda i: (float(scores[i]), float(second[i]), i))
    return remaining[best]


def _pick_nearest(rows: torch.Tensor, ok: torch.Tensor, select: str, p: float, start, patience: int = 3):
    """The position among ``rows`` (the rows left) of the one nearest (l_p) to rule
    ``select``'s output on them, and that output (a geomed warm-starts the next
    round's from it). ``ok``: which of them are finite; ``patience``:
    :func:`geomed_solve`'s."""
    pool = rows if bool(ok.all()) else rows[ok]
    known = None
    if select == "average":
        target = mean_rows(pool)  # finite rows whose sum overflows: scaled
    elif select == "comed":
        target = comed(pool)
    else:
        res = geomed_solve(pool, p, start=start, objective=False, patience=patience)
        target = res.z
        if res.distances is not None and pool is rows:  # the IRLS's distances at target
            known = res.distances
    return nearest_row(rows, target, p, ok, known), target


def _pick_span(rows: torch.Tensor, ok: torch.Tensor, span: SpanMedian, remaining: list[int]):
    """:func:`_pick_nearest` for an l_2 geomed selection from the rows' span: the round's
    median from the Gram matrix (no IRLS, no pass but the average), and its nearest row
    from the Gram distances when the runner-up is farther by more than their error
    (the Gram's rounding plus the target's own rounding to the rows' dtype), else by
    :func:`nearest_row` on the rows."""
    if span.full is not None and len(remaining) == span.X.shape[0]:  # the first round: SpanMedian.of solved it
        w, _, _, target, _ = span.full
    else:
        w, _, _ = span.weights(remaining, nu=1e-6)  # geomed_solve's default, as _pick_nearest
        target = span.median(w)
    dist, err = span.distances(w, remaining)
    # copies of a row get the same distance bitwise: the first of them (lowest index) is
    # the pick, and the runner-up is the nearest row that is not a copy of it
    order = torch.sort(dist, stable=True).indices.tolist()
    owners = [span.owner[i] for i in remaining]
    others = [i for i in order if owners[i] != owners[order[0]]]
    if others:
        a, b = order[0], others[0]
        # the target is the average rounded to the rows' dtype: each distance to it moves
        # by at most that rounding, on top of the Gram's own error
        margin = 2.0 * span.rounding(w) + 2.0 * float(err[a] + err[b])
        if float(dist[b] - dist[a]) > margin:
            return a, target
    return nearest_row(rows, target, 2.0, ok), target


def bulyan_select(G: torch.Tensor, f: int, select: str = "krum", p: float = 2.0, memo: dict | None = None,
                  fixed_from: int | None = None) -> list[int]:
    """Indices of the ``theta = n - 2f`` rows Bulyan's selection phase keeps, in order.

    Each round applies rule ``select`` to the rows left: Krum picks a row
    (distances from one pairwise matrix computed once per call); a rule whose
    output is not a row (average, comed, geomed) picks the remaining row
    nearest to its output in l_p. Non-finite rows are never picked while a
    finite row is left. Krum uses ``max(k - f - 2, f, 1)`` neighbours on the
    ``k`` rows left (eq. (3) while ``k > 2f + 2``; at least ``f`` below, so that
    ``f`` colluding identical rows cannot score 0 in the last rounds). Krum ties (two rows of the closest pair always tie
    when one neighbour is left) go to the row with the lower sum of squared
    distances to all rows left, then to the lower index.

    ``memo`` / ``fixed_from``: see :func:`nearest_selection` (average and comed only).
    """
    if select == "krum":
        return krum_selection(ranking_squared_distances(G, p), f)
    return nearest_selection(G, f, select, p, memo=memo, fixed_from=fixed_from, keep_targets=False)[0]


def nearest_selection(G: torch.Tensor, f: int, select: str, p: float, start_for=None, memo: dict | None = None,
                      fixed_from: int | None = None, keep_targets: bool = True) -> tuple[list, list]:
    """:func:`bulyan_select` for a selection whose output is not a row (average, comed,
    geomed), and that output in each round (the targets, ``theta`` d-vectors).

    ``start_for(round, chosen)`` (optional, geomed only) may return ``(start,
    patience)`` for the round's IRLS instead of the rule's own (the previous round's
    target, ``patience=3``; the coordinate-wise median in round 0), or None to keep
    it: the line search starts each round from the same round's targets at nearby
    points of its line. With no hints the result is :func:`bulyan_select`'s, bitwise.

    ``memo`` (a dict kept by the caller across calls with the same ``f``, ``select``,
    ``p`` and ``n``) with ``fixed_from``: the caller promises that the rows from index
    ``fixed_from`` on are the same in every such call (the honest rows of a line
    search, whose Byzantine rows move). An average or comed selection is then a
    function of the rows left once all of them are fixed: the rest of the selection
    is looked up (as the first call that left those rows ran it, bitwise the same) and
    its targets are ``None``. A geomed selection uses the memo only with
    ``start_for`` (a warm caller, whose results are the rule's up to the IRLS's
    tolerance anyway): the looked-up rounds started from another call's targets.

    ``keep_targets=False`` returns ``None`` for every target (the rule itself: the
    ``theta`` kept vectors were 0.58x size(G) of its peak memory by the last round).
    """
    use_memo = (memo is not None and fixed_from is not None
                and (select in ("average", "comed") or (select == "geomed" and start_for is not None)))
    ok = finite_rows(G)
    remaining = list(range(G.shape[0]))
    # The rows left, in G's order, in one buffer: the chosen row is taken out by moving
    # the rows after it up (half the rows on average), where gathering the rows left
    # every round copied them all (68 rows against ~40 for n = 12, f = 2).
    rows = G.clone()
    chosen, targets = [], []
    target = None
    theta = G.shape[0] - 2 * f
    fixed = None  # (round, rows left) where only fixed rows were first left
    # an l_2 geomed selection: every round's median from one Gram pass (None: each round iterates)
    span = SpanMedian.of(G) if select == "geomed" and bool(ok.all()) and span_applies(G, p) else None
    for k in range(theta):
        if use_memo and remaining[0] >= fixed_from:  # every row left is fixed
            key = tuple(remaining)
            if key in memo:  # their rounds ran in an earlier call
                chosen += memo[key]
                targets += [None] * (theta - k)
                return chosen, targets
            fixed = (k, key) if fixed is None else fixed
        start, patience = target, 3
        hint = start_for(k, chosen) if start_for is not None and select == "geomed" else None
        if hint is not None:
            start, patience = hint
        if span is not None:
            j, target = _pick_span(rows, ok, span, remaining)
        else:
            j, target = _pick_nearest(rows, ok, select, p, start, patience)
        chosen.append(remaining.pop(j))
        targets.append(target if keep_targets else None)
        for i in range(j, rows.shape[0] - 1):
            rows[i].copy_(rows[i + 1])
        rows, ok = rows[:-1], torch.cat([ok[:j], ok[j + 1:]])
    if fixed is not None:
        memo[fixed[1]] = chosen[fixed[0]:]
    return chosen, targets


def krum_selection(D2: torch.Tensor, f: int) -> list[int]:
    """:func:`bulyan_select` with ``select="krum"`` from the rows' squared l_p distances
    ``D2`` (``(n, n)``, :func:`squared_distances`): for callers that have them (Bulyan
    aggregating by Krum too, the line search's cached blocks)."""
    remaining = list(range(D2.shape[0]))
    chosen = []
    for _ in range(D2.shape[0] - 2 * f):
        idx = _pick_krum(D2, remaining, f)
        chosen.append(idx)
        remaining.remove(idx)
    return chosen


def closest_to_median_mean(S: torch.Tensor, beta: int) -> torch.Tensor:
    """Per coordinate, the mean of the ``beta`` values closest to the coordinate median
    (Bulyan's original aggregation; median as in :func:`comed`).

    Pinned tie-break: among values equally far from the median the smaller one
    is kept first (so the result depends on the values only, not on the row
    order). The kept values are ``beta`` consecutive order statistics; a sorting
    network over column chunks finds them (``_network.py``).
    """
    return closest_to_median_rows(S, beta)


def bulyan(
    G: torch.Tensor,
    f: int,
    select: str = "krum",
    aggregate: str = "trimmed",
    p: float = 2.0,
) -> torch.Tensor:
    """Bulyan(select=A, aggregate=B), pinned in DESIGN.md.

    1. Selection: ``theta = n - 2f`` rows chosen one at a time by rule A on the
       rows left (:func:`bulyan_select`).
    2. Aggregation of the selected rows by B: ``"trimmed"`` (default, the
       original: per coordinate the mean of the ``beta = theta - 2f`` values
       closest to the median), or ``"krum"`` (with the same f and p),
       ``"average"``, ``"geomed"`` (l_p), ``"comed"``.

    Needs ``n >= 4f + 3``. The pairwise distance matrix is computed once per
    call, not once per selection round. ``p`` is used for every distance and for
    the geometric median.
    """
    G = check_gradients(G, "bulyan")
    f = check_int("bulyan", "f", f, low=0)
    p = check_p("bulyan", p)
    if select not in SELECTIONS:
        raise fail("bulyan", "select", f"one of {SELECTIONS}", select)
    if aggregate not in AGGREGATIONS:
        raise fail("bulyan", "aggregate", f"one of {AGGREGATIONS}", aggregate)
    if "geomed" in (select, aggregate):
        check_geomed_p("bulyan", p)
    n = G.shape[0]
    check_bulyan_regime(n, f)
    # Krum selecting and Krum aggregating use the same distances: computed once
    if select == "krum" and aggregate == "krum":
        D2 = ranking_squared_distances(G, p)
        return bulyan_aggregate(G, krum_selection(D2, f), f, aggregate, p, D2)
    return bulyan_aggregate(G, bulyan_select(G, f, select, p), f, aggregate, p)


def bulyan_aggregate(G: torch.Tensor, chosen: list[int], f: int, aggregate: str, p: float,
                     D2: torch.Tensor | None = None) -> torch.Tensor:
    """Phase 2 of :func:`bulyan`: rule ``aggregate`` on the rows ``chosen`` by
    :func:`bulyan_select` (callers that run several aggregations after one
    selection, like the line search over a pool, share the selection). ``D2``:
    the squared l_p distances of all of ``G``'s rows, if known; a Krum
    aggregation then scores the chosen rows from them (eq. (3) on the
    ``theta = n - 2f`` chosen rows, ``theta - f - 2`` neighbours) instead of
    computing their distances again."""
    if aggregate == "trimmed":  # reads the chosen rows in place (no gathered copy)
        return closest_to_median_rows(G, len(chosen) - 2 * f, rows=chosen)
    if aggregate == "krum" and D2 is not None:
        return G[krum_pick(D2, chosen, f)].clone()
    S = G[chosen]
    if aggregate == "krum":
        return krum(S, f, p)
    if aggregate == "average":
        return mean_rows(S)
    if aggregate == "geomed":
        return geomed(S, p)
    return comed(S)


def krum_pick(D2: torch.Tensor, chosen: list[int], f: int) -> int:
    """The row of ``G`` that Krum (eq. (3), ``len(chosen) - f - 2`` neighbours, ties to
    the first) picks among the rows ``chosen``, from all rows' squared l_p
    distances ``D2``: :func:`bulyan_aggregate`'s Krum aggregation."""
    idx = torch.tensor(chosen, device=D2.device)
    sub = D2.index_select(0, idx).index_select(1, idx)
    return chosen[int(torch.argmin(scores_from_squared(sub, len(chosen) - f - 2)))]


@dataclass(frozen=True)
class Bulyan(Rule):
    """Config of :func:`bulyan`; ``.name == "bulyan[select=krum,aggregate=trimmed,p=2]"``."""

    family: ClassVar[str] = "bulyan"
    f: int = 0
    select: str = name_field("krum")
    aggregate: str = name_field("trimmed")
    p: float = name_field(2.0)

    def __post_init__(self):
        check_int("bulyan", "f", self.f, low=0)
        object.__setattr__(self, "p", check_p("bulyan", self.p))
        if self.select not in SELECTIONS:
            raise fail("bulyan", "select", f"one of {SELECTIONS}", self.select)
        if self.aggregate not in AGGREGATIONS:
            raise fail("bulyan", "aggregate", f"one of {AGGREGATIONS}", self.aggregate)
        if "geomed" in (self.select, self.aggregate):
            check_geomed_p("bulyan", self.p)

    def check(self, n: int) -> None:
        check_bulyan_regime(n, self.f)

    def __call__(self, G):
        return bulyan(G, self.f, self.select, self.aggregate, self.p)
