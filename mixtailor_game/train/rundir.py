"""A training run directory: atomic files, an append-only metrics log, checkpoints.

Layout (DESIGN.md, PINNED_API.md)::

    run/
      config.json        the resolved TrainConfig
      metrics.jsonl      one JSON object per finished step
      checkpoint.pt      model, optimizer (momentum buffers), generator states,
                         state of stateful rules and attacks ("rule_state",
                         "attack_state": path -> state, see rules/state.py),
                         step, byte length of metrics.jsonl at that step, wall time
      summary.json       written once the last step is done
      snapshots/step_XXXXXX.pt   optional: {"step", "honest", "byzantine"}

Every whole-file write goes to a temporary file in the same directory and is
moved into place with ``os.replace`` (atomic on POSIX), so a process killed at
any moment leaves either the old or the new file, never half of one.
``metrics.jsonl`` is appended line by line; the checkpoint records its length,
and a resumed run truncates the log to that length before it redoes the steps
after the checkpoint, so no step is logged twice and a half-written last line
disappears.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import warnings
from pathlib import Path

import torch

from .._atomic import atomic_write_bytes  # also imported from here by the benchmarks

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
SNAPSHOTS = "snapshots"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """This toolkit's version, plus the git commit when the package is a git checkout
    (``0.1.0+g1a2b3c4d5e6f``): a checkpoint records it, so that resuming a run (or
    getting a finished run's summary back) under other code can say so."""
    from mixtailor_game import __version__

    pkg = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(pkg), "rev-parse", "--show-toplevel", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return __version__
    lines = out.stdout.split()
    # the commit only when the repository is this package's own (not a project that
    # happens to hold a site-packages copy)
    if out.returncode != 0 or len(lines) != 2 or (Path(lines[0]) / pkg.name).resolve() != pkg:
        return __version__
    return f"{__version__}+g{lines[1]}"


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_json(path):
    return json.loads(Path(path).read_text())


def read_metrics(path) -> list[dict]:
    """All complete lines of a ``metrics.jsonl`` file (or of a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a half-written last line of a killed run
    return rows


class MetricsLog:
    """Append-only JSON-lines log that knows its byte length (the resume offset)."""

    def __init__(self, path, offset: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+b" if self.path.exists() else "w+b"
        self._fh = open(self.path, mode)
        size = self._fh.seek(0, os.SEEK_END)
        if size < offset:
            # deleted or cut short outside the trainer: truncate() would pad the gap with
            # NUL bytes (no reader could parse the log again); keep the whole lines left
            self._fh.seek(0)
            kept = self._fh.read().rfind(b"\n") + 1
            warnings.warn(f"MetricsLog: {str(self.path)!r} holds {size} bytes, the checkpoint recorded {offset}: "
                          f"rows of finished steps were removed outside the trainer; the log goes on after "
                          f"the {kept} bytes of whole lines left", stacklevel=2)
            offset = kept
        self._fh.truncate(offset)
        self._fh.seek(offset)
        self.offset = offset

    def append(self, row: dict) -> None:
        data = (json.dumps(row, sort_keys=True) + "\n").encode()
        self._fh.write(data)
        self._fh.flush()
        self.offset += len(data)

    def sync(self) -> None:
        """Flush to disk (before a checkpoint records :attr:`offset`)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def snapshot_path(run_dir, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"step_{step:06d}.pt"


def save_snapshot(run_dir, step: int, honest: torch.Tensor, byzantine: torch.Tensor) -> Path:
    """Write ``{"step", "honest": Tensor[n-f, d], "byzantine": Tensor[f, d]}`` (CPU tensors)."""
    path = snapshot_path(run_dir, step)
    atomic_torch_save(
        path,
        {"step": int(step), "honest": honest.detach().cpu().clone(), "byzantine": byzantine.detach().cpu().clone()},
    )
    return path


def load_checkpoint(run_dir):
    """The checkpoint of ``run_dir`` or ``None`` when there is none."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def run_label(run_dir) -> str:
    """A curve label for a run directory: its aggregator (and attack) or the folder name."""
    run_dir = Path(run_dir)
    for name in (SUMMARY, CONFIG):
        path = run_dir / name
        if path.is_file():
            try:
                info = read_json(path)
            except (ValueError, OSError):
                continue
            if "aggregator" in info:
                return str(info["aggregator"])
    return run_dir.name


def plot_runs(run_dirs, path, *, metric: str = "test_accuracy", labels=None, title: str | None = None) -> Path:
    """Draw ``metric`` against the step for every run directory into the PNG ``path``.

    ``metric``: any key of the metrics rows (``test_accuracy``, ``loss``,
    ``cosine``, ``inner``, ``test_loss``); rows without it are skipped. Runs
    without ``metrics.jsonl`` raise ``ValueError`` naming the directory.
    Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("plot: run_dirs must be a non-empty list of run directories, got []")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"plot: labels must have one entry per run ({len(run_dirs)}), got {len(labels)}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for i, run_dir in enumerate(run_dirs):
            if not (run_dir / METRICS).is_file():
                raise ValueError(f"plot: run directory must hold {METRICS}, got {str(run_dir)!r}")
            every = read_metrics(run_dir)
            rows = [r for r in every if r.get(metric) is not None]
            if every and not rows:
                keys = sorted({k for r in every for k, v in r.items() if isinstance(v, (int, float))} - {"step"})
                raise ValueError(f"plot: metric must be one of {keys} (logged in {str(run_dir)!r}), got {metric!r}")
            label = labels[i] if labels is not None else run_label(run_dir)
            ax.plot([r["step"] for r in rows], [r[metric] for r in rows], marker="." if len(rows) < 30 else None,
                    label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(metric.replace("_", " "))
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
