"""Inner-product manipulation (IPM) / the paper's tailored attack, and its random-eps variant."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from .._checks import check_real, fail
from ..rules.base import mean_rows
from .base import Attack, repeat_row, saturate
from .view import AdversaryView


def ipm(visible: torch.Tensor, f: int, eps: float) -> torch.Tensor:
    """``f`` copies of ``-eps * mu``, ``mu`` the mean of the rows of ``visible``.

    The inner product of each row with ``mu`` is ``-eps * ||mu||^2``. Past the dtype's
    range the rows saturate at its largest finite value (:func:`~.base.saturate`).
    """
    return repeat_row(saturate(-eps * mean_rows(visible)), f)


@dataclass(frozen=True, kw_only=True)
class IPM(Attack):
    """Tailored attack of the paper (Section 5) = IPM of Xie et al. 2020.

    Every Byzantine worker sends ``B_i = -eps * mu`` with ``mu`` the mean of the
    honest rows it sees (``view.own`` when it sees none), so
    ``<B_i, mu> = -eps * ||mu||^2``. The paper uses ``eps = 0.1`` (defeats Krum)
    and ``eps = 10`` (defeats comed). In model space (paper A.1.3-A.1.4) the
    Byzantines send ``w_0 - eps * s``, ``s = mean(w_i) - w_0``.

    Knowledge: the visible honest rows (full, partial or own). Source: Xie,
    Koyejo, Gupta, "Fall of empires", UAI 2020; Fang et al. 2020. Differences
    from published code: none in the formula; under partial knowledge the mean
    is over the visible honest rows only, as under full knowledge (paper A.1.2's
    ``g_bar``, for its tailored attack, also averages the Byzantines' own rows:
    ``solvers`` and the adaptive attack use that one).

    Parameters: ``eps`` finite, ``>= 0``. Errors: ``ValueError`` for a
    non-finite or negative ``eps``.

    >>> from mixtailor_game.attacks import make_view
    >>> v = make_view(torch.ones(3, 2), n=5, f=2)
    >>> IPM(eps=0.5)(v)
    tensor([[-0.5000, -0.5000],
            [-0.5000, -0.5000]])
    """

    family: ClassVar[str] = "ipm"
    eps: float = 0.1

    def validate(self):
        object.__setattr__(self, "eps", check_real("ipm", "eps", self.eps, low=0.0))

    def craft(self, view: AdversaryView) -> torch.Tensor:
        return ipm(view.visible("ipm"), view.f, self.eps)


def draw_eps(eps_set: tuple, probs: tuple, gen: torch.Generator) -> float:
    """One ``eps`` from ``eps_set`` with probabilities ``probs`` (inverse-CDF draw).

    ``u`` stays float64: rounded to the rows' dtype (bfloat16 keeps 8 bits) it
    reached 1.0 and the last eps came out about twice as often as ``probs`` says."""
    u = float(torch.rand((), generator=gen, device=gen.device, dtype=torch.float64))
    acc = 0.0
    for eps, p in zip(eps_set, probs):
        acc += p
        if u < acc:
            return eps
    return eps_set[max(i for i, p in enumerate(probs) if p > 0)]


@dataclass(frozen=True, kw_only=True)
class RandomEps(Attack):
    """IPM with ``eps`` drawn afresh at every step from a set (paper Fig. 4a).

    ``B_i = -eps_t * mu`` with ``eps_t ~ eps_set`` (probabilities ``probs``,
    uniform by default), drawn with ``view.rng`` (``view.generator()``: a
    deterministic per-step generator when ``view.rng`` is ``None``). The paper
    draws between a small eps (against Krum) and a large one (against comed).

    Knowledge: the visible honest rows. Parameters: ``eps_set`` a non-empty
    tuple of finite ``eps >= 0``; ``probs`` ``None`` or non-negative numbers
    summing to 1 (one per eps). Errors: ``ValueError``.
    """

    family: ClassVar[str] = "random_eps"
    eps_set: tuple = (0.1, 10.0)
    probs: tuple | None = None

    def validate(self):
        w = "random_eps"
        if isinstance(self.eps_set, (str, bytes)) or not hasattr(self.eps_set, "__iter__"):
            raise fail(w, "eps_set", "a non-empty sequence of numbers", self.eps_set)
        eps_set = tuple(check_real(w, "eps_set entry", e, low=0.0) for e in self.eps_set)
        if not eps_set:
            raise fail(w, "eps_set", "a non-empty sequence of numbers", self.eps_set)
        object.__setattr__(self, "eps_set", eps_set)
        if self.probs is None:
            probs = tuple([1.0 / len(eps_set)] * len(eps_set))
        else:
            if isinstance(self.probs, (str, bytes)) or not hasattr(self.probs, "__iter__"):
                raise fail(w, "probs", "None or a sequence of numbers (one per eps)", self.probs)
            probs = tuple(check_real(w, "probs entry", p, low=0.0) for p in self.probs)
            if len(probs) != len(eps_set):
                raise fail(w, "probs", f"{len(eps_set)} numbers (one per eps)", self.probs)
            if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise fail(w, "probs", "summing to 1", self.probs)
        object.__setattr__(self, "probs", probs)

    def draw(self, view: AdversaryView) -> float:
        """The ``eps`` this attack uses at ``view`` (same generator state -> same eps)."""
        return draw_eps(self.eps_set, self.probs, view.generator())

    def craft(self, view: AdversaryView) -> torch.Tensor:
        visible = view.visible("random_eps")
        return ipm(visible, view.f, self.draw(view))
