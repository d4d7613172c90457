"""Geometric median under an l_p norm, by smoothed Weiszfeld / IRLS (Pillutla et al. 2022)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from .._checks import check_int, check_real, check_regime, fail
from ._compile import CompiledKernel
from ._distances import check_p, lp_distances_to
from .base import Rule, check_batch, check_gradients, finite_rows, name_field, tuning_field
from .median import comed


class GeomedResult(NamedTuple):
    """The iterate ``z``, whether the stopping test passed, iterations and objective;
    ``distances``: the solver's own ``||z - G_i||_p`` (float64, each within ~2.2e-6
    relative of the exact one for float32 rows: float32 powers summed in blocks of
    ``SUM_BLOCK``, then in float64) when every row was finite and it computed them
    at ``z``, else None. Bulyan's selection finds the nearest row from them."""

    z: torch.Tensor
    converged: bool
    iterations: int
    objective: float
    distances: torch.Tensor | None = None


def check_geomed_p(where: str, p) -> float:
    """A geometric median's ``p``: :func:`check_p`'s, and finite (at p = inf the
    damped IRLS step, ``1 / (p - 1)`` of the average's, is 0: it would return its
    start; the l_inf median is a linear program this module does not solve)."""
    p = check_p(where, p)
    if math.isinf(p):
        raise fail(where, "p", "finite for a geometric median (1 <= p < inf)", p)
    return p


def geomed_objective(z: torch.Tensor, X: torch.Tensor, p: float) -> torch.Tensor:
    """``sum_i ||z - x_i||_p`` in float64, over column chunks (extra memory: one
    float64 chunk, not a copy of ``X``)."""
    return lp_distances_to(X, z, p).sum()


def _power_floor(p: float, dtype: torch.dtype) -> float:
    """Smallest base kept in ``|.|^p`` of values scaled to [0, 1].

    Powers below the smallest normal number are subnormal, and arithmetic on
    subnormals is several times slower on x86 (measured: ``pow(A, 14)`` 18 ms
    vs 5 ms at n*d = 2.2e6). Raising the base to this floor keeps every power
    at or above ``2^(min_exp + 8)``: such a term weighs less than ``2^-110``
    (float32) of the row's largest, far below rounding.
    """
    return 2.0 ** ((math.log2(torch.finfo(dtype).tiny) + 8) / p)


def _distances_and_weights(z: torch.Tensor, X: torch.Tensor, p: float, nu: float):
    """Distances ``r_i = ||z - x_i||_p`` and the IRLS weights at ``z``.

    The gradient of ``||z - x_i||_p`` in coordinate j is
    ``sign(z_j - x_ij) |z_j - x_ij|^(p-1) / ||z - x_i||_p^(p-1)``; writing it as
    ``w_ij (z_j - x_ij)`` with ``w_ij = (|z_j - x_ij| / r_i)^(p-2) / r_i`` and
    ``r_i = max(nu, ||z - x_i||_p)`` gives the weighted-average fixed point
    ``z_j = sum_i w_ij x_ij / sum_i w_ij``. For p = 2 the weights are
    Weiszfeld's ``1 / max(nu, ||z - x_i||)``, one per row: returned as ``(n, 1)``.
    Rows at infinite distance (overflow) get weight 0.

    p = 2 costs two passes over ``X`` (``torch.cdist`` direct, then a matrix-vector
    product in the caller); other p compute ``|z - x|`` once into one buffer
    and turn it into the weights in place (scaled by the row maximum, so
    ``|.|^p`` neither overflows nor underflows; bases below
    :func:`_power_floor` are raised to it, so no power is subnormal).
    """
    if p == 2:
        r, spread = _L2_DISTANCES(X, z)
        w = (1.0 / r.clamp_min(nu)).to(X.dtype)
        return r, spread, torch.where(torch.isfinite(r), w, torch.zeros_like(w)).unsqueeze(1)
    A = torch.sub(X, z).abs_()
    scale = A.amax(dim=1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    s = torch.where(ok, scale, torch.ones_like(scale))
    A.div_(s)
    if p > 2:
        # W_ij = A_ij^(p-2) / r_i^(p-1) = (A_ij / s_i)^(p-2) * (s_i / r_i)^(p-2) / r_i with
        # s_i = max_j A_ij <= r_i: one pow pass, and ||.||_p from it (sum Q A^2).
        # Half the exponent range for the powers leaves the other half for the row
        # factors and the products with X (see _power_floor).
        A.clamp_min_(_power_floor(2.0 * (p - 2), A.dtype))
        Q = torch.pow(A, p - 2)
        total, spread = _sums_and_spread(A.square().mul_(Q))
        rs = total.unsqueeze(1) ** (1.0 / p)  # r / s
        s64, scale64 = s.double(), scale.double()
        r = torch.where(ok, rs * s64, torch.where(torch.isfinite(scale64), 0.0, math.inf))
        rc = r.clamp_min(nu)
        coef = (s64 / rc).pow_(p - 2).div_(rc)
        coef = torch.where(torch.isfinite(r), coef, torch.zeros_like(coef))
        # The weighted average is invariant to a common factor: the largest row
        # factor becomes 1, so the weights stay in the normal range.
        top = coef.max()
        if bool(top > 0):
            coef = coef / top
        return r.squeeze(1), spread, Q.mul_(coef.to(Q.dtype))
    # 1 < p < 2: r from a clamped copy (torch.linalg.vector_norm is ~3x slower here).
    total, spread = _sums_and_spread(torch.pow(A.clamp_min(_power_floor(p, A.dtype)), p))
    rs64 = total ** (1.0 / p)
    r = rs64 * s.double().squeeze(1)  # float64: the objective is summed from it
    rs = rs64.to(A.dtype).unsqueeze(1)
    r = torch.where(ok.squeeze(1), r, torch.zeros_like(r))
    r = torch.where(torch.isfinite(scale.squeeze(1)), r, torch.full_like(r, math.inf))
    A.div_(rs.clamp_min(torch.finfo(A.dtype).tiny))  # |z_j - x_ij| / r_i
    rc = r.clamp_min(nu).unsqueeze(1)
    W = A.clamp_min_(nu).pow_(p - 2).div_(rc).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
    W[~torch.isfinite(r)] = 0.0  # in place: no second (n, d) buffer
    return r, spread, W


def _weighted_average(W: torch.Tensor, X: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    if W.shape[1] == 1:  # one weight per row (p = 2)
        den = W.sum()
        if not bool(den > 0):
            return z
        return (W.squeeze(1) @ X) / den
    den = W.sum(0)
    num = W.mul_(X).sum(0)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), z)


SUM_BLOCK = 64


def _sums_and_spread(T: torch.Tensor):
    """Per row of the non-negative terms ``T``: ``sum_j T_ij`` accurate to about eps of
    ``T``'s dtype, and the relative size ``||b||_2 / ||b||_1`` (``b``: the block sums
    below) of its rounding error.

    The IRLS compares objectives (sums of distances) of nearby iterates. Summed in
    float32, a distance over d = 184,586 terms is off by ~1e-6 relative, more
    than the objective changes over the last steps: the solver stopped with a
    float32 geometric median whose inner product with the mean was 1% off the
    float64 one (n = 12, p = 2). Here blocks of ``SUM_BLOCK`` terms are summed in
    the rows' dtype (each block sum off by a few eps of itself) and the blocks in
    float64: independent block errors add up to ``~eps ||b||_2``. As fast as a
    float32 sum when compiled; converting every term to float64 cost
    40% more per IRLS distance pass. The objective's noise floor
    (``_objective_from``) is set from it."""
    n, d = T.shape
    m = d // SUM_BLOCK
    if T.dtype == torch.float64 or m == 0:
        parts = T.double()
    else:
        blocks = T[:, : m * SUM_BLOCK].reshape(n, m, SUM_BLOCK).sum(dim=2)
        parts = torch.cat([blocks, T[:, m * SUM_BLOCK :]], dim=1).double()
    total = parts.sum(dim=1)
    spread = (parts * parts).sum(dim=1).sqrt() / total
    return total, torch.where(total > 0, spread, torch.zeros_like(spread))


def _l2_distances(X: torch.Tensor, z: torch.Tensor):
    """``||z - x_i||_2`` in float64 (squares of the rows' differences, summed in
    float64; no overflow for huge finite rows) and their spread
    (:func:`_sums_and_spread`), as a pure function for ``torch.compile``."""
    D = torch.sub(X, z)
    # in place where nothing is differentiated: run eagerly (below the compile threshold,
    # e.g. Bulyan's last geomed rounds) each out-of-place step held another (n, d)
    # buffer: Bulyan(geomed, comed) peaked at 3.0x size(G) at d = 10^5 (2.1x in place)
    grad = D.requires_grad
    D = D.abs() if grad else D.abs_()
    scale = D.amax(dim=1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    s = torch.where(ok, scale, torch.ones_like(scale))
    # scaled by the row's largest difference: squares of huge finite rows stay finite
    total, spread = _sums_and_spread(torch.square(D / s) if grad else D.div_(s).square_())
    r = total.sqrt() * s.squeeze(1).double()
    r = torch.where(ok.squeeze(1), r, torch.where(torch.isfinite(scale.squeeze(1)), 0.0, math.inf))
    return r, spread


def _row_weights(X: torch.Tensor, z: torch.Tensor, p: float, nu: float, floor: float):
    """Per-row part of :func:`_distances_and_weights` for p > 2, as a pure function for
    ``torch.compile``: distances ``r`` (float64) and their spread, row maxima ``s`` of
    ``|z - x_i|`` and the row factors ``coef`` (largest 1) with
    ``W_ij = (|z_j - x_ij| / s_i)^(p-2) coef_i``.
    Inductor fuses it into two loops over each row and turns ``A ** (p - 2)`` with
    a constant integer exponent into multiplications."""
    A = (X - z).abs()
    scale = A.amax(dim=1, keepdim=True)
    ok = torch.isfinite(scale) & (scale > 0)
    s = torch.where(ok, scale, torch.ones_like(scale))
    A = (A / s).clamp_min(floor)
    total, spread = _sums_and_spread(A * A * A ** (p - 2))
    rs = total.unsqueeze(1) ** (1.0 / p)
    s64 = s.double()
    r = torch.where(ok, rs * s64, torch.where(torch.isfinite(scale), 0.0, math.inf))
    rc = r.clamp_min(nu)
    coef = (s64 / rc) ** (p - 2) / rc
    coef = torch.where(torch.isfinite(r), coef, torch.zeros_like(coef))
    top = coef.max()
    coef = coef / torch.where(top > 0, top, torch.ones_like(top))
    return r.squeeze(1), spread, s, coef.to(X.dtype)


def _column_average(X: torch.Tensor, z: torch.Tensor, s: torch.Tensor, coef: torch.Tensor, p: float, floor: float):
    """The weighted average ``T(z)`` from :func:`_row_weights`' factors, recomputing the
    weights inside one loop over the columns. A separate kernel on purpose: fused
    with the row pass, inductor writes the (n, d) weights out and reads them back,
    which measured 2.8-4.0 ms against 1.9 ms for the two kernels (n = 12,
    d = 184,586, 2 threads)."""
    W = ((X - z).abs() / s).clamp_min(floor) ** (p - 2) * coef
    den = W.sum(0)
    num = (W * X).sum(0)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), z)


_ROW_WEIGHTS = CompiledKernel(_row_weights)
_COLUMN_AVERAGE = CompiledKernel(_column_average)
_L2_DISTANCES = CompiledKernel(_l2_distances)


def _irls_distances(z: torch.Tensor, X: torch.Tensor, p: float, nu: float):
    """Distances ``r`` at ``z`` (the objective) and what :func:`_irls_average` needs
    for the weighted average: a trial point the line search rejects never pays for
    its average (at a far Byzantine row, p > 2, most trials are rejected)."""
    if 2 < p < math.inf and _ROW_WEIGHTS.wanted(X):
        floor = _power_floor(2.0 * (p - 2), X.dtype)
        r, spread, s, coef = _ROW_WEIGHTS(X, z, p, nu, floor)
        return r, spread, (s, coef, floor)
    return _distances_and_weights(z, X, p, nu)


def _irls_average(z: torch.Tensor, X: torch.Tensor, p: float, state) -> torch.Tensor:
    """The IRLS weighted average ``T(z)`` (the undamped next iterate) from ``state``."""
    if isinstance(state, tuple):
        s, coef, floor = state
        return _COLUMN_AVERAGE(X, z, s, coef, p, floor)
    return _weighted_average(state, X, z)


def _irls_step(z: torch.Tensor, X: torch.Tensor, p: float, nu: float):
    """Distances ``r`` at ``z``, their spread and the IRLS weighted average ``T(z)``."""
    r, spread, state = _irls_distances(z, X, p, nu)
    return r, spread, _irls_average(z, X, p, state)


def _l2(v: torch.Tensor) -> float:
    """``||v||_2`` for the stopping test: a dot product in ``v``'s dtype (20 us at
    d = 184,586, against 350 us for a float64 norm, which copies ``v``), and the
    float64 norm only where the squares overflow or the dtype has no dot."""
    v = v.detach()
    if v.dtype in (torch.float32, torch.float64):
        sq = float(torch.dot(v, v))
        if math.isfinite(sq):
            return math.sqrt(sq)
    return float(torch.linalg.vector_norm(v, dtype=torch.float64))


def _objective_from(r: torch.Tensor, spread: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """The objective ``sum_i r_i`` and its rounding noise: ``4 eps`` (of the rows'
    dtype) times the spread of each distance's terms (:func:`_sums_and_spread`),
    plus ``4 eps`` of float64 for the sums themselves."""
    r, spread = r.detach(), spread.detach()  # numbers for the step tests, not part of what autograd follows
    finite = torch.isfinite(r)
    obj = float(r.double().sum())
    spread_part = float(torch.where(finite, r.double() * spread.double(), 0.0).sum())
    noise = 4.0 * torch.finfo(dtype).eps * spread_part + 4.0 * torch.finfo(torch.float64).eps * abs(obj)
    return obj, noise


# A row farther than this times the median distance is "far": its distance's rounding
# (eps r, ~1e14 for a row of 1e30) swamps every step of the others, so steps are ranked
# with its distance linearized at the start (error ~|z - z0|^2 / r: 1e-9 of the others)
FAR_RATIO = 2.0 ** 30


class _RankingObjective:
    """The objective the solver ranks its iterates by: ``sum_i r_i`` over the rows, with
    each far row's ``r_i`` replaced by its linearization at the start ``z0`` (its
    gradient, a dual-unit vector, is constant to ~1e-9 over the steps). A finite row of
    1e30 made every step look like rounding: the solver stayed at its start, the
    coordinate-wise median (p >= 3; 0.124 above the minimum at p = 7).
    ``value(z, r, spread) -> (objective, noise)``; ``constant``: what the far rows add
    at ``z0`` (left out of the ranking, added back to the reported value)."""

    def __init__(self, z0: torch.Tensor, X: torch.Tensor, r: torch.Tensor, p: float):
        self.dtype = X.dtype  # the rows' rounding sets the noise (_objective_from)
        self.far = None
        self.constant = 0.0
        finite = torch.isfinite(r)
        positive = r[finite & (r > 0)]  # rows at the start (r = 0) would make every other one far
        if positive.numel() < 2:
            return
        far = finite & (r > FAR_RATIO * positive.median())
        if not bool(far.any()):
            return
        U = z0.double() - X[far].double()
        rf = r[far].double().unsqueeze(1)
        if p == 2:
            g = (U / rf).sum(0)
        else:  # scaled by the row's largest entry first: |u|^(p-1) of a 1e30 row overflows
            s = U.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
            g = (U.sign() * ((U.abs() / s) * (s / rf)).pow(p - 1)).sum(0)
        self.far, self.g, self.z0 = far, g, z0.double()
        self.constant = float(r[far].detach().double().sum())

    def value(self, z: torch.Tensor, r: torch.Tensor, spread: torch.Tensor) -> tuple[float, float]:
        if self.far is None:
            return _objective_from(r, spread, self.dtype)
        near = ~self.far
        obj, noise = _objective_from(r[near], spread[near], self.dtype)
        return obj + float((self.g @ (z.double() - self.z0)).detach()), noise


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """``<a, b>`` as a number (Anderson's coefficients are constants to autograd)."""
    return float(torch.dot(a.detach(), b.detach()))


class _Anderson:
    """Anderson acceleration (type II) of a fixed-point map ``z -> T(z)``.

    Keeps the last ``memory`` differences of the values T(z_k) and of the
    residuals T(z_k) - z_k, and returns the combination of the values whose
    residuals' combination is smallest in l_2 (normal equations of the small
    least-squares problem, products in the rows' dtype: a rounded coefficient
    only costs acceleration, since the caller rejects any step that raises
    the objective). Extra memory: ``2 memory + 2`` vectors of length d in the
    rows' dtype, plus ``memory`` while the products are formed.
    """

    def __init__(self, memory: int):
        self.memory = memory
        self.value = self.residual = None
        self.d_values: list[torch.Tensor] = []
        self.d_residuals: list[torch.Tensor] = []
        # CPU: products of the stored residual differences, kept between calls
        # (each new difference adds one row), as Python floats: the small solve
        # then costs microseconds, where numpy's or torch's per-call overhead on a
        # 2 x 2 system was a tenth of an IRLS step.
        self.gram: list[list[float]] = []

    def reset(self, z: torch.Tensor, value: torch.Tensor) -> None:
        self.value, self.residual = value, value - z
        self.d_values, self.d_residuals = [], []
        self.gram = []

    def _record(self, d_value: torch.Tensor, d_residual: torch.Tensor) -> None:
        if d_residual.device.type == "cpu":
            row = [_dot(d_residual, old) for old in self.d_residuals]
            row.append(_dot(d_residual, d_residual))
            self.gram = [old + [v] for old, v in zip(self.gram, row)] + [row]
        self.d_values.append(d_value)
        self.d_residuals.append(d_residual)
        if len(self.d_values) > self.memory:
            self.d_values.pop(0)
            self.d_residuals.pop(0)
            self.gram = [row[1:] for row in self.gram[1:]]

    def extrapolate(self, z: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Record ``value = T(z)`` and return the accelerated next iterate
        (``value`` itself, the same object, when there is no history yet)."""
        if self.memory == 0:
            return value
        residual = value - z
        if self.value is not None:
            self._record(value - self.value, residual - self.residual)
        self.value, self.residual = value, residual
        if not self.d_values:
            return value
        if residual.device.type == "cpu":
            # Normal equations from dot products (no stacked (k, d) copy); k <= memory.
            gram = self.gram
            rhs = [_dot(Ra, residual) for Ra in self.d_residuals]
        else:  # on a GPU each float() is a host sync: two small products, two copies back
            R = torch.stack(self.d_residuals)
            gram = (R @ R.T).double().cpu().tolist()
            rhs = (R @ residual).double().cpu().tolist()
            R = None
        gamma = _solve_normal_equations(gram, rhs)
        if gamma is None:
            return value
        out = torch.sub(value, self.d_values[0], alpha=gamma[0])
        for g, dv in zip(gamma[1:], self.d_values[1:]):
            out.sub_(dv, alpha=g)
        return out


def _solve_normal_equations(gram: list[list[float]], rhs: list[float]) -> list[float] | None:
    """``gamma`` with ``(gram + ridge I) gamma = rhs``, or None when an entry is not
    finite. The tiny ridge keeps the system solvable when steps repeat. Sizes 1
    and 2 (the default memory) in closed form; larger ones by numpy."""
    k = len(rhs)
    if not all(math.isfinite(v) for v in rhs) or not all(math.isfinite(v) for row in gram for v in row):
        return None
    ridge = 1e-12 * max(max(gram[i][i] for i in range(k)), 1e-300)
    if k == 1:
        gamma = [rhs[0] / (gram[0][0] + ridge)]
    elif k == 2:
        a, b, c = gram[0][0] + ridge, gram[0][1], gram[1][1] + ridge
        det = a * c - b * b
        if not det > 0:  # positive for a Gram matrix plus a ridge, unless rounding ate it
            return None
        gamma = [(c * rhs[0] - b * rhs[1]) / det, (a * rhs[1] - b * rhs[0]) / det]
    else:
        try:
            gamma = np.linalg.solve(np.array(gram) + ridge * np.eye(k), np.array(rhs)).tolist()
        except np.linalg.LinAlgError:
            return None
    return gamma if all(math.isfinite(v) for v in gamma) else None


def _leave_data_point(z, X, p, r, nu, on_row):
    """The start ``z`` sits on ``m`` rows (distance <= nu), where smoothed IRLS gives
    those rows weight ``1 / nu`` and crawls away in steps of about ``nu``.
    Vardi and Zhang (2000): ``z`` is optimal iff the gradient ``g`` of the other
    rows' distances has dual norm ``||g||_q <= m``; otherwise step towards the
    IRLS average ``T`` of the other rows by ``1 - m / ||g||_q`` (for p = 2 their
    modified Weiszfeld step; for other p the same rule on the l_p subgradient).
    Returns the new start and whether ``z`` is already optimal.
    """
    others = ~on_row
    if not bool(others.any()):
        return z, True
    U = (z.double() - X[others].double())
    ro = r[others].double().unsqueeze(1)
    if p == 2:
        g = (U / ro).sum(0)
    else:
        g = (U.sign() * (U.abs() / ro).pow(p - 1)).sum(0)
    q = p / (p - 1.0)
    gnorm = float(torch.linalg.vector_norm(g.detach(), q))
    m = int(on_row.sum())
    if gnorm <= m:
        return z, True
    # the other rows' weights on their own: next to the on-row weight (~nu^(1-p)) they
    # underflow in the common scaling for large p (float32, p >= 9), leaving z in place
    _, _, W = _distances_and_weights(z, X[others], p, nu)
    T = _weighted_average(W, X[others], z)
    return z + (1.0 - m / gnorm) * (T - z), False


# Rows whose median distance from the start is below 2^SMALL_SCALE are rescaled by a
# power of 2 to a median distance of about 1 (see geomed_solve)
SMALL_SCALE = -10


def scale_exponent(X: torch.Tensor, r: torch.Tensor) -> int:
    """``k`` with ``2^k * median(r) ~ 1`` when the median of the positive finite distances
    ``r`` (from the start) is below ``2^SMALL_SCALE``, else 0; capped so that the largest
    finite entry of ``X`` times ``2^k`` stays below a quarter of its dtype's range."""
    positive = r.detach()[torch.isfinite(r) & (r > 0)]  # a scale, not part of what autograd follows
    if positive.numel() == 0:
        return 0
    med = float(positive.median())
    if not med < 2.0 ** SMALL_SCALE:
        return 0
    k = -math.frexp(med)[1]
    top = float(torch.where(torch.isfinite(X), X.abs(), torch.zeros_like(X)).amax())
    room = math.floor(math.log2(torch.finfo(X.dtype).max / 4)) - (math.frexp(top)[1] if top > 0 else 0)
    return max(0, min(k, room))


# Inputs of at most this many entries in a lower precision are solved in float64
UPCAST_ELEMENTS = 1 << 16


# p = 2 on at least this many entries (and more columns than rows, at most SPAN_MAX_ROWS
# rows) is solved in the rows' span (_span_solve); smaller inputs iterate on the rows
SPAN_MIN_ELEMENTS = UPCAST_ELEMENTS
SPAN_MAX_ROWS = 64
# A Gram matrix is used when its rounding (taken as 2 eps |x_i - m| |x_j - m| per entry, eps
# the machine epsilon; measured 0.85 eps for float32 blocks) costs every pair's squared
# distance at most this, relative: float32 rows' IRLS distances carry up to 2.2e-6 (GeomedResult)
GRAM_TOLERANCE = 1e-6
GRAM_BLOCK = 4096  # float32 columns per block product (float32 sums within, float64 across)


def _gram_squared_distances(K: torch.Tensor) -> torch.Tensor:
    """The rows' squared distances ``K_ii + K_jj - 2 K_ij`` from their Gram matrix."""
    sq = K.diagonal()
    return sq.unsqueeze(0) + sq.unsqueeze(1) - 2.0 * K


def _gram_resolves(K: torch.Tensor, eps: float) -> bool:
    """Whether the centered Gram matrix ``K`` of distinct rows, computed with machine
    epsilon ``eps``, gives every pair's squared distance within ``GRAM_TOLERANCE``."""
    sq = K.diagonal()
    D2 = _gram_squared_distances(K)
    noise = 2.0 * eps * (sq.unsqueeze(0) * sq.unsqueeze(1)).sqrt()
    off = ~torch.eye(K.shape[0], dtype=torch.bool, device=K.device)
    return bool(torch.isfinite(K).all()) and bool((noise[off] <= GRAM_TOLERANCE * D2[off]).all())


def _block_gram(C: torch.Tensor) -> torch.Tensor:
    """``C C^T`` of float32 rows in float64 (on the CPU): float32 products of blocks of
    ``GRAM_BLOCK`` columns (sums of 4,096 terms), added in float64."""
    n, d = C.shape
    nb = d // GRAM_BLOCK
    K = torch.zeros(n, n, dtype=torch.float64, device=C.device)
    if nb:
        blocks = C[:, : nb * GRAM_BLOCK].reshape(n, nb, GRAM_BLOCK).transpose(0, 1)
        K += torch.bmm(blocks, blocks.transpose(1, 2)).double().sum(0)
    if nb * GRAM_BLOCK < d:
        rest = C[:, nb * GRAM_BLOCK :]
        K += (rest @ rest.T).double()
    return K.cpu()


def _medoid(K: torch.Tensor) -> int:
    """The row with the least sum of distances, from a (coarse) Gram matrix."""
    D = _gram_squared_distances(K).clamp_min(0.0).sqrt()
    return int(torch.argmin(D.nan_to_num(nan=math.inf).sum(1)))


def _full_float32_products(device: torch.device) -> bool:
    """Whether float32 matrix products keep float32's precision: TF32 (CUDA) or bfloat16
    (``torch.set_float32_matmul_precision("medium")``) products carry ~10 bits, which
    the error model of :func:`_gram_resolves` does not cover (then float64 chunks)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def _centered_gram(X: torch.Tensor, rows: list) -> tuple[torch.Tensor, float] | None:
    """``(X_r - c)(X_r - c)^T`` in float64 (on the CPU) for the rows ``rows`` of ``X``, about
    a centre ``c`` (distances do not depend on it, the rounding does), and the machine
    epsilon of the products it was summed from. None when it cannot resolve the
    rows' distances (:func:`_gram_resolves`).

    Float32 rows: centred on their mean in float32, block products
    (:func:`_block_gram`): 1.2 ms at n = 12, d = 184,586 on two threads. Where a
    row far from the others pulls the mean away from the rest (their products then
    round at the far row's scale), once more centred on the medoid row, which sits
    among the rest. Otherwise, and for other dtypes, float64 products of column
    chunks centred on the medoid (2.5-4 ms there)."""
    centre = None
    if X.dtype == torch.float32 and _full_float32_products(X.device):
        for attempt in range(2):
            centre = X.mean(0) if attempt == 0 else X[rows[_medoid(K)]]
            K = _block_gram(X - centre)[rows][:, rows]
            if not 1e-30 < float(K.diagonal().max()) < 1e30:
                break  # float32 products would underflow or overflow: float64
            if _gram_resolves(K, torch.finfo(torch.float32).eps):
                return K, torch.finfo(torch.float32).eps
        if not bool(torch.isfinite(K).all()):
            centre = None
    centre = (X.double().mean(0) if centre is None else centre.double())
    K = torch.zeros(X.shape[0], X.shape[0], dtype=torch.float64, device=X.device)
    for s in range(0, X.shape[1], GRAM_BLOCK * 4):
        C = X[:, s : s + GRAM_BLOCK * 4].double() - centre[s : s + GRAM_BLOCK * 4]
        K += C @ C.T
    K = K.cpu()[rows][:, rows]
    return (K, torch.finfo(torch.float64).eps) if _gram_resolves(K, torch.finfo(torch.float64).eps) else None


def _distinct_rows(X: torch.Tensor) -> tuple[list, list]:
    """Representatives of ``X``'s distinct rows and, for each row, the index of its
    representative in that list (colluding Byzantine rows are exact copies: as
    copies they would differ by the Gram matrix's rounding)."""
    keys = X[:, : min(4, X.shape[1])].tolist()
    reps: list = []
    owner: list = []
    for i in range(X.shape[0]):
        for k, j in enumerate(reps):
            if keys[i] == keys[j] and torch.equal(X[i], X[j]):
                owner.append(k)
                break
        else:
            owner.append(len(reps))
            reps.append(i)
    return reps, owner


def _small_l2_median(Y: np.ndarray, m: np.ndarray, scale: float) -> np.ndarray | None:
    """The minimizer of ``sum_i m_i ||z - y_i||`` over distinct rows ``y_i`` of ``Y``
    (``(k, r)``, float64, small) with multiplicities ``m``, as weights ``w >= 0``,
    ``sum w = 1``, with ``w @ Y`` the minimizer; None when the cases below do not
    settle it (the caller iterates).

    A row ``y_k`` is the minimizer iff the other rows' unit vectors to it, times
    their multiplicities, sum to at most ``m_k`` in norm (Vardi and Zhang 2000).
    Otherwise the objective is smooth around its minimizer, a fixed point of
    Weiszfeld's map (``w_i`` proportional to ``m_i / ||z - y_i||``): Newton's method
    with a backtracking line search from the weighted mean, until its step is
    below ``1e-12 * scale`` (``scale``: the rows' typical distance)."""
    k, r = Y.shape
    diff = Y[:, None, :] - Y[None, :, :]
    D = np.sqrt((diff * diff).sum(-1))
    # every row's test at once (a loop over the rows cost ~0.3 ms of a Bulyan round):
    # the pull of the others on row j, sum_i m_i (y_j - y_i) / ||y_j - y_i|| over i != j
    np.fill_diagonal(D, 1.0)  # the diagonal's differences are 0: no term from row j itself
    pull = np.einsum("i,jir->jr", m, diff / D[:, :, None])
    optimal = np.flatnonzero(np.sqrt((pull * pull).sum(1)) <= m)
    if len(optimal):
        return (np.arange(k) == optimal[0]).astype(np.float64)

    def objective(z):
        return float((m * np.sqrt(((z - Y) ** 2).sum(1))).sum())

    z = (m[:, None] * Y).sum(0) / m.sum()
    f = objective(z)
    for _ in range(100):
        U = z - Y
        dist = np.sqrt((U * U).sum(1))
        if not (dist > 1e-9 * scale).all():
            return None  # next to a row that is not the minimizer: the Hessian blows up there
        U = U / dist[:, None]
        grad = (m[:, None] * U).sum(0)
        c = m / dist
        H = np.eye(r) * c.sum() - (c[:, None] * U).T @ U
        try:
            step = np.linalg.solve(H, grad)
        except np.linalg.LinAlgError:
            return None
        if not np.isfinite(step).all():
            return None
        a = 1.0
        while a > 1e-10:
            z_new = z - a * step
            f_new = objective(z_new)
            if f_new <= f:
                break
            a *= 0.5
        else:
            return None  # no descent along Newton's direction (collinear rows: a singular Hessian)
        moved = a * math.sqrt(float(step @ step))
        z, f = z_new, f_new
        if moved <= 1e-12 * scale:
            w = m / np.sqrt(((z - Y) ** 2).sum(1))
            return w / w.sum()
    return None


class SpanMedian:
    """l_2 geometric medians of finite rows ``X`` (``(n, d)``, ``d > n``) and of subsets of
    them, solved in the rows' span from one Gram pass.

    Weiszfeld's iterates are weighted averages of the rows and l_2 distances do
    not change under a rotation: the problem on rows ``S`` is the same problem on
    their distinct rows' coordinates ``Y`` (``(k, r)``, ``r < k``, float64) in an
    orthonormal basis of their centred span, ``Y Y^T = K`` (the centred Gram
    matrix, :func:`_centered_gram`, one pass over ``X`` for every subset), each
    weighted by its number of copies. There it is solved to ~1e-12 relative
    (:func:`_small_l2_median`, or :func:`geomed_solve` on ``Y`` when that does not
    settle it), and the median is the rows' average with the weights ``w`` of
    Weiszfeld's map at that solution: ``w^T S``, a convex combination of the rows
    (one pass over them). Bulyan's geomed selection solves its rounds' subsets from
    one instance. ``SpanMedian.of(X)`` is None when the Gram matrix cannot resolve
    the rows' distances (:func:`_gram_resolves`) or disagrees with the rows at the
    median of all of them (:meth:`agrees`): the caller iterates on the rows.
    """

    def __init__(self, X: torch.Tensor, reps: list, owner: list, K: torch.Tensor | None, eps: float = 0.0):
        self.X, self.reps, self.owner, self.K, self.eps = X, reps, owner, K, eps
        self._norms = None
        self.full = None  # (weights, iterations, converged, median, distances) of all rows

    @classmethod
    def of(cls, X: torch.Tensor, nu: float = 1e-6) -> "SpanMedian | None":
        """The instance for finite rows ``X``, checked at the median of all of them (its
        weights, median and true distances kept in ``full``), or None."""
        reps, owner = _distinct_rows(X)
        if len(reps) == 1:  # every row the same point
            span = cls(X, reps, owner, None)
        else:
            gram = _centered_gram(X, reps)  # of every row (no copy of the distinct ones), then theirs
            if gram is None:
                return None
            span = cls(X, reps, owner, *gram)
        rows = list(range(X.shape[0]))
        w, iterations, converged = span.weights(rows, nu)
        z = span.median(w)
        r, _ = _L2_DISTANCES(X, z)  # at the returned (rounded) z: Bulyan picks the nearest row from them
        span.full = (w, iterations, converged, z, r)
        return span if span.agrees(w, r) else None

    def agrees(self, w: torch.Tensor, r: torch.Tensor) -> bool:
        """Whether the rows' true distances ``r`` to ``median(w)`` match the Gram's within
        their error bounds (the Gram's, the median's rounding, ``r``'s own): an a
        posteriori check of the error model every decision from ``K`` relies on, at no
        extra pass (the median and ``r`` are needed anyway). Measured on the test
        inputs and the paper CNN's line: at most 0.11 of the bound. The distances
        also bound the median's optimality: they equal the ones Weiszfeld's weights
        were taken from up to that bound, so the gradient at ``median(w)`` is at most
        ``sum_i |r_i - d_i| / d_i``."""
        if self.K is None:
            return True
        rows = list(range(self.X.shape[0]))
        d, err = self.distances(w, rows)
        r = r.detach().double().cpu()
        slack = err + self.rounding(w) + 4.0 * torch.finfo(self.X.dtype).eps * r
        return bool(((r - d).abs() <= slack).all())

    def weights(self, rows: list, nu: float) -> tuple[torch.Tensor, int, bool]:
        """Weights over every row of ``X`` (zero off ``rows``, float64, summing to 1) whose
        average of ``X`` is the median of the rows ``rows``, and the small solve's
        iterations and convergence."""
        present = sorted({self.owner[i] for i in rows})
        w = torch.zeros(self.X.shape[0], dtype=torch.float64)
        if len(present) == 1:
            w[self.reps[present[0]]] = 1.0
            return w, 0, True
        slot = {k: j for j, k in enumerate(present)}
        mult = torch.zeros(len(present), dtype=torch.float64)
        for i in rows:
            mult[slot[self.owner[i]]] += 1.0
        K = self.K[present][:, present]
        evals, U = torch.linalg.eigh(K)
        keep = evals > len(present) * torch.finfo(torch.float64).eps * max(float(evals[-1]), 0.0)
        Y = U[:, keep] * evals[keep].sqrt()
        D2 = torch.cdist(Y, Y).square()
        scale = math.sqrt(float(D2[~torch.eye(len(present), dtype=torch.bool)].median()))
        wk = _small_l2_median(Y.numpy(), mult.numpy(), scale)
        iterations, converged = 1, True
        if wk is None:
            small = geomed_solve(Y.repeat_interleave(mult.long(), dim=0), 2.0, nu=nu, objective=False)
            converged = small.converged
            ry = torch.linalg.vector_norm(Y - small.z, dim=1)
            on = ry <= 1e-12 * scale
            wk = (on.double() if bool(on.any()) else mult / ry.clamp_min(nu)).numpy()
            wk = wk / wk.sum()
            iterations += small.iterations
        w[[self.reps[k] for k in present]] = torch.from_numpy(np.ascontiguousarray(wk))
        return w, iterations, converged

    def distances(self, w: torch.Tensor, rows: list) -> tuple[torch.Tensor, torch.Tensor]:
        """``||w^T X - x_i||`` for the rows ``rows`` (float64) from the Gram matrix, and a
        bound on each one's error: ``K``'s entries are off by about ``2 eps
        sqrt(K_aa K_bb)``, so ``||w^T X - x_i||^2`` by at most ``e_i = 2 eps (sum_a w_a
        sqrt(K_aa) + sqrt(K_ii))^2``, and the distance by ``min(sqrt(e_i), e_i / d_i)``."""
        if self.K is None:
            zero = torch.zeros(len(rows), dtype=torch.float64)
            return zero, zero
        wr = torch.zeros(len(self.reps), dtype=torch.float64).index_add_(0, torch.tensor(self.owner), w)
        Kw = self.K @ wr
        own = torch.tensor([self.owner[i] for i in rows])
        root = self.K.diagonal().clamp_min(0.0).sqrt()
        d2 = (float(wr @ Kw) - 2.0 * Kw[own] + self.K.diagonal()[own]).clamp_min(0.0)
        e = 2.0 * self.eps * (float(wr @ root) + root[own]).square()
        d = d2.sqrt()
        return d, torch.minimum(e.sqrt(), e / d.clamp_min(torch.finfo(torch.float64).tiny))

    def median(self, w: torch.Tensor) -> torch.Tensor:
        """``w^T X`` in the rows' dtype (one pass)."""
        return w.to(device=self.X.device, dtype=self.X.dtype) @ self.X

    def rounding(self, w: torch.Tensor) -> float:
        """A bound on ``||median(w) - w^T X||_2`` (the exact average): the weights and each
        product and sum round by an epsilon of the rows' dtype, so each coordinate is off
        by at most ``(n + 1) eps sum_i w_i |x_ij|``, whose l_2 norm is at most
        ``(n + 1) eps sum_i w_i ||x_i||`` (the rows' norms: one pass, the first time)."""
        if self._norms is None:  # in the rows' dtype (no float64 copy of them), rounded up
            self._norms = torch.linalg.vector_norm(self.X, dim=1).double().cpu() * (1.0 + 1e-4)
        eps = torch.finfo(self.X.dtype).eps
        return 2.0 * (self.X.shape[0] + 1) * eps * float(w @ self._norms)


def _span_solve(X: torch.Tensor, nu: float) -> GeomedResult | None:
    """:func:`geomed_solve` for p = 2 in the rows' span (:class:`SpanMedian`), or None."""
    span = SpanMedian.of(X, nu)
    if span is None:
        return None
    _, iterations, converged, z, r = span.full
    return GeomedResult(z, converged, iterations, float(r.sum()), r)


def span_applies(X: torch.Tensor, p: float) -> bool:
    """Whether :func:`geomed_solve` (``span=None``) solves ``X``'s median in the span."""
    n, d = X.shape
    return (p == 2 and 2 < n <= SPAN_MAX_ROWS and d > n and X.numel() >= SPAN_MIN_ELEMENTS
            and not (torch.is_grad_enabled() and X.requires_grad))


def geomed_solve(
    G: torch.Tensor,
    p: float = 2.0,
    *,
    nu: float = 1e-6,
    max_iter: int = 200,
    tol: float = 1e-7,
    start: torch.Tensor | None = None,
    memory: int = 2,
    objective: bool = True,
    patience: int = 3,
    span: bool | None = None,
    _restarts: int = 2,
) -> GeomedResult:
    """Minimize ``sum_i ||z - G_i||_p`` by smoothed IRLS; see :func:`geomed`.

    Each iteration computes the distances at the current iterate (which also
    give its objective, so the objective costs no extra pass) and the weights,
    then the weighted average. For ``p <= 2`` the step is a majorize-minimize
    step (monotone); for ``p > 2`` the step is damped (see the loop). Steps are
    Anderson-accelerated (``memory`` past steps, 0 turns it off) and never
    raise the objective; when no step lowers it the solver stops. Stops when the
    step taken is at most ``tol * max(||z||_2, 1)``. The returned objective is
    recomputed in float64 at the returned iterate. ``start`` (a finite
    ``Tensor[d]``) replaces the coordinate-wise median as the first iterate:
    Bulyan's selection warm-starts each round from the previous round's median.
    ``objective=False`` skips that float64 recomputation (one more pass over
    the rows, as costly as several IRLS steps at large d) and reports the
    solver's own value (distances in the rows' dtype, summed in float64):
    the rule itself and Bulyan need only ``z``. ``patience``: steps in a row
    that do not lower the objective by more than its rounding noise after which
    the iterate is taken as converged (it sits at the float floor). A start
    already at the floor (the line search's, between two solved neighbours)
    gains nothing from the next two such steps: there ``patience=1``.

    ``span``: for p = 2 on at least ``SPAN_MIN_ELEMENTS`` entries (at most
    ``SPAN_MAX_ROWS`` rows, more columns than rows) the median is solved in the
    rows' span (:func:`_span_solve`: one Gram pass, Newton's method on the
    small problem, one averaging pass; 3-4 ms against ~10 ms of IRLS at n = 12,
    d = 184,586), where ``start``, ``max_iter``, ``tol``, ``memory`` and
    ``patience`` do not apply (it solves to ~1e-12 relative in the span, and
    falls back to the IRLS where the Gram matrix cannot resolve the rows'
    distances). ``None`` (default) decides by those sizes, ``False`` always
    iterates on the rows (e.g. ByzFL's algorithm for a fixed number of steps),
    ``True`` tries the span at any size.
    """
    G = check_gradients(G, "geomed")
    p = check_geomed_p("geomed", p)
    nu = check_real("geomed", "nu", nu, low=0.0, low_open=True)
    max_iter = check_int("geomed", "max_iter", max_iter, low=1)
    tol = check_real("geomed", "tol", tol, low=0.0)
    memory = check_int("geomed", "memory", memory, low=0)
    patience = check_int("geomed", "patience", patience, low=1)
    wider = None
    if G.dtype != torch.float64 and G.numel() <= UPCAST_ELEMENTS:
        # float32 objectives cannot rank the last damped steps at large p: the solver
        # stopped up to 0.27 off in a coordinate (n = 12, d = 10, p = 16); small
        # inputs are solved in float64 for next to nothing
        wider = torch.float64
    elif G.dtype in (torch.float16, torch.bfloat16):
        # half precision cannot rank IRLS steps at all (p = 8, d = 5,462: 3.9e-2 above
        # the minimum, coordinates off by an honest spread): larger inputs in float32
        wider = torch.float32
    if wider is not None:
        res = geomed_solve(G.to(wider), p, nu=nu, max_iter=max_iter, tol=tol,
                           start=None if start is None else start.to(wider), memory=memory,
                           objective=objective, patience=patience, span=span, _restarts=_restarts)
        return res._replace(z=res.z.to(G.dtype))
    ok = finite_rows(G)
    X = G if bool(ok.all()) else G[ok]
    if X.shape[0] == 0:
        raise ValueError("geomed: needs at least one finite row, got none")
    def result(z, converged, iterations, estimate=None, distances=None):
        value = float(geomed_objective(z.detach(), X.detach(), p)) if objective or estimate is None else estimate
        return GeomedResult(z, converged, iterations, value, distances if X is G else None)

    if p == 1 or X.shape[0] <= 2:
        # The l_1 objective separates by coordinate: the coordinate-wise median is
        # a minimizer (for <= 2 rows every point between them is one).
        return result(comed(X), True, 0)
    n = X.shape[0]
    if start is not None and (start.shape != X.shape[1:] or not bool(finite_rows(start.unsqueeze(0))[0])):
        raise fail("geomed", "start", f"a finite tensor of shape {tuple(X.shape[1:])}", tuple(start.shape))
    if span is None:
        span = span_applies(X, p)
    if p == 2 and span and n > 2 and not (torch.is_grad_enabled() and X.requires_grad):
        # its cost does not depend on a start: a warm start is not needed there
        solved = _span_solve(X, nu)
        if solved is not None:
            return result(solved.z, solved.converged, solved.iterations, solved.objective, solved.distances)
    if start is None:
        z = comed(X)
    else:
        z = start.to(dtype=X.dtype, device=X.device)
    r, spread, target = _irls_step(z, X, p, nu)
    k = scale_exponent(X, r)
    if k:
        # distances far below 1: the smoothing nu (absolute) would swallow them (rows of
        # ~1e-6 came back as the coordinate-wise median, 3.6% above the minimum). The
        # problem is solved on the rows times 2^k (exact), so that the result scales
        # with the rows as a geometric median does.
        res = geomed_solve(X * 2.0 ** k, p, nu=nu, max_iter=max_iter, tol=tol, start=z * 2.0 ** k,
                           memory=memory, objective=objective, patience=patience, span=False, _restarts=_restarts)
        back = 2.0 ** -k
        dist = None if res.distances is None or X is not G else res.distances * back
        return GeomedResult(res.z * back, res.converged, res.iterations, res.objective * back, dist)
    on_row = r <= nu
    if bool(on_row.any()) and not math.isinf(p):
        z, done = _leave_data_point(z, X, p, r, nu, on_row)
        if done:
            return result(z, True, 0, distances=r)
        r, spread, target = _irls_step(z, X, p, nu)
    ranking = _RankingObjective(z, X, r, p)
    obj, noise = ranking.value(z, r, spread)
    # For p > 2 the IRLS map is not a majorize-minimize step: its step is about
    # (p - 1) times a diagonal Newton step (the Hessian's diagonal is (p - 1) times
    # the IRLS weights), so the map is damped by 1 / (p - 1). Anderson
    # acceleration extrapolates from the last steps; a candidate that raises the
    # objective is replaced by the plain (damped) step, which for p > 2 is halved
    # while it still raises it. Measured at n = 12, d = 184,586: 2-3x fewer
    # passes than plain IRLS at p = 1.5, 1.3-1.5x at p = 3..16.
    damping = 1.0 if p <= 2 else 1.0 / (p - 1.0)
    history = _Anderson(memory)
    # Objective changes below `noise` (absolute, from the terms' rounding, see
    # _objective_from) are rounding. A step is accepted unless it raises the
    # objective by more than that; `patience` (3) steps in a row that do not lower it by
    # more than that mean the iterate sits at the rounding floor.
    best_z, best_obj, best_r, lowest = z, obj, r, obj
    converged, it, stalls = False, 0, 0
    for it in range(1, max_iter + 1):
        if damping == 1.0 or target is z:
            plain = target
        else:  # z + damping * (target - z), in one pass
            plain = torch.lerp(z, target, damping)
        target = None  # one d-vector less alive while the next weights are built
        z_new = history.extrapolate(z, plain)
        # ||z|| and ||z_new - z|| once for the tests below (each a pass at large d)
        z_norm, moved, moved_of = _l2(z), None, None
        if z_new is not plain:
            near = tol * max(z_norm, 1.0)
            moved, moved_of = _l2(z_new - z), z_new
            if moved <= near < _l2(plain - z):
                # Anderson's combination came back onto z while the plain step still
                # moves: z is no fixed point, but the step test would call it converged
                # (3 rows, p = 3: stopped at 9.4527, the minimum is 9.1151). Plain step,
                # extrapolation restarted from it.
                history.reset(z, plain)
                z_new = plain
        r_new, spread, state = _irls_distances(z_new, X, p, nu)
        obj_new, noise_new = ranking.value(z_new, r_new, spread)
        step, extrapolated = 1.0, z_new is not plain
        while obj_new > obj + max(noise, noise_new) and step > 1e-4:
            if extrapolated:  # the extrapolation failed: restart it from the plain step
                history.reset(z, plain)
                extrapolated = False
            else:
                step *= 0.5
            z_new = plain if step == 1.0 else z + step * (plain - z)
            state = None
            r_new, spread, state = _irls_distances(z_new, X, p, nu)
            obj_new, noise_new = ranking.value(z_new, r_new, spread)
            if p <= 2 and step == 1.0:
                break  # majorize-minimize: the plain step cannot raise it (up to rounding)
        # For p <= 2 the plain step decreases the *smoothed* objective, not always
        # the true one (it leaves a start on a data point slowly): keep it.
        majorized = p <= 2 and not extrapolated and step == 1.0
        if obj_new > obj + max(noise, noise_new) and not majorized:
            converged = True
            break
        stalls = stalls + 1 if obj_new > obj - max(noise, noise_new) and not majorized else 0
        change = moved if z_new is moved_of else _l2(z_new - z)
        scale = max(z_norm, 1.0)
        if change <= tol * scale or stalls >= patience:
            target_new = None  # the last iterate: its average is never used
        else:
            target_new = _irls_average(z_new, X, p, state)
        state = None
        z, r, target, obj, noise = z_new, r_new, target_new, obj_new, noise_new
        # Within the noise the objective cannot rank iterates. A plain step for p <= 2
        # lowers the smoothed objective (majorize-minimize): it is kept unless it is
        # measurably worse than the best seen. Any other step must measurably improve:
        # where one huge row's distance swamps the objective's resolution, no step
        # is trusted and the start (the coordinate-wise median) stays.
        if obj < lowest or (majorized and obj <= lowest + noise):
            # the kept step's objective is the new reference, also when a plain
            # p <= 2 step measured up to `noise` higher: it descends in exact
            # arithmetic (measured: comparing with the lowest value seen instead
            # kept z 1e-5 from the minimizer at p = 2, d = 184,586, against 1e-7)
            best_z, best_obj, best_r, lowest = z, obj, r, obj
        if change <= tol * scale or stalls >= patience:
            converged = True
            break
    on_row = best_r <= nu
    if converged and _restarts > 0 and bool(on_row.any()) and not math.isinf(p):
        # IRLS crawled onto a row (its weight 1/nu dominates the steps): Vardi and Zhang's
        # test there, and a restart from their step when the row is not the minimizer
        # (p = 16, three rows: stopped on a row at 4.2686, the minimum is 3.7605)
        z_out, optimal = _leave_data_point(best_z, X, p, best_r, nu, on_row)
        if not optimal:
            again = geomed_solve(X, p, nu=nu, max_iter=max_iter, tol=tol, start=z_out, memory=memory,
                                 objective=objective, patience=patience, span=False, _restarts=_restarts - 1)
            if float(geomed_objective(again.z, X, p)) < float(geomed_objective(best_z, X, p)):
                return again._replace(distances=again.distances if X is G else None)
    return result(best_z, converged, it, best_obj + ranking.constant, best_r)


def geomed(G: torch.Tensor, p: float = 2.0, **options) -> torch.Tensor:
    """Geometric median under l_p: ``argmin_z sum_i ||z - G_i||_p``.

    Smoothed Weiszfeld / IRLS (Pillutla et al. 2022, "RFA"), generalized to l_p
    by per-coordinate weights (see ``_distances_and_weights``), started at the
    coordinate-wise median. For ``p = 1`` the objective separates by
    coordinate and the coordinate-wise median is returned exactly. Rows with a
    non-finite entry are dropped (infinitely far); a finite but huge row gets a
    weight near zero. The MixTailor authors' code ignores ``p``; here the norm
    changes the result (tested). Scale equivariant: rows whose median distance from
    the start is below ``2^-10`` are solved multiplied by a power of 2 (a copy of the
    rows), so that the smoothing ``nu`` acts on distances of about 1.
    For p = 2 on large inputs the same minimizer is solved in the rows' span
    (``span``, see :func:`geomed_solve`). Options: ``nu`` (smoothing, > 0),
    ``max_iter``, ``tol`` (relative step size), ``start``, ``memory``,
    ``patience``, ``span``. Use :func:`geomed_solve` to also get convergence
    information.
    """
    unknown = sorted(set(options) - {"nu", "max_iter", "tol", "start", "memory", "patience", "span"})
    if unknown:
        raise TypeError(f"geomed: options must be among ['max_iter', 'memory', 'nu', 'patience', 'span', 'start', "
                        "'tol'], "
                        f"got unknown {unknown}")
    return geomed_solve(G, p, objective=False, **options).z


@dataclass(frozen=True)
class Geomed(Rule):
    """Config of :func:`geomed`; regime ``n > 2f`` (breakdown point 1/2)."""

    family: ClassVar[str] = "geomed"
    f: int = 0
    p: float = name_field(2.0)
    nu: float = tuning_field(1e-6)
    max_iter: int = tuning_field(200)
    tol: float = tuning_field(1e-7)

    def __post_init__(self):
        check_int("geomed", "f", self.f, low=0)
        object.__setattr__(self, "p", check_geomed_p("geomed", self.p))
        check_real("geomed", "nu", self.nu, low=0.0, low_open=True)
        check_int("geomed", "max_iter", self.max_iter, low=1)
        check_real("geomed", "tol", self.tol, low=0.0)

    def check(self, n: int) -> None:
        check_regime("geomed", n > 2 * self.f, "n > 2f", n, self.f)

    def __call__(self, G):
        G = check_gradients(G, "geomed")
        self.check(G.shape[0])
        return geomed(G, self.p, nu=self.nu, max_iter=self.max_iter, tol=self.tol)

    def batched(self, Gb: torch.Tensor) -> torch.Tensor:
        """Small problems (``n d <= 2^16``) in one vectorized IRLS loop, what it does not
        settle (and larger problems) by :func:`geomed_solve` (:mod:`._geomed_batch`)."""
        from ._geomed_batch import geomed_batched  # it builds on this module

        check_batch(Gb, "geomed")
        self.check(Gb.shape[1])
        return geomed_batched(Gb, self.p, nu=self.nu, max_iter=self.max_iter, tol=self.tol)
