"""Optional ``torch.compile`` of hot elementwise kernels, with a safe fallback.

A rule's kernel that makes many passes over ``(n, d)`` rows in eager mode (one
per torch op) runs as one or two fused loops when compiled by inductor. Users:
the l_p geometric median's IRLS step (two kernels, p > 2, ``geomed.py``), l_p
distances and pairwise power sums (``_distances.py``), Bulyan's float32
nearest-row screen (``_distances.nearest_row``) and the comed / trimmed-mean
sorting network (``_network.py``). At n = 12, d = 184,586 on two CPU threads
the IRLS step takes 1.9 ms compiled against 20-30 ms eager, comed 1.3 ms
against 6.9 ms. Compiling costs seconds (about 20 s the first time on a
machine, then ~4 s per new specialization, ~0.3 s when inductor's on-disk
cache has it), so it only pays for large inputs.

``MIXTAILOR_COMPILE`` picks when the compiled kernel is used:
``auto`` (default): on CPU when ``n * d >= 2**19`` (e.g. 3 rows of the paper CNN's d = 184,586); ``0`` / ``off``: never;
``1`` / ``always``: for every input on any device (tests). If compiling or
running the compiled kernel fails once (no C++ compiler, an unsupported
platform), the eager kernel is used from then on and a warning says why.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch

MIN_ELEMENTS = 2**19
RECOMPILE_LIMIT = 128
_MODES = {"auto": "auto", "": "auto", "0": "off", "off": "off", "1": "always", "always": "always"}


def compile_mode() -> str:
    """``auto`` | ``off`` | ``always`` from ``MIXTAILOR_COMPILE`` (read at every call, so tests can set it)."""
    raw = os.environ.get("MIXTAILOR_COMPILE", "auto").strip().lower()
    if raw not in _MODES:
        raise ValueError(f"MIXTAILOR_COMPILE must be one of auto, 0, off, 1, always, got {raw!r}")
    return _MODES[raw]


class CompiledKernel:
    """``kernel(*args)``: the compiled version of ``fn`` where :func:`wanted` says so, else ``fn``.

    ``fn`` must be a pure function of tensors and Python scalars; scalars are
    compiled as constants (one specialization per value, e.g. per norm p),
    shapes as symbols (no recompilation when n or d changes).
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self._compiled = None
        self.failed: str | None = None

    def wanted(self, X: torch.Tensor) -> bool:
        mode = compile_mode()
        if mode == "off" or self.failed is not None:
            return False
        if mode == "always":
            return True
        return X.device.type == "cpu" and X.numel() >= MIN_ELEMENTS

    def __call__(self, X: torch.Tensor, *args, wanted: bool | None = None):
        """``wanted``: the caller's decision for the whole input when it calls per column
        chunk (decided on the full rows): a last chunk below ``MIN_ELEMENTS`` would
        otherwise run ``fn`` eagerly, whose float64 temporaries the compiled loop never
        holds (Krum p = 3 at d = 10^5: 12x size(G) extra memory from a 34,464-column
        chunk; 0.6x at d = 10^6)."""
        tracked = torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in (X, *args))
        use = self.wanted(X) if wanted is None else (wanted and self.failed is None)
        if tracked or not use:  # autograd through a rule (solvers' fallback): eager
            return self.fn(X, *args)
        try:
            if self._compiled is None:
                # One specialization per scalar value (the paper pool has 15 norms
                # p > 2, in two dtypes): above dynamo's default limit of 8, which
                # would fall back to eager mode silently. Raised once for the
                # process (never lowered): patching it around every call cost
                # 70 us, a third of dynamo's own per-call overhead.
                limit = torch._dynamo.config.recompile_limit
                torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)
                self._compiled = torch.compile(self.fn, dynamic=True)
            # Plain aliases instead of views (``detach`` is free: same storage): dynamo
            # guards on whether an input is a view, so a row block cut from a batch
            # (the line search's ``Gb[0]``) would compile every norm p a second time.
            return self._compiled(*(a.detach() if isinstance(a, torch.Tensor) else a for a in (X, *args)))
        except Exception as exc:  # any compiler failure: eager from now on, never a crash
            self.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"torch.compile of {self.fn.__name__} failed ({self.failed}); using eager mode",
                          RuntimeWarning, stacklevel=2)
            return self.fn(X, *args)
