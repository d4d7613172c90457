"""The base of every aggregation rule: a small frozen config object.

A rule is a pure function ``rule_fn(G, ...) -> Tensor[d]`` (the single source
of truth) plus a frozen dataclass that stores its hyperparameters and calls the
function. The dataclass also knows the regime its theory needs (``check(n)``)
and its display name (``krum[p=2]``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from .._checks import as_gradients


def name_field(default, **kwargs):
    """A dataclass field that appears in the rule's display name."""
    return dataclasses.field(default=default, **kwargs)


def tuning_field(default, **kwargs):
    """A dataclass field left out of the display name (solver tolerances, ...)."""
    return dataclasses.field(default=default, metadata={"in_name": False}, **kwargs)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Rule):
        return value.name
    return str(value)


class Rule:
    """Interface of an aggregation rule config (subclasses are frozen dataclasses).

    ``rule(G)`` aggregates the rows of ``G`` (``Tensor[n, d]``) into ``Tensor[d]``;
    ``rule.f`` is the number of Byzantine rows it is configured to tolerate;
    ``rule.check(n)`` raises ``ValueError`` when ``n`` is outside the regime its
    guarantee needs; ``rule.batched(Gb)`` aggregates ``Tensor[B, n, d]``.
    """

    family: ClassVar[str] = "rule"
    f: int

    def __call__(self, G: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, n: int) -> None:
        """Raise ``ValueError`` when ``n`` rows are outside this rule's regime."""

    @property
    def name(self) -> str:
        parts = []
        for fld in dataclasses.fields(self):
            if fld.name == "f" or not fld.metadata.get("in_name", True):
                continue
            parts.append(f"{fld.name}={_fmt(getattr(self, fld.name))}")
        return f"{self.family}[{','.join(parts)}]" if parts else self.family

    def batched(self, Gb: torch.Tensor) -> torch.Tensor:
        """Aggregate a batch ``Tensor[B, n, d]`` into ``Tensor[B, d]``.

        The default loops over the batch; rules with a vectorized form override it.
        """
        check_batch(Gb, self.family)
        return torch.stack([self(G) for G in Gb.unbind(0)])


def check_batch(Gb, where: str) -> torch.Tensor:
    """Validate a batch ``Tensor[B, n, d]`` (floating, B, n, d >= 1) for ``batched``."""
    if not isinstance(Gb, torch.Tensor) or Gb.dim() != 3:
        shape = tuple(Gb.shape) if isinstance(Gb, torch.Tensor) else type(Gb).__name__
        raise ValueError(f"{where}: Gb must be a 3-D tensor (B, n, d), got {shape}")
    if Gb.shape[0] < 1:
        raise ValueError(f"{where}: Gb must be a non-empty batch (B >= 1), got {tuple(Gb.shape)}")
    as_gradients(Gb[0], where)  # dtype and sizes
    return Gb


def power_of_two_below(x: float) -> float:
    """``2^floor(log2 x)`` for a finite ``x > 0``, from its exponent (``math.log2`` of
    float64's maximum rounds to 1024, and ``2.0 ** 1024`` overflows): dividing by it is
    exact and leaves magnitudes in ``[1, 2)``."""
    return math.ldexp(1.0, math.frexp(x)[1] - 1)


def all_finite(t: torch.Tensor) -> bool:
    """``bool(torch.isfinite(t).all())`` at a tenth of the cost: ``t * 0`` is 0 at finite
    entries and NaN at inf / NaN ones, so its sum is 0 exactly when every entry is
    finite (no overflow: the terms are zeros). ``isfinite`` measured 200 us against
    28 us at d = 184,586 on CPU, in checks that run on every rule output."""
    return bool((t * 0).sum() == 0)


def mean_rows(S: torch.Tensor) -> torch.Tensor:
    """``S.mean(0)``; where finite rows' sum overflows (float32 values near 1e38), the
    sum of ``S / n`` instead, kept within the values' range (a non-finite entry still
    gives a non-finite mean)."""
    out = S.mean(0)
    if not all_finite(out):
        out = _scaled_mean(S, 0)
    return out


def _scaled_mean(S: torch.Tensor, dim: int) -> torch.Tensor:
    """The sum of ``S / k`` along ``dim``, clamped to the values' ``[min, max]`` (a mean
    lies there; at the dtype's maximum the rounded terms can sum past it to inf). A NaN
    stays NaN (so do the bounds), an inf with finite values stays inf."""
    total = (S / S.shape[dim]).sum(dim)
    return torch.clamp(total, S.amin(dim), S.amax(dim))


def mean_over(S: torch.Tensor, dim: int) -> torch.Tensor:
    """``S.mean(dim)``, except entries where finite values' sum overflows (rows near the
    dtype's maximum, e.g. all equal to 3e38 in float32): there the sum of ``S / k``
    (``k = S.shape[dim]``) within the values' range. A NaN / Inf value still gives a
    non-finite entry. Same numbers as ``S.mean(dim)`` wherever that is finite."""
    out = S.mean(dim)
    if all_finite(out):
        return out
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        out = torch.where(bad, _scaled_mean(S, dim), out)
    return out


def finite_rows(G: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the rows of ``G`` whose entries are all finite.

    A row sum is finite only if every entry is (an inf or NaN entry makes it inf
    or NaN), so one sum pass settles the usual all-finite case: measured 0.2 ms
    against 7 ms for ``isfinite`` at 12 x 184,586. A non-finite sum (a bad
    entry, or finite entries whose sum overflows) takes the exact test."""
    sums = G.sum(dim=-1)
    if bool(torch.isfinite(sums).all()):
        return torch.ones(sums.shape, dtype=torch.bool, device=G.device)
    return torch.isfinite(G).all(dim=-1)


def check_gradients(G, where: str) -> torch.Tensor:
    """Validate ``G`` (a floating ``Tensor[n, d]``) and return it unchanged."""
    return as_gradients(G, where)
