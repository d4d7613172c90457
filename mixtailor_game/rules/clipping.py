"""Centered clipping (Karimireddy, He and Jaggi 2021, "Learning from history for
Byzantine robust optimization"), as a stateful wrapper around any rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .._checks import check_int, check_real, check_regime, fail
from ._distances import lp_norm_rows
from ._wrap import check_base, resolve_base
from .base import Rule, check_batch, check_gradients, finite_rows, name_field


def _check_tau(where: str, tau) -> float:
    return check_real(where, "tau", tau, low=0.0, low_open=True)


def clip_rows(D: torch.Tensor, tau: float) -> torch.Tensor:
    """``clip_tau(D_i) = D_i * min(1, tau / ||D_i||_2)`` for each row of ``D``.

    A row with a non-finite entry (NaN / +-Inf: its direction is undefined) is
    clipped to the zero vector, i.e. it counts as if it sat on the center. The
    l_2 norm is overflow-safe, so a finite 1e30 row is clipped to length tau.
    """
    return _clip_rows(D, tau)[0]


def _clip_rows(D: torch.Tensor, tau: float):
    """:func:`clip_rows` and the mask ``(n, 1)`` of the rows of ``D`` that are finite."""
    ok = torch.isfinite(D).all(dim=-1, keepdim=True)
    # half precision: a norm past 65504 is inf there and would zero the row instead of
    # clipping it, so norms and scales are taken in float32
    wide = D.float() if D.dtype in (torch.float16, torch.bfloat16) else D
    norm = lp_norm_rows(wide, 2.0).unsqueeze(-1)
    scale = torch.where(norm > tau, tau / norm, torch.ones_like(norm))
    return torch.where(ok, wide * scale, torch.zeros_like(wide)).to(D.dtype), ok


def clip_differences(G: torch.Tensor, v: torch.Tensor, tau: float, ok: torch.Tensor | None = None) -> torch.Tensor:
    """``clip_tau(G_i - v)`` for each row (:func:`clip_rows`). A finite row whose
    difference to ``v`` overflows the dtype (a row near +65504 in float16 and a
    center below 0; 3e38 and -1e38 in float32) is far, so it is clipped to length
    ``tau``: from the halved difference, ``clip_{tau/2}(G_i/2 - v/2) * 2`` (exact
    halving; that row was zeroed like a NaN row). ``ok``: :func:`finite_rows` of ``G``."""
    C, fine = _clip_rows(G - v, tau)
    over = ~fine.squeeze(-1)
    if bool(over.any()):
        over &= finite_rows(G) if ok is None else ok
        if bool(over.any()):
            C[over] = clip_rows(G[over] / 2 - v / 2, tau / 2) * 2
    return C


def centered_clip(G: torch.Tensor, center: torch.Tensor, tau: float, iters: int = 1) -> torch.Tensor:
    """Centered clipping, eq. (CC) of Karimireddy et al. 2021, from an explicit center.

    ``v_0 = center``; ``v_{l+1} = v_l + (1/n) sum_i clip_tau(G_i - v_l)`` for
    ``l = 0 .. iters - 1``, with ``clip_tau(z) = z min(1, tau / ||z||_2)``;
    returns ``v_iters``. Each iteration moves ``v`` by at most ``tau`` in l_2, so
    ``||output - center||_2 <= iters * tau`` whatever the rows are.

    Rows with a non-finite entry contribute the zero vector (they neither move
    nor poison ``v``); ``n`` in ``1/n`` still counts them, as in the paper. A
    finite row whose difference ``G_i - v`` overflows the dtype is clipped to
    length ``tau`` like any far row (:func:`clip_differences`).

    Parameters: ``G`` (n, d) floating; ``center`` a finite ``Tensor[d]``
    (cast to ``G``'s dtype and device); ``tau > 0``; ``iters >= 1`` (the paper
    shows ``iters = 1`` suffices when the center is the previous momentum).

    >>> G = torch.tensor([[0.0, 0.0], [2.0, 0.0], [100.0, 0.0]])
    >>> centered_clip(G, torch.zeros(2), tau=1.0)
    tensor([0.6667, 0.0000])
    """
    G = check_gradients(G, "centered_clipping")
    tau = _check_tau("centered_clipping", tau)
    iters = check_int("centered_clipping", "iters", iters, low=1)
    if not isinstance(center, torch.Tensor) or center.shape != G.shape[1:]:
        shape = tuple(center.shape) if isinstance(center, torch.Tensor) else type(center).__name__
        raise fail("centered_clipping", "center", f"a Tensor of shape ({G.shape[1]},)", shape)
    v = center.to(dtype=G.dtype, device=G.device)
    if not bool(torch.isfinite(v).all()):
        raise fail("centered_clipping", "center", "finite", "a tensor with non-finite entries")
    n = G.shape[0]
    ok = finite_rows(G)
    for _ in range(iters):
        step = clip_differences(G, v, tau, ok).sum(dim=0) / n
        if not bool(torch.isfinite(step).all()):  # n rows of length tau ~ the dtype's maximum
            step = (clip_differences(G, v, tau, ok) / n).sum(dim=0)
        v = v + step
    return v


def initial_center(base, G: torch.Tensor) -> torch.Tensor:
    """The center with none stored: ``base(G)``, its non-finite coordinates (a
    non-robust base on Byzantine input) at 0, the reference code's initial momentum."""
    v0 = base(G)
    return torch.where(torch.isfinite(v0), v0, torch.zeros_like(v0))


@dataclass(frozen=True, eq=False)
class CenteredClipping(Rule):
    """Stateful centered clipping around a base rule: ``CenteredClipping(base="comed", tau=1.0)``.

    State: ``center_`` (``None`` until the first call) holds the previous
    aggregate, the "momentum" center of Karimireddy et al. 2021. Each call
    aggregates from ``center_`` with :func:`centered_clip` and stores the
    output as the next ``center_``; ``reset()`` forgets it; ``state_dict()`` /
    ``load_state_dict(d)`` save and restore it (checkpoints, :mod:`.state`). With no stored
    center, the center is the base rule's output ``base(G)`` (so the wrapper
    works around any rule); non-finite coordinates of that output (a
    non-robust base on Byzantine input) start at 0, the reference code's
    initial momentum. (Karimireddy et al.'s code and Blades start the first
    call at the zero vector instead, with no base rule; pass
    ``apply(G, torch.zeros(d))`` or ``load_state_dict({"center": zeros})`` for
    theirs.) ``apply(G, center)`` and ``batched`` are pure: they read
    but never update ``center_``.

    Invariances: a fresh object (or right after ``reset()``) is translation
    equivariant and permutation invariant when its base is; once it holds a
    center it is permutation invariant but not translation equivariant (the
    stored center does not move with ``G``).

    Parameters: ``base`` a rule, a rule name or a dict (``{"name": "krum",
    "p": 3}``), built with this ``f``; ``tau > 0`` the clipping radius (scale
    it to the honest rows' spread); ``iters >= 1`` (L in the paper); ``f``
    Byzantine rows, regime ``n > 2f`` plus the base rule's regime.
    """

    family: ClassVar[str] = "centered_clipping"
    base: Any = name_field("comed")
    tau: float = name_field(1.0)
    iters: int = name_field(1)
    f: int | None = None
    center_: Any = field(default=None, init=False, repr=False, compare=False, metadata={"in_name": False})

    def __post_init__(self):
        base, f = resolve_base("centered_clipping", self.base, self.f)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "tau", _check_tau("centered_clipping", self.tau))
        object.__setattr__(self, "iters", check_int("centered_clipping", "iters", self.iters, low=1))

    def check(self, n: int) -> None:
        check_regime("centered_clipping", n > 2 * self.f, "n > 2f", n, self.f)
        check_base("centered_clipping", self.base, n, "the base rule's regime",
                   f"n={n}, f={self.f}, base={getattr(self.base, 'name', self.base)}")

    def reset(self) -> None:
        """Forget the stored center: the next call starts from ``base(G)``."""
        object.__setattr__(self, "center_", None)

    def state_dict(self) -> dict:
        """``{"center": Tensor[d] | None}``: the stored center (a CPU copy), for checkpoints."""
        return {"center": None if self.center_ is None else self.center_.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (``center=None``: as after :meth:`reset`)."""
        center = state["center"]
        if center is not None:
            if not isinstance(center, torch.Tensor) or center.dim() != 1 or not center.is_floating_point():
                shape = tuple(center.shape) if isinstance(center, torch.Tensor) else type(center).__name__
                raise fail("centered_clipping", "state center", "None or a floating Tensor[d]", shape)
            center = center.detach().clone()
        object.__setattr__(self, "center_", center)

    def _start(self, G: torch.Tensor) -> torch.Tensor:
        if self.center_ is not None:
            if self.center_.shape != G.shape[1:]:
                raise fail("centered_clipping", "G", f"of width {self.center_.shape[0]} like the stored "
                           "center (call reset() first)", tuple(G.shape))
            return self.center_.to(dtype=G.dtype, device=G.device)
        return initial_center(self.base, G)

    def apply(self, G: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """Aggregate ``G`` from ``center`` (default: the stored one) without updating the state."""
        G = check_gradients(G, "centered_clipping")
        self.check(G.shape[0])
        v0 = self._start(G) if center is None else center
        return centered_clip(G, v0, self.tau, self.iters)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        out = self.apply(G)
        object.__setattr__(self, "center_", out.detach().clone())
        return out

    def batched(self, Gb: torch.Tensor) -> torch.Tensor:
        """Each batch element from the current center (pure: the state is not updated)."""
        check_batch(Gb, "centered_clipping")
        return torch.stack([self.apply(G) for G in Gb.unbind(0)])

