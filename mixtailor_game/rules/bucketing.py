"""Bucketing / resampling (Karimireddy, He and Jaggi 2022, "Byzantine-robust learning
on heterogeneous datasets via bucketing"), as a wrapper around any rule."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_int, fail
from ._wrap import check_base, resolve_base
from .base import Rule, check_gradients, name_field, tuning_field


def _check_generator(where: str, generator) -> torch.Generator:
    """The permutation's generator: the one given, or a fresh one seeded from OS entropy."""
    if generator is None:
        return torch.Generator().manual_seed(secrets.randbits(63))
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{where}: generator must be None or a torch.Generator, got {type(generator).__name__}")
    return generator


def bucket_permutation(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random permutation bucketing uses: ``torch.randperm(n, generator=generator)``."""
    g = _check_generator("bucketing", generator)
    return torch.randperm(n, generator=g, device=g.device)


def bucket_means(G: torch.Tensor, s: int, perm: torch.Tensor) -> torch.Tensor:
    """Means of the buckets ``{perm[k s], ..., perm[k s + s - 1]}``, ``k = 0 .. ceil(n/s) - 1``.

    Returns ``Tensor[ceil(n/s), d]``. The last bucket holds ``n - s floor(n/s)``
    rows when ``s`` does not divide ``n`` and is the mean of those rows.
    A bucket with a NaN / Inf row has a non-finite mean: the base rule treats
    it as one Byzantine point.
    """
    n, d = G.shape
    perm = perm.to(G.device)
    if perm.shape != (n,) or not bool((torch.sort(perm).values == torch.arange(n, device=G.device)).all()):
        raise fail("bucketing", "perm", f"a permutation of range({n})", perm.tolist())
    P = G[perm]
    full = n // s
    parts = []
    if full:
        parts.append(P[: full * s].reshape(full, s, d).mean(dim=1))
    if full * s < n:
        parts.append(P[full * s :].mean(dim=0, keepdim=True))
    return torch.cat(parts, dim=0)


def bucketing(G: torch.Tensor, base, s: int, generator: torch.Generator | None = None,
              perm: torch.Tensor | None = None) -> torch.Tensor:
    """Bucketing, Algorithm 1 of Karimireddy et al. 2022: ``base(bucket_means(G, s, pi))``.

    1. Draw a uniform random permutation ``pi`` of the n rows
       (``torch.randperm(n, generator=generator)``; OS entropy when
       ``generator`` is None), or take ``perm`` as given.
    2. Split the permuted rows into ``ceil(n/s)`` consecutive buckets of ``s``
       rows (the last one smaller when ``s`` does not divide ``n``) and average
       each bucket.
    3. Aggregate the bucket means with the rule ``base`` (a callable).

    Difference from the paper: Algorithm 1 divides every bucket sum by ``s``;
    we divide by the bucket's actual size, so a short last bucket is not
    shrunk toward 0 (same result when ``s`` divides ``n``). ``s = 1`` is the
    base rule on a permutation of the rows; ``s >= n`` is the mean.

    Regime (see :class:`Bucketing`): each Byzantine row spoils at most one
    bucket, so the base rule sees at most ``f`` bad points among ``ceil(n/s)``.

    >>> G = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    >>> bucket_means(G, 2, torch.tensor([4, 0, 1, 3, 2]))  # buckets {4, 0}, {1, 3}, {2}
    tensor([[5.],
            [2.],
            [2.]])
    """
    G = check_gradients(G, "bucketing")
    s = check_int("bucketing", "s", s, low=1)
    if perm is None:
        perm = bucket_permutation(G.shape[0], generator)
    return base(bucket_means(G, s, perm))


@dataclass(frozen=True, eq=False)
class Bucketing(Rule):
    """Config of :func:`bucketing`: ``Bucketing(base="krum", s=2, f=2)``.

    f for the base rule (our choice, documented): ``f' = f``. Each Byzantine
    row lands in one bucket, so at most ``min(f, ceil(n/s))`` bucket means are
    bad, in the worst case over permutations (the paper's bound on the
    Byzantine fraction, ``s * delta``, gives ``f' = ceil(s f ceil(n/s) / n) >= f``
    but a bucket count can never exceed ``f``). The base rule is built (or must
    be configured) with that ``f`` and its regime is checked on the
    ``ceil(n/s)`` bucket means: e.g. comed needs ``ceil(n/s) > 2f``, which is
    the paper's ``s delta < 1/2``; Krum needs ``ceil(n/s) > 2f + 2``.

    ``generator`` (a ``torch.Generator``, not part of the name): its state
    advances by one permutation per call; ``None`` draws each permutation
    from OS entropy (a defense should not be predictable). With a fixed
    generator the rule is permutation invariant in distribution only:
    ``rule(G[pi])`` equals bucketing ``G`` with the permutation ``pi[sigma]``,
    where ``sigma`` is the permutation the generator draws (tested).
    Translation equivariant when the base rule is.
    """

    family: ClassVar[str] = "bucketing"
    base: Any = name_field("comed")
    s: int = name_field(2)
    f: int | None = None
    generator: Any = tuning_field(None, compare=False)

    def __post_init__(self):
        base, f = resolve_base("bucketing", self.base, self.f)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "s", check_int("bucketing", "s", self.s, low=1))
        if self.generator is not None and not isinstance(self.generator, torch.Generator):
            raise TypeError(
                f"bucketing: generator must be None or a torch.Generator, got {type(self.generator).__name__}"
            )

    def buckets(self, n: int) -> int:
        """Number of buckets ``ceil(n / s)``."""
        return math.ceil(n / self.s)

    def check(self, n: int) -> None:
        nb = self.buckets(n)
        check_base("bucketing", self.base, nb, f"ceil(n/s) = {nb} bucket means in the base rule's regime",
                   f"n={n}, f={self.f}, s={self.s}")

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "bucketing")
        self.check(G.shape[0])
        return bucketing(G, self.base, self.s, self.generator)
