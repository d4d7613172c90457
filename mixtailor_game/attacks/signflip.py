"""Sign-flipping attack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_real
from ..rules.base import mean_rows
from .base import Attack, repeat_row, saturate
from .view import AdversaryView


@dataclass(frozen=True, kw_only=True)
class SignFlip(Attack):
    """Each Byzantine sends its own honest gradient, negated and scaled:
    ``B_i = -scale * own_i``.

    Source: the "bit/sign flipping" Byzantine of Allen-Zhu et al. 2021 and
    Karimireddy et al. 2021/2022. Knowledge: its own gradient only. When the
    trainer gives no ``view.own``, every Byzantine sends ``-scale * mu`` with
    ``mu`` the mean of the visible honest rows (then identical to IPM with
    ``eps = scale``).

    Parameters: ``scale >= 0`` finite (1 is the classic attack).
    """

    family: ClassVar[str] = "sign_flip"
    scale: float = 1.0

    def validate(self):
        object.__setattr__(self, "scale", check_real("sign_flip", "scale", self.scale, low=0.0))

    def craft(self, view: AdversaryView) -> torch.Tensor:
        if view.own is not None:
            return -self.scale * view.own
        return repeat_row(saturate(-self.scale * mean_rows(view.visible("sign_flip"))), view.f)
