"""Bulyan with Krum selection inside the MIQCP of :mod:`solvers.miqcp` (exact, one Byzantine row).

Bulyan (El Mhamdi et al. 2018, pinned in ``DESIGN.md`` and ``notes/DEFINITIONS.md``)
selects ``theta = n - 2f`` rows one at a time, each by Krum (paper eq. (3)) on
the ``r`` rows left with ``K = max(r - f - 2, f, 1)`` neighbours, ties to the
lower sum of squared distances to all rows left, then to the lower index; then
it aggregates the selected rows (``"trimmed"``: per coordinate the mean of the
``beta = theta - 2f`` values closest to the median; ``"average"``; ``"comed"``).
Row 0 is the Byzantine row ``B``; ``f`` below is the rule's own f.

Model (normalized coordinates, the distance variables ``D_0j`` of :mod:`solvers.miqcp`):
a decision diagram over the sets ``S`` of rows left (``B`` among them). Honest
pairs are constants, so in a state ``S`` an honest row's score is
``min(A_i, C_i + D_i0)`` (``A_i`` / ``C_i``: the sum of its ``K`` / ``K - 1``
smallest honest distances in ``S``); once ``B`` is selected the rest of the
rounds is fixed and computed with the rule's own ``_pick_krum``.

- One binary per transition (state, selected row), with flow conservation
  (the root has flow 1); transitions that constants already rule out are left out.
- Rounds with ``K >= 2``: honest ``i`` selected, in one of two branches (``A_i``
  or ``C_i + D_i0`` is its score), forces that branch ``+ margin <= A_j`` and
  ``<= C_j + D_j0`` for every other honest ``j`` and ``<= L_0``, the LP-dual lower
  bound of B's score (``K tau - sum_j e_j``, ``e_j >= tau - D_0j``); ``B``
  selected forces ``U_0 + margin`` below every honest bound, ``U_0`` from
  neighbour binaries (products linearized exactly).
- Rounds with ``K = 1``: the score is the distance to the nearest row, so the
  two rows of the closest pair always tie and the tie rule decides. A
  transition names the closest pair (an honest pair at the smallest honest
  distance, or ``{B, m}``) and which of its rows is selected: its distance
  ``+ margin`` is at most every other pair's, and the selected row has the lower
  second key ``sum_j D_kj`` over the rows left (``+ margin``).
- Aggregation: the selected set ``o`` of a path is known at its end (B
  selected, or the last round), so ``omega_o`` = the sum of the transitions
  that end in ``o``. Without ``B`` the aggregate of ``o`` is a constant; with ``B`` it
  is, per coordinate, a function of ``B_j`` alone, piecewise affine (possibly
  discontinuous: the trimmed window jumps). Its pieces are computed by running
  the real aggregation on every breakpoint candidate (``B_j`` equal to an honest
  value, or equally far from a median candidate as another value) and checked
  to be affine in between; each piece is one disjunct of an exact convex-hull
  disjunction (segment binaries), plus one point piece wherever the real value
  at a jump is neither one-sided limit.

The margin-0 model is the closure of the true feasible set (strict comparisons
relaxed, the index tie key dropped; at a jump both one-sided limits are
allowed), so its dual bound is valid; with ``margin > 0`` every comparison is
strict, pieces stop ``margin`` short of every jump (isolated points are dropped),
and the real rule selects what the model selected. :func:`solvers.miqcp.method_miqcp`
runs both and recomputes every reported value with the real rules.

Box: a selected ``B`` scores at most an honest row left, at most ``S_max`` =
the largest sum of the ``K`` largest honest squared distances from one honest
row, so it lies within ``sqrt(S_max)`` of an honest row; an unselected ``B``
farther than every honest pair (``D_max``) from all honest rows changes no
honest score. That does NOT make the box (widened by ``1.001 sqrt(S_max)``,
:func:`box_width`) lossless: Bulyan breaks Krum ties by the sum of squared
distances to every row left, ``B`` included, so the direction of a far ``B`` can
pick a different honest row (seen with one neighbour, in the last rounds). The
results are optima on the box, and ``info["box_lossless"]`` is ``False``.

Covered: one Byzantine row (``f = 1``: Bulyan needs ``n >= 4f + 3``, so
``n = 7``), ``select="krum"``, ``aggregate`` in trimmed / average / comed,
``p`` in {1, 2, inf} (any ``p`` when ``d = 1``). Not covered (:func:`applicable`
says why): ``f >= 2`` (``n >= 11``), other selections (the nearest row to an
average / median / geometric median), Krum or geomed aggregation, ``n > 7``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from mixtailor_game.rules import Bulyan, comed
from mixtailor_game.rules._distances import squared_distances
from mixtailor_game.rules.bulyan import _pick_krum, closest_to_median_mean

AGGREGATES = ("trimmed", "average", "comed")
MAX_N = 7


def applicable(rule, inst) -> str | None:
    """``None`` when :func:`bulyan_block` models ``rule`` on ``inst`` exactly, else why not."""
    name = rule.name
    if rule.select != "krum":
        return (f"rule {name}: Bulyan selection {rule.select!r} is not modelled (only select='krum'; "
                "the others pick the row nearest to a non-row output)")
    if rule.aggregate not in AGGREGATES:
        return f"rule {name}: Bulyan aggregate {rule.aggregate!r} is not modelled (only {AGGREGATES})"
    if inst.f != 1:
        return (f"rule {name}: f = {inst.f} Byzantine rows; the Bulyan model covers f = 1 "
                f"(Bulyan needs n >= 4f + 3, so f = 2 means n >= 11)")
    if rule.f < 1:
        return f"rule {name}: Bulyan with f = {rule.f} selects every row (no selection to model)"
    if inst.n > MAX_N:
        return f"rule {name}: n = {inst.n} > {MAX_N} (the round-by-round model grows like n^3 binaries)"
    if inst.d > 1 and float(rule.p) not in (1.0, 2.0, math.inf):
        return f"rule {name}: l_p with p = {float(rule.p):g} not in (1, 2, inf) for d > 1"
    return None


def is_bulyan(rule) -> bool:
    return type(rule) is Bulyan


def box_width(R: np.ndarray, rule) -> float:
    """Half-width ``W`` beyond the honest range that holds every selected ``B`` (not lossless: module docstring)."""
    p = float(rule.p)
    diff = R[:, None, :] - R[None, :, :]
    D = (diff ** 2).sum(-1) if (p == 2.0 or R.shape[1] == 1) else np.linalg.norm(diff, ord=p, axis=-1) ** 2
    K = min(R.shape[0] + 1 - rule.f - 2, R.shape[0] - 1)  # the first round has the most neighbours
    smax = float(np.sort(D, 1)[:, ::-1][:, :max(K, 1)].sum(1).max())
    return 1.001 * math.sqrt(smax) + 1e-9


# --- the aggregation as pieces of a 1-D function ------------------------------------------------
def aggregate_fn(rule):
    """The real aggregation of the selected rows, ``S[theta, M] -> [M]`` (coordinate-wise)."""
    if rule.aggregate == "average":
        return lambda S: S.mean(0)
    if rule.aggregate == "comed":
        return comed
    return lambda S: closest_to_median_mean(S, S.shape[0] - 2 * rule.f)


def _breakpoint_candidates(H: np.ndarray) -> np.ndarray:
    """Values of ``b`` where the order of ``(b, H)`` or of their distances to a median candidate changes."""
    vals = [(1.0, 0.0)] + [(0.0, float(h)) for h in H]            # x = alpha b + beta
    meds = vals + [((a1 + a2) / 2, (b1 + b2) / 2) for (a1, b1), (a2, b2) in itertools.combinations(vals, 2)]
    out = [float(h) for h in H]
    for (ax, bx), (ay, by) in itertools.combinations(vals, 2):
        for am, bm in meds:                                         # x + y = 2 med
            a, c = ax + ay - 2 * am, bx + by - 2 * bm
            if abs(a) > 1e-12:
                out.append(-c / a)
    return np.unique(np.asarray(out))


def segments(agg, H: np.ndarray, lo: float, hi: float) -> list[tuple]:
    """Pieces of ``b -> agg([b, H])`` on ``[lo, hi]``: ``(a, b, slope, icpt, jump_a, jump_b)``.

    ``jump_x``: the function jumps at end ``x`` (the two one-sided limits differ);
    a piece with ``a == b`` is a point where the real value is neither limit.
    """
    scale = 1.0 + float(np.abs(H).max(initial=0.0)) + max(abs(lo), abs(hi))
    tol = 1e-9 * scale
    pts = _breakpoint_candidates(H)
    pts = pts[(pts > lo + tol) & (pts < hi - tol)]
    pts = np.concatenate([[lo], pts[np.concatenate([[True], np.diff(pts) > tol])], [hi]])  # one per cluster
    a, b = pts[:-1], pts[1:]
    probe = np.concatenate([pts, a + 0.25 * (b - a), a + 0.5 * (b - a), a + 0.75 * (b - a)])
    S = torch.tensor(np.vstack([probe[None, :], np.repeat(H[:, None], len(probe), 1)]), dtype=torch.float64)
    v = agg(S).numpy()
    m = len(a)
    at, q1, q2, q3 = v[:len(pts)], v[len(pts):len(pts) + m], v[len(pts) + m:len(pts) + 2 * m], v[len(pts) + 2 * m:]
    slope = (q3 - q1) / (0.5 * (b - a))
    icpt = q1 - slope * (a + 0.25 * (b - a))
    if np.abs(slope * (a + 0.5 * (b - a)) + icpt - q2).max() > 1e-7 * scale:
        raise RuntimeError("solvers.bulyan_exact: aggregation not affine between breakpoint candidates")
    pieces = []  # merge neighbours that are one affine piece
    for k in range(m):
        if pieces and abs(pieces[-1][2] - slope[k]) <= tol and abs(pieces[-1][3] - icpt[k]) <= tol \
                and abs(at[k] - (slope[k] * a[k] + icpt[k])) <= tol:
            pieces[-1][1] = b[k]
        else:
            pieces.append([a[k], b[k], slope[k], icpt[k], k])
    out = []
    value_at = dict(zip(pts.tolist(), at.tolist()))
    jumps = [False] + [abs((pieces[k][2] - pieces[k - 1][2]) * pieces[k][0] + pieces[k][3] - pieces[k - 1][3]) > tol
                       for k in range(1, len(pieces))] + [False]
    for k, (pa, pb, s, c, _) in enumerate(pieces):
        if jumps[k]:
            ps, pc = pieces[k - 1][2], pieces[k - 1][3]
            v = value_at[pa]
            if abs(v - (s * pa + c)) > tol and abs(v - (ps * pa + pc)) > tol:  # neither limit
                out.append((float(pa), float(pa), 0.0, float(v), False, False))
        out.append((float(pa), float(pb), float(s), float(c), jumps[k], jumps[k + 1]))
    return out


# --- the model ------------------------------------------------------------------------------------
class _Form:
    """A linear form ``const + sum coef * var`` with its bounds (for big-M constants)."""

    def __init__(self, const=0.0, terms=()):
        self.const, self.terms = float(const), list(terms)   # terms: (coef, var, lo, hi)

    def __add__(self, other):
        return _Form(self.const + other.const, self.terms + other.terms)

    def expr(self):
        return self.const + sum(c * v for c, v, _, _ in self.terms)

    def lo(self):
        return self.const + sum(min(c * a, c * b) for c, _, a, b in self.terms)

    def hi(self):
        return self.const + sum(max(c * a, c * b) for c, _, a, b in self.terms)


class _States:
    """Bulyan's selection as a decision diagram over the sets of rows left (module docstring)."""

    def __init__(self, bld, rule):
        self.bld, self.rule, self.m, self.mg = bld, rule, bld.m, bld.margin
        self.n, self.f = bld.inst.n, rule.f
        p = float(rule.p)
        self.D = {j: _Form(0.0, [(1.0, *_var_bounds(bld.distance(0, j, p)))]) for j in range(1, self.n)}
        R = torch.tensor(bld.Rn, dtype=torch.float64)
        C = torch.full((self.n, self.n), math.inf, dtype=torch.float64)
        C[1:, 1:] = squared_distances(R, p)  # the rule's own honest distances (ties as it sees them)
        self.C = C
        self.tol = 1e-12 * (1.0 + float(C[1:, 1:].max()))
        self.binaries: list = []
        self.to_outcome: dict = {}     # selected set -> transitions (or flows) that end in it
        self.b_selected: list = []     # transitions that select B

    def binary(self):
        v = self.bld.var(binary=True)
        self.binaries.append(v)
        return v

    def need(self, x, lhs: _Form, rhs: _Form, strict=True):
        """``x = 1`` implies ``lhs (+ margin) <= rhs``."""
        mg = self.mg if strict else 0.0
        M = lhs.hi() - rhs.lo() + mg
        if M <= 0:
            return
        self.m.addCons((lhs.expr() - rhs.expr()) + mg <= M * (1 - x))

    def pruned(self, ok: bool, ok_margin: bool):
        """A transition binary that constants allow in the closure (``ok``); fixed to 0 when
        only the margin rules it out (same variables in both runs: the repair fixes by position)."""
        x = self.binary()
        if self.mg > 0 and not ok_margin:
            self.m.addCons(x <= 0)
        return x

    def run(self):
        n, theta = self.n, self.n - 2 * self.f
        inflow = {frozenset(range(n)): [1.0]}
        for t in range(theta):
            K = max(n - t - self.f - 2, self.f, 1)
            nxt: dict = {}
            for R, flows in inflow.items():
                outs = self.scored(R, K) if K >= 2 else self.paired(R)
                self.m.addCons(self.bld.scip.quicksum(x for x, _ in outs) == self.bld.scip.quicksum(flows))
                for x, k in outs:
                    if k == 0:
                        self.b_selected.append(x)
                        self.to_outcome.setdefault(self.finish(R - {0}, t + 1), []).append(x)
                    else:
                        nxt.setdefault(R - {k}, []).append(x)
            inflow = nxt
        for R, flows in inflow.items():   # B never selected
            self.to_outcome.setdefault(frozenset(range(n)) - R, []).extend(flows)

    def finish(self, left, t) -> frozenset:
        """The selected set once B is selected: the real rule's rounds on the honest rows left."""
        left = sorted(left)
        for _ in range(t, self.n - 2 * self.f):
            left.remove(_pick_krum(self.C, left, self.f))
        return frozenset(range(self.n)) - frozenset(left)

    def b_lower(self, H, K):
        """``L_0 <= score of B`` (LP dual of "sum of the K smallest", exact at the optimum)."""
        top = max(self.D[j].hi() for j in H)
        tau = self.bld.var(0.0, top)
        es = []
        for j in H:
            e = self.bld.var(0.0, top)
            self.m.addCons(e >= tau - self.D[j].expr())
            es.append(e)
        L = self.bld.var(0.0, K * top)
        self.m.addCons(L <= K * tau - self.bld.scip.quicksum(es))
        return _Form(0.0, [(1.0, L, 0.0, K * top)])

    def b_upper(self, x, H, K):
        """``U_0 >= score of B`` when ``x = 1`` (neighbour binaries, products exact)."""
        a = {j: self.binary() for j in H}
        self.m.addCons(self.bld.scip.quicksum(a.values()) == K * x)
        terms = []
        for j in H:
            ub = self.D[j].hi()
            v = self.bld.var(0.0, ub)
            self.m.addCons(v >= self.D[j].expr() - ub * (1 - a[j]))
            terms.append((1.0, v, 0.0, ub))
        return _Form(0.0, terms)

    def scored(self, R, K):
        """Transitions of a round with ``K >= 2`` neighbours: honest score ``min(A_i, C_i + D_i0)``."""
        H = sorted(R - {0})
        A = {i: sum(sorted(float(self.C[i, j]) for j in H if j != i)[:K]) for i in H}
        Cm = {i: sum(sorted(float(self.C[i, j]) for j in H if j != i)[:K - 1]) for i in H}
        sc_ub = {i: [_Form(A[i]), _Form(Cm[i]) + self.D[i]] for i in H}    # score_i <= each, = the min
        outs = []
        x0 = self.binary()
        U0 = self.b_upper(x0, H, K)
        for j in H:
            for bound in sc_ub[j]:
                self.need(x0, U0, bound)
        outs.append((x0, 0))
        L0 = None
        for i in H:
            for branch, mine in ((0, sc_ub[i][0]), (1, sc_ub[i][1])):
                lo = mine.lo()
                ok = all(lo <= A[j] + self.tol for j in H if j != i)
                okm = all(lo + self.mg <= A[j] for j in H if j != i)
                if not ok:
                    continue
                x = self.pruned(ok, okm)
                L0 = L0 or self.b_lower(H, K)
                self.need(x, mine, L0)
                for j in H:
                    if j != i:
                        for bound in sc_ub[j]:
                            self.need(x, mine, bound)
                outs.append((x, i))
        return outs

    def paired(self, R):
        """Transitions of a round with one neighbour: the closest pair, then the second key."""
        H = sorted(R - {0})
        pairs = [(a, b) for a, b in itertools.combinations(H, 2)]
        cmin = min(float(self.C[a, b]) for a, b in pairs)
        sec = {i: _Form(sum(float(self.C[i, j]) for j in H if j != i)) + self.D[i] for i in H}
        sec0 = _Form(0.0, [t for j in H for t in self.D[j].terms])
        outs = []
        for a, b in pairs:
            c = float(self.C[a, b])
            ok = c <= cmin + self.tol
            okm = all(c + self.mg <= float(self.C[q]) for q in pairs if q != (a, b))
            if not ok:
                continue
            for k, o in ((a, b), (b, a)):
                x = self.pruned(ok, okm)
                for j in H:
                    self.need(x, _Form(c), self.D[j])
                self.need(x, sec[k], sec[o])
                outs.append((x, k))
        for mrow in H:
            for k in (0, mrow):
                x = self.binary()
                Dm = self.D[mrow]
                for j in H:
                    if j != mrow:
                        self.need(x, Dm, self.D[j])
                self.need(x, Dm, _Form(cmin))
                self.need(x, sec0, sec[mrow]) if k == 0 else self.need(x, sec[mrow], sec0)
                outs.append((x, k))
        return outs


def _var_bounds(dist):
    """``(var, lo, hi)`` of a distance from :meth:`solvers.miqcp._Builder.distance`."""
    D, ub = dist
    return D, 0.0, float(ub)


def _output(bld, rule, rounds, omega, sel0):
    """Bulyan's output ``y`` (one expression per coordinate), exact disjunction over pieces."""
    m, sq, mg = bld.m, bld.scip.quicksum, bld.margin
    R = bld.Rn
    agg = aggregate_fn(rule)
    y = []
    for j in range(bld.inst.d):
        e0, (lo, hi) = bld.coord(0, j)
        w = bld.var(None, None)                 # B_j when B is not selected
        m.addCons(w >= lo * (1 - sel0))
        m.addCons(w <= hi * (1 - sel0))
        parts, terms = [w], []
        for o, om in omega.items():
            honest = [i - 1 for i in o if i > 0]
            if len(honest) == len(o):
                c = float(agg(torch.tensor(R[honest][:, [j]], dtype=torch.float64))[0])
                terms.append(c * om)
                continue
            pieces = segments(agg, R[honest, j], lo, hi)
            sig = [om] if len(pieces) == 1 else [rounds.binary() for _ in pieces]
            if len(pieces) > 1:
                m.addCons(sq(sig) == om)
            for (a, b, s, c, jump_a, jump_b), sg in zip(pieces, sig):
                # margin > 0: stay margin away from jumps (the side the real rule takes
                # there is a matter of the last bit) and drop isolated points
                a2, b2 = a + (mg if jump_a else 0.0), b - (mg if jump_b else 0.0)
                z = bld.var(None, None)
                if a2 > b2 or (mg > 0 and a == b):
                    m.addCons(sg <= 0)           # kept as a variable: the repair run fixes binaries by position
                    a2 = b2 = a
                m.addCons(z >= a2 * sg)
                m.addCons(z <= b2 * sg)
                parts.append(z)
                terms.append(s * z + c * sg)
        m.addCons(bld.lin(e0) == sq(parts))
        y.append(sq(terms))
    return y


def bulyan_block(bld, rule) -> dict:
    """Add ``rule`` (a :class:`Bulyan`) to the builder's model; returns its output ``y``,
    the outcomes (selected sets with the binaries that lead to them) and its binaries."""
    st = _States(bld, rule)
    st.run()
    sq = bld.scip.quicksum
    omega = {o: sq(xs) for o, xs in st.to_outcome.items()}
    y = _output(bld, rule, st, omega, sq(st.b_selected))
    return dict(y=y, outcomes=st.to_outcome, binaries=st.binaries)


def selected_rows(bld, block, sol) -> list[int]:
    """The rows Bulyan selects in a solution of the model (row 0 is the Byzantine row)."""
    best = max(block["outcomes"].items(),
               key=lambda kv: sum(x if isinstance(x, float) else bld.m.getSolVal(sol, x) for x in kv[1]))
    return sorted(best[0])
