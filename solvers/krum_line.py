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

    def __init__(self, lead: float, lin: np.ndarray, const: np.ndarray, honest: np.ndarray, copies: int, nb: int):
        self.a = float(lead)
        self.b = np.asarray(lin, dtype=np.float64)
        self.c = np.asarray(const, dtype=np.float64)
        self.h = len(self.b)
        self.copies, self.nb = int(copies), int(nb)
        H = np.asarray(honest, dtype=np.float64)
        off = ~np.eye(self.h, dtype=bool)
        self.others = np.sort(H[off].reshape(self.h, self.h - 1), axis=1)  # c_jk, k != j, ascending
        self.prefix = np.concatenate([np.zeros((self.h, 1)), np.cumsum(self.others, axis=1)], axis=1)

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
        pick = np.argmin(scores, axis=1)  # ties: the lowest row, the Byzantine ones first
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
    pts = np.unique(np.concatenate([ev, *inside]))
    if not len(pts):
        return pts, model.choices(np.array([0.0]))
    gap = max(1.0, float(pts[-1] - pts[0]))
    samples = np.concatenate([[pts[0] - gap], (pts[1:] + pts[:-1]) / 2, [pts[-1] + gap]])
    picks = model.choices(samples)
    change = picks[1:] != picks[:-1]
    keep = np.concatenate([[True], change])  # the first piece, then one per change
    return pts[change], picks[keep]
