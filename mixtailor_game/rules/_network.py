"""Order statistics over the rows by a pruned sorting network of elementwise min / max.

``torch.sort`` / ``torch.median`` along dim 0 of a ``(n, d)`` tensor sort ``d``
tiny strided columns and run about 25x slower than ``G.mean(0)``. A sorting
network on the ``n`` rows does the same work with ``torch.minimum`` /
``torch.maximum`` on whole rows, which vectorize. We

1. build Batcher's odd-even merge sort for ``n`` (Knuth, TAOCP 5.3.4,
   Algorithm M; padded to a power of two, comparators that touch a padding
   wire are no-ops and are dropped);
2. prune it backward for the outputs a rule needs: a comparator whose outputs
   are never read is dropped, one whose ``max`` (or ``min``) alone is read costs
   one op instead of two, and a comparator between two wires that both go,
   untouched afterwards, into a symmetric result (a sum, the mean of the two
   middle values) is dropped, since swapping them changes nothing;
3. run it over column chunks of ``CHUNK`` elements, so that the ``n + 1`` row
   buffers stay in the L2 cache and each op stays below torch's intra-op
   parallel grain (on a busy 2-core machine the OpenMP hand-off costs more than
   it saves);
4. or, for large CPU inputs (``_compile.py``), compile the whole network into
   one loop over the columns (:func:`_network_pass`): each value is read once
   and the wires stay in registers (comed at 12 x 184,586: 1.3 ms against
   6.9 ms chunked, the same numbers).

NaN is mapped to ``+inf`` in the chunk copy, because ``torch.minimum`` /
``torch.maximum`` propagate NaN. Torch's sort puts NaN after ``+inf``; the two
orders give the same order statistics except where one of them is NaN, so
every output entry that comes out non-finite is recomputed by the sort-based
reference (this only happens with more non-finite rows than the rule tolerates).
The extra memory is one chunk of ``n + 1`` rows, not a copy of ``G``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable

import torch

from ._compile import CompiledKernel
from .base import all_finite

CHUNK = 16384  # elements per op on CPU: (n + 1) * CHUNK * 4 bytes ~ 0.8 MB for n = 12

Program = tuple  # tuple of (a, b, need_min, need_max)


def batcher_network(n: int) -> list[tuple[int, int]]:
    """Comparators ``(a, b)``, ``a < b``, of Batcher's odd-even merge sort on ``n`` wires."""
    N = 1
    while N < n:
        N *= 2
    comps = []
    p = 1
    while p < N:
        k = p
        while k >= 1:
            for j in range(k % p, N - k, 2 * k):
                for i in range(min(k, N - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        a, b = i + j, i + j + k
                        if b < n:  # wires >= n carry +inf padding: a no-op comparator
                            comps.append((a, b))
            k //= 2
        p *= 2
    return comps


def prune(comps, needed: frozenset, symmetric: bool) -> Program:
    """Keep only the comparator outputs that reach the wires in ``needed``.

    ``symmetric``: the result is a symmetric function of the ``needed`` wires, so
    a final comparator between two of them is dropped (see the module doc).
    """
    live = set(needed)
    touched: set[int] = set()
    kept = []
    for a, b in reversed(comps):
        need_min, need_max = a in live, b in live
        if not (need_min or need_max):
            continue
        if symmetric and a in needed and b in needed and a not in touched and b not in touched:
            continue
        kept.append((a, b, need_min, need_max))
        live.update((a, b))
        touched.update((a, b))
    return tuple(reversed(kept))


@lru_cache(maxsize=256)
def program_for(n: int, lo: int, hi: int, symmetric: bool = True) -> Program:
    """A pruned network that puts the order statistics ``lo .. hi - 1`` (0-based)
    on wires ``lo .. hi - 1``: as a multiset (``symmetric``) or in order."""
    return prune(batcher_network(n), frozenset(range(lo, hi)), symmetric=symmetric)


def op_count(program: Program) -> int:
    """Elementwise min / max ops one run of ``program`` costs per element."""
    return sum(int(lo) + int(hi) for _, _, lo, hi in program)


def run_program(rows: list, free: list, program: Program, owned_rows: bool = False) -> list:
    """Run ``program`` on the wire values ``rows`` (tensors of one shape) and return
    the wires after it.

    ``rows`` may be views of the caller's input (``owned_rows=False``): they are
    only read. Otherwise they are scratch buffers the network overwrites. Every
    output goes to a buffer taken from ``free`` (``n + 1`` buffers always
    suffice), and a buffer that no wire holds any more goes back to it.
    """
    wires = list(rows)
    owned = [owned_rows] * len(wires)
    for a, b, need_min, need_max in program:
        x, y = wires[a], wires[b]
        if need_min and need_max:
            lo = free.pop()
            torch.minimum(x, y, out=lo)
            if owned[b]:
                torch.maximum(x, y, out=y)
            else:
                wires[b] = torch.maximum(x, y, out=free.pop())
                owned[b] = True
            if owned[a]:
                free.append(x)
            wires[a], owned[a] = lo, True
        elif need_min:
            wires[a] = torch.minimum(x, y, out=x if owned[a] else free.pop())
            owned[a] = True
        else:
            wires[b] = torch.maximum(x, y, out=y if owned[b] else free.pop())
            owned[b] = True
    return wires


_INF = float("inf")
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _workers(G3: torch.Tensor) -> int:
    """Threads for the chunk loop: torch's intra-op thread count on CPU (each op
    releases the GIL), one elsewhere (a GPU runs the whole row in one op)."""
    return torch.get_num_threads() if G3.device.type == "cpu" else 1


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads (created once, reused)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mixtailor-network")
    return _POOLS[workers]


def _chunk_for(G3: torch.Tensor) -> int:
    d = G3.shape[-1]
    if G3.device.type != "cpu":
        return d
    return max(1, min(d, CHUNK // max(1, G3.shape[0])))


def _network_pass(G3: torch.Tensor, program: Program, lo: int, hi: int, kind: str) -> torch.Tensor:
    """The network's fast pass over the whole ``(B, n, d)`` input as one pure function
    for ``torch.compile`` (``program``, ``kind`` are compiled as constants): inductor
    turns the comparators into one loop over the columns that reads each value
    once and keeps the wires in registers, where the eager pass runs one op per
    comparator over cache-sized chunks. ``kind`` is the combine of the wires
    ``lo .. hi - 1``, in the eager combines' order of operations (same
    numbers): ``"copy"`` (one wire), ``"half_sum"`` (``a/2 + b/2``), ``"sum"``."""
    wires = list(G3.unbind(-2))
    for a, b, need_min, need_max in program:
        x, y = wires[a], wires[b]
        if need_min:
            wires[a] = torch.minimum(x, y)
        if need_max:
            wires[b] = torch.maximum(x, y)
    if kind == "copy":
        return wires[lo] + 0.0  # a new tensor, never a view of the input
    if kind == "half_sum":
        return wires[lo] * 0.5 + wires[lo + 1] * 0.5
    out = wires[lo] + wires[lo + 1]
    for w in wires[lo + 2 : hi]:
        out = out + w
    return out


_NETWORK_PASS = CompiledKernel(_network_pass)


def reduce_order_statistics(
    G: torch.Tensor,
    lo: int,
    hi: int,
    combine: Callable[[list, torch.Tensor], None],
    finish: Callable[[torch.Tensor], None],
    reference: Callable[[torch.Tensor], torch.Tensor],
    symmetric: bool = True,
    rows: list[int] | None = None,
    kind: str | None = None,
) -> torch.Tensor:
    """Apply ``combine(wires[lo:hi], out_chunk)`` to the order statistics ``lo..hi-1`` of
    every column of ``G`` (``(..., n, d)``), then ``finish(out)`` in place.
    ``symmetric``: ``combine`` only needs them as a multiset (else sorted).
    ``rows``: use only these rows of ``G`` (read in place: no gathered copy).

    ``reference(S)`` maps a sorted ``(K, n)`` block (NaN last) to ``(K,)``; it
    recomputes the entries that came out non-finite. ``kind``: ``combine`` as
    one of :func:`_network_pass`'s kinds, which lets large CPU inputs run the
    fast pass compiled (``MIXTAILOR_COMPILE``, :mod:`._compile`).
    """
    d = G.shape[-1]
    lead = G.shape[:-2]
    G3 = G.reshape((-1, G.shape[-2], d))
    idx = list(range(G.shape[-2])) if rows is None else [int(i) for i in rows]
    n = len(idx)
    B = G3.shape[0]
    if G.requires_grad and torch.is_grad_enabled():
        # Autograd (SCP's linearization of a wrapper around comed) cannot record the
        # network's min / max into preallocated buffers: it raised, and the caller's
        # fallback read a zero gradient. The sort is differentiable, same values.
        block = G3[:, idx, :].transpose(1, 2).reshape(B * d, n)
        return reference(torch.sort(block, dim=-1).values).reshape(lead + (d,))
    out = G.new_empty((B, d))
    program = program_for(n, lo, hi, symmetric)
    c = _chunk_for(G3)

    def work(part: list[int], nan_to_inf: bool) -> None:
        buffers = G.new_empty((n + 1, B, c))
        for s in part:
            e = min(d, s + c)
            free = list(buffers[..., : e - s].unbind(0))
            if nan_to_inf:
                rows = [free.pop() for _ in range(n)]
                for i in range(n):
                    torch.nan_to_num(G3[:, idx[i], s:e], nan=_INF, posinf=_INF, neginf=-_INF, out=rows[i])
            else:
                rows = [G3[:, idx[i], s:e] for i in range(n)]
            wires = run_program(rows, free, program, owned_rows=nan_to_inf)
            combine(wires[lo:hi], out[:, s:e])

    def run(chunks: list[int], nan_to_inf: bool) -> None:
        workers = min(len(chunks), _workers(G3))
        if workers <= 1:
            work(chunks, nan_to_inf)
        else:
            parts = [chunks[k::workers] for k in range(workers)]
            list(thread_pool(workers).map(work, parts, [nan_to_inf] * workers))

    # Fast pass on the raw values: a NaN entry propagates through min / max to
    # its column's output (every output of the network depends on every input).
    if kind is not None and rows is None and _NETWORK_PASS.wanted(G3):
        out = _NETWORK_PASS(G3, program, lo, hi, kind)
    else:
        run(list(range(0, d, c)), False)
    finish(out)
    if all_finite(out):  # the usual case, at a tenth of isfinite's cost
        return out.reshape(lead + (d,))
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        # Chunks with a non-finite output run again with NaN read as +inf; what is
        # still non-finite comes from the sort-based reference (NaN after +inf).
        hit = bad.any(dim=0).nonzero().flatten()
        chunks = sorted({int(j) // c * c for j in hit.tolist()})
        run(chunks, True)
        for s in chunks:
            finish(out[:, s : s + c])
        bad = ~torch.isfinite(out)
    if bool(bad.any()):
        bi, ji = bad.nonzero(as_tuple=True)
        block = (G3 if rows is None else G3[:, idx])[bi, :, ji]  # (K, n)
        out[bi, ji] = reference(torch.sort(block, dim=-1).values)
    return out.reshape(lead + (d,))


def median_rows(G: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of ``G`` (``(..., n, d)``); for even ``n`` the mean of the
    two middle values (computed as ``a/2 + b/2``, which cannot overflow)."""
    n = G.shape[-2]
    m = n // 2
    if n % 2:
        def combine(wires, o):
            o.copy_(wires[0])

        def reference(S):
            return S[:, m]

        return reduce_order_statistics(G, m, m + 1, combine, lambda out: None, reference, kind="copy")

    def combine(wires, o):
        torch.mul(wires[0], 0.5, out=o)
        o.add_(wires[1], alpha=0.5)

    def reference(S):
        return 0.5 * S[:, m - 1] + 0.5 * S[:, m]

    return reduce_order_statistics(G, m - 1, m + 1, combine, lambda out: None, reference, kind="half_sum")


def trimmed_rows(G: torch.Tensor, b: int) -> torch.Tensor:
    """Per column of ``G`` (``(..., n, d)``) the mean of the order statistics
    ``b .. n - b - 1`` (drop the ``b`` smallest and ``b`` largest values)."""
    n = G.shape[-2]
    k = n - 2 * b

    def combine(wires, o):
        if k == 1:
            o.copy_(wires[0])
            return
        torch.add(wires[0], wires[1], out=o)
        for w in wires[2:]:
            o.add_(w)

    def finish(out):
        if k > 1:
            out.div_(k)

    def reference(S):
        return S[:, b : n - b].mean(dim=-1)

    out = reduce_order_statistics(G, b, n - b, combine, finish, reference, kind="copy" if k == 1 else "sum")
    if k == 1 or all_finite(out):
        return out
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        # kept values whose sum overflows (float32 near 1e38): those columns summed scaled,
        # within the kept values' range (at the dtype's maximum the rounded terms sum past
        # it); a non-finite kept value still gives a non-finite mean
        cols = G.movedim(-2, -1)[bad]  # (m, n)
        kept = torch.sort(cols, dim=-1).values[:, b : n - b]
        out[bad] = torch.clamp((kept / k).sum(-1), kept[:, 0], kept[:, -1])
    return out


def closest_to_median_window(T: torch.Tensor, beta: int, scaled: bool = False) -> torch.Tensor:
    """Mean of the ``beta`` values closest to the median, per column of the sorted
    (ascending, no NaN) ``T`` (``(m, ...)``), ties going to the smaller value.

    The kept values form a window of ``beta`` consecutive order statistics: the
    value farthest from the median is always at an end of the sorted list, so
    ``m - beta`` times the farther end is dropped (the right one on a tie).
    ``scaled``: the values divided by ``beta`` before they are summed (no overflow
    for finite values near the top of the range), the mean kept within the window
    (at the dtype's maximum the rounded terms can sum past it to inf).
    """
    m = T.shape[0]
    med = T[m // 2] if m % 2 else 0.5 * T[m // 2 - 1] + 0.5 * T[m // 2]
    left = torch.zeros((1,) + T.shape[1:], dtype=torch.long, device=T.device)
    for step in range(m - beta):
        right = (m - 1 - step) + left  # m - 1 - (step - left)
        drop_left = (med - T.gather(0, left)) > (T.gather(0, right) - med)
        left = left + drop_left
    total = None
    for t in range(beta):
        v = T.gather(0, left + t).squeeze(0)
        v = v / beta if scaled else v
        total = v if total is None else total + v
    if not scaled:
        return total / beta
    return torch.clamp(total, T.gather(0, left).squeeze(0), T.gather(0, left + beta - 1).squeeze(0))


def closest_to_median_from_wires(wires: list, beta: int, out: torch.Tensor) -> None:
    """:func:`closest_to_median_window` on the sorted wires of a chunk, by compares
    and selects only (the gathers of the window walk cost ~3x more).

    With ``M = m - beta`` possible shifts, the window starts at
    ``L* = #{L < M : c_L}``, ``c_L = (med - T[L] > T[L + beta] - med)``: both sides
    are monotone in ``L`` (rounding is monotone too), so ``c_L`` is true for
    ``L < L*`` and false after, with the walk's tie rule (equal distances keep
    the smaller value). When ``M <= beta`` (Bulyan with ``n >= 6f``, the paper's
    n = 12, f = 2 included) the window sum is
    ``sum_{L < M} (T[L + beta] if c_L else T[L]) + sum_{M <= k < beta} T[k]``:
    one select per shift. Otherwise each value is masked by ``L*``.
    """
    m = len(wires)
    shifts = m - beta
    med = wires[m // 2] if m % 2 else wires[m // 2 - 1] * 0.5 + wires[m // 2] * 0.5
    shift = [(med - wires[L]) > (wires[L + beta] - med) for L in range(shifts)]
    if shifts <= beta:
        out.zero_()
        for L in range(shifts):
            out.add_(torch.where(shift[L], wires[L + beta], wires[L]))
        for k in range(shifts, beta):
            out.add_(wires[k])
        out.div_(beta)
        return
    start = torch.zeros_like(out)
    for c in shift:
        start += c
    out.zero_()
    zero = out.new_zeros(())
    for k in range(m):
        keep = None
        if k < shifts:
            keep = start <= k
        if k >= beta:
            keep = (start > k - beta) if keep is None else keep & (start > k - beta)
        out.add_(wires[k] if keep is None else torch.where(keep, wires[k], zero))
    out.div_(beta)


def closest_to_median_rows(G: torch.Tensor, beta: int, rows: list[int] | None = None) -> torch.Tensor:
    """Bulyan's original aggregation on ``G`` (``(n, d)``): per column the mean of the
    ``beta`` values closest to the median (ties to the smaller value); sorted by
    the network, NaN read as ``+inf`` like torch's sort order."""
    n = G.shape[-2] if rows is None else len(rows)

    def combine(wires, o):
        closest_to_median_from_wires(wires, beta, o)

    def reference(S):
        return closest_to_median_window(S.T.nan_to_num(nan=_INF), beta)

    out = reduce_order_statistics(G, 0, n, combine, lambda out: None, reference, symmetric=False, rows=rows)
    if all_finite(out):
        return out
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        # finite kept values whose sum overflows: those columns again, scaled before the sum
        S = G if rows is None else G[..., rows, :]
        cols = S.movedim(-2, -1)[bad].nan_to_num(nan=_INF)  # (m, n)
        out[bad] = closest_to_median_window(torch.sort(cols, dim=-1).values.T, beta, scaled=True)
    return out
