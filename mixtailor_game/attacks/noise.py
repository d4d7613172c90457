"""Gaussian-noise attack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_real
from ..rules.base import mean_rows
from .base import Attack, check_choice, normal, saturate
from .view import AdversaryView


@dataclass(frozen=True, kw_only=True)
class GaussianNoise(Attack):
    """Each Byzantine sends an independent ``B_i = c + sigma * xi_i``, ``xi_i ~ N(0, I_d)``.

    ``center="zero"``: ``c = 0`` (the classic Gaussian Byzantine of Blanchard
    et al. 2017 / ByzFL); ``"honest"``: ``c`` = the mean of the visible rows.
    Noise comes from ``view.rng`` (``view.generator()``: deterministic per step
    when ``None``). Knowledge: none for ``"zero"``; visible rows for ``"honest"``.

    Parameters: ``sigma >= 0`` finite; ``center`` in ``("zero", "honest")``.
    """

    family: ClassVar[str] = "gaussian"
    sigma: float = 1.0
    center: str = "zero"

    def validate(self):
        object.__setattr__(self, "sigma", check_real("gaussian", "sigma", self.sigma, low=0.0))
        check_choice("gaussian", "center", self.center, ("zero", "honest"))

    def craft(self, view: AdversaryView) -> torch.Tensor:
        like = view.honest if view.k > 0 or view.own is None else view.own
        xi = normal((view.f, view.d), view.generator(), like)
        c = mean_rows(view.visible("gaussian")) if self.center == "honest" else torch.zeros_like(xi[0])
        return saturate(c + self.sigma * xi)
