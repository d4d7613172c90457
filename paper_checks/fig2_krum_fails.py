"""Fig. 2 of the MixTailor paper: "Krum fails" at eps = 0.2 with batch size 128.

Setting: n = 12, f = 2, iid split, tailored (IPM) attack with eps = 0.2 and full
knowledge, batch 128 per worker; omniscient, Krum, comed, MixTailor (64 rules).
Claims checked: Krum fails, and MixTailor defends where Krum fails (within 2%
of omniscient is not claimed here). The second claim is "reproduced" only when
its premise holds: Krum failed *and* MixTailor did not; when Krum did not fail
it reads "not reproduced (premise not met: Krum did not fail)", whatever
MixTailor did.

Usage::

    python paper_checks/fig2_krum_fails.py --scale small
    python paper_checks/fig2_krum_fails.py --scale paper --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "fig2_krum_fails"
AGGREGATORS = ("omniscient", "krum", "comed", "mixtailor")


def add_arguments(p):
    p.add_argument("--eps", type=float, default=0.2, help="attack scale (default 0.2)")
    p.add_argument("--batch-size", type=int, default=128, help="batch per worker (default 128, as in Fig. 2)")


def validate(args):
    C.require(args.batch_size >= 1, "batch-size", ">= 1", args.batch_size)


def parse_args(argv=None):
    return C.parse_args(__doc__, argv, add=add_arguments, validate=validate)


def build_runs(args):
    dataset, data_dir = C.mnist_source(args)
    base = C.base_config(args, dataset=dataset, data_dir=data_dir, batch_size=args.batch_size,
                         attack="ipm", attack_params={"eps": float(args.eps)})
    panel = f"{dataset} eps={args.eps:g} batch {args.batch_size}"
    return [C.Run(panel, a, {**base, "aggregator": a}) for a in AGGREGATORS], {dataset: C.describe(base)}


def make_claims(tab, args):
    panel = next(iter(tab))
    omni, krum, mix = (C.acc(tab, panel, a) for a in ("omniscient", "krum", "mixtailor"))
    setting = f"eps {args.eps:g}, batch {args.batch_size}"
    krum_fails, mix_fails = C.fails(krum, omni), C.fails(mix, omni)
    why = ""
    if krum_fails is None or mix_fails is None:
        defends = None
    elif not krum_fails:   # the claim's premise: nothing to defend against
        defends = False
        why = ("premise not met: Krum did not fail; MixTailor "
               + ("failed" if mix_fails else "did not fail either"))
    else:
        defends = not mix_fails
    return [
        C.claim("Krum fails at eps 0.2", setting, f"krum {C.pct(krum)} vs omni {C.pct(omni)}",
                C.verdict(krum_fails)),
        C.claim("MixTailor defends where Krum fails (eps 0.2)", setting,
                f"mixtailor {C.pct(mix)} vs omni {C.pct(omni)}", C.verdict(defends), why),
    ]


def title(args) -> str:
    return f"Fig. 2: Krum fails (IPM eps={args.eps:g}, batch {args.batch_size})"


def main(argv=None) -> int:
    return C.main(NAME, title, parse_args(argv), build_runs, make_claims)


if __name__ == "__main__":
    raise SystemExit(main())
