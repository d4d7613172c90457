"""Verdicts, the printed table and the JSON file of the checkers."""

from __future__ import annotations

import json

from .._atomic import atomic_write_text

HOLDS, VIOLATED, INCONCLUSIVE, NO_CLAIM = "holds", "VIOLATED", "inconclusive", "no-claim"


def upper_bound_verdict(lo: float, hi: float, bound: float) -> str:
    """For a claim ``theta <= bound``: VIOLATED when the whole CI is above the bound,
    holds when the whole CI is at or below it, inconclusive otherwise."""
    if lo > bound:
        return VIOLATED
    if hi <= bound:
        return HOLDS
    return INCONCLUSIVE


def positivity_verdict(lo: float, hi: float) -> str:
    """For a claim ``theta > 0``: VIOLATED when the whole CI is below 0, holds when above."""
    if hi < 0:
        return VIOLATED
    if lo > 0:
        return HOLDS
    return INCONCLUSIVE


def exit_code(statuses) -> int:
    """0 when every case holds (or makes no claim), 1 with a violation, 2 when only
    inconclusive, and 2 too when no case makes a claim at all (nothing was tested: a
    Proposition 1 sweep that never passes its threshold exited 0), including when
    there is no case (a Proposition 1 run where no scenario had both a compromised
    and a resilient rule exited 0 while printing "nothing was tested (exit 2)")."""
    statuses = list(statuses)
    if VIOLATED in statuses:
        return 1
    if INCONCLUSIVE in statuses:
        return 2
    if all(s == NO_CLAIM for s in statuses):  # also the empty run: nothing tested
        return 2
    return 0


def fmt(x, width: int = 9) -> str:
    if isinstance(x, str):
        return x
    if x is None:
        return "-"
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.2e}"
    return f"{x:.4g}"


def table(header: list, rows: list) -> str:
    """Plain fixed-width text table."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def write_json(path: str, payload: dict) -> None:
    """Write atomically (:func:`~mixtailor_game._atomic.atomic_write_text`) so a killed
    run leaves no half file."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=float))
