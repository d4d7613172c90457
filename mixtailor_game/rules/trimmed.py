"""Coordinate-wise trimmed mean (Yin et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, check_regime
from .base import Rule, check_batch, check_gradients
from ._network import trimmed_rows


def trimmed_mean(G: torch.Tensor, b: int) -> torch.Tensor:
    """Trimmed mean: per coordinate drop the ``b`` largest and ``b`` smallest values
    and average the ``n - 2b`` left.

    Tolerates up to ``b`` Byzantine rows; needs ``n > 2b``. Non-finite entries
    sort to the ends (NaN above ``+inf``) and are dropped with the extremes.
    Computed by a pruned sorting network over cache-sized column chunks
    (``_network.py``): only the multiset of the middle values is formed.

    >>> trimmed_mean(torch.tensor([[0.0], [1.0], [2.0], [9.0]]), b=1)
    tensor([1.5000])
    """
    G = check_gradients(G, "trimmed_mean")
    b = check_int("trimmed_mean", "b", b, low=0)
    check_regime("trimmed_mean", G.shape[0] > 2 * b, "n > 2b", G.shape[0], b, name="b")
    return trimmed_rows(G, b)


@dataclass(frozen=True)
class TrimmedMean(Rule):
    """Config of :func:`trimmed_mean`; ``f`` is the trim ``b`` (it tolerates ``b`` rows)."""

    family: ClassVar[str] = "trimmed_mean"
    b: int = 0

    def __post_init__(self):
        check_int("trimmed_mean", "b", self.b, low=0)

    @property
    def f(self) -> int:
        return self.b

    def check(self, n: int) -> None:
        check_regime("trimmed_mean", n > 2 * self.b, "n > 2b", n, self.b, name="b")

    def __call__(self, G):
        return trimmed_mean(G, self.b)

    def batched(self, Gb):
        self.check(check_batch(Gb, self.family).shape[-2])
        return trimmed_rows(Gb, self.b)
