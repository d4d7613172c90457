"""The plain average: the non-robust baseline (and the omniscient server's rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int
from .base import Rule, check_batch, check_gradients, mean_over


def mean(G: torch.Tensor) -> torch.Tensor:
    """Average of the rows of ``G``: ``(1/n) sum_i G_i``.

    Not robust: it tolerates ``f = 0`` Byzantine rows, so one NaN or Inf row
    makes its output non-finite. That is the definition, not a bug; use it as
    the baseline and as the omniscient server on honest rows only. Finite rows
    give a finite mean: where their sum overflows (values near the dtype's
    maximum) that coordinate is the sum of ``G / n``.

    >>> mean(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([2., 3.])
    """
    return mean_over(check_gradients(G, "mean"), 0)


@dataclass(frozen=True)
class Mean(Rule):
    """Config of :func:`mean` (``f`` must be 0: the average tolerates no Byzantine row)."""

    family: ClassVar[str] = "mean"
    f: int = 0

    def __post_init__(self):
        check_int("mean", "f", self.f, low=0, high=0)

    def __call__(self, G):
        return mean(G)

    def batched(self, Gb):
        return mean_over(check_batch(Gb, self.family), -2)
