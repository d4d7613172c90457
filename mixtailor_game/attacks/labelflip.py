"""Label flipping: a data-level attack applied by the trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_int, fail
from .base import Attack
from .view import AdversaryView


def flip_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``y -> num_classes - 1 - y`` (a new tensor)."""
    return (num_classes - 1) - y


@dataclass(frozen=True, kw_only=True)
class LabelFlip(Attack):
    """Byzantine workers train on flipped labels ``y' = C - 1 - y`` and send the
    resulting honest gradient.

    The trainer calls ``attack.data_hook(x, y, num_classes, generator)`` on
    the Byzantine workers' batches before computing their gradients (``own``);
    ``attack(view)`` then returns ``view.own`` unchanged. Source: the label
    flipping attack used by Allen-Zhu et al. 2021 and Karimireddy et al. 2022.
    Knowledge: none. ``generator`` is accepted for interface uniformity and
    not used (the flip is deterministic).

    Errors: ``ValueError`` when ``view.own`` is ``None`` (the trainer did not
    compute the flipped gradients), for labels outside ``[0, num_classes)``.
    """

    family: ClassVar[str] = "label_flip"

    def data_hook(self, x, y, num_classes, generator=None):
        C = check_int("label_flip", "num_classes", num_classes, low=2)
        if not isinstance(y, torch.Tensor) or y.is_floating_point():
            raise TypeError(f"label_flip: y must be an integer torch.Tensor, got {getattr(y, 'dtype', type(y))}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
            raise fail("label_flip", "y", f"in [0, {C})", (int(y.min()), int(y.max())))
        return x, flip_labels(y, C)

    def craft(self, view: AdversaryView) -> torch.Tensor:
        if view.own is None:
            raise fail("label_flip", "view.own", "the Byzantines' gradients on flipped labels", None)
        return view.own.clone()
