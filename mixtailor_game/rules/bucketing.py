"""Bucketing / resampling (Karimireddy, He and Jaggi 2022, "Byzantine-robust learning
on heterogeneous datasets via bucketing"), as a wrapper around any rule.

Two modes of :class:`Bucketing`:

``mode="buckets"`` (default)
    Algorithm 1 of the paper: a random permutation, ``ceil(n/s)`` buckets of
    ``s`` rows, the base rule on the bucket means (:func:`bucketing`).
``mode="resample"``
    s-resampling (the paper's earlier version, "... via resampling",
    arXiv:2006.09365 v1-v3; the "resampling" the MixTailor paper applies
    before every rule in its Fig. 3):
    ``n`` output rows, each the mean of ``s`` input rows, drawn so that every
    input row is used exactly ``s`` times in total (:func:`resample`). A
    Byzantine row reaches at most ``s`` outputs, so the base rule is run with
    ``f' = s * f``.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_int, fail
from ._wrap import check_base, resolve_base
from .base import Rule, check_gradients, mean_over, name_field, tuning_field
from .state import seeded_generator


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
    it as one Byzantine point. Finite rows always give a finite mean (where
    their sum overflows, near the dtype's maximum, it is summed from rows / size).
    """
    n, d = G.shape
    perm = perm.to(G.device)
    if perm.shape != (n,) or not bool((torch.sort(perm).values == torch.arange(n, device=G.device)).all()):
        raise fail("bucketing", "perm", f"a permutation of range({n})", perm.tolist())
    P = G[perm]
    full = n // s
    parts = []
    if full:
        parts.append(mean_over(P[: full * s].reshape(full, s, d), 1))
    if full * s < n:
        parts.append(mean_over(P[full * s :], 0).unsqueeze(0))
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


MODES = ("buckets", "resample")


def resample_assignment(n: int, s: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rows each resampled output averages: ``LongTensor[n, s]``, every row ``s`` times.

    Output ``i`` is the mean of the input rows ``assignment[i, 0..s-1]``.
    The ``n * s`` slots hold ``s`` copies of every row index in a uniformly
    random order: ``torch.randperm(n * s, generator=generator) // s``
    reshaped to ``(n, s)``, i.e. the ``s`` picks of every output are drawn
    without replacement from ``s`` copies of each row. So every row is used
    exactly ``s`` times, and an output may average the same row twice.
    ``generator``: a ``torch.Generator`` (its state advances by one
    ``randperm`` per call), or ``None`` for OS entropy.
    """
    n = check_int("bucketing", "n", n, low=1)
    s = check_int("bucketing", "s", s, low=1)
    g = _check_generator("bucketing", generator)
    slots = torch.randperm(n * s, generator=g, device=g.device)
    return torch.div(slots, s, rounding_mode="floor").reshape(n, s)


def _check_assignment(assignment, n: int, s: int, device) -> torch.Tensor:
    """``assignment`` as a LongTensor[n, s] on ``device`` that uses every row of ``range(n)`` exactly s times."""
    want = f"an integer tensor of shape ({n}, {s}) that uses every row index of range({n}) exactly {s} times"
    if not isinstance(assignment, torch.Tensor) or assignment.is_floating_point() or assignment.is_complex():
        raise fail("bucketing", "assignment", want, type(assignment).__name__)
    if tuple(assignment.shape) != (n, s):
        raise fail("bucketing", "assignment", want, tuple(assignment.shape))
    a = assignment.to(device=device, dtype=torch.long)
    if bool(((a < 0) | (a >= n)).any()):
        raise fail("bucketing", "assignment", want, a.tolist() if a.numel() <= 64 else "indices out of range")
    counts = torch.bincount(a.reshape(-1), minlength=n)
    if not bool((counts == s).all()):
        raise fail("bucketing", "assignment", want + " (row counts shown)", counts.tolist())
    return a


def resample_means(G: torch.Tensor, s: int, assignment: torch.Tensor) -> torch.Tensor:
    """``Tensor[n, d]``: row ``i`` is the mean of ``G[assignment[i]]`` (``s`` rows).

    A non-finite input row makes the (at most ``s``) outputs that use it
    non-finite: the base rule treats each as one Byzantine point. Finite rows
    give finite means (summed from rows / s where their sum overflows).

    >>> G = torch.tensor([[0.0], [2.0], [4.0]])
    >>> resample_means(G, 2, torch.tensor([[0, 1], [2, 0], [1, 2]]))
    tensor([[1.],
            [2.],
            [3.]])
    """
    G = check_gradients(G, "bucketing")
    s = check_int("bucketing", "s", s, low=1)
    a = _check_assignment(assignment, G.shape[0], s, G.device)
    return mean_over(G[a], 1)


def resample(G: torch.Tensor, base, s: int, generator: torch.Generator | None = None,
             assignment: torch.Tensor | None = None) -> torch.Tensor:
    """s-resampling: ``base(resample_means(G, s, assignment))`` with n resampled rows.

    Karimireddy, He and Jaggi, "Byzantine-robust learning on heterogeneous
    datasets via resampling" (arXiv:2006.09365 v1-v3; published as "... via
    bucketing", ICLR 2022), their s-resampling: ``n`` outputs, each the
    average of ``s`` inputs, every input used ``s`` times; then any robust
    rule on the outputs. The assignment is :func:`resample_assignment`
    (drawn with ``generator``) unless given. ``base`` must be configured for
    ``s * f`` Byzantine rows (see :class:`Bucketing`); ``s = 1`` is the base
    rule on a permutation of the rows.
    """
    G = check_gradients(G, "bucketing")
    s = check_int("bucketing", "s", s, low=1)
    if assignment is None:
        assignment = resample_assignment(G.shape[0], s, generator)
    return base(resample_means(G, s, assignment))


@dataclass(frozen=True, eq=False)
class Bucketing(Rule):
    """Config of :func:`bucketing` / :func:`resample`: ``Bucketing(base="krum", s=2, f=2)``.

    ``mode="buckets"`` (default): Algorithm 1 of Karimireddy et al. 2022, the
    base rule on ``ceil(n/s)`` bucket means. f for the base rule (our choice,
    documented): ``f' = f``. Each Byzantine row lands in one bucket, so at
    most ``min(f, ceil(n/s))`` bucket means are bad, in the worst case over
    permutations (the paper's bound on the Byzantine fraction, ``s * delta``,
    gives ``f' = ceil(s f ceil(n/s) / n) >= f`` but a bucket count can never
    exceed ``f``). The base rule is built (or must be configured) with that
    ``f`` and its regime is checked on the ``ceil(n/s)`` bucket means: e.g.
    comed needs ``ceil(n/s) > 2f``, which is the paper's ``s delta < 1/2``;
    Krum needs ``ceil(n/s) > 2f + 2``.

    ``mode="resample"``: s-resampling (Karimireddy, He and Jaggi,
    arXiv:2006.09365 v1-v3, "... via resampling"), the resampling the
    MixTailor paper applies before every rule in its Fig. 3: ``n`` output
    rows, each the mean of ``s`` input rows, every input row used exactly
    ``s`` times (:func:`resample_assignment`). A Byzantine row can
    contaminate up to ``s`` outputs, so the Byzantine fraction grows from
    ``delta = f/n`` to at most ``s * delta`` (the same factor ``s`` as the
    paper's ``delta <= delta_max / s`` condition); we pin the base rule's f
    to ``f' = s * f`` (worst case over draws, not capped). ``f`` is the
    number of Byzantine *input* rows: a base given by name or dict is built
    with ``s * f``; a base rule object must have ``base.f == s * f``; with
    ``f=None`` the wrapper tolerates ``f = floor(base.f / s)``. The base
    rule's regime is checked on ``n`` rows with ``f' = s f``: at n = 12,
    f = 2, s = 2 (f' = 4) Krum (n > 2f' + 2 = 10), comed and geomed
    (n > 2f' = 8) are in their regime, Bulyan (n >= 4f' + 3 = 19) is not.

    ``generator`` (a ``torch.Generator``, an ``int`` seed for a new one, or
    ``None``; not part of the name): its state advances by one permutation
    per call; ``None`` draws each permutation from OS entropy (a defense
    should not be predictable). With a fixed generator the rule is
    permutation invariant in distribution only: ``rule(G[pi])`` equals the
    rule on ``G`` with the permuted draw (``pi[sigma]`` for buckets; slot
    ``k`` of the assignment moved to the row ``pi[k // s]`` for resampling),
    which has the same distribution (tested). Translation equivariant when
    the base rule is. The name shows ``mode`` only when it is ``resample``
    (``bucketing[base=krum[p=2],s=2,mode=resample]``).
    """

    family: ClassVar[str] = "bucketing"
    base: Any = name_field("comed")
    s: int = name_field(2)
    f: int | None = None
    generator: Any = tuning_field(None, compare=False)
    mode: str = name_field("buckets")

    def __post_init__(self):
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise fail("bucketing", "mode", "'buckets' or 'resample'", self.mode)
        s = check_int("bucketing", "s", self.s, low=1)
        object.__setattr__(self, "s", s)
        if self.mode == "buckets":
            base, f = resolve_base("bucketing", self.base, self.f)
        else:
            base, f = self._resolve_resample_base(s)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "f", f)
        gen = seeded_generator("bucketing", "generator", self.generator)
        object.__setattr__(self, "generator", gen)
        if gen is not None and not isinstance(gen, torch.Generator):
            raise TypeError(
                f"bucketing: generator must be None or a torch.Generator, got {type(gen).__name__} "
                "(an int seeds a new torch.Generator)"
            )

    def _resolve_resample_base(self, s: int):
        """``(base_rule, f)`` in resample mode: the base is configured for ``s * f`` Byzantine rows."""
        if self.f is None:
            base, base_f = resolve_base("bucketing", self.base, None)
            return base, base_f // s
        f = check_int("bucketing", "f", self.f, low=0)
        if isinstance(self.base, (str, dict)):
            base, _ = resolve_base("bucketing", self.base, s * f)
            return base, f
        base, base_f = resolve_base("bucketing", self.base, None)
        if base_f != s * f:
            raise fail("bucketing", "base rule's f", f"s * f = {s * f} in mode='resample' (a Byzantine row "
                       f"reaches up to s = {s} outputs)", base_f)
        return base, f

    @property
    def base_f(self) -> int:
        """The Byzantine rows the base rule is configured for: ``f`` (buckets) or ``s * f`` (resample)."""
        return int(getattr(self.base, "f", self.f if self.mode == "buckets" else self.s * self.f))

    @property
    def name(self) -> str:
        text = f"bucketing[base={self.base.name if isinstance(self.base, Rule) else self.base},s={self.s}"
        return text + (",mode=resample]" if self.mode == "resample" else "]")

    def buckets(self, n: int) -> int:
        """Number of rows the base rule sees: ``ceil(n / s)`` bucket means, or ``n`` when resampling."""
        return n if self.mode == "resample" else math.ceil(n / self.s)

    def check(self, n: int) -> None:
        if self.mode == "resample":
            if self.s > n:
                raise ValueError(f"bucketing: needs s <= n in mode='resample', got n={n}, s={self.s}")
            check_base("bucketing", self.base, n,
                       f"the n = {n} resampled rows in the base rule's regime with f' = s*f = {self.base_f}",
                       f"n={n}, f={self.f}, s={self.s}")
            return
        nb = self.buckets(n)
        check_base("bucketing", self.base, nb, f"ceil(n/s) = {nb} bucket means in the base rule's regime",
                   f"n={n}, f={self.f}, s={self.s}")

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        G = check_gradients(G, "bucketing")
        self.check(G.shape[0])
        if self.mode == "resample":
            return resample(G, self.base, self.s, self.generator)
        return bucketing(G, self.base, self.s, self.generator)
