"""Print the claims table of every result file: ``python paper_checks/claims_table.py [DIR]``.

Reads ``DIR/fig*.json`` (default ``paper_checks/results``), written by the
figure scripts, and prints one markdown table: the paper's claim, the
setting, our numbers (tail accuracy: mean of the last three evaluations, mean
over seeds) and the verdict computed by the script. ``paper_checks/README.md``
holds its output for the committed results.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


_STEPS = re.compile(r"\b(\d+) steps\b")


def _strings(value):
    """Every string inside ``value`` (nested dicts and lists included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def run_lengths(data: dict) -> list[int]:
    """The run lengths of a result file: every "<k> steps" in its settings, at any depth (Fig. 3 keeps
    them in ``settings[panel]["config"]``), else the ``steps`` of its runs' configs."""
    steps = {int(m) for s in _strings(data.get("settings", {})) for m in _STEPS.findall(s)}
    if not steps:
        steps = {int(r["config"]["steps"]) for r in data.get("runs", [])
                 if isinstance(r.get("config"), dict) and r["config"].get("steps") is not None}
    return sorted(steps)


def rows(directory: Path) -> list[str]:
    out = ["| figure | claim (paper) | setting | ours | verdict |", "|---|---|---|---|---|"]
    files = sorted(Path(directory).glob("fig*.json"))
    if not files:
        raise SystemExit(f"claims_table: no fig*.json in {str(directory)!r}; run the figure scripts first")
    for path in files:
        data = json.loads(path.read_text())
        seeds = len(data["seeds"])
        # a run with --steps names its length: "paper" then means Table 1's model, not its 50K steps
        steps = run_lengths(data)
        length = f", {'/'.join(str(k) for k in steps)} steps" if steps else ""
        tag = f"{data['experiment']} ({data['scale']}{length}, {seeds} seed{'s' * (seeds > 1)})"
        for c in data["claims"]:
            v = c["verdict"] + (f" ({c['why']})" if c.get("why") else "")
            out.append(f"| {tag} | {c['claim']} | {c['setting']} | {c['measured']} | {v} |")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print("\n".join(rows(Path(argv[0]) if argv else HERE / "results")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
