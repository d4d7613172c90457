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
    elif math.isinf(p):
        out = A.amax(-1)
    else:
        scale = A.amax(-1, keepdim=True)
        ok = torch.isfinite(scale) & (scale > 0)
        safe = torch.where(ok, scale, torch.ones_like(scale))
        out = torch.linalg.vector_norm(A / safe, p, dim=-1) * safe.squeeze(-1)
        out = torch.where(ok.squeeze(-1), out, scale.squeeze(-1))
    return torch.nan_to_num(out, nan=math.inf)


def pairwise_distances(G: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Matrix ``D[i, j] = ||G_i - G_j||_p`` (unsquared) of shape ``(n, n)``.

    One row of differences at a time, so the extra memory is ``O(n d)``, never
    ``O(n^2 d)``. Works on a leading batch dimension too: ``(B, n, d) -> (B, n, n)``.
    Rows with a non-finite entry are at distance ``inf`` from every other row.
    """
    n = G.shape[-2]
    D = G.new_zeros(G.shape[:-2] + (n, n))
    for i in range(n - 1):
        dist = lp_norm_rows(G[..., i + 1 :, :] - G[..., i : i + 1, :], p)
        D[..., i, i + 1 :] = dist
        D[..., i + 1 :, i] = dist
    bad = ~torch.isfinite(G).all(dim=-1)
    if bool(bad.any()):
        D = D.masked_fill(bad.unsqueeze(-1) | bad.unsqueeze(-2), math.inf)
        D.diagonal(dim1=-2, dim2=-1).zero_()
    return D
