"""Progress and resumable runs of the theorem checkers.

The full grids run for hours (``theorem1``: 324 cases of 15-114 s each on one
thread here, ``theorem2``: 486 of ~2 minutes), so the CLI prints a line per
finished case on stderr, rewrites ``--json PATH`` after every case
(``"complete": false`` until the last), ``--resume`` keeps the cases such a file
already holds, and ``--jobs`` runs cases in worker processes. A case's random
draws come from its own generator (``case_generator(seed, case)``), so resumed
and parallel runs compute the cases a serial, uninterrupted run computes.
"""

from __future__ import annotations

import json
import sys
import time

from .._checks import os_error_message


def case_key(case: dict) -> tuple:
    """``(law, n, f, d, p, delta2)`` of a grid case or of its result (theorem 1
    results store ``delta2`` as None, grid cases as 0)."""
    return (case["law"], int(case["n"]), int(case["f"]), int(case["d"]), float(case["p"]),
            float(case.get("delta2") or 0.0))


def resumed_cases(path: str, settings: dict) -> tuple[dict, str]:
    """The results ``path`` holds by :func:`case_key`, and a note for the run, when it
    was written with ``settings``; no file: none. A file of other settings, or no
    checkpoint at all, raises ValueError naming the first setting that differs."""
    try:
        with open(path) as fh:
            payload = json.load(fh)
    except FileNotFoundError:
        return {}, f"--resume: {path} does not exist yet; every case runs"
    except OSError as exc:
        raise ValueError(f"--resume {path}: {os_error_message(exc)}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--resume {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    old = payload.get("settings") if isinstance(payload, dict) else None
    if not isinstance(old, dict):
        raise ValueError(f"--resume {path}: no run settings in it (not written by this checker)")
    for key, value in settings.items():
        if old.get(key) != value:
            raise ValueError(f"--resume {path}: it was written with {key}={old.get(key)!r}, "
                             f"this run has {key}={value!r}")
    done = {}
    for i, c in enumerate(payload.get("cases", [])):
        try:
            # JSON keys are strings: the moment orders back to the ints run_case writes
            c["moment_ratios"] = {int(k): v for k, v in c.get("moment_ratios", {}).items()}
            done[case_key(c)] = c
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ValueError(f"--resume {path}: its case {i} is not a checker result") from None
    return done, f"--resume: {len(done)} finished case(s) kept from {path}"


class Progress:
    """One line per finished case on ``stream``: its verdict, its time and an estimate
    of the time left from the cases run so far (kept cases cost nothing)."""

    def __init__(self, command: str, total: int, stream=None, jobs: int = 1):
        self.command, self.total, self.stream, self.jobs = command, total, stream or sys.stderr, jobs
        self.count, self.ran, self.spent, self.t0 = 0, 0, 0.0, time.perf_counter()

    def case(self, result: dict, seconds: float | None) -> None:
        """``seconds``: the case's run time, None when it was kept from a checkpoint."""
        self.count += 1
        delta = f" D2={result['delta2']:g}" if result.get("delta2") is not None else ""
        head = (f"{self.command} [{self.count}/{self.total}] {result['law']} n={result['n']} f={result['f']} "
                f"d={result['d']} p={result['p']:g}{delta}: {result['status']} (ratio {result['ratio']:.3g})")
        if seconds is None:
            tail = "kept from the checkpoint"
        else:
            self.ran += 1
            self.spent += seconds
            left = (self.total - self.count) * self.spent / self.ran / self.jobs
            tail = (f"{seconds:.1f} s; {(time.perf_counter() - self.t0) / 60:.1f} min elapsed, "
                    f"~{_duration(left)} left")
        print(f"{head}, {tail}", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
