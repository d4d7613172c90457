"""The geometric median of a batch of problems ``Tensor[B, n, d]`` in one vectorized loop.

:func:`geomed_batched` runs the smoothed IRLS of :mod:`.geomed` on every problem at
once: the same weights, damping ``1 / (p - 1)`` for ``p > 2``, Anderson acceleration
with one step of memory, a rejected extrapolation replaced by the plain step (halved
while it raises the objective, ``p > 2``), and Vardi and Zhang's test and step where an
iterate sits on rows (the median start often does). A problem is settled when its
undamped IRLS step ``T(z) - z`` passes the step test of :func:`.geomed.geomed_solve` (the
damped step is ``p - 1`` times smaller: tested on it, flat p = 16 objectives stopped up to
7.6e-7 above the single solver) AND its gradient (a sum of dual-unit vectors, so
scale-free) is below ``GRADIENT_TOL`` per row, or when a row it
stopped next to passes Vardi and Zhang's optimality test (the minimizer is often a row
with few rows in low d). Every other problem (still moving after ``max_iter`` steps,
p = 1, fewer than three finite rows, more than ``BATCH_ELEMENTS`` entries) is solved by
:func:`.geomed.geomed_solve` from its own start, so the answer is never left to the
vectorized loop's judgement. Problems whose rows lie closer than ``2^-10`` are solved on
their rows times a power of 2, as :func:`.geomed.geomed_solve` does (scale equivariance
despite the absolute smoothing ``nu``). Measured against a loop of the single solver (1000 problems
of 12 x 10, float64): 22-95x faster at p = 1.5-16, objectives at most 1.7e-15 relative
above the loop's; on 200 draws of 4 x 3 rows at p = 16 at most 1.9e-9 (a quarter of
them, still moving after ``max_iter`` steps of one-step Anderson, go to the single
solver); ``benchmarks/bench_rules.py``.
"""

from __future__ import annotations

import math

import torch

from .geomed import SMALL_SCALE, UPCAST_ELEMENTS, geomed_solve

# settled when ||grad||_q <= this times the number of rows (a sum of dual-unit vectors);
# 1e-5 let flat p = 16 objectives stop up to 8e-8 above the single solver
GRADIENT_TOL = 1e-6
# the vectorized loop for problems of at most this many entries (float64 there); larger ones
# are loops of the single solver, whose per-problem overhead is then small next to its passes
BATCH_ELEMENTS = UPCAST_ELEMENTS


def _distances(z: torch.Tensor, X: torch.Tensor, ok: torch.Tensor, p: float):
    """``r_i = ||z - x_i||_p`` (``(B, n)``), ``A = |z - x_i|`` scaled by the row's largest
    entry ``s`` (no overflow of the powers), and ``s``; rows that are not finite get
    ``r = 0`` here and weight 0 in :func:`_average` (the caller masks them)."""
    A = (z.unsqueeze(1) - X).abs()
    s = A.amax(dim=2, keepdim=True)
    s = torch.where(s > 0, s, torch.ones_like(s))
    A = A / s
    rs = A.square().sum(2).sqrt() if p == 2 else A.pow(p).sum(2).pow(1.0 / p)
    r = torch.where(ok, rs * s.squeeze(2), torch.zeros_like(rs))
    return r, A, s


def _average(z, X, ok, p: float, nu: float, r, A, s) -> torch.Tensor:
    """The IRLS weighted average ``T(z)`` (:func:`.geomed._distances_and_weights`)."""
    rc = r.clamp_min(nu).unsqueeze(2)
    if p == 2:
        W = 1.0 / rc
    elif p > 2:  # (A / s)^(p-2) (s / r)^(p-2) / r, the row factors scaled to a largest 1
        coef = (s / rc).pow(p - 2) / rc
        coef = torch.where(ok.unsqueeze(2), coef, torch.zeros_like(coef))
        coef = coef / coef.amax(dim=1, keepdim=True).clamp_min(torch.finfo(coef.dtype).tiny)
        W = A.pow(p - 2) * coef
    else:  # 1 < p < 2: (|z_j - x_ij| / r_i)^(p-2) / r_i, the base floored at nu
        W = (A * s / rc).clamp_min(nu).pow(p - 2) / rc
    W = torch.where(ok.unsqueeze(2), W, torch.zeros_like(W)).expand_as(X)
    den = W.sum(1)
    num = (W * X).sum(1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), z)


def _gradient_norm(z, X, ok, p: float, r, A, s) -> torch.Tensor:
    """``||grad sum_i ||z - x_i||_p||_q`` (q the dual exponent): each row adds a vector of
    dual norm 1, so the value is scale-free; near a row that is not the minimizer the
    IRLS step is tiny (that row's weight is huge) but this stays of order 1."""
    r_ = r.unsqueeze(2)
    live = ok.unsqueeze(2) & (r_ > 0)
    U = torch.where(live, A * s / torch.where(live, r_, torch.ones_like(r_)), torch.zeros_like(A))
    grad = (torch.sign(z.unsqueeze(1) - X) * U.pow(p - 1)).sum(1)
    q = p / (p - 1.0)
    return torch.linalg.vector_norm(grad, q, dim=1)


def _leave_rows(z, X, ok, p: float, nu: float, r, A, s):
    """Vardi and Zhang's step for the problems whose iterate sits on rows (distance <= nu),
    vectorized (:func:`.geomed._leave_data_point`): optimal there when the other rows'
    gradient has dual norm at most the number ``m`` of rows at ``z``; else a step towards
    the other rows' IRLS average by ``1 - m / ||g||_q``. Returns ``(z, optimal)``."""
    on = (r <= nu) & ok
    others = ok & ~on
    m = on.sum(1).to(z.dtype)
    gn = _gradient_norm(z, X, others, p, r, A, s)
    optimal = on.any(1) & (gn <= m)
    T = _average(z, X, others, p, nu, r, A, s)
    move = on.any(1) & ~optimal
    frac = torch.where(move, 1.0 - m / torch.where(move, gn, torch.ones_like(gn)), torch.zeros_like(gn))
    return z + frac.unsqueeze(1) * (T - z), optimal


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _scale_exponents(X: torch.Tensor, ok: torch.Tensor, p: float) -> torch.Tensor:
    """Per problem, :func:`.geomed.scale_exponent`'s ``k`` (distances from the median start
    far below 1 are rescaled by ``2^k`` so that the absolute smoothing ``nu`` does not
    swallow them), as an integer tensor ``(B,)``."""
    nan = torch.full_like(X, float("nan"))
    z0 = torch.nanmedian(torch.where(ok.unsqueeze(2), X, nan), dim=1).values
    r, _, _ = _distances(torch.nan_to_num(z0), torch.where(ok.unsqueeze(2), X, torch.zeros_like(X)), ok, p)
    med = torch.nanmedian(torch.where(ok & (r > 0) & torch.isfinite(r), r, torch.full_like(r, float("nan"))),
                          dim=1).values
    k = torch.where(med < 2.0 ** SMALL_SCALE, -torch.frexp(med).exponent, torch.zeros_like(med, dtype=torch.int32))
    top = torch.where(ok.unsqueeze(2), X.abs(), torch.zeros_like(X)).amax(dim=(1, 2))
    room = math.floor(math.log2(torch.finfo(X.dtype).max / 4)) - torch.frexp(top).exponent
    return torch.minimum(k, room).clamp_min(0).to(torch.int32)


def finite_comed(X: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Per problem the coordinate-wise median (:func:`.median.comed`: ``a/2 + b/2`` of the two
    middle values for an even count) of the rows where ``ok`` (``(B, n)``); NaN where none."""
    k = ok.sum(1)
    S = torch.where(ok.unsqueeze(2), X, torch.full_like(X, float("inf"))).sort(dim=1).values
    last = X.shape[1] - 1
    lo = torch.div(k - 1, 2, rounding_mode="floor").clamp(0, last)
    hi = torch.div(k, 2, rounding_mode="floor").clamp(0, last)
    a = S.gather(1, lo.view(-1, 1, 1).expand(-1, 1, X.shape[2])).squeeze(1)
    b = S.gather(1, hi.view(-1, 1, 1).expand(-1, 1, X.shape[2])).squeeze(1)
    z = torch.where((k % 2 == 1).unsqueeze(1), a, a * 0.5 + b * 0.5)
    return torch.where((k > 0).unsqueeze(1), z, torch.full_like(z, float("nan")))


def _vectorized(X, ok, p: float, nu: float, max_iter: int, tol: float):
    """Run the batch; returns ``(z, settled)``: the iterates and which problems stopped
    by the step test away from every row (the others go to the single solver)."""
    B = X.shape[0]
    X0 = torch.where(ok.unsqueeze(2), X, torch.zeros_like(X))
    # geomed_solve's start, the comed of the finite rows (for an even count the mean of the two
    # middle values): where the minimizers form a segment (collinear rows, d = 1) it is a
    # minimizer the loop does not leave, and the batch returns the loop's point
    z = finite_comed(X, ok)
    settled = torch.zeros(B, dtype=torch.bool, device=X.device)
    active = torch.isfinite(z).all(1)
    damping = 1.0 if p <= 2 else 1.0 / (p - 1.0)
    eps = torch.finfo(X.dtype).eps
    idx = torch.nonzero(active).squeeze(1)
    Xa, oka, za = X0[idx], ok[idx], z[idx]
    r, A, s = _distances(za, Xa, oka, p)
    # the start (a median) often sits on a row, where smoothed IRLS crawls in steps of ~nu
    za, optimal = _leave_rows(za, Xa, oka, p, nu, r, A, s)
    if bool(optimal.any()):
        z[idx[optimal]] = za[optimal]
        settled[idx[optimal]] = True
        keep = ~optimal
        idx, Xa, oka, za = idx[keep], Xa[keep], oka[keep], za[keep]
    r, A, s = _distances(za, Xa, oka, p)
    obj = r.sum(1)
    prev_value = prev_res = None
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        on_row = ((r <= nu) & oka).any(1)
        target = _average(za, Xa, oka, p, nu, r, A, s)
        plain = za + damping * (target - za)
        res = plain - za
        cand = plain
        if prev_value is not None:  # Anderson, memory 1: the values' combination whose residual is least
            dv, dr = plain - prev_value, res - prev_res
            den = _rowdot(dr, dr)
            gamma = torch.where(den > 0, _rowdot(dr, res) / den.clamp_min(torch.finfo(den.dtype).tiny),
                                torch.zeros_like(den))
            cand = plain - gamma.unsqueeze(1) * dv
        prev_value, prev_res = plain, res
        r_c, A_c, s_c = _distances(cand, Xa, oka, p)
        obj_c = r_c.sum(1)
        noise = 8 * eps * (obj + obj_c)
        worse = ~(obj_c <= obj + noise)  # NaN too
        if bool(worse.any()):  # the plain step there, halved while it raises the objective (p > 2)
            step = torch.ones_like(obj)
            cand = torch.where(worse.unsqueeze(1), plain, cand)
            for _ in range(12):
                r_c, A_c, s_c = _distances(cand, Xa, oka, p)
                obj_c = r_c.sum(1)
                still = worse & ~(obj_c <= obj + 8 * eps * (obj + obj_c))
                if p <= 2 or not bool(still.any()):
                    break
                step = torch.where(still, step * 0.5, step)
                cand = torch.where(still.unsqueeze(1), za + step.unsqueeze(1) * res, cand)
        # the step test on the plain step (the fixed-point residual), not on Anderson's:
        # a combination landing back on z while the plain step moves is no fixed point
        scale = za.norm(dim=1).clamp_min(1.0)
        done = ((target - za).norm(dim=1) <= tol * scale) | on_row  # on a row: to the single solver
        za, r, A, s, obj = cand, r_c, A_c, s_c, obj_c
        if bool(done.any()):
            # settled only at a stationary point, not in a crawl next to a row (the gradient
            # is scale-free: each row adds a vector of dual norm 1); the others leave the
            # batch for the single solver, which leaves a row by Vardi and Zhang's step
            d_idx = torch.nonzero(done).squeeze(1)
            gn = _gradient_norm(za[d_idx], Xa[d_idx], oka[d_idx], p, r[d_idx], A[d_idx], s[d_idx])
            stationary = (gn <= GRADIENT_TOL * oka[d_idx].sum(1)) & ~on_row[d_idx]
            z[idx[d_idx]] = za[d_idx]
            settled[idx[d_idx]] = stationary
            # the others stopped next to a row: the minimizer is often a row itself (few rows,
            # low d), where the gradient never vanishes: Vardi and Zhang's test at that row
            near = d_idx[~stationary]
            if near.numel():
                Xn, okn = Xa[near], oka[near]
                j = torch.where(okn, r[near], torch.full_like(r[near], float("inf"))).argmin(1)
                zr = Xn[torch.arange(len(near), device=Xn.device), j]
                rr, Ar, sr = _distances(zr, Xn, okn, p)
                _, at_row = _leave_rows(zr, Xn, okn, p, nu, rr, Ar, sr)
                z[idx[near[at_row]]] = zr[at_row]
                settled[idx[near[at_row]]] = True
            keep = ~done
            idx, Xa, oka, za = idx[keep], Xa[keep], oka[keep], za[keep]
            r, A, s, obj = r[keep], A[keep], s[keep], obj[keep]
            prev_value, prev_res = prev_value[keep], prev_res[keep]
    z[idx] = za
    return z, settled


def geomed_batched(Gb: torch.Tensor, p: float = 2.0, *, nu: float = 1e-6, max_iter: int = 200,
                   tol: float = 1e-7) -> torch.Tensor:
    """``Tensor[B, d]``: :func:`.geomed.geomed` of each ``Gb[b]`` (checked by the caller),
    vectorized over the batch; see the module docstring."""
    out_dtype = Gb.dtype
    work = Gb.dtype
    if Gb.dtype != torch.float64 and Gb[0].numel() <= UPCAST_ELEMENTS:
        work = torch.float64  # as geomed_solve: small inputs are solved in float64
    elif Gb.dtype in (torch.float16, torch.bfloat16):
        work = torch.float32
    X = Gb.to(work)
    ok = torch.isfinite(X).all(2)
    if p == 1 or Gb[0].numel() > BATCH_ELEMENTS:
        z, settled = X.new_zeros(X.shape[0], X.shape[2]), torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)
    else:
        # each problem on its rows times 2^k, as geomed_solve does (scale_exponent)
        factor = torch.ldexp(torch.ones_like(X[:, 0, 0]), _scale_exponents(X, ok, p))
        z, settled = _vectorized(X * factor[:, None, None], ok, p, nu, max_iter, tol)
        z = z / factor[:, None]
        settled &= ok.sum(1) >= 3
    for b in torch.nonzero(~settled).squeeze(1).tolist():
        # from its own start: a warm start next to a row can keep it there
        z[b] = geomed_solve(X[b], p, nu=nu, max_iter=max_iter, tol=tol, objective=False).z
    return z.to(out_dtype)
