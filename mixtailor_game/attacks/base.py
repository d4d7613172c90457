"""The base of every attack: a frozen config object called on an :class:`AdversaryView`.

``attack(view) -> Tensor[f, d]``: the rows the ``f`` Byzantine workers send.
Subclasses implement ``craft(view)`` in gradient space. ``space="model"``
(paper A.1.3-A.1.5) runs the same attack on pseudo-gradients
``u_i = w_0 - w_i`` (``w_0 = view.model``) and sends ``w_0 - B``: with
``s = w_hat - w_0`` the direction the global model would move, a gradient
attack ``B = -lam * mean(u)`` becomes the paper's ``w_0 - lam * s``. Rules
that commute with ``x -> w_0 - x`` (mean, comed, trimmed mean, Krum, geomed,
Bulyan) see exactly the gradient-space attack.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import fail
from ..rules.base import power_of_two_below
from .view import AdversaryView

SPACES = ("gradient", "model")


def check_choice(where: str, param: str, value, choices) -> str:
    if value not in choices:
        raise fail(where, param, f"one of {tuple(choices)}", value)
    return value


def repeat_row(row: torch.Tensor, f: int) -> torch.Tensor:
    """``Tensor[f, d]`` with ``f`` copies of ``row`` (a new tensor, not a view)."""
    return row.unsqueeze(0).expand(f, -1).clone()


def pow2_scale(X: torch.Tensor) -> float:
    """A power of two ``s <= max |X|`` (1 when ``X`` is all zeros or empty): ``X / s`` has
    entries of magnitude below 2, and dividing or multiplying by ``s`` is exact."""
    if X.numel() == 0:
        return 1.0
    lo, hi = torch.aminmax(X)  # no |X| copy of the rows
    top = max(-float(lo), float(hi))
    if top == 0.0 or not math.isfinite(top):
        return 1.0
    return power_of_two_below(top)


def scaled64(V: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(V / s)`` in float64 and ``s`` (:func:`pow2_scale`): statistics of ``V / s`` cannot
    overflow, and multiplying them by ``s`` gives those of ``V``."""
    X = V.double()
    s = pow2_scale(X)
    return X / s, s


def saturate(B: torch.Tensor) -> torch.Tensor:
    """``B`` with ``+-inf`` replaced by the dtype's largest finite value (NaN stays).

    A crafted value past the dtype's range (``-eps * mu`` with ``eps = 10`` on float16
    rows, ``b * max_j``) overflowed to ``inf``, and the rules drop a non-finite row:
    the attack vanished instead of pushing as far as the dtype allows (as
    :func:`~mixtailor_game.attacks.fang_krum.fang_krum` already caps lambda)."""
    big = torch.finfo(B.dtype).max
    return B.clamp(-big, big)


def uniform(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) samples drawn on the generator's device, moved to ``like``'s device/dtype."""
    return torch.rand(shape, generator=gen, device=gen.device, dtype=torch.float64).to(like.device, like.dtype)


def normal(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) samples drawn on the generator's device, moved to ``like``'s device/dtype."""
    return torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float64).to(like.device, like.dtype)


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Interface of an attack config (subclasses are frozen, keyword-only dataclasses).

    ``space``: ``"gradient"`` (default) or ``"model"`` (needs ``view.model``).
    ``data_hook``: ``None``, or for data-level attacks a callable
    ``(x, y, num_classes, generator) -> (x, y)`` the trainer applies to the
    Byzantine workers' batches.
    """

    family: ClassVar[str] = "attack"
    data_hook: ClassVar = None
    space: str = "gradient"

    def __post_init__(self):
        check_choice(self.family, "space", self.space, SPACES)
        self.validate()

    def validate(self) -> None:
        """Check the hyperparameters (subclasses raise ``ValueError`` / ``TypeError``)."""

    def craft(self, view: AdversaryView) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def name(self) -> str:
        parts = []
        for fld in dataclasses.fields(self):
            value = getattr(self, fld.name)
            if fld.name == "space" and value == "gradient":
                continue
            parts.append(f"{fld.name}={value:g}" if isinstance(value, float) else f"{fld.name}={value}")
        return f"{self.family}[{','.join(parts)}]" if parts else self.family

    def __call__(self, view: AdversaryView) -> torch.Tensor:
        if not isinstance(view, AdversaryView):
            raise TypeError(f"{self.family}: view must be an AdversaryView, got {type(view).__name__}")
        if self.space == "model":
            if view.model is None:
                raise fail(self.family, "view.model", "the previous global model w_0 when space='model'", None)
            w0 = view.model.to(device=view.honest.device, dtype=view.honest.dtype)  # a CPU w_0 with CUDA rows
            gview = view.replace(
                honest=w0 - view.honest,
                own=None if view.own is None else w0 - view.own,
                model=None,
            )
            B = w0 - self.craft(gview)
        else:
            B = self.craft(view)
        if tuple(B.shape) != (view.f, view.d):  # an internal invariant: attacks must honour it
            raise RuntimeError(f"{self.family}: returned shape {tuple(B.shape)}, expected {(view.f, view.d)}")
        return B
