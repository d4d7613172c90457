"""Where Krum's choice changes along a line of identical Byzantine rows, for l_2.

With ``c`` identical rows ``x(t) = w_0 + t l`` and honest rows ``v_1..v_h``, every
squared l_2 distance from ``x(t)`` is a quadratic with the same leading term,
``q_i(t) = ||l||^2 t^2 + 2 <l, w_0 - v_i> t + ||w_0 - v_i||^2``, and the honest
block ``c_jk = ||v_j - v_k||^2`` is constant. Krum's scores (paper eq. (3): the sum
of the ``nb`` smallest squared distances to the other rows) are then piecewise
quadratic in ``t``: a Byzantine row's is the sum of the ``nb - (c - 1)`` smallest
``q_i`` (its copies are at distance 0), honest ``j``'s the ``nb`` smallest of
``c`` copies of ``q_j`` and the ``c_jk``. Their pieces end where two ``q_i`` cross
(linear roots) or a ``q_j`` crosses a ``c_jk`` (quadratic roots); inside a piece
the chosen row changes only where two scores cross. :func:`krum_choices` finds
all those points in closed form (``O(n^3)`` roots after one ``O(n d)`` pass) and
keeps the ones where the choice changes: Krum's value along the line is then
piecewise linear with known breakpoints, so the line search scores it exactly
instead of hoping its grid falls inside every window where Krum picks the
Byzantine rows (a window narrower than the grid was missed, README).
:class:`BulyanKrumLine` does the same for Bulyan's Krum selection: each round is
such a Krum on the rows it has left (ties, which one neighbour makes structural,
to the lower sum of all distances: another quadratic), followed piece by piece.

The model is float64 arithmetic on the exact line; the rules see rows rounded to
their dtype, so near a change the rule may decide the other way:
``solvers.line`` checks its candidates on either side with the rule's own
distances.
"""

from __future__ import annotations

import numpy as np

BYZANTINE = -1  # the choice "a Byzantine row" (every copy scores the same; ties pick the first)


def _stable_roots(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real roots of ``a t^2 + b t + c`` (elementwise; NaN where none, and for the
    second root of a linear one), without the cancellation of the textbook formula."""
    a, b, c = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (a, b, c)))
    r1 = np.full(a.shape, np.nan)
    r2 = np.full(a.shape, np.nan)
    lin = (a == 0) & (b != 0)
    r1[lin] = -c[lin] / b[lin]
    quad = a != 0
    disc = np.where(quad, b * b - 4 * a * c, -1.0)
    ok = quad & (disc >= 0)
    s = np.sqrt(np.where(ok, disc, 0.0))
    qq = -0.5 * (b + np.where(b >= 0, s, -s))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(ok, qq / np.where(ok, a, 1.0), r1)
        r2 = np.where(ok & (qq != 0), c / np.where(qq != 0, qq, 1.0), r2)
        r2 = np.where(ok & (qq == 0), 0.0, r2)
    return r1, r2


class KrumLine:
    """Krum's scores along the line as quadratics in ``t``.

    ``lead``: ``||l||^2``; ``lin``, ``const``: ``2 <l, w_0 - v_i>`` and ``||w_0 - v_i||^2``
    (``(h,)``); ``honest``: ``(h, h)`` squared distances of the honest rows;
    ``copies``: the number of identical Byzantine rows; ``nb``: Krum's neighbours.
    """

    def __init__(self, lead: float, lin: np.ndarray, const: np.ndarray, honest: np.ndarray, copies: int, nb: int,
                 tie_key: bool = False, rank=None):
        self.tie_key = bool(tie_key)  # Bulyan's rounds: equal scores go to the lower sum of all distances
        # then to the lower rank (default: the Byzantine rows first, then the honest ones in order)
        self.rank = np.arange(1 + len(lin)) if rank is None else np.asarray(rank)
        self.a = float(lead)
        self.b = np.asarray(lin, dtype=np.float64)
        self.c = np.asarray(const, dtype=np.float64)
        self.h = len(self.b)
        self.copies, self.nb = int(copies), int(nb)
        H = np.asarray(honest, dtype=np.float64)
        off = ~np.eye(self.h, dtype=bool)
        self.others = np.sort(H[off].reshape(self.h, self.h - 1), axis=1)  # c_jk, k != j, ascending
        self.prefix = np.concatenate([np.zeros((self.h, 1)), np.cumsum(self.others, axis=1)], axis=1)
        # the sum of the squared distances to every other row, one quadratic per row
        self.total = np.zeros((1 + self.h, 3))
        self.total[0] = (self.h * self.a, self.b.sum(), self.c.sum())
        self.total[1:, 0] = self.copies * self.a
        self.total[1:, 1] = self.copies * self.b
        self.total[1:, 2] = self.copies * self.c + self.prefix[:, -1]

    def coefficients(self, m: np.ndarray) -> np.ndarray:
        """``(K, 1 + h, 3)``: each score's quadratic ``(a, b, c)`` on the piece holding
        each ``m`` (row 0 the Byzantine rows, then the honest ones)."""
        m = np.asarray(m, dtype=np.float64)
        K, h, a = len(m), self.h, self.a
        out = np.zeros((K, 1 + h, 3))
        Q = a * m[:, None] ** 2 + self.b[None, :] * m[:, None] + self.c[None, :]
        k_byz = self.nb - (self.copies - 1)
        if k_byz > 0:
            idx = np.argsort(Q, axis=1, kind="stable")[:, :k_byz]
            out[:, 0, 0] = k_byz * a
            out[:, 0, 1] = self.b[idx].sum(axis=1)
            out[:, 0, 2] = self.c[idx].sum(axis=1)
        # honest j: the c_jk below q_j first, then q_j's copies, then the other c_jk
        below = (self.others[None, :, :] < Q[:, :, None]).sum(axis=2)  # (K, h)
        n_q = np.clip(self.nb - below, 0, self.copies)
        n_c = self.nb - n_q
        out[:, 1:, 0] = n_q * a
        out[:, 1:, 1] = n_q * self.b[None, :]
        out[:, 1:, 2] = n_q * self.c[None, :] + self.prefix[np.arange(h)[None, :], n_c]
        return out

    def choices(self, m: np.ndarray) -> np.ndarray:
        """Krum's choice at each ``m`` by the model: ``BYZANTINE`` or an honest index."""
        m = np.asarray(m, dtype=np.float64)
        C = self.coefficients(m)
        scores = C[:, :, 0] * m[:, None] ** 2 + C[:, :, 1] * m[:, None] + C[:, :, 2]
        if self.copies == 0:  # no Byzantine row left (a Bulyan round after both were chosen)
            scores[:, 0] = np.inf
        rank = np.broadcast_to(self.rank, scores.shape)
        if self.tie_key:
            T = self.total
            second = T[None, :, 0] * m[:, None] ** 2 + T[None, :, 1] * m[:, None] + T[None, :, 2]
            pick = np.lexsort((rank, second, scores), axis=-1)[:, 0]
        else:
            pick = np.lexsort((rank, scores), axis=-1)[:, 0]
        return np.where(pick == 0, BYZANTINE, pick - 1)

    def events(self) -> np.ndarray:
        """Where a score changes its quadratic: two ``q_i`` cross, or ``q_j`` crosses a ``c_jk``."""
        i, k = np.triu_indices(self.h, 1)
        cross = np.full(len(i), np.nan)
        db = self.b[i] - self.b[k]
        nz = db != 0
        cross[nz] = (self.c[k][nz] - self.c[i][nz]) / db[nz]
        j = np.repeat(np.arange(self.h), self.h - 1)
        r1, r2 = _stable_roots(self.a, self.b[j], self.c[j] - self.others.reshape(-1))
        pts = np.concatenate([cross, r1, r2])
        return np.unique(pts[np.isfinite(pts)])


def krum_choices(model: KrumLine) -> tuple[np.ndarray, np.ndarray]:
    """``(points, picks)``: the sorted ``t`` where the model's choice changes, and the
    choice on each of the ``len(points) + 1`` pieces (``BYZANTINE`` or honest index)."""
    ev = model.events()
    width = max(1.0, float(ev[-1] - ev[0])) if len(ev) else 1.0
    edges = np.concatenate([[ev[0] - width] if len(ev) else [-width], ev, [ev[-1] + width] if len(ev) else [width]])
    mids = (edges[1:] + edges[:-1]) / 2
    if len(ev) == 0:
        mids = np.array([0.0])
    C = model.coefficients(mids)  # (K, rows, 3), fixed on each piece between events
    r, s = np.triu_indices(C.shape[1], 1)
    D = C[:, r, :] - C[:, s, :]
    r1, r2 = _stable_roots(D[..., 0], D[..., 1], D[..., 2])
    lo = np.concatenate([[-np.inf], ev])[:, None] if len(ev) else np.array([[-np.inf]])
    hi = np.concatenate([ev, [np.inf]])[:, None] if len(ev) else np.array([[np.inf]])
    inside = [x[np.isfinite(x) & (x > lo) & (x < hi)] for x in (r1, r2)]
    if model.tie_key:  # where two rows' sums of all distances cross (they break equal scores)
        T = model.total[r] - model.total[s]
        inside += list(_stable_roots(T[:, 0], T[:, 1], T[:, 2]))
    pts = np.unique(np.concatenate([ev, *inside]))
    pts = pts[np.isfinite(pts)]
    if not len(pts):
        return pts, model.choices(np.array([0.0]))
    gap = max(1.0, float(pts[-1] - pts[0]))
    samples = np.concatenate([[pts[0] - gap], (pts[1:] + pts[:-1]) / 2, [pts[-1] + gap]])
    picks = model.choices(samples)
    change = picks[1:] != picks[:-1]
    keep = np.concatenate([[True], change])  # the first piece, then one per change
    return pts[change], picks[keep]


class BulyanKrumLine:
    """Bulyan's Krum selection (``bulyan_select``: ``theta = n - 2f`` rounds of Krum on
    the rows left, ``max(k - f - 2, f, 1)`` neighbours among ``k``), and optionally its
    Krum aggregation (``krum_pick``: ``theta - f - 2`` neighbours among the chosen), along
    the line: every round is a :class:`KrumLine` on the rows it has left. ``lin``,
    ``const``, ``honest`` as :class:`KrumLine`'s for all honest rows."""

    def __init__(self, lead, lin, const, honest, copies: int, f: int, krum_aggregate: bool, max_states: int = 4096):
        self.a = float(lead)
        self.b, self.c = np.asarray(lin, dtype=np.float64), np.asarray(const, dtype=np.float64)
        self.H = np.asarray(honest, dtype=np.float64)
        self.copies, self.f, self.agg = int(copies), int(f), bool(krum_aggregate)
        self.theta = self.copies + len(self.b) - 2 * self.f
        self.max_states = max_states
        self._models: dict = {}

    def _model(self, copies: int, keep: tuple, nb: int, tie_key: bool, rank=None) -> tuple[KrumLine, np.ndarray,
                                                                                          np.ndarray]:
        key = (copies, keep, nb, tie_key, None if rank is None else tuple(rank))
        if key not in self._models:
            k = np.array(keep, dtype=int)
            m = KrumLine(self.a, self.b[k], self.c[k], self.H[np.ix_(k, k)], copies, nb, tie_key=tie_key, rank=rank)
            self._models[key] = (m, *krum_choices(m))
        return self._models[key]

    def _round(self, copies: int, keep: tuple, chosen: tuple):
        """The model of the next step (a selection round, the aggregation, or None when done)."""
        if len(chosen) < self.theta and copies == 0 and len(keep) == 1:
            return None, "forced"  # the last row left (Bulyan with f = 0)
        if len(chosen) < self.theta and keep:
            rows = copies + len(keep)
            return self._model(copies, keep, max(rows - self.f - 2, self.f, 1), True), "select"
        # (only copies left: they are the rest of the selection, whatever t)
        n_byz = sum(1 for c in chosen if c == BYZANTINE) + self.theta - len(chosen)
        if not self.agg or n_byz == 0 or len(chosen) - n_byz < 1:  # nothing left that moves
            return None, None
        honest = tuple(sorted(c for c in chosen if c != BYZANTINE))
        # krum_pick breaks ties by the order of choice
        order = chosen + (BYZANTINE,) * (self.theta - len(chosen))
        rank = [order.index(BYZANTINE)] + [order.index(c) for c in honest]
        return self._model(n_byz, honest, self.theta - self.f - 2, False, rank), "aggregate"

    def changes(self) -> np.ndarray:
        """Sorted ``t`` where the chosen rows (or the aggregation's pick) change; past
        ``max_states`` followed pieces the rest is left out (they are only candidates)."""
        out: list[float] = []
        stack = [(self.copies, tuple(range(len(self.b))), (), -np.inf, np.inf)]
        seen = 0
        while stack and seen < self.max_states:
            copies, keep, chosen, lo, hi = stack.pop()
            seen += 1
            step, kind = self._round(copies, keep, chosen)
            if kind == "forced":
                stack.append((0, (), chosen + keep, lo, hi))
                continue
            if step is None:
                continue
            _, flips, picks = step
            inside = (flips > lo) & (flips < hi)
            out += list(flips[inside])
            if kind == "aggregate":
                continue
            edges = np.concatenate([[lo], flips[inside], [hi]])
            first = int(np.searchsorted(flips, lo, side="right"))
            for i in range(len(edges) - 1):
                pick = int(picks[first + i])
                if pick == BYZANTINE:
                    stack.append((copies - 1, keep, chosen + (BYZANTINE,), edges[i], edges[i + 1]))
                else:
                    stack.append((copies, tuple(x for x in keep if x != keep[pick]), chosen + (keep[pick],),
                                  edges[i], edges[i + 1]))
        return np.unique(np.array(out))

    def regime(self, t: float) -> tuple:
        """``(sorted chosen rows, aggregation's pick)`` at ``t`` by the model (honest rows by
        their index among all honest rows)."""
        copies, keep, chosen = self.copies, tuple(range(len(self.b))), ()
        while True:
            step, kind = self._round(copies, keep, chosen)
            if kind == "forced":
                keep, chosen = (), chosen + keep
                continue
            if kind != "select":
                break
            pick = int(step[0].choices(np.array([t]))[0])
            if pick == BYZANTINE:
                copies, chosen = copies - 1, chosen + (BYZANTINE,)
            else:
                copies, keep, chosen = copies, tuple(x for x in keep if x != keep[pick]), chosen + (keep[pick],)
        chosen += (BYZANTINE,) * (self.theta - len(chosen))  # only copies were left
        agg = None
        if kind == "aggregate":
            pick = int(step[0].choices(np.array([t]))[0])
            honest = sorted(c for c in chosen if c != BYZANTINE)
            agg = BYZANTINE if pick == BYZANTINE else honest[pick]
        return tuple(sorted(chosen)), agg
