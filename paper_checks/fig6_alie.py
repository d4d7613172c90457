"""Fig. 6 of the MixTailor paper (Appendix A.8): "A Little is Enough" (ALIE) with momentum 0.

Setting: n = 12, f = 2, iid; ALIE (Baruch et al. 2019) with its default
z = Phi^{-1}((n - s) / n), s = floor(n/2 + 1) - f (z = 0.21 for n = 12, f = 2);
SGD without momentum (the paper sets it to 0 "to observe resilience decoupled
from momentum"); omniscient, Krum, comed, MixTailor (64 rules).

Claim checked: all aggregators, MixTailor included, are resilient to ALIE in
this setting (none fails).

Usage::

    python paper_checks/fig6_alie.py --scale small
    python paper_checks/fig6_alie.py --scale paper --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "fig6_alie"
AGGREGATORS = ("omniscient", "krum", "comed", "mixtailor")


def add_arguments(p):
    p.add_argument("--z", type=float, default=None, help="ALIE's z (default: Baruch et al.'s formula)")


def parse_args(argv=None):
    return C.parse_args(__doc__, argv, add=add_arguments)


def build_runs(args):
    dataset, data_dir = C.mnist_source(args)
    params = {} if args.z is None else {"z": float(args.z)}
    base = C.base_config(args, dataset=dataset, data_dir=data_dir, momentum=0.0, attack="alie",
                         attack_params=params)
    panel = f"{dataset} ALIE, momentum 0"
    return [C.Run(panel, a, {**base, "aggregator": a}) for a in AGGREGATORS], {dataset: C.describe(base)}


def make_claims(tab, args):
    panel = next(iter(tab))
    omni = C.acc(tab, panel, "omniscient")
    vals = {a: C.acc(tab, panel, a) for a in AGGREGATORS[1:]}
    failed = [a for a, v in vals.items() if C.fails(v, omni)]
    ok = None if omni is None or None in vals.values() else not failed
    return [C.claim("all rules resilient to ALIE with momentum 0", "ALIE default z, momentum 0",
                    f"omni {C.pct(omni)}; " + ", ".join(f"{a} {C.pct(v)}" for a, v in vals.items()),
                    C.verdict(ok), f"failed: {', '.join(failed)}" if failed else "")]


def main(argv=None) -> int:
    return C.main(NAME, "Fig. 6: ALIE, momentum 0", parse_args(argv), build_runs, make_claims)


if __name__ == "__main__":
    raise SystemExit(main())
