"""Fig. 5 of the MixTailor paper (Appendix A.8): pool ablation, one family removed each time.

Setting: n = 12, f = 2, iid, IPM eps = 0.1 and eps = 10; MixTailor with the full
64-rule pool and with each family of 16 rules (Krum, comed, geomed, Bulyan)
removed in turn (``pool="families:..."``), plus the omniscient reference.

Claims checked (A.8): removing Bulyan increases accuracy by ~2% under both
attacks; removing geomed reduces accuracy; footnote 5: a smaller pool
performs roughly the same (every ablated pool within 2% of the full pool).

Usage::

    python paper_checks/fig5_ablation.py --scale small
    python paper_checks/fig5_ablation.py --scale paper --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "fig5_ablation"
FAMILIES = ("krum", "comed", "geomed", "bulyan")


def add_arguments(p):
    p.add_argument("--eps", type=float, nargs="+", default=[0.1, 10.0], help="attack scales (default 0.1 10)")


def parse_args(argv=None):
    return C.parse_args(__doc__, argv, add=add_arguments)


def build_runs(args):
    dataset, data_dir = C.mnist_source(args)
    base = C.base_config(args, dataset=dataset, data_dir=data_dir, attack="ipm")
    runs = []
    for eps in args.eps:
        panel = f"{dataset} eps={eps:g}"
        b = {**base, "attack_params": {"eps": float(eps)}}
        runs.append(C.Run(panel, "omniscient", {**b, "aggregator": "omniscient"}))
        runs.append(C.Run(panel, "mixtailor (64 rules)", {**b, "aggregator": "mixtailor"}))
        for fam in FAMILIES:
            keep = ",".join(x for x in FAMILIES if x != fam)
            runs.append(C.Run(panel, f"w/o {fam}", {**b, "aggregator": "mixtailor", "pool": f"families:{keep}"}))
    return runs, {dataset: C.describe(base)}


def make_claims(tab, args):
    claims = []
    panels = {eps: p for eps, p in zip(args.eps, tab)}
    rows = []
    for eps, p in panels.items():
        full = C.acc(tab, p, "mixtailor (64 rules)")
        rows.append((eps, full, {fam: C.acc(tab, p, f"w/o {fam}") for fam in FAMILIES}))
    deltas = {eps: {fam: (v - full) if None not in (v, full) else None for fam, v in abl.items()}
              for eps, full, abl in rows}

    def fmt(fam):
        return "; ".join(f"eps {e:g}: {'n/a' if d[fam] is None else f'{100 * d[fam]:+.1f} pts'}"
                         for e, d in deltas.items())

    b = [d["bulyan"] for d in deltas.values()]
    ok = None if None in b else all(1.0 <= 100 * x <= 4.0 for x in b)
    claims.append(C.claim("removing Bulyan increases accuracy ~2%", "IPM eps 0.1 and 10",
                          "w/o bulyan minus full pool: " + fmt("bulyan"), C.verdict(ok),
                          "verdict: +1 to +4 points under both eps"))
    g = [d["geomed"] for d in deltas.values()]
    ok = None if None in g else all(x < 0 for x in g)
    claims.append(C.claim("removing geomed reduces accuracy", "IPM eps 0.1 and 10",
                          "w/o geomed minus full pool: " + fmt("geomed"), C.verdict(ok)))
    allv = [x for d in deltas.values() for x in d.values()]
    ok = None if None in allv else all(abs(x) <= 0.02 for x in allv)
    worst = max((abs(x) for x in allv if x is not None), default=None)
    claims.append(C.claim("a smaller pool performs roughly the same (footnote 5)", "each family removed",
                          f"largest |change| {C.pct(worst)}", C.verdict(ok), "verdict: all within 2 points"))
    return claims


def main(argv=None) -> int:
    return C.main(NAME, "Fig. 5: pool ablation (one family removed)", parse_args(argv), build_runs, make_claims)


if __name__ == "__main__":
    raise SystemExit(main())
