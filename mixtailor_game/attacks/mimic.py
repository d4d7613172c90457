"""Mimic attack (Karimireddy, He, Jaggi 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, fail
from ..rules.base import finite_rows
from .base import Attack, repeat_row
from .view import AdversaryView


def mimic_target(V: torch.Tensor) -> int:
    """Index of the row that deviates most from the mean along the top principal
    direction: ``argmax_i |<V_i - mu, z>|``, ``z`` the top right singular vector
    of the centred rows (ties: lowest index). Rows with a NaN or Inf entry are
    never picked (nor enter the mean) while a finite row is left."""
    ok = finite_rows(V)
    if not bool(ok.all()):
        if not bool(ok.any()):
            raise ValueError("mimic: needs at least one finite visible row, got none")
        keep = ok.nonzero().flatten()
        return int(keep[mimic_target(V[keep])])
    C = V.double()
    C = C - C.mean(dim=0)  # float64: the mean of huge float32 rows would overflow
    if V.shape[0] < 2 or not bool((C != 0).any()) or not bool(torch.isfinite(C).all()):
        return 0
    z = torch.linalg.svd(C, full_matrices=False).Vh[0]
    return int(torch.argmax((C @ z).abs()))


@dataclass(frozen=True, kw_only=True)
class Mimic(Attack):
    """Every Byzantine copies one honest row: ``B_i = V_t``.

    ``target="auto"`` picks ``t`` by :func:`mimic_target` (the row that
    over-represents the direction of largest variance, which in non-iid data
    biases rules that pick "central" rows); an integer picks that visible row.

    Source: Karimireddy, He, Jaggi, "Byzantine-robust learning on heterogeneous
    datasets via bucketing", ICLR 2022. Knowledge: visible honest rows (or
    ``view.own``). Difference: the authors estimate ``z`` online over a warm-up
    period and then fix the target; we recompute it from the current rows at
    every step (stateless).

    Parameters: ``target`` ``"auto"`` or an integer ``>= 0`` (``< rows seen``).
    """

    family: ClassVar[str] = "mimic"
    target: object = "auto"

    def validate(self):
        if self.target != "auto":
            if isinstance(self.target, str):
                raise fail("mimic", "target", "'auto' or an integer >= 0", self.target)
            check_int("mimic", "target", self.target, low=0)

    def craft(self, view: AdversaryView) -> torch.Tensor:
        V = view.visible("mimic")
        if self.target == "auto":
            t = mimic_target(V)
        else:
            t = check_int("mimic", "target", self.target, low=0, high=V.shape[0] - 1)
        return repeat_row(V[t], view.f)
