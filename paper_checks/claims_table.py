"""Print the claims table of every result file: ``python paper_checks/claims_table.py [DIR]``.

Reads ``DIR/fig*.json`` (default ``paper_checks/results``), written by the
figure scripts, and prints one markdown table: the paper's claim, the
setting, our numbers (tail accuracy: mean of the last three evaluations, mean
over seeds) and the verdict computed by the script. ``paper_checks/README.md``
holds its output for the committed results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rows(directory: Path) -> list[str]:
    out = ["| figure | claim (paper) | setting | ours | verdict |", "|---|---|---|---|---|"]
    files = sorted(Path(directory).glob("fig*.json"))
    if not files:
        raise SystemExit(f"claims_table: no fig*.json in {str(directory)!r}; run the figure scripts first")
    for path in files:
        data = json.loads(path.read_text())
        seeds = len(data["seeds"])
        # a run with --steps names its length: "paper" then means Table 1's model, not its 50K steps
        steps = sorted({s.split(" steps")[0].rsplit(", ", 1)[-1] for s in data.get("settings", {}).values()
                        if " steps" in s})
        length = f", {'/'.join(steps)} steps" if steps else ""
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
