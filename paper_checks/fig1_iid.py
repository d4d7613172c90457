"""Fig. 1 of the MixTailor paper: iid data, tailored attack eps = 0.1 and eps = 10.

Setting (Section 5): n = 12 workers, f = 2 Byzantine, the data set shuffled and
split equally; the tailored attack, Xie et al.'s (2020b) IPM
``B_i = -eps * mean(honest)``, with full knowledge at every step; aggregators
omniscient (mean of the 10 honest rows), Krum, comed and MixTailor with the
paper's 64-rule pool. MNIST always (digits at ``--scale tiny`` or without MNIST files); CIFAR-10
when ``--cifar-dir`` is given.

Claims checked: MixTailor within 2% of omniscient on MNIST under both eps (the
paper gives both lines: "within 2% of the accuracy of an omniscient model on
MNIST" in its contributions, Sec. 1.1, and "within 1%" under eps = 0.1 and 10
in Sec. 5; we test the 2-point one); Krum fails at eps = 0.1
(small eps corrupts Krum); comed fails at eps = 10; on CIFAR-10 comed fails
under both eps; MixTailor always beats the worst aggregator.

Usage::

    python paper_checks/fig1_iid.py --scale small
    python paper_checks/fig1_iid.py --scale paper --device cuda [--cifar-dir DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "fig1_iid"
EPS = (0.1, 10.0)
AGGREGATORS = ("omniscient", "krum", "comed", "mixtailor")


def add_arguments(p):
    p.add_argument("--cifar-dir", default=None, help="CIFAR-10 python batches: adds the CIFAR-10 panels")
    p.add_argument("--eps", type=float, nargs="+", default=list(EPS), help="attack scales (default 0.1 10)")


def parse_args(argv=None):
    return C.parse_args(__doc__, argv, add=add_arguments)


def build_runs(args) -> tuple[list[C.Run], dict]:
    dataset, data_dir = C.mnist_source(args)
    sources = [(dataset, data_dir, False)]
    if args.cifar_dir is not None:
        sources.append(("cifar10", str(args.cifar_dir), True))
    runs, settings = [], {}
    for ds, ddir, cifar in sources:
        base = C.base_config(args, dataset=ds, data_dir=ddir, cifar=cifar)
        settings[ds] = C.describe(base)
        for eps in args.eps:
            panel = f"{ds} eps={eps:g}"
            for agg in AGGREGATORS:
                runs.append(C.Run(panel, agg, {**base, "aggregator": agg, "attack": "ipm",
                                               "attack_params": {"eps": float(eps)}}))
    return runs, settings


def make_claims(tab: dict, args) -> list[dict]:
    claims = []
    dataset, _ = C.mnist_source(args)
    datasets = [dataset] + (["cifar10"] if args.cifar_dir is not None else [])
    for ds in datasets:
        panels = {eps: f"{ds} eps={eps:g}" for eps in args.eps}
        omni = {e: C.acc(tab, p, "omniscient") for e, p in panels.items()}
        mix = {e: C.acc(tab, p, "mixtailor") for e, p in panels.items()}
        if ds != "cifar10":
            gaps = {e: (omni[e] - mix[e]) if None not in (omni[e], mix[e]) else None for e in panels}
            ok = None if any(g is None for g in gaps.values()) else all(g <= 0.02 for g in gaps.values())
            claims.append(C.claim(
                f"MixTailor within 2% of omniscient ({ds}, iid)", f"eps {', '.join(f'{e:g}' for e in panels)}",
                "; ".join(f"eps {e:g}: omni {C.pct(omni[e])}, mixtailor {C.pct(mix[e])}" for e in panels),
                C.verdict(ok)))
        for rule, eps, text in (("krum", 0.1, "Krum fails at eps 0.1"), ("comed", 10.0, "comed fails at eps 10")):
            if eps not in panels:
                continue
            x = C.acc(tab, panels[eps], rule)
            claims.append(C.claim(f"{text} ({ds})", f"eps {eps:g}",
                                  f"{rule} {C.pct(x)} vs omni {C.pct(omni[eps])}",
                                  C.verdict(C.fails(x, omni[eps]))))
        if ds == "cifar10":
            xs = {e: C.acc(tab, panels[e], "comed") for e in panels}
            ok = None if None in xs.values() else all(C.fails(xs[e], omni[e]) for e in panels)
            claims.append(C.claim("comed fails under both eps (cifar10)", "eps 0.1 and 10",
                                  "; ".join(f"eps {e:g}: comed {C.pct(xs[e])}" for e in panels), C.verdict(ok)))
        worst = {}
        for e, p in panels.items():
            vals = [C.acc(tab, p, a) for a in ("krum", "comed")]
            worst[e] = None if None in vals or mix[e] is None else (min(vals), mix[e] > min(vals))
        ok = None if None in worst.values() else all(w[1] for w in worst.values())
        claims.append(C.claim(f"MixTailor beats the worst of Krum / comed ({ds})", "each eps",
                              "; ".join(f"eps {e:g}: worst {C.pct(w[0])}, mixtailor {C.pct(mix[e])}"
                                        for e, w in worst.items() if w is not None),
                              C.verdict(ok)))
    return claims


def main(argv=None) -> int:
    return C.main(NAME, "Fig. 1: iid, tailored attack (IPM), n=12, f=2", parse_args(argv), build_runs, make_claims)


if __name__ == "__main__":
    raise SystemExit(main())
