"""Pairwise l_p distances between rows, safe against overflow and Byzantine rows.

``torch.cdist`` and ``torch.linalg.vector_norm`` compute ``sum |x|^p`` directly,
which overflows float32 for honest rows once ``|x| > 3.4e38^(1/p)`` (about 250
for p = 16) and underflows for small ones. We scale each difference by its
largest entry first (as LAPACK's ``nrm2`` does) for every p other than 1, 2 and
inf. Pairs that involve a non-finite row get distance ``inf``: a NaN or Inf row
is infinitely far from everything, so distance-based rules never prefer it.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_real
from ._compile import CompiledKernel
from ._network import thread_pool
from .base import finite_rows, power_of_two_below


def check_p(where: str, p) -> float:
    """Validate an l_p exponent: a real ``p >= 1`` (``inf`` allowed)."""
    return check_real(where, "p", p, low=1.0, allow_inf=True)


def lp_norm_rows(X: torch.Tensor, p: float) -> torch.Tensor:
    """l_p norm of each row of ``X`` (last dimension), overflow-safe; NaN -> inf."""
    A = X.abs()
    if p == 1:
        out = A.sum(-1)
    elif p == 2:
        out = torch.linalg.vector_norm(A, 2, dim=-1)
        # unscaled squares overflow for finite rows past ~1e19 (float32): those rows
        # again, scaled by their largest entry
        big = torch.isinf(out) & torch.isfinite(A).all(-1)
        if bool(big.any()):
            scale = A[big].amax(-1, keepdim=True)
            out[big] = torch.linalg.vector_norm(A[big] / scale, 2, dim=-1) * scale.squeeze(-1)
    elif math.isinf(p):
        out = A.amax(-1)
    else:
        scale = A.amax(-1, keepdim=True)
        ok = torch.isfinite(scale) & (scale > 0)
        safe = torch.where(ok, scale, torch.ones_like(scale))
        # sum of powers instead of torch.linalg.vector_norm(., p), whose scalar pow
        # was ~3-5x slower; scaled to [0, 1] first, so nothing overflows.
        out = _abs_power_(A / safe, p).sum(-1).pow_(1.0 / p) * safe.squeeze(-1)
        out = torch.where(ok.squeeze(-1), out, scale.squeeze(-1))
    return torch.nan_to_num(out, nan=math.inf, posinf=math.inf)


CHUNK_COLS = 65536  # columns per float64 chunk: 12 rows x 65536 x 8 B = 6 MB


def _map_chunks(fn, d: int, device: torch.device) -> list:
    """``[fn(s) for s in chunk starts]``, split over torch's CPU thread count in
    Python threads (the conversions and BLAS calls release the GIL)."""
    starts = list(range(0, d, CHUNK_COLS))
    workers = min(len(starts), torch.get_num_threads() if device.type == "cpu" else 1)
    if workers <= 1:
        return [fn(s) for s in starts]
    return list(thread_pool(workers).map(fn, starts))


def _lp_distances_fused(X: torch.Tensor, z: torch.Tensor, p: float) -> torch.Tensor:
    """:func:`lp_distances_to` for ``1 <= p < inf``, as one pure function for
    ``torch.compile``: the float64 differences live only in registers (no chunk
    copies) and an integer ``p`` becomes multiplications."""
    A = (X.double() - z.double()).abs()
    scale = A.amax(-1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    safe = torch.where(ok, scale, torch.ones_like(scale))
    out = ((A / safe) ** p).sum(-1) ** (1.0 / p) * safe.squeeze(-1)
    out = torch.where(ok.squeeze(-1), out, scale.squeeze(-1))
    return torch.nan_to_num(out, nan=math.inf, posinf=math.inf)


_FUSED_DISTANCES = CompiledKernel(_lp_distances_fused)


def lp_distances_to(X: torch.Tensor, z: torch.Tensor, p: float) -> torch.Tensor:
    """``||x_i - z||_p`` for each row of ``X`` (``(n, d)``), in float64, over column
    chunks (the l_p norm of the chunks' norms is the norm), overflow-safe; NaN ->
    inf. Extra memory: one float64 chunk. For large inputs and finite ``p``, a
    compiled kernel (:mod:`._compile`) computes the same in one pass (p = 1 and 2
    too: 0.9 ms against 12 and 9 ms for the float64 chunk copies at 11 x 184,586;
    equal to ~1e-14 relative)."""
    fused = not math.isinf(p) and _FUSED_DISTANCES.wanted(X)
    parts = []
    for s in range(0, X.shape[1], CHUNK_COLS):
        if fused:  # per chunk too: inductor keeps |x - z| in float64 for the two reductions
            parts.append(_FUSED_DISTANCES(X[:, s : s + CHUNK_COLS], z[s : s + CHUNK_COLS], p, wanted=True))
            continue
        parts.append(lp_norm_rows(X[:, s : s + CHUNK_COLS].double() - z[s : s + CHUNK_COLS].double(), p))
    P = torch.stack(parts, dim=-1)
    return P.squeeze(-1) if P.shape[-1] == 1 else lp_norm_rows(P, p)


def _lp_distances_float32(X: torch.Tensor, z: torch.Tensor, p: float, floor: float) -> torch.Tensor:
    """``||x_i - z||_p`` of float32 rows with float32 differences and powers summed in
    float64, for ``torch.compile`` (:func:`nearest_row`'s screen). Bases below
    ``floor`` are raised to it, so no power is subnormal: subnormal products made
    this pass 4x slower (5.6 ms against 1.4 ms at 12 x 184,586). Relative error
    about ``(p + 5) 2^-24 / p`` per distance."""
    A = (X - z).abs()
    scale = A.amax(-1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    safe = torch.where(ok, scale, torch.ones_like(scale))
    powers = ((A / safe).clamp_min(floor) ** p).double()
    out = powers.sum(-1) ** (1.0 / p) * safe.squeeze(-1).double()
    out = torch.where(ok.squeeze(-1), out, scale.squeeze(-1).double())
    return torch.nan_to_num(out, nan=math.inf, posinf=math.inf)


_FLOAT32_DISTANCES = CompiledKernel(_lp_distances_float32)

# Relative gap between the two smallest screened distances above which the
# float32 screen's argmin is the float64 argmin: the screen's error is below
# 2e-7 relative for every p >= 1, fifty times less than this.
SCREEN_GAP = 1e-5


# The same for distances a caller already has to within 2.2e-6 relative (a geometric
# median's own, GeomedResult.distances): forty-five times that error.
KNOWN_GAP = 1e-4


def _two_nearest(dist: torch.Tensor, allowed: torch.Tensor | None):
    """``dist`` with the rows not ``allowed`` at inf, its two smallest values and the
    index of the smallest (at least two rows)."""
    if allowed is not None:
        dist = dist.masked_fill(~allowed, math.inf)
    two = torch.topk(dist, 2, largest=False, sorted=True)
    best, second = (float(v) for v in two.values)
    return dist, best, second, int(two.indices[0])


def nearest_row(X: torch.Tensor, z: torch.Tensor, p: float, allowed: torch.Tensor | None = None,
                known: torch.Tensor | None = None) -> int:
    """Index of the row of ``X`` nearest to ``z`` in l_p: the argmin of
    :func:`lp_distances_to` over the ``allowed`` rows (all when None; lowest index
    among equal distances). Large float32 inputs (finite ``p``) are screened
    first by the compiled float32 kernel; its answer is kept when the runner-up
    is farther by more than ``SCREEN_GAP`` (relative), which the screen's
    rounding cannot bridge, and the float64 distances decide otherwise.
    ``known``: the rows' distances to ``z`` within 2.2e-6 relative (Bulyan's
    geomed selection has its IRLS's): kept when the runner-up is farther by more
    than ``KNOWN_GAP``, which saves the pass over ``X``; the screen decides
    otherwise."""
    if known is not None and X.shape[0] >= 2:
        _, best, second, idx = _two_nearest(known.double(), allowed)
        if math.isfinite(best) and (math.isinf(second) or second - best > KNOWN_GAP * second):
            return idx
    if X.dtype == torch.float32 and not math.isinf(p) and X.shape[0] >= 2 and _FLOAT32_DISTANCES.wanted(X):
        dist, best, second, idx = _two_nearest(
            _FLOAT32_DISTANCES(X, z, p, 2.0 ** ((math.log2(torch.finfo(X.dtype).tiny) + 8) / p)), allowed)
        if math.isfinite(best) and (math.isinf(second) or second - best > SCREEN_GAP * second):
            return idx
        if math.isfinite(best):
            # Copies of one row (colluding Byzantine rows) tie exactly in float64 too:
            # when every row within the gap is a copy of the first, it is the argmin.
            close = torch.nonzero(dist <= best + SCREEN_GAP * second).flatten().tolist()
            if all(torch.equal(X[close[0]], X[i]) for i in close[1:]):
                return close[0]
    dist = lp_distances_to(X, z, p)
    if allowed is not None:
        dist = dist.masked_fill(~allowed, math.inf)
    return int(torch.argmin(dist))


def _pair_squared_direct(x: torch.Tensor, y: torch.Tensor, p: float) -> float:
    """``||x - y||_p^2`` in float64 from the differences (exact sum of squares for p = 2
    when it neither overflows nor underflows, else the scaled norm squared: inf past
    float64's range, where ``**`` would raise OverflowError). A float carries no
    gradient: rows that track one (SCP's linearization) are detached first, which
    also keeps torch's warning about converting them out of users' output."""
    diff = x.detach().double() - y.detach().double()
    if p == 2:
        s = float(diff.square().sum())
        if math.isfinite(s) and (s == 0.0 or s > 1e-280):
            return s
    r = float(lp_norm_rows(diff.unsqueeze(0), p)[0])
    return r * r


def _pair_distance_direct(x: torch.Tensor, y: torch.Tensor, p: float) -> float:
    """``||x - y||_p`` in float64 (finite for finite rows whose squared distance
    overflows)."""
    s = _pair_squared_direct(x, y, p)
    if math.isfinite(s):
        return math.sqrt(s)
    return float(lp_norm_rows((x.detach().double() - y.detach().double()).unsqueeze(0), p)[0])


def _squared_l2_gram(X: torch.Tensor) -> torch.Tensor:
    """Squared l_2 distances of finite rows ``X`` (``(n, d)``) by a float64 Gram matrix
    accumulated over column chunks, then checked pair by pair (see below)."""
    n, d = X.shape
    def part(s: int) -> torch.Tensor:
        Xc = X[:, s : s + CHUNK_COLS].double()
        return Xc @ Xc.T

    gram = torch.stack(_map_chunks(part, d, X.device)).sum(0)
    sq = gram.diagonal().clone()
    D2 = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * gram).clamp_min_(0.0)
    # |x|^2 + |y|^2 - 2<x, y> cancels when x and y are close relative to their
    # norms (and is 0 +- rounding for duplicate rows); it can also overflow or
    # underflow for float64 input. Those pairs are recomputed from differences.
    scale = sq.unsqueeze(0) + sq.unsqueeze(1)
    redo = ~(torch.isfinite(D2) & torch.isfinite(scale) & (D2 > 1e-3 * scale) & (scale > 1e-250))
    redo.fill_diagonal_(False)
    for i, j in redo.triu().nonzero().tolist():
        D2[i, j] = D2[j, i] = _pair_squared_direct(X[i], X[j], 2.0)
    D2.fill_diagonal_(0.0)
    return D2


POWER_CHUNK_COLS = 8192  # float64 columns per chunk of the p-th power sums: 12 x 8192 x 8 B < L2


def _abs_power_(A: torch.Tensor, p: float) -> torch.Tensor:
    """``A ** p`` for ``A >= 0`` (float64), in place where possible. Integer p >= 4 by
    repeated squaring: ~2x cheaper than ``pow`` there (p = 3 has a fast ``pow``)."""
    k = int(p)
    if k != p or k < 4:
        return A.pow_(p)
    out, base = None, A
    while k:
        if k & 1:
            out = base.clone() if out is None else out.mul_(base)
        k >>= 1
        if k:
            base = base * base
    return out


def _pair_power_sums_fused(X: torch.Tensor, i: torch.Tensor, j: torch.Tensor, p: float) -> torch.Tensor:
    """``sum_k |x_ik - x_jk|^p`` in float64 for the pairs ``(i[m], j[m])``, as one pure
    function for ``torch.compile`` (one reduction loop, rows gathered in place).
    Measured at n = 12, d = 184,586, one thread: 25-31 ms against 46-83 ms for
    the eager chunks below (p = 3, 9, 16)."""
    Xd = X.double()
    return ((Xd[i] - Xd[j]).abs() ** p).sum(-1)


_FUSED_POWER_SUMS = CompiledKernel(_pair_power_sums_fused)


def _pair_power_sums_norms(X: torch.Tensor, i: torch.Tensor, j: torch.Tensor, ps: tuple) -> torch.Tensor:
    """:func:`_pair_power_sums_fused` for several norms ``ps`` in one loop over the rows:
    ``(len(ps), pairs)``, each norm's sums accumulated as in the one-norm kernel (bitwise
    equal where measured). Twelve norms at 11 x 184,586 (10 pairs): 1.05 ms against
    5.7-6.7 ms for one pass per norm."""
    Xd = X.double()
    A = (Xd[i] - Xd[j]).abs()
    return torch.stack([(A ** p).sum(-1) for p in ps])


_FUSED_POWER_SUMS_NORMS = CompiledKernel(_pair_power_sums_norms)


def _power_sums(X: torch.Tensor, p: float) -> torch.Tensor:
    """``S[i, j] = sum_k |x_ik - x_jk|^p`` in float64 (upper triangle, i < j) over
    cache-sized column chunks. ``torch.cdist`` with a general p runs a scalar
    ``pow`` per element and was measured ~5-15x slower at n = 12, d = 184,586."""
    n, d = X.shape
    if _FUSED_POWER_SUMS.wanted(X):
        i, j = torch.triu_indices(n, n, 1, device=X.device)
        S = torch.zeros((n, n), dtype=torch.float64, device=X.device)
        for s in range(0, d, CHUNK_COLS):  # bounded extra memory: the float64 copy is per chunk
            S[i, j] += _FUSED_POWER_SUMS(X[:, s : s + CHUNK_COLS], i, j, p, wanted=True)
        return S

    def part(s: int) -> torch.Tensor:
        S = torch.zeros((n, n), dtype=torch.float64, device=X.device)
        for c in range(s, min(d, s + CHUNK_COLS), POWER_CHUNK_COLS):
            Xc = X[:, c : c + POWER_CHUNK_COLS].double()
            for i in range(n - 1):
                S[i, i + 1 :] += _abs_power_((Xc[i + 1 :] - Xc[i]).abs_(), p).sum(dim=1)
        return S

    return torch.stack(_map_chunks(part, d, X.device)).sum(0)


def _distances_lp_cdist(X: torch.Tensor, p: float) -> torch.Tensor:
    """Unsquared l_p distances of finite rows ``X`` in float64, without an
    ``(n, n, d)`` intermediate: for 1 < p < inf on CPU the p-th power sums of
    :func:`_power_sums`, else ``torch.cdist`` (direct) on column chunks, the
    chunks' norms combined as an l_p norm; pairs whose ``|x_k - y_k|^p`` may have
    overflowed or underflowed are recomputed with the scaled norm."""
    n, d = X.shape
    if X.device.type == "cpu" and p != 1 and not math.isinf(p):
        S = _power_sums(X, p)
        S = S + S.T
        D = S.pow(1.0 / p)
        tiny = 1e-280 ** (1.0 / p)
        redo = ~torch.isfinite(D) | (D < tiny)
        redo.fill_diagonal_(False)
        for i, j in redo.triu().nonzero().tolist():
            D[i, j] = D[j, i] = _pair_distance_direct(X[i], X[j], p)
        D.fill_diagonal_(0.0)
        return D

    def part(s: int) -> torch.Tensor:
        Xc = X[:, s : s + CHUNK_COLS].double()
        return torch.cdist(Xc, Xc, p=p, compute_mode="donot_use_mm_for_euclid_dist")

    P = torch.stack(_map_chunks(part, d, X.device), dim=-1)  # (n, n, chunks)
    D = P.squeeze(-1) if P.shape[-1] == 1 else lp_norm_rows(P, p)
    if p == 1 or math.isinf(p):
        redo = ~torch.isfinite(D)  # sums / maxima of |x_k - y_k|: nothing to lose
    else:
        tiny = 1e-280 ** (1.0 / p)
        redo = ~torch.isfinite(D) | (D < tiny) | ~torch.isfinite(P).all(-1)
    redo.fill_diagonal_(False)
    for i, j in redo.triu().nonzero().tolist():
        D[i, j] = D[j, i] = _pair_distance_direct(X[i], X[j], p)
    D.fill_diagonal_(0.0)
    return D


def squared_distances(G: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``D2[i, j] = ||G_i - G_j||_p^2`` in float64, ``(n, n)`` or ``(B, n, n)``.

    Rows with a non-finite entry are at distance ``inf`` from every other row.
    p = 2: a float64 Gram matrix over column chunks, with the pairs where it
    could lose precision recomputed from differences (exact on integer-valued
    input, so ties are ties). Other p: sums of ``|x - y|^p`` in float64 over
    column chunks (``torch.cdist`` for p = 1, inf and off the CPU). Extra memory: one float64 chunk of ``n x CHUNK_COLS``; never
    ``(n, n, d)``.
    """
    if G.dim() == 3:
        return torch.stack([squared_distances(g, p) for g in G.unbind(0)])
    n = G.shape[0]
    ok = finite_rows(G)  # one sum pass, not isfinite's (4 ms of a 15-30 ms call at 12 x 184,586)
    D2 = torch.full((n, n), math.inf, dtype=torch.float64, device=G.device)
    idx = ok.nonzero().flatten()
    if idx.numel() == n:
        X = G
    else:
        X = G[idx]
    if X.shape[0] > 0:
        sub = _squared_l2_gram(X) if p == 2 else _distances_lp_cdist(X, p).square()
        if idx.numel() == n:
            D2 = sub
        else:
            D2[idx.unsqueeze(1), idx.unsqueeze(0)] = sub
    # exactly symmetric: the Gram matrix's BLAS products and the vectorized pow round
    # (i, j) and (j, i) differently, and a tie the rules break by pinned rules (the
    # two rows of a closest pair) must stay a tie
    D2 = torch.triu(D2, 1)
    D2 = D2 + D2.T
    return D2


def squared_distances_from(G: torch.Tensor, k: int, p: float = 2.0) -> torch.Tensor:
    """Row ``k`` of :func:`squared_distances` (``G``: ``(n, d)``), from the ``n - 1`` pairs
    ``(k, j)`` instead of all ``n (n - 1) / 2``, by the same kernels: for
    ``1 < p < inf``, ``p != 2`` on CPU the compiled power sums, called on the same
    column chunks of ``G`` with the pair indices laid out as there, so the
    pairwise matrix's specialization per p serves both (no compilation). Equal to
    that row up to the order of the float64 sums (bitwise where measured)."""
    if _power_sums_apply(G, p):
        others, i, j = _pairs_with(G, k)
        S = torch.zeros(G.shape[0] - 1, dtype=torch.float64, device=G.device)
        for s in range(0, G.shape[1], CHUNK_COLS):
            S += _FUSED_POWER_SUMS(G[:, s : s + CHUNK_COLS], i, j, p, wanted=True)
        return _row_from_power_sums(G, k, others, S, p)
    out = lp_distances_to(G, G[k], p).square()
    out[k] = 0.0
    return out


def squared_distances_from_norms(G: torch.Tensor, k: int, ps) -> dict:
    """``{p: squared_distances_from(G, k, p)}`` for the norms ``ps``; those that take the
    compiled power sums share one pass over ``G`` (:func:`_pair_power_sums_norms`):
    the line search's Krum-based rules need ~14 norms at every point."""
    ps = sorted({float(p) for p in ps})
    shared = tuple(p for p in ps if _power_sums_apply(G, p))
    out = {p: squared_distances_from(G, k, p) for p in ps if len(shared) < 2 or p not in shared}
    if len(shared) >= 2:
        others, i, j = _pairs_with(G, k)
        S = torch.zeros(len(shared), G.shape[0] - 1, dtype=torch.float64, device=G.device)
        for s in range(0, G.shape[1], CHUNK_COLS):
            S += _FUSED_POWER_SUMS_NORMS(G[:, s : s + CHUNK_COLS], i, j, shared, wanted=True)
        for row, p in zip(S, shared):
            out[p] = _row_from_power_sums(G, k, others, row, p)
    return out


def _power_sums_apply(G: torch.Tensor, p: float) -> bool:
    """Whether :func:`squared_distances_from` takes the compiled power sums for ``p``."""
    return G.device.type == "cpu" and p not in (1.0, 2.0) and not math.isinf(p) and _FUSED_POWER_SUMS.wanted(G)


def _pairs_with(G: torch.Tensor, k: int):
    """The other rows' indices and the pair index vectors ``(k, j)`` for the power sums:
    one (2, n - 1) tensor unpacked, as triu_indices is in _power_sums (dynamo guards
    on the second half's storage offset)."""
    n = G.shape[0]
    others = torch.cat([torch.arange(k, device=G.device), torch.arange(k + 1, n, device=G.device)])
    i, j = torch.stack([torch.full_like(others, k), others])
    return others, i, j


def _row_from_power_sums(G: torch.Tensor, k: int, others: torch.Tensor, S: torch.Tensor, p: float) -> torch.Tensor:
    """Row ``k`` of the squared distances from the power sums ``S`` of the pairs
    ``(k, others)``."""
    D = S.pow(1.0 / p)
    # overflow, underflow and non-finite rows (NaN sums): the scaled norm, which
    # puts non-finite rows at distance inf as squared_distances does
    redo = ~torch.isfinite(D) | (D < 1e-280 ** (1.0 / p))
    for m in redo.nonzero().flatten().tolist():
        D[m] = _pair_distance_direct(G[k], G[int(others[m])], p)
    out = torch.zeros(G.shape[0], dtype=torch.float64, device=G.device)
    out[others] = D.square()
    return out


def ranking_squared_distances(G: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """:func:`squared_distances` for rules that only compare them (Krum's scores,
    Bulyan's Krum selection, NNM's neighbours): float64 rows so large or so small
    that float64 cuts their squared distances (inf past ~1e154 apart, 0 below
    ~1e-162) are measured divided by a power of two near their largest entry,
    which is exact and changes no comparison. Unscaled, rows ~1e160 scored inf
    everywhere and Krum returned row 0 even when it held NaN; rows ~1e-300 all
    scored 0 and Krum returned an outlier. Float32 and narrower rows never need it."""
    if G.dtype == torch.float64 and G.dim() == 3:  # each batch element on its own scale
        return torch.stack([ranking_squared_distances(g, p) for g in G.unbind(0)])
    D2 = squared_distances(G, p)
    if G.dtype != torch.float64:
        return D2
    ok = finite_rows(G)
    if int(ok.sum()) < 2:
        return D2
    sub = D2[ok][:, ok]
    off = sub[~torch.eye(sub.shape[0], dtype=torch.bool, device=sub.device)].detach()
    if not (bool(torch.isinf(off).any()) or float(off.max()) < 1e-200):
        return D2
    top = float(G[ok].detach().abs().max())
    if top == 0.0:
        return D2
    # from the exponent: 2.0 ** floor(log2(top)) raised OverflowError at float64's maximum
    # (one Byzantine row there crashed Krum / NNM)
    scale = power_of_two_below(top)
    return D2 if scale == 1.0 else squared_distances(G / scale, p)


def pairwise_distances(G: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Matrix ``D[i, j] = ||G_i - G_j||_p`` (unsquared) of shape ``(n, n)``, in ``G``'s dtype.

    Computed in float64 by :func:`squared_distances` (extra memory ``O(n x chunk)``,
    never ``O(n^2 d)``). Works on a leading batch dimension too:
    ``(B, n, d) -> (B, n, n)``. Rows with a non-finite entry are at distance
    ``inf`` from every other row.
    """
    D = squared_distances(G, p).sqrt()
    if bool(torch.isinf(D).any()):
        # finite rows whose squared distance passes float64's range (~1e154 apart):
        # from the scaled norm, as the distance itself is finite
        ok = finite_rows(G)
        redo = torch.isinf(D) & ok.unsqueeze(-1) & ok.unsqueeze(-2)
        for *b, i, j in redo.nonzero().tolist():
            rows = G[tuple(b)] if b else G
            D[(*b, i, j)] = _pair_distance_direct(rows[i], rows[j], p)
    return D.to(G.dtype)
