"""What every stored benchmark result records about its run: the code's ``git describe``
and the machine's load (results are ratios, but a loaded run says so)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_describe() -> str | None:
    """``git describe --always --dirty`` of the repository, or ``None`` outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def load_average() -> list | None:
    """The 1 / 5 / 15-minute load average, or ``None`` where the OS has none."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
