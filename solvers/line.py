"""Method ``"line"``: global 1-D search over ``t`` for rows along a fixed line.

Every Byzantine row is ``B_i(t) = w_0 + t * l`` (+ a fixed spread of
``eps * (i - (f-1)/2)`` along one coordinate when the similarity filter needs
distinct rows), with ``l = -sum_i (V_i - w_0)`` for pool problems (P3 is exactly
this problem with ``t = lambda``) and ``l = -g`` for tailored attacks. The
rules are black boxes; the method:

1. builds candidates: ``0``, ``+-s0 * geomspace(1e-4, t_max)``, a linear grid
   on ``[-2 s0, 2 s0]`` (``s0 = max_i ||V_i - w_0|| / ||l||``), the points of the
   line nearest to each honest row and the midpoints between them, on small rows
   (``n d < 2^16``) a dense linear grid of ``n_dense`` (101) points on
   ``[-2 s0, 2 s0]`` scored like those near points (Krum windows narrower than
   the 17-point grid were missed: by more than 1% on 5 of 40 small solves, up to
   40%; README), and, for rules
   that are piecewise linear in ``t`` (mean, comed, trimmed mean), their exact
   breakpoints ``t = (h_ij - w_0j) / l_j`` when there are at most
   ``max_breakpoints`` of them (20,000); a problem that is one such function
   (a single rule or an expectation, structure ``"line"``) instead scores all
   its breakpoints, up to ``exact_breakpoints`` (10^7), in one vectorized call
   (order statistics by running sums: ``O(log d)`` per candidate) and stops
   there, optimal; so does the max of a few such rules (P1-P3 over comed /
   trimmed mean / mean, up to ``MAX_EXACT_RULES``), with the points between
   breakpoints where two rules cross (:func:`max_crossings`); after the
   first scoring, both sides of every point where an l_2 Krum's choice, or an
   l_2 Bulyan's Krum selection, changes (closed form, :mod:`solvers.krum_line`:
   the squared distances are quadratics in ``t``), so
   no window where it picks the Byzantine rows is missed at any d (other norms
   and selections rely on the grids);
2. evaluates every distinct rule at every candidate (``rule.batched`` on
   chunks of ``[T, n, d]``, or exact closed forms for identical rows: running
   sums of the clamp hinges for order statistics; Krum, and Bulyan with a Krum
   selection or aggregation, from l_p distances shared along the line: the
   honest block once per p, the n - f distances from x(t) per candidate;
   pool Bulyans with the same selection share it, and the rounds of an
   average / comed selection left with honest rows only are looked up from the
   first candidate that left those rows, bitwise the same); for the
   max objective (P1-P3) only the cheapest tier of rules runs at every
   candidate, and the costlier ones (Krum's l_p distances, then black boxes)
   one at a time, best first: at the candidate of lowest bound (the max of the
   rules run there) the next rule is the one predicted to lift that bound above
   the next candidate's (a rule's prediction is its larger value at the nearest
   candidates where it ran, on either side; a Bulyan(select=geomed) that never
   ran is predicted by its siblings with the same aggregation) at the least
   estimated cost per cut (fixed per rule, less the work other rules left
   there: the search does not depend on the machine's timing).
   During the zoom a candidate whose remaining rules are all predicted below
   its bound is left there, and a geometric median between two candidates
   where it ran starts on the line between its outputs there (one IRLS step
   reaches the float floor; each round of a Bulyan(select=geomed) selection
   likewise, from the same round at neighbours with the same rows left); at
   the end the search certifies: it completes the candidate of lowest bound,
   its warm-started values run again cold, until the lowest is complete (so
   the answer is the minimum over the candidates of the max over every rule,
   the rules' own values). An expectation with a black box has no bound to
   prune by: every rule runs at every other candidate of the first grid within
   2 s0 (on large rows, lazy: the ones nearest 0 and at +-2 s0, ``ANCHOR_GAP``)
   and at every other one beyond (the outermost included), warm-started
   the same way (also Bulyan's
   geomed aggregation, from neighbours with the same rows chosen; far
   candidates last, outward from their inner neighbour); it keeps one of the
   cluster of points nearest to the honest rows (those s0 / 64 apart). At the
   candidates between those and at the zoom's (``expect_search="lazy"``, the
   default) only the closed forms and the rules that pick rows from Krum's
   distances run (Krum; Bulyan with a Krum selection, or a Krum aggregation
   after an average / comed selection: they jump); the others are predicted
   on the straight line between the nearest candidates where they ran, with the
   difference of those two values as the spread. Best first by prediction less
   spread, the search runs the costly rule of largest weighted spread per
   estimated cost at the lowest candidate until that candidate's spreads sum to
   at most ``expect_tol`` (1e-5 of ``<u, u>``): the minimum over the candidates
   if each rule is monotone between adjacent candidates where it ran.
   ``"exhaustive"`` runs every rule at every candidate. At the end the
   candidate predicted lowest is completed, its warm values run again cold,
   until the lowest is complete;
3. zooms ``rounds`` times on the brackets of the ``keep`` best candidates
   (a point within 1e-12 of a candidate is not scored again); for P1-P3 those
   candidates first run their cheap rules (Krum, Bulyan with a Krum selection:
   they jump where their neighbours predicted them low), and before the first
   ``exact_rounds`` (default 0) the best one runs every rule, so that the zoom
   centres on an exact value rather than a bound.

Status: ``optimal`` for the 1-D problem itself (structure ``"line"``) when every
rule is piecewise linear in ``t`` with all breakpoints among the candidates and
the objective is a single rule or an expectation (the minimum of a piecewise
linear function on ``[-T, T]`` lies at a breakpoint or an end); otherwise
``feasible`` (a heuristic global search; the restriction to a line of the
``optimal`` / ``suboptimal`` structures is always only ``feasible``).
This is not in the paper (which leaves P3 open); published attacks (IPM, ALIE)
scan one scalar on a coarse grid only.
"""

from __future__ import annotations

import bisect
import math
import time

import numpy as np
import torch

from mixtailor_game._checks import check_int, check_real, fail
from mixtailor_game.rules import Bulyan, Comed, Geomed, Krum, Mean, TrimmedMean, bulyan_select, geomed_solve
from mixtailor_game.rules._distances import squared_distances, squared_distances_from, squared_distances_from_norms
from mixtailor_game.rules.bulyan import bulyan_aggregate, krum_pick, krum_selection, nearest_selection
from mixtailor_game.rules.krum import scores_from_squared

from .krum_line import BYZANTINE, BulyanKrumLine, KrumLine, krum_choices
from .problems import Instance
from .solution import filter_ignored, make_solution, unique_rules

# Below this many entries (n * d) the Krum-based closed forms take the rules' own
# distance matrix at each t (cheap there) instead of the shared honest block
SMALL_ELEMENTS = 1 << 16

# The most breakpoints a single closed-form function scores at once (solve_line,
# relax): 10^7 float64 candidates, ~80 MB per array
EXACT_BREAKPOINTS = 10_000_000
MAX_EXACT_RULES = 8  # a max of closed forms: every pair's crossings are searched
# A lazy expectation on large rows runs every rule at candidates within 2 s0 at least this
# many s0 apart (from 0 outward, and the outermost): see LineObjective._anchors. At 2 the
# anchors there are the candidates nearest 0 on each side and the outermost ones
ANCHOR_GAP = 2.0

OPTIONS = ("t_max", "n_geo", "n_lin", "n_dense", "max_breakpoints", "exact_breakpoints", "rounds", "exact_rounds", "zoom", "keep",
           "chunk_elems", "fast", "tol", "t_range", "expect_search", "expect_tol")


def spread_vector(inst: Instance) -> torch.Tensor | None:
    """Offsets ``c_i e_j`` that make the f rows pairwise ``eps`` apart (in any l_p), or None."""
    if inst.structure != "optimal" or inst.eps <= 0 or inst.f < 2:
        return None
    j = int(torch.argmin(inst.u.abs()))
    c = inst.eps * (torch.arange(inst.f, dtype=torch.float64) - (inst.f - 1) / 2)
    S = torch.zeros(inst.f, inst.d, dtype=torch.float64)
    S[:, j] = c
    return S.to(inst.R)


def line_length(inst: Instance) -> float:
    """``||l||_2``, scaled so that it neither underflows (rows ~1e-300) nor overflows."""
    m = float(inst.line64.abs().max()) if inst.d else 0.0
    if not m > 0 or not math.isfinite(m):
        return m
    return float((inst.line64 / m).norm()) * m


def line_rows(inst: Instance, t) -> torch.Tensor:
    """``Tensor[T, f, d]``: the Byzantine rows at each ``t``."""
    t = torch.as_tensor(np.atleast_1d(t), dtype=torch.float64, device=inst.R.device)
    x = inst.offset64 + t[:, None] * inst.line64
    B = x[:, None, :].expand(-1, inst.f, -1)
    S = spread_vector(inst)
    if S is None:
        return B.to(inst.R)
    # the spread must survive rounding to the rows' dtype (exactly eps apart in float64,
    # float32 rows ~1 came out 2e-9 short and the filter refused them): widened by
    # a few ulps of the column until every adjacent pair is eps apart as sent
    j = int(torch.argmin(inst.u.abs()))
    step = S[:, j].double() / inst.eps
    spacing = inst.eps
    for _ in range(60):
        out = (B + (spacing * step)[None, :, None] * _unit(inst.d, j, B)).to(inst.R)
        col = out[:, :, j].double()
        if bool(((col[:, 1:] - col[:, :-1]).abs() >= inst.eps).all()):
            return out
        top = float(col.abs().max())
        spacing += 4 * float(torch.finfo(inst.R.dtype).eps) * max(top, spacing)
    return out


def _unit(d: int, j: int, like: torch.Tensor) -> torch.Tensor:
    e = torch.zeros(d, dtype=torch.float64, device=like.device)
    e[j] = 1.0
    return e


class _Rows:
    """``[B(t); R]`` in one buffer whose f Byzantine rows are rewritten per ``t``: a
    ``torch.cat`` per candidate copied all n rows (1.3 ms at 12 x 184,586, a
    quarter of a warm-started geometric median). One per search, shared by its
    evaluators: callers use the rows before the next ``at`` (the rules return new
    tensors, never views of their input). The Byzantine rows of the last few ``t``
    and their inner products with ``u`` are kept: every Krum-based evaluator asked
    for them at each candidate (2,748 :func:`line_rows` calls, ~1 s of an
    expectation on the paper pool at d = 184,586)."""

    KEEP = 4  # Byzantine rows kept (the evaluators run one candidate at a time)

    def __init__(self, inst: Instance):
        self.inst, self.G, self.t = inst, None, None
        self._byzantine: dict[float, torch.Tensor] = {}
        self._values: dict[float, float] = {}

    def byzantine(self, t: float) -> torch.Tensor:
        """``line_rows(inst, [t])[0]`` (the f rows in the rows' dtype), kept."""
        t = float(t)
        B = self._byzantine.pop(t, None)
        if B is None:
            B = line_rows(self.inst, [t])[0]
        self._byzantine[t] = B  # the newest last
        if len(self._byzantine) > self.KEEP:
            del self._byzantine[next(iter(self._byzantine))]
        return B

    def value(self, t: float) -> float:
        """``<B_0(t) - w_0, u>`` from the rounded row, as the rules output it."""
        t = float(t)
        if t not in self._values:
            inst = self.inst
            self._values[t] = float((self.byzantine(t)[0].double() - inst.offset64) @ inst.u64)
        return self._values[t]

    def at(self, t: float) -> torch.Tensor:
        t = float(t)
        if self.G is not None and self.t == t:
            return self.G
        B = self.byzantine(t)
        if self.G is None:
            self.G = torch.cat([B, self.inst.R])
        else:
            self.G[: self.inst.f] = B
        self.t = t
        return self.G


class _Starts:
    """An IRLS's outputs at solved ``t`` (a geometric median's, or each round's of a
    Bulyan(select=geomed) selection), to start it at a nearby ``t``: the median moves
    smoothly along the line. Holds at most ``cap`` points, dropping the one farthest
    from the newest (the zoom works near the best candidates; a geometric median's
    output is 0.7 MB, a selection's eight rounds 5.9 MB at d = 184,586)."""

    def __init__(self, cap: int = 32, outward: bool = False):
        self.ts: list[float] = []  # sorted
        self.data: dict = {}
        self.cap = cap
        self.outward = outward

    def keep(self, t: float, value) -> None:
        if t not in self.data:
            bisect.insort(self.ts, t)
        self.data[t] = value
        if len(self.ts) > self.cap:
            far = max(self.ts, key=lambda s: abs(s - t))
            self.ts.remove(far)
            del self.data[far]

    def reach(self, t: float, ts: list | None = None) -> str:
        """What :meth:`start` does at ``t`` from the solved points ``ts`` (default: all,
        ignoring ``match``): ``"between"`` two of them, ``"near"`` (a start from one
        side) or ``"cold"`` (none)."""
        ts = self.ts if ts is None else ts
        i = bisect.bisect_left(ts, t)
        if 0 < i < len(ts):
            return "between"
        if len(ts) < 2:
            return "near" if ts and self.outward else "cold"
        b, a = (ts[0], ts[1]) if i == 0 else (ts[-1], ts[-2])
        return "near" if self.outward or abs(t - b) <= 4 * abs(b - a) else "cold"

    def start(self, t: float, get=None, match=None) -> tuple[torch.Tensor | None, bool]:
        """A start at ``t`` and whether ``t`` lies between two solved points: there the
        straight line between their outputs (3-100x closer than the nearest output);
        outside them the line through the two nearest on that side when ``t`` is no
        farther out than four times their spacing, else None (cold). An ``outward``
        store (an expectation's, which runs every rule at every candidate, the far
        ones last and outward) extrapolates up to one spacing and otherwise starts
        from the nearest output: far out on the line the medians saturate and a
        straight line overshoots (Bulyan(select=geomed) at t = 9..227 s0,
        d = 184,586: 0.1 s from the inner neighbour's targets, 0.1-0.9 s
        extrapolated, 1-5 s cold). In P3's search, which reruns warm values cold at
        its answer, those starts cost 6% more IRLS passes than cold runs. None when
        nothing is solved. ``get`` maps a kept value to the output (default:
        itself); only kept values that ``match`` count."""
        ts = self.ts if match is None else [s for s in self.ts if match(self.data[s])]
        out = (lambda s: self.data[s]) if get is None else (lambda s: get(self.data[s]))
        kind = self.reach(t, ts)
        if kind == "cold":
            return None, False
        i = bisect.bisect_left(ts, t)
        if kind == "between":
            a, b = ts[i - 1], ts[i]
            return torch.lerp(out(a), out(b), (t - a) / (b - a)), True
        b = ts[0] if i == 0 else ts[-1]  # the nearest
        a = (ts[1] if i == 0 else ts[-2]) if len(ts) >= 2 else None
        if self.outward and (a is None or abs(t - b) > abs(b - a)):  # beyond one spacing
            return out(b), False
        return torch.lerp(out(a), out(b), (t - a) / (b - a)), False


class _GeomedAggregate:
    """Bulyan's geomed aggregation (of the ``theta`` rows chosen) along the line: its
    outputs by ``t`` with the rows chosen there, so that a nearby ``t`` with the same
    rows chosen starts its IRLS from them (:class:`_Starts`). Cold it ran from the
    coordinate-wise median every time: 50-80 ms a candidate for each of the paper
    pool's four Bulyan(., geomed) at d = 184,586, a fifth of an expectation's time."""

    def __init__(self, rule, outward: bool):
        self.rule = rule
        self.starts = _Starts(cap=16, outward=outward)

    def cold(self, G: torch.Tensor, chosen: list, t: float) -> torch.Tensor:
        """The rule's own aggregation (:func:`bulyan_aggregate`), kept as a start."""
        r = self.rule
        out = bulyan_aggregate(G, chosen, r.f, r.aggregate, r.p)
        self.starts.keep(t, (frozenset(chosen), out))
        return out

    def warm(self, G: torch.Tensor, chosen: list, t: float) -> tuple[torch.Tensor, bool]:
        """The aggregation started from solved neighbours with the same rows chosen (one
        IRLS step between two of them), and whether it was; else :meth:`cold`."""
        rows = frozenset(chosen)
        start, between = self.starts.start(t, get=lambda v: v[1], match=lambda v: v[0] == rows)
        if start is None:
            return self.cold(G, chosen, t), False
        r = self.rule
        z = geomed_solve(G[chosen], r.p, start=start, objective=False, patience=1 if between else 3).z
        self.starts.keep(t, (rows, z))
        return z, True


def _geomed_aggregate(inst: Instance, rule) -> _GeomedAggregate | None:
    if type(rule) is Bulyan and rule.aggregate == "geomed" and rule.p > 1:
        return _GeomedAggregate(rule, outward=inst.kind == "expected")
    return None


def _select(selections: dict, G: torch.Tensor, rule, f: int) -> list:
    """:func:`bulyan_select` of ``rule`` on the rows at one ``t``; an average or comed
    selection looks its rounds up once only honest rows (fixed along the line) are left
    (:func:`nearest_selection`'s memo, per (select, f, p), in ``selections``): where
    the Byzantine rows are chosen in the first two rounds (near the honest rows) 6 of
    the 8 rounds of the paper pool's Bulyans. Bitwise the rule's own selection.
    Paper-pool ExpectedValue, seed 0: 39.6 -> 33.3 passes, the same answer."""
    memo = selections.setdefault(("rounds-left", rule.select, rule.f, rule.p), {})
    return bulyan_select(G, rule.f, rule.select, rule.p, memo=memo, fixed_from=f)


class _BlackBox:
    """``<rule([B(t); R]) - w_0, u>`` for a batch of ``t`` by ``rule.batched``."""

    tier = 2
    piecewise_linear = False

    def __init__(self, inst, rule, chunk_elems, selections=None, rows=None):
        self.inst, self.rule = inst, rule
        self.chunk = max(1, int(chunk_elems // (inst.n * inst.d)))
        # Bulyan: selections by (select, f, p, t), shared with the pool's other Bulyans
        # (two entries of the paper pool select by the same geomed: 0.3 s saved per t)
        self.selections = selections if type(rule) is Bulyan else None
        # t -> (<a, u>, ||a||) of a = the rule's output at t minus w_0, from single-point
        # calls, which run the rule itself on exactly the rows make_solution builds: the
        # solution reuses them instead of running the costly rules again at the chosen t.
        self.memo: dict[float, tuple[float, float]] = {}
        # A geometric median's outputs by t: the IRLS of a nearby t starts from them (warm)
        outward = inst.kind == "expected"  # see _Starts.start
        self.starts = _Starts(outward=outward) if type(rule) is Geomed else None
        # Bulyan(select=geomed): each round's target by t (shared with the pool's other
        # Bulyans of the same p): a nearby t starts its rounds from them
        self.rounds = None
        if self.selections is not None and rule.select == "geomed":
            self.rounds = self.selections.setdefault(("geomed-rounds", rule.f, rule.p),
                                                     _Starts(cap=16, outward=outward))
        self.agg = _geomed_aggregate(inst, rule)
        self.rows = _Rows(inst) if rows is None else rows

    def warm(self, t: float) -> tuple[float, bool]:
        """The value at one ``t`` and whether it is warm: a geometric median's IRLS
        started from its outputs at nearby solved ``t`` (:class:`_Starts`). Between two
        of them the start is at the float floor already and one step ends it
        (``patience=1``: ~5 ms against ~22 ms cold at p = 14, d = 184,586); a start
        extrapolated from one side takes the usual stopping rule (3-4 steps against
        6). A Bulyan(select=geomed) starts each selection round the same way
        (:meth:`_warm_bulyan`). Equal to the rule's own value up to its tolerance
        (measured within 4e-5 relative, as close as 3 steps got), not bitwise: kept
        out of ``memo``. With no start (nothing solved nearby) the rule runs cold,
        as in ``__call__``."""
        if self.rounds is not None or self.agg is not None:
            return self._warm_bulyan(t)
        start, between = self.starts.start(t) if self.starts is not None else (None, False)
        if start is None:
            return float(self(np.array([t]))[0]), False
        inst, r = self.inst, self.rule
        z = geomed_solve(self.rows.at(t), r.p, nu=r.nu, max_iter=r.max_iter, tol=r.tol, start=start,
                         objective=False, patience=1 if between else 3).z
        self.starts.keep(t, z)
        return float((z.double() - inst.offset64) @ inst.u64), True

    def _warm_bulyan(self, t: float) -> tuple[float, bool]:
        """Bulyan with a geomed selection or aggregation at ``t``, warm. A geomed
        selection: each round's IRLS starts from that round's targets at solved
        neighbours whose rows left are the same (:class:`_Starts`, one step between
        two of them), else as the rule does: about half the cold time near the honest
        rows (profile: ~0.15 s against ~0.28 s at p = 11, d = 184,586), and far out on
        the line ~0.1 s from the inner neighbour against 1-5 s cold. A geomed
        aggregation starts from its outputs at neighbours with the same rows chosen
        (:class:`_GeomedAggregate`). When nothing started warm the value is the
        rule's own (bitwise, memoized) and flagged cold."""
        inst, r = self.inst, self.rule
        r.check(inst.n)
        key, wkey = (r.select, r.f, r.p, t), ("geomed-warm", r.f, r.p, t)
        if self.rounds is None and key not in self.selections:  # the rule's own selection, shared
            self.selections[key] = _select(self.selections, self.rows.at(t), r, inst.f)
        G = self.rows.at(t) if key not in self.selections else None
        if G is not None and wkey not in self.selections:
            hinted = []

            def start_for(k, chosen):
                left = frozenset(chosen)
                start, between = self.rounds.start(t, get=lambda v: v[1][k],
                                                   match=lambda v: v[1][k] is not None
                                                   and frozenset(v[0][:k]) == left)
                if start is None:
                    return None
                hinted.append(k)
                return start, 1 if between else 3

            # rounds left with honest rows only: as an earlier warm candidate ran them
            # (paper-pool ExpectedValue, seed 0: 19% fewer IRLS steps, the same answer)
            memo = self.selections.setdefault(("rounds-left-warm", r.select, r.f, r.p), {})
            chosen, targets = nearest_selection(G, r.f, "geomed", r.p, start_for, memo=memo, fixed_from=inst.f)
            self.rounds.keep(t, (chosen, targets))
            looked_up = any(x is None for x in targets)  # rounds of the memo: warm, like hinted ones
            self.selections[key if not (hinted or looked_up) else wkey] = chosen
        cold_selection = key in self.selections
        if self.agg is None:
            if cold_selection:
                return float(self(np.array([t]))[0]), False
            out = bulyan_aggregate(self.rows.at(t), self.selections[wkey], r.f, r.aggregate, r.p)
            return float((out.double() - inst.offset64) @ inst.u64), True
        if cold_selection and t in self.memo:
            return self.memo[t][0], False
        out, warm = self.agg.warm(self.rows.at(t), self.selections[key if cold_selection else wkey], t)
        if cold_selection and not warm:  # the rule's own output: as a cold call keeps it
            a = out.double() - inst.offset64
            self.memo[t] = (float(a @ inst.u64), float(a.norm()))
            return self.memo[t][0], False
        return float((out.double() - inst.offset64) @ inst.u64), True

    def outputs(self, t: np.ndarray) -> torch.Tensor:
        inst = self.inst
        outs = []
        for s in range(0, len(t), self.chunk):
            if min(self.chunk, len(t) - s) == 1:  # one t: the shared rows buffer, no copy of R
                z = self._single(self.rows.at(float(t[s])), float(t[s]))
                if self.starts is not None:
                    self.starts.keep(float(t[s]), z)
                out = z.double() - inst.offset64
                self.memo[float(t[s])] = (float(out @ inst.u64), float(out.norm()))
                outs.append(out.unsqueeze(0))
                continue
            Bb = line_rows(inst, t[s:s + self.chunk])
            Gb = torch.cat([Bb, inst.R.unsqueeze(0).expand(Bb.shape[0], -1, -1)], 1)
            if self.selections is not None:  # Bulyan batches by a loop anyway: share selections
                ts = t[s:s + self.chunk]
                outs.append(torch.stack([self._single(G, float(x)) for G, x in zip(Gb.unbind(0), ts)]).double()
                            - inst.offset64)
            else:
                outs.append(self.rule.batched(Gb).double() - inst.offset64)
        return torch.cat(outs, 0)

    def _single(self, G: torch.Tensor, t: float) -> torch.Tensor:
        """The rule's output on ``G`` (the rows at ``t``); a Bulyan reuses the selection
        of another pool entry with the same (select, f, p) at this ``t``: the same
        functions as ``bulyan`` run, so the output is bitwise the rule's."""
        r = self.rule
        if self.selections is None:
            return r(G)
        key = (r.select, r.f, r.p, t)
        if key not in self.selections:
            r.check(G.shape[0])
            if self.rounds is None:
                self.selections[key] = _select(self.selections, G, r, self.inst.f)
            else:  # the same rounds as bulyan_select; their targets start nearby t (warm)
                chosen, targets = nearest_selection(G, r.f, r.select, r.p)
                self.rounds.keep(t, (chosen, targets))
                self.selections[key] = chosen
        if self.agg is not None:  # the rule's own aggregation, kept as a start
            return self.agg.cold(G, self.selections[key], t)
        return bulyan_aggregate(G, self.selections[key], r.f, r.aggregate, r.p)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return (self.outputs(t) @ self.inst.u64).cpu().numpy()

    def run_cost(self, t: float) -> float:
        """Estimated cost of a run at ``t`` (:meth:`LineObjective._cost`)."""
        r = self.rule
        if type(r) is Geomed:
            return _GEOMED_COST[self.starts.reach(t)] * _power_factor(r.p)
        if self.selections is None:
            return _OTHER_COST
        keys = ((r.select, r.f, r.p, t), ("geomed-warm", r.f, r.p, t))
        reach = self.rounds.reach(t) if self.rounds is not None else "cold"
        return _bulyan_cost(r, any(k in self.selections for k in keys), reach)

    def breakpoints(self):
        return None

    def critical_points(self, lo: float, hi: float) -> np.ndarray:
        """Where an l_2 Krum, or a Bulyan's l_2 Krum selection, changes its choice
        (``fast=False`` runs them as black boxes)."""
        return krum_critical_points(self.inst, self.rule, lo, hi)

    def lower_bound(self, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), -np.inf)


class _OrderStat:
    """Mean of order-statistic positions ``ks`` of ``[f copies of x; R]`` per coordinate.

    With ``h`` the sorted honest column (``m = n - f`` values), position ``k``
    (0-based) of the merged sorted column is ``clamp(x, h_{k-f}, h_k)``
    (``h_{<0} = -inf``, ``h_{>=m} = +inf``): comed and trimmed mean in closed form.

    Along the line ``x(t) = o + t l`` the value is piecewise linear in ``t``:
    ``clamp(x, lo, hi) = x + (lo - x)_+ - (x - hi)_+``, and each of those hinges
    is ``|l_j| (a - t)_+`` or ``|l_j| (t - a)_+`` with ``a`` the breakpoint
    where it starts. The hinges are sorted once by breakpoint with running sums
    of their slopes and offsets, so a batch of ``T`` candidates costs
    ``O(T log d)`` (two binary searches each) instead of ``O(T d)``: all ``3d``
    breakpoints of a comed can be candidates (the exact 1-D optimum) at any d.
    """

    tier = 0
    piecewise_linear = True

    def __init__(self, inst, ks):
        self.inst, self.positions = inst, tuple(ks)  # relax's rounding slack reads them too
        H = torch.sort(inst.R.double(), 0).values
        m = H.shape[0]
        self.rows = sorted({k - inst.f for k in ks if k - inst.f >= 0} | {k for k in ks if k < m})
        self.H = H
        u, o, l = inst.u64, inst.offset64, inst.line64
        pos, neg, flat = l > 0, l < 0, l == 0
        # hinges (breakpoint, weight): "left" ones are w (a - t)_+, "right" ones w (t - a)_+
        left, right = [], []
        const = 0.0
        for k in ks:
            for row, sign in ((k - inst.f, 1.0), (k, -1.0)):  # lower clamp (lo - x)_+, upper (x - hi)_+
                if not 0 <= row < m:
                    continue  # an infinite bound never clamps
                a = (H[row] - o) / torch.where(flat, torch.ones_like(l), l)
                w = sign * u * l.abs()
                # lower clamp: l > 0 clamps left of a, l < 0 right of it; the upper clamp mirrors
                left_side, right_side = (pos, neg) if sign > 0 else (neg, pos)
                left.append((a[left_side], w[left_side]))
                right.append((a[right_side], w[right_side]))
                # l_j = 0: x_j = o_j for every t, a constant clamp
                gap = (H[row][flat] - o[flat]) if sign > 0 else (o[flat] - H[row][flat])
                const += sign * float((u[flat] * gap.clamp_min(0)).sum())
        self.K = len(ks)
        self.const = const
        self.slope = float(u @ l)
        self.left = self._running_sums(left, suffix=True)
        self.right = self._running_sums(right, suffix=False)
        # Beyond every breakpoint the value is constant when each position is clamped
        # there (finite bounds): taken from the clamps at one point, so far-out
        # candidates tie exactly (the running sums would leave rounding ~ eps * t there,
        # and an argmin would then pick among equal values by noise, not by smallest t).
        self.lo_h, self.hi_h = math.inf, -math.inf
        self.flat_low = self.flat_high = None
        a = torch.cat([self.left[0], self.right[0]])
        if len(a):
            self.lo_h, self.hi_h = float(a.min()), float(a.max())
        ups, downs = bool(pos.any()), bool(neg.any())
        bounded_lo = all(k - inst.f >= 0 for k in ks)  # every position has a finite lower bound
        bounded_hi = all(k < m for k in ks)
        # t -> +inf: coordinates with l > 0 go up (need hi), l < 0 go down (need lo)
        if (not ups or bounded_hi) and (not downs or bounded_lo):
            self.flat_high = float(self._clamped(np.array([self.hi_h + max(1.0, abs(self.hi_h))]))[0])
        if (not ups or bounded_lo) and (not downs or bounded_hi):
            self.flat_low = float(self._clamped(np.array([self.lo_h - max(1.0, abs(self.lo_h))]))[0])

    @staticmethod
    def _running_sums(hinges, suffix: bool):
        """Sorted breakpoints ``a`` and running sums ``S0 = sum w``, ``S1 = sum w a``
        over the hinges from each position to the end (``suffix``) or before it."""
        a = torch.cat([h[0] for h in hinges]) if hinges else torch.zeros(0, dtype=torch.float64)
        w = torch.cat([h[1] for h in hinges]) if hinges else torch.zeros(0, dtype=torch.float64)
        a, order = torch.sort(a)
        w = w[order]
        zero = torch.zeros(1, dtype=torch.float64, device=a.device)
        if suffix:  # S[i] = sum over positions >= i
            s0 = torch.cat([torch.flip(torch.cumsum(torch.flip(w, [0]), 0), [0]), zero])
            s1 = torch.cat([torch.flip(torch.cumsum(torch.flip(w * a, [0]), 0), [0]), zero])
        else:  # S[i] = sum over positions < i
            s0 = torch.cat([zero, torch.cumsum(w, 0)])
            s1 = torch.cat([zero, torch.cumsum(w * a, 0)])
        return a, s0, s1

    def __call__(self, t: np.ndarray) -> np.ndarray:
        a_l, s0_l, s1_l = self.left
        a_r, s0_r, s1_r = self.right
        tt = torch.as_tensor(np.asarray(t, dtype=np.float64), device=a_l.device)
        i = torch.searchsorted(a_l, tt, right=True)  # left hinges active where a > t
        left = s1_l[i] - tt * s0_l[i]
        j = torch.searchsorted(a_r, tt, right=False)  # right hinges active where a < t
        right = tt * s0_r[j] - s1_r[j]
        out = (self.slope * tt + (self.const + left + right) / self.K).cpu().numpy()
        tn = tt.cpu().numpy()
        if self.flat_high is not None:
            out[tn > self.hi_h] = self.flat_high
        if self.flat_low is not None:
            out[tn < self.lo_h] = self.flat_low
        return out

    def _clamped(self, t: np.ndarray) -> np.ndarray:
        """The clamp formula itself, ``O(T d)`` (the far-out constants)."""
        inst = self.inst
        u, o, l = inst.u64, inst.offset64, inst.line64
        m = self.H.shape[0]
        inf = torch.full_like(self.H[0], math.inf)
        lo = torch.stack([self.H[k - inst.f] if k - inst.f >= 0 else -inf for k in self.positions])
        hi = torch.stack([self.H[k] if k < m else inf for k in self.positions])
        x = o + torch.as_tensor(t, dtype=torch.float64, device=o.device)[:, None] * l
        v = torch.minimum(torch.maximum(x[:, None, :], lo), hi).mean(1)
        return ((v - o) @ u).cpu().numpy()

    def breakpoints(self):
        inst = self.inst
        l = inst.line64
        nz = l != 0
        H = self.H[self.rows][:, nz]
        return ((H - inst.offset64[nz]) / l[nz]).flatten().cpu().numpy()


class _Mean:
    tier = 0
    piecewise_linear = True

    def __init__(self, inst):
        self.inst = inst
        u, o = inst.u64, inst.offset64
        self.base = float((inst.R.double().sum(0) / inst.n - o) @ u)
        self.a = float((o @ u)) * inst.f / inst.n
        self.slope = float(inst.line64 @ u) * inst.f / inst.n

    def __call__(self, t):
        return self.base + self.a + self.slope * np.asarray(t, dtype=np.float64)

    def breakpoints(self):
        return np.zeros(0)


class _LineDistances:
    """Squared l_p distances of the rows ``[f copies of x(t); R]``, shared by the pool's
    Krum and Bulyan(select=krum) evaluators. The honest block is the same at every
    ``t``: computed once per ``p`` by :func:`squared_distances` (the rules' own); the
    distances from ``x(t)`` to the ``n - f`` honest rows are computed per ``(p, t)`` by
    :func:`squared_distances_from` (the same kernels; equal up to the order of the
    float64 sums), ~5x less work than the whole matrix."""

    def __init__(self, inst: Instance, line: _Rows | None = None):
        self.inst = inst
        self.line = _Rows(inst) if line is None else line  # the Byzantine rows by t
        self.honest: dict[float, torch.Tensor] = {}
        self.to_line: dict[tuple[float, float], torch.Tensor] = {}
        self.rows = None  # [x(t); R], row 0 rewritten per t

    def prefetch(self, t: float, ps) -> None:
        """The distances from ``x(t)`` for every norm in ``ps`` not yet computed at ``t``,
        in one pass over the rows (:func:`squared_distances_from_norms`, bitwise the
        one-norm values): an expectation runs every Krum-based rule at each point (paper
        pool: 14 norms, ~1 ms against ~7 ms of kernels and ~14 ms of calls)."""
        inst = self.inst
        if inst.n * inst.d < SMALL_ELEMENTS:
            return
        todo = [p for p in ps if (p, float(t)) not in self.to_line]
        if len(todo) < 2:
            return
        self._set_row(t)
        for p, row in squared_distances_from_norms(self.rows, 0, todo).items():
            self.to_line[(p, float(t))] = row[1:]

    def _set_row(self, t: float) -> None:
        if self.rows is None:
            self.rows = torch.cat([self.line.byzantine(t)[:1], self.inst.R])
        self.rows[0] = self.line.byzantine(t)[0]

    def matrix(self, p: float, t: float) -> torch.Tensor:
        """``(n, n)`` float64 squared distances at ``t`` (the f identical rows first)."""
        inst, f = self.inst, self.inst.f
        if inst.n * inst.d < SMALL_ELEMENTS:
            # small rows: the rules' own whole matrix, bitwise. The blocks differed from
            # it in the last bit (2.0000000000000004 against 2.0 on integer rows), and
            # Krum's and Bulyan's tie rules then picked other rows than the rules did
            key = (p, float(t))
            if key not in self.to_line:
                self.to_line[key] = squared_distances(torch.cat([self.line.byzantine(t), inst.R]), p)
            return self.to_line[key].clone()
        if p not in self.honest:
            self.honest[p] = squared_distances(inst.R, p)
        key = (p, float(t))
        if key not in self.to_line:
            self._set_row(t)
            self.to_line[key] = squared_distances_from(self.rows, 0, p)[1:]
        delta = self.to_line[key]
        D2 = torch.zeros(inst.n, inst.n, dtype=torch.float64, device=delta.device)
        D2[f:, f:] = self.honest[p]
        D2[:f, f:] = delta
        D2[f:, :f] = delta[:, None]
        return D2


def krum_critical_points(inst: Instance, rule, lo: float = -math.inf, hi: float = math.inf) -> np.ndarray:
    """For an l_2 Krum, or a Bulyan with an l_2 Krum selection, on identical rows: a point
    on each side of every ``t`` where its choice changes (:mod:`solvers.krum_line`,
    closed form), each moved out until the rule's own distances (rows rounded to their
    dtype) choose as the model does there. The search scores them, so no window where
    the rule picks the Byzantine rows falls between its grid points (5 of 140 small
    Krum solves padded to n d >= 2^16 missed one). Only changes in ``[lo, hi]``. Empty for
    other rules and norms, for rows spread apart, or where Krum has no neighbours."""
    krum = type(rule) is Krum and inst.n - rule.f - 2 >= 1
    bulyan = type(rule) is Bulyan and rule.select == "krum"
    if not (krum or bulyan) or rule.p != 2.0 or spread_vector(inst) is not None:
        return np.zeros(0)
    H = inst.offset64 - inst.R.double()  # w_0 - v_i
    l = inst.line64
    terms = (float(l @ l), (2 * (H @ l)).cpu().numpy(), (H * H).sum(1).cpu().numpy(),
             squared_distances(inst.R, 2.0).cpu().numpy())

    def label(k: int) -> int:  # rows numbered as krum_line does
        return BYZANTINE if k < inst.f else k - inst.f

    def distances(t: float) -> torch.Tensor:  # the rule's own
        return squared_distances(torch.cat([line_rows(inst, [t])[0], inst.R]), 2.0)

    if krum:
        nb = inst.n - rule.f - 2
        flips, picks = krum_choices(KrumLine(*terms, inst.f, nb))

        def model(t: float):
            return int(picks[np.searchsorted(flips, t, side="right")])

        def real(t: float):
            return label(int(torch.argmin(scores_from_squared(distances(t), nb))))
    else:
        line_model = BulyanKrumLine(*terms, inst.f, rule.f, rule.aggregate == "krum")
        flips = line_model.changes()
        model = line_model.regime

        def real(t: float):
            D2 = distances(t)
            chosen = krum_selection(D2, rule.f)
            labels = tuple(sorted(label(k) for k in chosen))
            agg = label(krum_pick(D2, chosen, rule.f)) if rule.aggregate == "krum" and BYZANTINE in labels else None
            return labels, agg
    flips = flips[(flips >= lo) & (flips <= hi)]
    scale = math.sqrt(float(terms[2].max()) / terms[0]) if terms[0] > 0 else 1.0
    out = []
    for i, tb in enumerate(flips):
        room = min([abs(tb - flips[j]) / 2 for j in (i - 1, i + 1) if 0 <= j < len(flips)], default=math.inf)
        delta = 1e-9 * max(abs(tb), scale)
        for _ in range(8):  # up to ~0.02 scale; unverified sides are still good candidates
            sides = (tb - delta, tb + delta)
            if all(real(float(x)) == model(float(x)) for x in sides) or 8 * delta >= room:
                break
            delta *= 8
        out += sides
    return np.array(out)


class _Krum:
    """Krum (eq. (3)) on ``[f copies of x; R]`` from the shared :class:`_LineDistances`."""

    tier = 1
    piecewise_linear = False

    def __init__(self, inst, rule, distances: _LineDistances):
        self.inst, self.rule, self.distances = inst, rule, distances
        self.nb = inst.n - rule.f - 2
        u, o = inst.u64, inst.offset64
        self.h_inner = ((inst.R.double() - o) @ u)

    def lower_bound(self, t: np.ndarray) -> np.ndarray:
        """Krum outputs a row: its inner product is at least the smallest row's."""
        inst = self.inst
        slope = float(inst.line64 @ inst.u64)  # <x(t) - w_0, u> = t <l, u>
        return np.minimum(slope * np.asarray(t, dtype=np.float64), float(self.h_inner.min()))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return np.array([_row_value(self.distances.line, self.h_inner, float(c), self._pick(float(c))) for c in t])

    def run_cost(self, t: float) -> float:
        """Its distances from ``x(t)``, unless a Krum-based rule of the same p has them."""
        p = self.rule.p
        return 0.05 if (p, float(t)) in self.distances.to_line else _power_factor(p)

    def _pick(self, t: float) -> int:
        scores = scores_from_squared(self.distances.matrix(self.rule.p, t), self.nb)
        return int(torch.argmin(scores))  # ties: the lowest index, as krum()

    def breakpoints(self):
        return None

    def critical_points(self, lo: float, hi: float, grid: np.ndarray | None = None) -> np.ndarray:
        """:func:`krum_critical_points` (l_2: closed form); for other norms on small rows
        (``n d < SMALL_ELEMENTS``), both sides of every change of choice between adjacent
        points of ``grid`` (:meth:`_switches`)."""
        pts = krum_critical_points(self.inst, self.rule, lo, hi)
        inst = self.inst
        if grid is None or self.rule.p == 2.0 or inst.n * inst.d >= SMALL_ELEMENTS:
            return pts
        grid = np.unique(np.asarray(grid, dtype=np.float64))
        return np.concatenate([pts, self._switches(grid[(grid >= lo) & (grid <= hi)])])

    def _switches(self, grid: np.ndarray, rel: float = 1e-12) -> np.ndarray:
        """Where Krum (p != 2: no closed form) changes its choice between adjacent grid
        points, found by bisection to ``rel`` of ``|t|``: the last point of each side.
        Just before a switch the Byzantine row is often at its most harmful: an
        expectation of comed + Krum(p=1) + trimmed mean (n = 8, d = 2) reached 0.0227
        on the grid and -0.0007 at the switch, inside one dense-grid interval."""
        f = self.inst.f

        def label(t: float) -> int:  # the f identical Byzantine rows count as one
            k = self._pick(t)
            return -1 if k < f else k

        labels = [label(float(t)) for t in grid]
        out = []
        for a, b, la, lb in zip(grid[:-1], grid[1:], labels[:-1], labels[1:]):
            if la == lb:
                continue
            a, b = float(a), float(b)
            for _ in range(80):
                m = 0.5 * (a + b)
                if not a < m < b or b - a <= rel * max(abs(a), abs(b)):
                    break
                if label(m) == la:
                    a = m
                else:
                    b = m
            out += [a, b]
        return np.array(out)


def _row_value(rows: _Rows, h_inner: torch.Tensor, t: float, idx: int) -> float:
    """``<row idx of [f copies of x(t); R] - w_0, u>``, from the float32 row as the rules
    output it."""
    if idx >= rows.inst.f:
        return float(h_inner[idx - rows.inst.f])
    return rows.value(t)


class _BulyanKrum:
    """Bulyan with a Krum selection or a Krum aggregation on ``[f copies of x; R]``,
    Krum's part from the shared :class:`_LineDistances`. A Krum selection runs the
    rounds of :func:`bulyan_select` on those distances; another selection runs
    :func:`bulyan_select` itself (shared with the pool's Bulyans of the same
    ``(select, f, p)``). A Krum aggregation scores the chosen rows from the same
    distances and its value is the chosen row's; another aggregation runs on the
    chosen rows (:func:`bulyan_aggregate`). About 10 ms a candidate for
    Bulyan(krum, krum) where the rule takes 25-60 ms (66 pairwise l_p distances,
    28 more for its aggregation). Equal to the rule's value up to the rounding of
    the distances, so the solution still runs the rule itself at the answer."""

    tier = 2
    piecewise_linear = False

    def __init__(self, inst, rule, distances: _LineDistances, selections: dict, rows=None):
        self.inst, self.rule, self.distances, self.selections = inst, rule, distances, selections
        u, o = inst.u64, inst.offset64
        self.h_inner = ((inst.R.double() - o) @ u)
        self.rows = _Rows(inst) if rows is None else rows
        self.agg = _geomed_aggregate(inst, rule)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        return np.array([self._value(float(c)) for c in t])

    def warm(self, t: float) -> tuple[float, bool]:
        """The value at ``t`` with a geomed aggregation started from solved neighbours
        (:class:`_GeomedAggregate`), and whether it was; cold otherwise."""
        if self.agg is None:
            return self._value(t), False
        chosen = self._chosen(t, None)
        out, warm = self.agg.warm(self.rows.at(t), chosen, t)
        return float((out.double() - self.inst.offset64) @ self.inst.u64), warm

    def _chosen(self, t: float, D2) -> list:
        inst, r = self.inst, self.rule
        r.check(inst.n)
        if r.select == "krum":
            key = ("krum-cached", r.f, r.p, t)  # not the rule's own selection: kept apart
            if key not in self.selections:
                self.selections[key] = krum_selection(self.distances.matrix(r.p, t) if D2 is None else D2, r.f)
        else:
            key = (r.select, r.f, r.p, t)  # the rule's own, as _BlackBox keys it
            if key not in self.selections:
                self.selections[key] = _select(self.selections, self.rows.at(t), r, inst.f)
        return self.selections[key]

    def _value(self, t: float) -> float:
        inst, r = self.inst, self.rule
        D2 = self.distances.matrix(r.p, t) if "krum" in (r.select, r.aggregate) else None
        chosen = self._chosen(t, D2)
        if r.aggregate == "krum":
            return _row_value(self.distances.line, self.h_inner, t, krum_pick(D2, chosen, r.f))
        G = self.rows.at(t)
        if self.agg is not None:  # the rule's own aggregation, kept as a start
            out = self.agg.cold(G, chosen, t)
        else:
            out = bulyan_aggregate(G, chosen, r.f, r.aggregate, r.p)
        return float((out.double() - inst.offset64) @ inst.u64)

    def run_cost(self, t: float) -> float:
        """Estimated cost of a run at ``t``: its selection unless shared, the distances
        from ``x(t)`` unless another Krum-based rule of the same p has them."""
        r, t = self.rule, float(t)
        if r.select == "krum":  # its rounds on the shared distances: next to nothing
            cost = _bulyan_cost(r, True) + (0.0 if ("krum-cached", r.f, r.p, t) in self.selections else 0.1)
        else:
            cost = _bulyan_cost(r, (r.select, r.f, r.p, t) in self.selections)
        if (r.p, t) not in self.distances.to_line:
            cost += _power_factor(r.p)
        return cost

    def breakpoints(self):
        return None

    def critical_points(self, lo: float, hi: float) -> np.ndarray:
        """Where an l_2 Krum selection (or its Krum aggregation) changes its choice."""
        return krum_critical_points(self.inst, self.rule, lo, hi)

    def lower_bound(self, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), -np.inf)


def _bulyan_geomed(e) -> bool:
    r = getattr(e, "rule", None)
    return type(r) is Bulyan and r.select == "geomed"


def _power_factor(p: float) -> float:
    """Cost of ``|x|^p`` per entry relative to an integer ``p`` (which the compiled
    kernels turn into multiplications): ~4x for a fractional one (p = 7.5 against
    7 at 12 x 184,586: 2.5-4.6x by kernel)."""
    return 1.0 if math.isinf(p) or float(p).is_integer() else 4.0


# Estimated costs of a rule's parts at one candidate, in passes of an l_p distance
# kernel over the n rows (~8 ms at 12 x 184,586 on the 2-core CPU), from the
# paper-pool P3 searches' run times (seeds 1 and 2): a Bulyan selection by
# average / comed 40-60 ms; by geomed 0.6 s cold, ~0.1 s from its rounds' targets
# at solved neighbours; a geometric median ~10 ms between two solved neighbours,
# ~20 ms extrapolated, 60-140 ms cold.
_SELECTION_COST = {"krum": 6.0, "average": 6.0, "comed": 6.0, "geomed": 75.0}  # krum: a black box's own matrix
_AGGREGATE_COST = {"krum": 0.1, "average": 0.5, "comed": 0.5, "trimmed": 0.5, "geomed": 5.0}
_GEOMED_COST = {"between": 1.2, "near": 2.5, "cold": 10.0}
_OTHER_COST = 6.0  # a rule the search knows nothing about: as a Bulyan selection
CHEAP_RULE = 1.5  # LineObjective.run_cheap_rules: Krum and Bulyan(select=krum), not a geometric median


def _bulyan_cost(rule, shared: bool, reach: str = "cold") -> float:
    """A Bulyan run: its selection unless another pool entry left it at this ``t`` (a
    geomed one warm where its rounds' targets are solved nearby)."""
    pw = _power_factor(rule.p)
    aggregate = _AGGREGATE_COST.get(rule.aggregate, 0.5) * (pw if rule.aggregate == "geomed" else 1.0)
    if shared:
        return aggregate
    warm = _GEOMED_COST[reach] / _GEOMED_COST["cold"] if rule.select == "geomed" else 1.0
    return aggregate + _SELECTION_COST[rule.select] * warm * pw


def make_evaluator(inst: Instance, rule, chunk_elems: int, fast: bool = True, selections=None, distances=None,
                   rows=None):
    """The fastest exact evaluator of one rule along the line (identical rows only);
    ``selections``: a dict the pool's Bulyans share their selections in;
    ``distances``: a :class:`_LineDistances` the pool's Krum-based rules share;
    ``rows``: a :class:`_Rows` buffer they share."""
    if fast and spread_vector(inst) is None and inst.objective != "lambda":
        selections = {} if selections is None else selections
        distances = _LineDistances(inst) if distances is None else distances
        n = inst.n
        if type(rule) is Mean:
            return _Mean(inst)
        if type(rule) is Comed:
            ks = [n // 2] if n % 2 == 1 else [n // 2 - 1, n // 2]
            return _OrderStat(inst, ks)
        if type(rule) is TrimmedMean:
            return _OrderStat(inst, list(range(rule.b, n - rule.b)))
        if type(rule) is Krum and inst.n - rule.f - 2 >= 1:
            return _Krum(inst, rule, distances)
        # not after a geomed selection: the solution would run it again at the answer
        # (~0.3 s), where a black box's memo hands it the rule's own output
        if type(rule) is Bulyan and (rule.select == "krum" or (rule.aggregate == "krum" and rule.select != "geomed")):
            return _BulyanKrum(inst, rule, distances, selections, rows)
    return _BlackBox(inst, rule, chunk_elems, selections, rows)


class LineObjective:
    """Scores (to minimize) of the instance's objective along the line, with evaluation counts."""

    def __init__(self, inst: Instance, chunk_elems: int, fast: bool, tol: float, expect_search: str = "lazy",
                 expect_tol: float = 1e-5):
        self.inst = inst
        self.uniq, _, self.w = unique_rules(inst.rules, inst.weights)
        selections: dict = {}
        rows = _Rows(inst)  # one buffer for every evaluator: the rows at t are the same for all
        distances = _LineDistances(inst, rows)
        self.evals = [make_evaluator(inst, r, chunk_elems, fast, selections, distances, rows) for r in self.uniq]
        # the norms of the rules that pick rows from the line's distances: an expectation
        # computes them together at each point (_LineDistances.prefetch)
        self.distances = distances
        self.krum_norms = sorted({float(e.rule.p) for e in self.evals if isinstance(e, (_Krum, _BulyanKrum))})
        self.tol = tol
        self.n_evals = 0
        self.cache: dict[float, float] = {}
        # s0: |t| up to which the Byzantine rows are no farther from w_0 than the
        # honest rows (the scale of the candidate grid, ``candidates``)
        line_norm = line_length(inst)
        radius = float((inst.R.double() - inst.offset64).norm(dim=1).max())
        self.near = radius / line_norm if line_norm > 0 else math.inf
        # order in which the costly evaluators are tried (max objective): kept
        # across calls, see _branch_and_bound
        first = min(e.tier for e in self.evals)
        self.order = sorted((k for k, e in enumerate(self.evals) if e.tier != first), key=lambda k: self.evals[k].tier)
        # max objective (lazy best-first search): per candidate, the rules' values
        # (lower bounds until a rule ran) and which rules ran; per rule, its values so
        # far (they predict its value at nearby candidates); its cost at a candidate: _cost
        self.lazy = inst.kind == "max" and inst.objective != "lambda"
        self.costly = list(self.order)
        self.parts: dict[float, np.ndarray] = {}
        self.low: dict[float, float] = {}  # max of parts[c] (_refresh)
        self.done: dict[float, bool] = {}  # ran[c].all()
        self.ran: dict[float, np.ndarray] = {}
        self.warm_ran: dict[float, np.ndarray] = {}
        self.known: list[dict[float, float]] = [{} for _ in self.evals]
        self.known_t: list[list[float]] = [[] for _ in self.evals]  # the same keys, sorted
        # Before a Bulyan(select=geomed) has run anywhere, its pool siblings with the same
        # aggregation and a cheaper selection predict it (the selections mostly agree):
        # its 8 IRLS rounds (~0.3 s at d = 184,586) then run where they can matter, not
        # at the first candidate only to learn that they do not (P3 on the paper pool:
        # 6.5 -> 5.7 s, the same answer). A wrong prediction costs time, never
        # correctness: certify() completes the answer with every rule.
        self.siblings = [[j for j, o in enumerate(self.evals)
                          if _bulyan_geomed(e) and type(getattr(o, "rule", None)) is Bulyan
                          and o.rule.select != "geomed" and o.rule.aggregate == e.rule.aggregate]
                         for e in self.evals]
        self.tries = np.zeros(len(self.evals), dtype=int)
        self.cuts = np.zeros(len(self.evals), dtype=int)
        # expectation with black boxes (no bound): expect_search="exhaustive" runs every
        # rule at every candidate; "lazy" only at every other one of the first grid within
        # 2 s0 and the ones beyond, predicting the costly ones elsewhere (_add_predicted)
        self.expect_search = expect_search
        scale = float(inst.u64 @ inst.u64)
        self.expect_tol = expect_tol * (scale if scale > 0 else 1.0)
        self.predicting = False  # set once the first grid is scored (lazy only)

    def known_outputs(self, t: float) -> dict:
        """``{position: (<a, u>, ||a||)}`` of the rules run at ``t`` (for :func:`make_solution`)."""
        return {k: e.memo[t] for k, e in enumerate(self.evals) if float(t) in getattr(e, "memo", {})}

    def breakpoints(self):
        pts = []
        for e in self.evals:
            b = e.breakpoints()
            if b is None:
                return None
            pts.append(b)
        return np.concatenate(pts) if pts else np.zeros(0)

    def critical_points(self, lo: float, hi: float, grid: np.ndarray | None = None) -> np.ndarray:
        """Points in ``[lo, hi]`` the search must score: both sides of every change of an
        l_2 Krum's choice (Krum, or a Bulyan's Krum selection), and on small rows of any
        Krum's between adjacent points of ``grid`` (the candidates scored so far)."""
        pts = [e.critical_points(lo, hi, grid) if isinstance(e, _Krum) else e.critical_points(lo, hi)
               for e in self.evals if hasattr(e, "critical_points")]
        return np.unique(np.concatenate(pts)) if pts else np.zeros(0)

    @property
    def piecewise_linear(self) -> bool:
        return all(e.piecewise_linear for e in self.evals)

    def vectorized(self, t: np.ndarray) -> np.ndarray:
        """The objective at every ``t`` in one call per rule, uncached: for a single rule,
        an expectation or a max of closed-form rules (``solve_line``'s breakpoint path)."""
        self.n_evals += len(t)
        if self.inst.kind == "expected":
            return sum(w * e(t) for w, e in zip(self.w, self.evals) if w > 0)
        if len(self.evals) == 1:
            return self.evals[0](t)
        return np.max(self.per_rule(t), axis=1)

    def per_rule(self, t: np.ndarray) -> np.ndarray:
        """``[T, U]``: each distinct rule's value at every ``t`` (closed forms only)."""
        return np.stack([e(t) for e in self.evals], 1)

    def scores(self, t: np.ndarray) -> np.ndarray:
        t = np.unique(np.asarray(t, dtype=np.float64))
        if self.predicting:
            new = np.array([x for x in t if float(x) not in self.parts])
            if len(new):
                self.n_evals += len(new)
                self._add_predicted(new)
            self._settle_predicted()
            return t, self._expect_table(t)[0]
        if self.lazy:  # values of earlier candidates change as the search runs rules there
            new = np.array([x for x in t if float(x) not in self.parts])
            if len(new):
                self.n_evals += len(new)
                self._lazy_max(new)
            return t, np.array([self._score(float(x)) for x in t])
        new = np.array([x for x in t if x not in self.cache])
        if len(new):
            for x, s in zip(new, self._compute(new)):
                self.cache[float(x)] = float(s)
        return t, np.array([self.cache[float(x)] for x in t])

    def _compute(self, t: np.ndarray) -> np.ndarray:
        inst = self.inst
        self.n_evals += len(t)
        if inst.objective == "lambda":
            a = self.evals[0].outputs(t)
            g = inst.u64
            gn2 = float(g @ g)
            lam = -(a @ g) / gn2
            res = (a + lam[:, None] * g).norm(dim=1) / math.sqrt(gn2)
            ok = res <= self.tol * torch.clamp(lam.abs(), min=1.0)
            return torch.where(ok, -lam, torch.full_like(lam, math.inf)).cpu().numpy()
        if inst.kind == "tailored":
            return self.evals[0](t)
        return self._branch_and_bound(t)

    # ------------------------------------------------------------ max (P1-P3)
    def _run(self, c: float, k: int, warm: bool) -> float:
        """Rule ``k`` at candidate ``c``; ``warm``: a geometric median starts from its
        output at the nearest candidate."""
        e = self.evals[k]
        if warm and hasattr(e, "warm"):
            v, self.warm_ran[c][k] = e.warm(c)
        else:
            v = float(e(np.array([c]))[0])
            self.warm_ran[c][k] = False
        self.parts[c][k] = v
        self.ran[c][k] = True
        self._refresh(c)
        if c not in self.known[k]:
            bisect.insort(self.known_t[k], c)
        self.known[k][c] = v
        return v

    def _predicted(self, c: float, k: int) -> float:
        """Rule ``k``'s larger value at the nearest candidates where it ran on either side
        of ``c`` (a rule that jumps between them, Bulyan with a Krum aggregate, is
        expected at its higher side); before it ran anywhere, the largest such value of
        its ``siblings`` that ran, else +inf."""
        value = self._nearest(c, k)
        if value is None:
            values = [v for v in (self._nearest(c, j) for j in self.siblings[k]) if v is not None]
            return max(values) if values else math.inf
        return value

    def _nearest(self, c: float, k: int) -> float | None:
        seen, ts = self.known[k], self.known_t[k]
        if not ts:
            return None
        i = bisect.bisect_left(ts, c)  # ts[i - 1] < c <= ts[i]
        sides = ([seen[ts[i - 1]]] if i > 0 else []) + ([seen[ts[i]]] if i < len(ts) else [])
        return max(sides)

    def _lower(self, c: float) -> float:
        return self.low[c]

    def _refresh(self, c: float) -> None:
        """Cache ``c``'s bound and completeness (the search sorts every candidate by
        them at every step: recomputing them there cost ~0.2 s per P3 solve)."""
        self.low[c] = float(np.max(self.parts[c]))
        self.done[c] = bool(self.ran[c].all())

    def _next_rule(self, c: float, threshold: float, settle: bool) -> int | None:
        """The rule to run next at ``c``, or None when ``c`` is settled.

        Rules predicted (:meth:`_predicted`) to lift ``c``'s bound to ``threshold``
        (the next best bound) come first, the least estimated cost (:meth:`_cost`)
        per cut first (a rule's cuts so far over its tries as a predicted cutter): one
        run usually cuts ``c``. Otherwise, during the zoom (``settle``), the rule
        predicted highest, and none when that one is predicted below ``c``'s bound
        (the rest is left for the final certification, :meth:`certify`). While
        certifying, with no cutter predicted, every rule runs at ``c`` unless a
        prediction is wrong, so the cheapest runs first: a rule that jumps where
        its neighbours did not (Bulyan with a Krum aggregate, ~5 ms) then cuts
        ``c`` before the ~0.3 s selections run (seed-1 pool: one such completion
        cost 1.6 s, its cutter running last)."""
        todo = [k for k in range(len(self.evals)) if not self.ran[c][k]]
        if not todo:
            return None
        pred = {k: self._predicted(c, k) for k in todo}
        cost = {k: self._cost(c, k) for k in todo}
        cutters = [k for k in todo if pred[k] >= threshold]
        if cutters:  # the least expected cost of a cut: run cost over the rule's cut rate so far
            return min(cutters, key=lambda k: (cost[k] * (self.tries[k] + 2) / (self.cuts[k] + 1), k))
        if not settle:
            return min(todo, key=lambda k: (cost[k], -pred[k], k))
        k = max(todo, key=lambda k: (pred[k], -cost[k]))
        if pred[k] < self._lower(c):
            return None
        return k

    def _cost(self, c: float, k: int) -> float:
        """Rule ``k``'s estimated cost at ``c`` (its evaluator's ``run_cost``: the work
        left once shared selections and distances are counted out), never its measured
        time: the search, and so its answer, is then a function of the rules' values
        only. Steered by measured times, the same seed-1 paper-pool P3 came back at
        1.6893 instead of 1.6865 when the clock was jittered (a different zoom)."""
        return self.evals[k].run_cost(c)

    def _search(self, settle: bool) -> None:
        """Best first over the candidates: run one rule at the candidate of lowest bound
        until that candidate is complete (``settle=False``: the exact minimum over the
        candidates) or has every rule predicted above its bound run (``settle=True``)."""
        while self.parts:
            order = sorted(self.parts, key=lambda c: (self.low[c], not self.done[c], c))
            c = order[0]
            if self.ran[c].all():
                if settle or not self.warm_ran[c].any():
                    return
                # the best candidate: its warm-started values are run again cold, so the
                # answer's values are the rules' own (and the solution reuses them)
                for k in np.flatnonzero(self.warm_ran[c]):
                    self._run(c, int(k), warm=False)
                continue
            if not any(self.known[k] for k in self.costly):
                # Nothing run yet: the first candidate completed is the best bound no
                # farther out than the honest rows. Far out on the line the IRLS rules
                # are slowest (one completion at t = 227 s0 took 11 s of a 32 s search).
                near = [x for x in order if abs(x) <= self.near]
                c = near[0] if near else c
            threshold = next((self._lower(x) for x in order if x != c), math.inf)
            k = self._next_rule(c, threshold, settle)
            if k is None:
                return
            predicted_cut = self._predicted(c, k) >= threshold
            self._run(c, k, warm=True)
            if predicted_cut:
                self.tries[k] += 1
                self.cuts[k] += self._lower(c) >= threshold

    def _lazy_max(self, t: np.ndarray) -> np.ndarray:
        """Max over the rules (P1-P3) at new candidates ``t``: the cheapest tier runs at
        every candidate, Krum contributes its row bound, then :meth:`_search` with
        ``settle``. Returns every requested candidate's value where it is complete and
        its bound (nudged up: it never wins a tie) where it is not."""
        cheap = [k for k in range(len(self.evals)) if k not in self.costly]
        parts = np.full((len(t), len(self.evals)), -np.inf)
        for k in cheap:
            parts[:, k] = self.evals[k](t)
        for k in self.costly:
            parts[:, k] = self.evals[k].lower_bound(t)
        self._register(t, parts, cheap)
        self._search(settle=True)
        return np.array([self._score(float(c)) for c in t])

    def _register(self, t: np.ndarray, parts: np.ndarray, ran: list) -> None:
        """New candidates ``t`` with their rows of ``parts`` (values, or bounds where a
        rule has not run), the rules in ``ran`` run there."""
        for i, c in enumerate(t):
            c = float(c)
            self.parts[c] = parts[i]
            self.ran[c] = np.array([k in ran for k in range(len(self.evals))])
            self.warm_ran[c] = np.zeros(len(self.evals), dtype=bool)
            self._refresh(c)

    def run_cheap_rules(self, keep: int) -> None:
        """Run, at the ``keep`` candidates of lowest bound, each rule not run there whose
        estimated cost is at most ``CHEAP_RULE`` (Krum, a Bulyan with a Krum selection),
        until those candidates have none left: the zoom centres on them, and a rule
        left because its neighbours predicted it low may jump (Krum switching rows). On
        seed 1 of the paper pool every zoom round centred on t = 0.17-0.18 with bounds
        1.679-1.681, each cut by Krum(p=1) (2.57 there, -3.8 at its neighbours) only
        at the final certification, which then answered 1.6893 from the first grid;
        with these runs 1.6865 (six draws, against the search without them: better on
        five, the same on one, 17% more IRLS passes)."""
        while True:
            best = sorted(self.parts, key=lambda c: (self.low[c], not self.done[c], c))[:keep]
            todo = [(cost, int(k), c) for c in best for k in np.flatnonzero(~self.ran[c])
                    if (cost := self._cost(c, int(k))) <= CHEAP_RULE]
            if not todo:
                return
            _, k, c = min(todo)
            self._run(c, k, warm=True)

    def _score(self, c: float) -> float:
        v = self._lower(c)
        return v if self.done[c] else float(np.nextafter(v, np.inf))

    def certify(self) -> tuple[float, float]:
        """The exact minimum of the max objective over all candidates so far: completes
        the candidate of lowest bound until the lowest is complete."""
        self._search(settle=False)
        best = min(self.parts, key=lambda c: (self.low[c], not self.done[c], c))
        return best, self._lower(best)

    def _combine(self, row: np.ndarray) -> float:
        return float(np.dot(np.where(self.w > 0, row, 0.0), self.w))

    def _expect_everywhere(self, t: np.ndarray, parts: np.ndarray, costly: list) -> np.ndarray:
        """Expectation with no bound to prune by: every rule at every candidate, one
        candidate at a time so that the IRLS rules start warm from solved neighbours
        (:meth:`_BlackBox.warm`): of the candidates within 2 s0 every other one first,
        then the ones between them (one IRLS step each); then the farther ones
        outward, one side at a time, each from its inner neighbour's outputs. Lazy:
        the ones within 2 s0 between anchors (:meth:`_anchors`), and every other one
        beyond (the outermost run), are predicted from their neighbours (:meth:`_add_predicted`;
        paper pool: ~20% fewer IRLS steps, the same answers on eleven draws). Warm
        values are not the rules' own: the certification runs them again cold at
        the best candidate. Paper pool at d = 184,586: ~0.4 s a candidate against
        ~1.5 s cold."""
        near = [i for i in range(len(t)) if abs(t[i]) <= 2 * self.near]
        # far out, outward one side at a time: each starts from its inner neighbour's
        # solution (the store drops the points farthest from the newest)
        far = sorted((i for i in range(len(t)) if abs(t[i]) > 2 * self.near), key=lambda i: (t[i] > 0, abs(t[i])))
        # lazy: the ones between them are predicted from them, like the zoom's candidates;
        # far out every other one too, the outermost run
        between = []
        anchors = near[::2]
        if self.expect_search == "lazy":
            anchors = self._anchors(t, near)
            between = [i for i in near if i not in anchors]
            for side in ([i for i in far if t[i] < 0], [i for i in far if t[i] > 0]):
                between += [i for j, i in enumerate(side) if (len(side) - 1 - j) % 2 == 1]
        order = anchors + [i for i in near if i not in anchors and i not in between] + [
            i for i in far if i not in between]
        for i in order:
            c = float(t[i])
            warm = np.zeros(len(self.evals), dtype=bool)
            if any(isinstance(self.evals[k], (_Krum, _BulyanKrum)) for k in costly):
                self.distances.prefetch(c, self.krum_norms)
            for k in costly:
                e = self.evals[k]
                if hasattr(e, "warm"):
                    parts[i, k], warm[k] = e.warm(c)
                else:
                    parts[i, k] = float(e(np.array([c]))[0])
            self.parts[c], self.warm_ran[c] = parts[i].copy(), warm
            self.ran[c] = np.ones(len(self.evals), dtype=bool)
            for k in costly:
                if c not in self.known[k]:
                    bisect.insort(self.known_t[k], c)
                self.known[k][c] = float(parts[i, k])
        if self.expect_search == "lazy":
            self.predicting = True
        if between:
            self._add_predicted(t[between])
            self._settle_predicted()
            return self._expect_table(t)[0]
        return np.array([self._combine(r) for r in parts])

    def _anchors(self, t: np.ndarray, near: list) -> list:
        """The candidates within 2 s0 where a lazy expectation runs every rule: every other
        one on small rows (n d < 2^16: cheap, and its dense grid finds narrow windows),
        else from 0 outward on each side the next at least ``ANCHOR_GAP`` s0 from the
        last, and the outermost. Every other one put seven anchors within 0.06 s0 of 0
        on each side (the geometric grid crowds there): paper pool at d = 184,586, 15-16
        anchors instead of 25, the same answers on seeds 0-3 and 6-22% less time. A gap
        of 2 s0 leaves the ones nearest 0 and at +-2 s0 (4 anchors instead of 15-16; the
        rest is predicted and run where the spreads say, :meth:`_settle_predicted`):
        seeds 0-10, 8-33% less time (seed 5: 2%), the same answers on ten, lower by
        1.8e-6 on seed 9 (a gap of 1 s0 came back 9e-7 higher on seed 5; the search's
        ``expect_tol`` is 1e-5 of ``<u, u>``)."""
        if self.inst.n * self.inst.d < SMALL_ELEMENTS:
            return near[::2]
        gap = ANCHOR_GAP * self.near
        picked = []
        for side in (sorted((i for i in near if t[i] >= 0), key=lambda i: t[i]),
                     sorted((i for i in near if t[i] < 0), key=lambda i: -t[i])):
            last = None
            for j, i in enumerate(side):
                if last is None or abs(t[i] - last) >= gap or j == len(side) - 1:
                    picked.append(i)
                    last = t[i]
        return sorted(picked, key=lambda i: (abs(t[i]), -t[i]))

    # ------------------------------------------ expectation, lazy (predicted rules)
    def _add_predicted(self, t: np.ndarray) -> None:
        """Candidates of a lazy expectation (``expect_search="lazy"``) between solved
        ones: the closed forms in one call, and the rules that pick rows from Krum's
        distances (Krum, :class:`_BulyanKrum`: they jump, and cost little) at each;
        the others are predicted between the neighbours where they ran
        (:meth:`_interpolate`). Paper pool (eleven draws, the same answers): the geometric
        medians predicted, not run where they cost least (between solved
        neighbours), 15-25% fewer IRLS steps; a Bulyan with a geomed selection and
        a Krum aggregation predicted too (run everywhere, its selection took 6.5 s
        of a 33 s solve, seed 0)."""
        first = min(e.tier for e in self.evals)
        cheap = [k for k, e in enumerate(self.evals) if e.tier == first]
        parts = np.zeros((len(t), len(self.evals)))
        for k in cheap:
            parts[:, k] = self.evals[k](t)
        self._register(t, parts, cheap)
        for c in t:
            todo = [k for k in range(len(self.evals))
                    if not self.ran[float(c)][k] and self.w[k] > 0 and isinstance(self.evals[k], (_Krum, _BulyanKrum))]
            if todo:
                self.distances.prefetch(float(c), self.krum_norms)
            for k in todo:
                self._run(float(c), k, warm=True)

    def _interpolate(self, k: int, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule ``k`` at ``ts`` on the straight line between the nearest candidates where
        it ran on either side, and its spread there (their difference: the error if
        the rule is monotone between them); outside them the nearest value, spread
        infinite."""
        xs = np.asarray(self.known_t[k])
        if not len(xs):
            return np.zeros(len(ts)), np.full(len(ts), np.inf)
        vs = np.array([self.known[k][x] for x in xs])
        i = np.searchsorted(xs, ts)
        inside = (i > 0) & (i < len(xs))
        a, b = np.clip(i - 1, 0, len(xs) - 1), np.clip(i, 0, len(xs) - 1)
        frac = np.where(inside, (ts - xs[a]) / np.where(inside, xs[b] - xs[a], 1.0), 0.0)
        value = np.where(inside, vs[a] + frac * (vs[b] - vs[a]), np.where(i == 0, vs[0], vs[-1]))
        return value, np.where(inside, np.abs(vs[b] - vs[a]), np.inf)

    def _expect_table(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate: the expectation with the rules not run there predicted, and the
        weighted sum of their spreads."""
        ts = np.asarray(ts, dtype=np.float64)
        P = np.array([self.parts[float(c)] for c in ts])
        R = np.array([self.ran[float(c)] for c in ts])
        mid, unc = np.zeros(len(ts)), np.zeros(len(ts))
        for k in range(len(self.evals)):
            w = float(self.w[k])
            if w <= 0:
                continue
            if R[:, k].all():
                mid += w * P[:, k]
                continue
            value, spread = self._interpolate(k, ts)
            mid += w * np.where(R[:, k], P[:, k], value)
            unc += np.where(R[:, k], 0.0, w * spread)
        return mid, unc

    def _settle_predicted(self) -> None:
        """Best first on the lowest value the spreads allow (prediction less spread): at
        that candidate run the costly rule of largest weighted spread per estimated
        cost, until its spreads sum to at most ``expect_tol`` (relative to
        ``<u, u>``): then no candidate can be lower by more, if each rule is
        monotone between adjacent candidates where it ran."""
        while True:
            ts = np.array(sorted(self.parts))
            mid, unc = self._expect_table(ts)
            i = int(np.argmin(mid - unc))
            if unc[i] <= self.expect_tol:
                return
            c = float(ts[i])
            todo = [k for k in range(len(self.evals)) if self.w[k] > 0 and not self.ran[c][k]]
            spread = [float(self._interpolate(k, np.array([c]))[1][0]) for k in todo]
            j = max(range(len(todo)), key=lambda j: (self.w[todo[j]] * spread[j] / self._cost(c, todo[j]), -todo[j]))
            self._run(c, todo[j], warm=True)

    def certify_predicted(self) -> None:
        """The candidate predicted lowest completed (every rule run, warm values run
        again cold) until the lowest is complete: the answer's value is the rules'."""
        while True:
            ts = np.array(sorted(self.parts))
            c = float(ts[int(np.argmin(self._expect_table(ts)[0]))])
            todo = [k for k in range(len(self.evals)) if self.w[k] > 0 and not self.ran[c][k]]
            for k in todo:
                self._run(c, k, warm=True)
            if todo:
                continue
            warm = np.flatnonzero(self.warm_ran[c] & (self.w > 0))
            if not len(warm):
                return
            for k in warm:
                self._run(c, int(k), warm=False)

    def certify_expected(self) -> None:
        """Run the warm-started values of the best candidate again cold until the best
        has none (expectation): the answer's value is the rules' own, and the minimum
        over the candidates holds up to the warm values' tolerance elsewhere."""
        while self.cache:
            best = min(self.cache, key=lambda c: (self.cache[c], c))
            warm = self.warm_ran.get(best)
            if warm is None or not warm.any():
                return
            for k in np.flatnonzero(warm):
                self.parts[best][k] = float(self.evals[k](np.array([best]))[0])
                warm[k] = False
            self.cache[best] = self._combine(self.parts[best])

    def _branch_and_bound(self, t: np.ndarray) -> np.ndarray:
        """Expectation over the rules, evaluating costly rules lazily.

        The cheapest tier is evaluated at every candidate; every other rule
        contributes its lower bound (``-inf`` for a black box, the smallest
        inner product of any row for Krum, whose output is a row). Candidates are
        then completed best bound first, and a candidate whose bound reaches
        the best value found is skipped: it cannot win. A black box in the
        expectation has no bound: then every rule runs at every candidate.
        """
        w = self.w
        first = min(e.tier for e in self.evals)
        cheap = [k for k, e in enumerate(self.evals) if e.tier == first]
        costly = [k for k in self.order if w[k] > 0]
        parts = np.full((len(t), len(self.evals)), -np.inf)
        for k in cheap:
            parts[:, k] = self.evals[k](t)
        for k in costly:
            parts[:, k] = self.evals[k].lower_bound(t)

        combine = self._combine
        lower = np.array([combine(r) for r in parts])
        if not costly or not np.isfinite(lower).any():
            return self._expect_everywhere(t, parts, costly)
        best = min(self.cache.values(), default=math.inf)
        out = lower.copy()
        done = np.zeros(len(t), dtype=bool)
        order = np.argsort(lower, kind="stable")
        if not math.isfinite(best):  # the first completed: the best bound near the honest rows
            near = [i for i in order if abs(t[i]) <= self.near]
            if near:
                order = np.concatenate([[near[0]], [i for i in order if i != near[0]]])
        for i in order:
            if lower[i] >= best:
                break  # every remaining candidate is at least as bad as the best found
            row = parts[i].copy()
            v = lower[i]
            cut = False
            for k in costly:
                row[k] = float(self.evals[k](t[i:i + 1])[0])
                v = combine(row)
                if v >= best:
                    cut = True
                    break
            # a cut candidate keeps a lower bound (rules left unevaluated), nudged up so
            # that it never wins a tie against the completed candidate that set `best`
            out[i], done[i] = (np.nextafter(v, np.inf) if cut else v), True
            if not cut:
                best = min(best, v)
        out[~done] = np.nextafter(out[~done], np.inf)
        return out


def candidates(inst: Instance, obj: LineObjective, opts: dict):
    """Initial grid on ``[lo, hi]``; returns ``(t, used_all_breakpoints, (lo, hi))``."""
    l = inst.line64
    ln = line_length(inst)
    s0 = obj.near if obj.near > 0 else 1.0 / ln
    if opts["t_range"] is not None:
        lo, hi = (float(v) for v in opts["t_range"])
    else:
        hi = opts["t_max"] * s0
        lo = -hi
    geo = s0 * np.geomspace(1e-4, opts["t_max"], opts["n_geo"])
    # the points of the line nearest to each honest row, and the midpoints between them:
    # where distance-based rules (Krum, Bulyan, geomed) change their choices
    ln2 = ln * ln
    H = inst.R.double() - inst.offset64
    # ||l||^2 underflows for rows ~1e-160: then through l / ||l||
    proj = np.sort((H @ l / ln2 if 0 < ln2 < math.inf else (H @ (l / ln)) / ln).cpu().numpy())
    mids = (proj[1:] + proj[:-1]) / 2
    grid = np.concatenate([[0.0, lo, hi], geo, -geo, np.linspace(-2 * s0, 2 * s0, opts["n_lin"])])
    # small rows: a dense linear grid too, scored like the points near the rows (cheap rules
    # everywhere, costly ones by bound or prediction). A Krum window 0.13 s0 wide fell
    # between the 17 grid points (P3 value -0.148 against -0.161, n = 9, d = 3)
    n_dense = opts.get("n_dense", 0) if inst.n * inst.d < SMALL_ELEMENTS else 0
    dense = np.linspace(-2 * s0, 2 * s0, n_dense) if n_dense else np.zeros(0)
    near_rows = np.sort(np.concatenate([proj, mids]))
    if inst.kind == "expected":
        # only the clustered projections: thinning the dense grid too opened gaps of
        # ~0.06 s0 around them, and a Krum window there was missed (1.0668 vs 1.0080)
        near_rows = _thin(near_rows, grid, s0 / 64)
    t = np.concatenate([grid, near_rows, dense])
    bp = obj.breakpoints() if obj.piecewise_linear else None
    used_bp = False
    if bp is not None and len(bp) <= opts["max_breakpoints"]:
        if opts["t_range"] is None and len(bp):
            # the domain covers every breakpoint (one at 4e4 s0 beyond t_max's ends was
            # dropped, and "optimal" was beaten by 2% past the domain); beyond them the
            # objective is linear (:func:`decreases_past`). Not past the rows' dtype range.
            reach = 0.01 * float(torch.finfo(inst.R.dtype).max) / max(float(l.abs().max()), 1e-300)
            lo, hi = min(lo, float(bp.min())), max(hi, float(bp.max()))
            if max(-lo, hi) > reach:
                lo, hi = max(lo, -reach), min(hi, reach)
                bp = bp[(bp >= lo) & (bp <= hi)]
                t = np.concatenate([t, bp, [lo, hi]])
                return np.unique(t[(t >= lo) & (t <= hi)]), False, (lo, hi)
            t = np.concatenate([t, [lo, hi]])
        t = np.concatenate([t, bp])
        # a caller's t_range may leave breakpoints out: the domain's minimum is then not the
        # problem's (was "optimal" 0.048 against -0.138 past it, and relax's bound above it)
        used_bp = opts["t_range"] is None or bool(np.all((bp >= lo) & (bp <= hi)))
    t = t[(t >= lo) & (t <= hi)]
    return np.unique(t), used_bp, (lo, hi)


def max_crossings(t: np.ndarray, vals: np.ndarray, chunk: int = 2 ** 20) -> np.ndarray:
    """Where the max of the rules can have its minimum strictly between two candidates.

    ``vals[k, m]`` is rule ``m`` at ``t[k]`` (sorted ``t`` including every breakpoint, so
    each rule is linear between neighbours). On such an interval the max is convex and
    its minimum is at an end or at a vertex of the upper envelope, a crossing of two
    rules; where one rule is the largest at both ends it is the largest throughout
    (two lines), so only intervals whose argmax changes are searched, every pair."""
    top = np.argmax(vals, axis=1)
    idx = np.flatnonzero(top[:-1] != top[1:])
    out = []
    for c in range(0, len(idx), chunk):
        i = idx[c:c + chunk]
        t0, t1, v0, v1 = t[i], t[i + 1], vals[i], vals[i + 1]
        for a in range(vals.shape[1]):
            for b in range(a + 1, vals.shape[1]):
                d0, d1 = v0[:, a] - v0[:, b], v1[:, a] - v1[:, b]
                m = d0 * d1 < 0
                out.append(t0[m] + (t1[m] - t0[m]) * (d0[m] / (d0[m] - d1[m])))
    x = np.concatenate(out) if out else np.zeros(0)
    return x[np.isfinite(x)]


def decreases_past(score, lo: float, hi: float) -> bool:
    """Whether a piecewise-linear ``score`` (of an array of ``t``) whose breakpoints all lie
    in ``[lo, hi]`` still decreases past an end: it is linear there, so it is then
    unbounded below along the line (a mean, or a trimmed mean with ``b < f``, in the
    objective) and no point of the domain is optimal."""
    width = max(hi - lo, 1.0)
    ends = score(np.array([lo, hi]))
    far = score(np.array([lo - width, hi + width]))
    farther = score(np.array([lo - 2 * width, hi + 2 * width]))
    # a linear decrease doubles from one width to two; a constant step past the ends is
    # rounding (float32 rows: 4.7e-8 at every distance made a trimmed mean with b = f
    # "unbounded", not optimal, and relax's bound -inf at d = 184,586)
    drop, drop2 = ends - far, ends - farther
    return bool(np.any((drop > 1e-9 * (1.0 + np.abs(ends))) & (drop2 > 1.5 * drop)))


def _thin(points: np.ndarray, kept: np.ndarray, gap: float) -> np.ndarray:
    """The sorted ``points`` that lie at least ``gap`` from every ``kept`` point and from
    the points taken before them. In high dimension the honest rows project alike
    (d = 184,586: the ten nearest points and their midpoints span 0.8% of s0): in an
    expectation, where each candidate runs every rule (~1 s on the paper pool),
    one of them stands for the cluster and the zoom refines where the best lies."""
    taken: list[float] = []
    kept = np.sort(kept)
    for x in points:
        i = np.searchsorted(kept, x)
        near_kept = min((abs(x - kept[j]) for j in (i - 1, i) if 0 <= j < len(kept)), default=math.inf)
        if near_kept >= gap and (not taken or x - taken[-1] >= gap):
            taken.append(float(x))
    return np.array(taken)


def _zoom_candidates(t: np.ndarray, s: np.ndarray, opts: dict) -> np.ndarray:
    """``zoom`` points inside the bracket of each of the ``keep`` best candidates, less
    those within ``1e-12`` (relative) of a candidate already there: overlapping brackets
    give the same point from two ends, a few ulps apart (an expectation on the paper
    pool ran five such twins, ~0.8 s each). ``t`` is sorted."""
    new = []
    for i in np.argsort(s, kind="stable")[: opts["keep"]]:
        a = t[max(i - 1, 0)]
        b = t[min(i + 1, len(t) - 1)]
        new.append(np.linspace(a, b, opts["zoom"] + 2)[1:-1])
    taken = list(t)
    out = []
    for x in np.unique(np.concatenate(new)):
        j = bisect.bisect_left(taken, x)
        close = [taken[k] for k in (j - 1, j) if 0 <= k < len(taken)]
        if all(abs(x - y) > 1e-12 * max(abs(x), abs(y)) for y in close):
            taken.insert(j, float(x))
            out.append(float(x))
    return np.array(out)


def check_line_options(opts: dict, where: str = "solvers.line") -> dict:
    """The search's numeric options checked (``opts`` with them as ints / floats)."""
    out = dict(opts)
    for name in ("n_geo", "n_lin", "zoom", "keep", "chunk_elems"):
        if name in out:
            out[name] = check_int(where, name, out[name], low=1)
    for name in ("rounds", "exact_rounds", "max_breakpoints", "exact_breakpoints", "n_dense"):
        if name in out:
            out[name] = check_int(where, name, out[name], low=0)
    if "t_max" in out:
        out["t_max"] = check_real(where, "t_max", out["t_max"], low=0.0, low_open=True)
    if "tol" in out:
        out["tol"] = check_real(where, "tol", out["tol"], low=0.0)
    if out.get("t_range") is not None:
        tr = out["t_range"]
        if not isinstance(tr, (tuple, list)) or len(tr) != 2:
            raise fail(where, "t_range", "None or two numbers (lo, hi)", tr)
        lo, hi = (check_real(where, "t_range", v) for v in tr)
        if not lo <= hi:
            raise fail(where, "t_range", "(lo, hi) with lo <= hi", tuple(tr))
        out["t_range"] = (lo, hi)
    return out


def solve_line(inst: Instance, **options) -> tuple:
    """Run the search; returns ``(t_best, score, info)``."""
    opts = dict(t_max=1e3, n_geo=16, n_lin=17, n_dense=101, max_breakpoints=20000, exact_breakpoints=EXACT_BREAKPOINTS, rounds=5,
                exact_rounds=0, zoom=7, keep=2, chunk_elems=2 ** 23, fast=True, tol=1e-6, t_range=None,
                expect_search="lazy", expect_tol=1e-5)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.line: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    opts.update(options)
    opts = check_line_options(opts)
    exact_rounds = opts["exact_rounds"]
    if opts["expect_search"] not in ("lazy", "exhaustive"):
        raise fail("solvers.line", "expect_search", "'lazy' or 'exhaustive'", opts["expect_search"])
    check_real("solvers.line", "expect_tol", opts["expect_tol"], low=0.0)
    if not line_length(inst) > 0:
        # the line is one point (honest rows summing to zero, so mu = 0 too): the rules are
        # run there, not the closed forms, whose breakpoints divide by the line (NaN)
        obj = LineObjective(inst, opts["chunk_elems"], False, opts["tol"])
        t, s = obj.scores(np.array([0.0]))
        if obj.lazy:
            obj.certify()
            t, s = obj.scores(t)
        return 0.0, float(s[0]), dict(evaluations=obj.n_evals, exact=True, domain=(0.0, 0.0), obj=obj)
    obj = LineObjective(inst, opts["chunk_elems"], opts["fast"], opts["tol"], opts["expect_search"], opts["expect_tol"])
    exact_form = bool(obj.piecewise_linear and inst.structure == "line" and inst.objective != "lambda"
                      and (inst.kind != "max" or len(obj.uniq) <= MAX_EXACT_RULES))
    if exact_form:
        # One piecewise-linear function (a rule, or an expectation of rules): its minimum
        # on [lo, hi] is at a breakpoint or an end, so every breakpoint is scored in one
        # vectorized call (O(log d) each, _OrderStat) and no zoom is needed. A max of
        # several is linear-per-rule between breakpoints: add where two of them cross.
        t, used_bp, (lo, hi) = candidates(inst, obj, {**opts, "max_breakpoints": opts["exact_breakpoints"]})
        if used_bp:
            if inst.kind == "max" and len(obj.uniq) > 1:
                vals = obj.per_rule(t)
                obj.n_evals += len(t)
                x = np.setdiff1d(max_crossings(t, vals), t)
                t, s = np.concatenate([t, x]), np.concatenate([vals.max(1), obj.vectorized(x)])
                order = np.argsort(t)  # ties go to the smallest t, as on one rule
                t, s = t[order], s[order]
            else:
                s = obj.vectorized(t)
            i = int(np.argmin(s))
            unbounded = decreases_past(obj.vectorized, lo, hi)
            return float(t[i]), float(s[i]), dict(evaluations=len(t), exact=not unbounded, unbounded=unbounded,
                                                  domain=(lo, hi), obj=obj)
    t0, used_bp, (lo, hi) = candidates(inst, obj, opts)
    t, s = obj.scores(t0)
    crit = obj.critical_points(lo, hi, grid=t)
    crit = crit[(crit >= lo) & (crit <= hi)]
    if len(crit):  # after the first grid: in a lazy expectation they are scored between its anchors
        t, s = obj.scores(np.concatenate([t, crit]))
    for r in range(opts["rounds"]):
        if obj.lazy and r < exact_rounds:
            # P1-P3: the zoom centres on the best candidate made exact (every rule run
            # there), not on the lowest bound, which is optimistic while rules predicted
            # below it are left (six paper-pool P3 draws, exact_rounds=1: a better value
            # on three, the same on three, for ~40% more IRLS passes; README)
            obj.certify()
            t, s = obj.scores(t)
        if obj.lazy:
            obj.run_cheap_rules(opts["keep"])
            t, s = obj.scores(t)
        t, s = obj.scores(np.concatenate([t, _zoom_candidates(t, s, opts)]))
    if obj.lazy:  # the zoom rounds ran the rules predicted to matter; now prove the best
        obj.certify()
        t, s = obj.scores(t)
    elif obj.predicting:
        obj.certify_predicted()
        t, s = obj.scores(t)
    elif inst.kind == "expected":  # the best candidate's warm-started values, cold
        obj.certify_expected()
        t, s = obj.scores(t)
    i = int(np.argmin(s))
    exact = bool(used_bp and inst.structure == "line" and inst.objective != "lambda"
                 and (inst.kind != "max" or len(obj.uniq) == 1))  # a max of several: exact above only
    info = dict(evaluations=obj.n_evals, exact=exact, domain=(lo, hi), obj=obj)
    if exact and decreases_past(obj.vectorized, lo, hi):
        info.update(exact=False, unbounded=True)
    if inst.objective == "lambda" and math.isfinite(s[i]) and t[i] in (lo, hi) and hi > lo:
        # the best lambda sits at the domain's end: one point as far again beyond it
        # tells whether it keeps growing there (a mean: any lambda is reachable)
        far = float(t[i] + (hi - lo) * (1.0 if t[i] == hi else -1.0))
        info["grows_past_domain"] = bool(obj.scores(np.array([far]))[1][0] < s[i])
    return float(t[i]), float(s[i]), info


def method_line(inst: Instance, **options):
    """``solvers.solve(problem, method="line")``; see the module docstring."""
    t0 = time.perf_counter()
    if inst.structure != "optimal" and inst.eps > 0 and inst.f >= 2:
        return filter_ignored(inst, method_line, "line", t0, **options)
    tol = options.get("tol", 1e-6)
    t, score, info = solve_line(inst, **options)
    B = line_rows(inst, [t])[0]
    if not math.isfinite(score):
        status = "infeasible"
        info["reason"] = ("no point of the line is exactly anti-aligned (not a proof)" if inst.objective == "lambda"
                          else "the objective is not finite anywhere on the line")
    else:
        status = "optimal" if info["exact"] else "feasible"
    if info["domain"] == (0.0, 0.0):
        info["reason"] = "the honest mean is zero: every Byzantine row scores 0 (the line is a single point)"
    if info.get("unbounded"):
        info["reason"] = (f"unbounded below along the line: the objective still decreases past the domain "
                          f"{tuple(info['domain'])} (a mean, or a trimmed mean with b < f); the answer is the "
                          "domain's best point")
    elif info.get("grows_past_domain"):
        info["reason"] = (f"the best lambda lies at the end of the domain {tuple(info['domain'])} and a point "
                          "as far again beyond it reaches a larger one: lambda may be unbounded along the line "
                          "(a mean reaches any lambda); the answer is the domain's best point")
    known = info.pop("obj").known_outputs(t)
    info["t"] = t
    sol = make_solution(inst, B, method="line", status=status, t0=t0,
                        iterations=info["evaluations"], info=info, tol=tol, known=known)
    return _at_least_the_reference(inst, sol, t0, tol)


def _at_least_the_reference(inst: Instance, sol, t0: float, tol: float):
    """A ``"lambda"`` problem always has the feasible point ``lambda = -1``: the Byzantine
    workers' own rows ``own`` (then ``AGG = g``), when the structure allows them (identical
    rows for ``"suboptimal"``). The line need not pass through them (a geometric median's
    line missed every anti-aligned point and the problem was reported ``infeasible``):
    they are the answer when the line found nothing better."""
    if inst.objective != "lambda" or inst.own is None:
        return sol
    own = inst.own
    if inst.structure != "optimal" and not bool((own == own[:1]).all()):
        return sol  # distinct own rows are not one replicated row
    if sol.status != "infeasible" and sol.value >= -1.0:
        return sol
    ref = make_solution(inst, own, method="line", status="feasible", t0=t0, iterations=sol.iterations,
                        info=dict(sol.info, t=None, line_value=sol.value, line_status=sol.status,
                                  reason="no point of the line reached lambda >= -1: the Byzantine workers' own "
                                  "rows (lambda = -1, AGG = g) are sent"), tol=tol)
    return ref if ref.status == "feasible" else sol
