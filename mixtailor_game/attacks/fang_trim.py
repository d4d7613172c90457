"""Fang et al. 2020's attack on trimmed mean and coordinate-wise median."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_real, fail
from .alie import mean_std
from .base import Attack, check_choice, saturate, uniform
from .view import AdversaryView

VARIANTS = ("auto", "full", "partial")


def push_direction(V: torch.Tensor) -> torch.Tensor:
    """``+1`` where the crafted values go above the honest ones, ``-1`` below:
    against the honest mean, ``push_j = -sign(mu_j)`` (``+1`` where ``mu_j = 0``)."""
    return torch.where(V.mean(dim=0) > 0, -1.0, 1.0).to(V.dtype)


def fang_trim_bounds(V: torch.Tensor, b: float, variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate interval ``[lo_j, hi_j]`` the crafted values are drawn from.

    ``full`` (max / min of the honest rows, Fang et al. Section 3.4):
    push up: ``[max_j, b max_j]`` if ``max_j > 0`` else ``[max_j, max_j / b]``;
    push down: ``[min_j / b, min_j]`` if ``min_j > 0`` else ``[b min_j, min_j]``.
    ``partial`` (mean / std of the visible rows): push up
    ``[mu_j + 3 sigma_j, mu_j + 4 sigma_j]``, down ``[mu_j - 4 sigma_j, mu_j - 3 sigma_j]``.
    An end past the dtype's range is its largest finite value (:func:`~.base.saturate`).
    """
    up = push_direction(V) > 0
    if variant == "full":
        mx, mn = V.max(dim=0).values, V.min(dim=0).values
        lo_up, hi_up = mx, torch.where(mx > 0, mx * b, mx / b)
        lo_dn, hi_dn = torch.where(mn > 0, mn / b, mn * b), mn
    else:
        mu, sigma = mean_std(V, "fang_trim")
        lo_up, hi_up = mu + 3 * sigma, mu + 4 * sigma
        lo_dn, hi_dn = mu - 4 * sigma, mu - 3 * sigma
    return saturate(torch.where(up, lo_up, lo_dn)), saturate(torch.where(up, hi_up, hi_dn))


@dataclass(frozen=True, kw_only=True)
class FangTrim(Attack):
    """Fang et al. 2020's attack on trimmed mean, also their attack on median.

    Each Byzantine ``i`` and coordinate ``j`` gets ``B_ij = lo_j + U_ij (hi_j - lo_j)``,
    ``U_ij ~ U[0, 1)`` from ``view.rng``, with the interval of
    :func:`fang_trim_bounds`: beyond the honest extreme (``full``) or 3 to 4
    standard deviations from the mean (``partial``), on the side opposite to
    the honest mean. ``variant="auto"`` is ``full`` when the view is
    omniscient and ``partial`` otherwise (Fang's partial knowledge uses the
    Byzantines' own before-attack rows: ``view.own`` when ``k = 0``).

    Source: Fang, Cao, Jia, Gong, "Local model poisoning attacks to
    Byzantine-robust federated learning", USENIX Security 2020, Section 3.4.
    Differences: Fang et al. state the rule on model weights with
    ``s_j = sign(w_j - w_Re,j)``; in gradient space we apply it to the gradients
    with the push direction ``-sign(mu)`` (as later reimplementations do), and
    ``space="model"`` applies it to the pseudo-gradients ``w_0 - w_i``, which
    keeps the attack translation-equivariant (Fang's raw-weight intervals
    depend on where the origin of weight space is).

    Parameters: ``b > 1`` (Fang use 2), ``variant`` in ``("auto", "full", "partial")``.
    Errors: ``ValueError``; ``partial`` needs >= 2 visible rows.
    """

    family: ClassVar[str] = "fang_trim"
    b: float = 2.0
    variant: str = "auto"

    def validate(self):
        object.__setattr__(self, "b", check_real("fang_trim", "b", self.b, low=1.0, low_open=True))
        check_choice("fang_trim", "variant", self.variant, VARIANTS)

    def resolved_variant(self, view: AdversaryView) -> str:
        if self.variant == "auto":
            return "full" if view.knowledge == "full" else "partial"
        if self.variant == "full" and view.knowledge != "full":
            raise fail("fang_trim", "variant", "'partial' or 'auto' unless the view is omniscient",
                       f"full with knowledge={view.knowledge}")
        return self.variant

    def craft(self, view: AdversaryView) -> torch.Tensor:
        V = view.visible("fang_trim")
        lo, hi = fang_trim_bounds(V, self.b, self.resolved_variant(view))
        U = uniform((view.f, view.d), view.generator(), V)
        return saturate(lo + U * (hi - lo))
