"""Fig. 4 of the MixTailor paper: (a) random-eps attack, (b) f = 4 with Bulyan removed.

(a) n = 12, f = 2, iid: at every step the attacker draws eps uniformly from
{0.1, 10} (``make_attack("random_eps")``, a small eps against Krum, a large one
against comed). References in the same panel: Krum under the fixed eps = 0.1
and comed under the fixed eps = 10 (the tailored attacks of Fig. 1). The paper
contradicts itself here: its Fig. 4 paragraph says "a small eps to corrupt
Comed, a large one to corrupt Krum", while Sec. 5's attack paragraph ("A small
eps corrupts Krum, while a large one corrupts comed"), Fig. 1 and Xie et al.
(2020b) pair them the other way; we follow the latter.
(b) n = 12, f = 4, IPM eps = 10; Bulyan needs n >= 4f + 3 = 19, so MixTailor's
pool is the paper's pool without Bulyan (48 rules: Krum, comed, geomed).

Claims checked: the random attack is less effective than the tailored one
against Krum and comed; MixTailor beats the worst aggregator in both panels;
with f = 4 geomed is vulnerable (fails).

Usage::

    python paper_checks/fig4_random_eps.py --scale small
    python paper_checks/fig4_random_eps.py --scale paper --device cuda
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

NAME = "fig4_random_eps"
RULES = ("omniscient", "krum", "comed", "geomed", "mixtailor")


def add_arguments(p):
    p.add_argument("--eps-set", type=float, nargs="+", default=[0.1, 10.0], help="eps drawn in (a)")
    p.add_argument("--f4-eps", type=float, default=10.0, help="IPM eps in panel (b) (default 10)")


def parse_args(argv=None):
    return C.parse_args(__doc__, argv, add=add_arguments)


def build_runs(args):
    dataset, data_dir = C.mnist_source(args)
    base = C.base_config(args, dataset=dataset, data_dir=data_dir)
    eps_set = [float(e) for e in args.eps_set]
    pa = f"(a) {dataset} random eps in {{{', '.join(f'{e:g}' for e in eps_set)}}}"
    runs = [C.Run(pa, a, {**base, "aggregator": a, "attack": "random_eps",
                          "attack_params": {"eps_set": eps_set}}) for a in RULES]
    runs.append(C.Run(pa, "krum (fixed eps=0.1)", {**base, "aggregator": "krum", "attack": "ipm",
                                                  "attack_params": {"eps": 0.1}}))
    runs.append(C.Run(pa, "comed (fixed eps=10)", {**base, "aggregator": "comed", "attack": "ipm",
                                                  "attack_params": {"eps": 10.0}}))
    pb = f"(b) {dataset} f=4, eps={args.f4_eps:g}, pool w/o Bulyan"
    b4 = {**base, "byzantine": 4, "attack": "ipm", "attack_params": {"eps": float(args.f4_eps)},
          "pool": "families:krum,comed,geomed"}
    runs += [C.Run(pb, a, {**b4, "aggregator": a}) for a in RULES]
    settings = {dataset: C.describe(base), "panel_a": pa, "panel_b": pb}
    return runs, settings


def make_claims(tab, args):
    pa, pb = list(tab)
    claims = []
    k_r, k_t = C.acc(tab, pa, "krum"), C.acc(tab, pa, "krum (fixed eps=0.1)")
    c_r, c_t = C.acc(tab, pa, "comed"), C.acc(tab, pa, "comed (fixed eps=10)")
    ok = None if None in (k_r, k_t, c_r, c_t) else (k_r > k_t and c_r > c_t)
    claims.append(C.claim("random eps less effective than the tailored eps", "n=12, f=2, eps ~ U{0.1, 10}",
                          f"krum {C.pct(k_r)} (random) vs {C.pct(k_t)} (eps 0.1); comed {C.pct(c_r)} (random) "
                          f"vs {C.pct(c_t)} (eps 10)", C.verdict(ok)))
    for panel, tag in ((pa, "random eps"), (pb, "f=4, eps 10")):
        vals = {a: C.acc(tab, panel, a) for a in ("krum", "comed", "geomed")}
        mix = C.acc(tab, panel, "mixtailor")
        ok = None if None in vals.values() or mix is None else mix > min(vals.values())
        worst = min(vals, key=lambda a: vals[a]) if None not in vals.values() else None
        claims.append(C.claim(f"MixTailor beats the worst aggregator ({tag})", tag,
                              f"worst {worst} {C.pct(vals.get(worst))}, mixtailor {C.pct(mix)}", C.verdict(ok)))
    omni, geo = C.acc(tab, pb, "omniscient"), C.acc(tab, pb, "geomed")
    claims.append(C.claim("f=4: geomed vulnerable", "n=12, f=4, IPM eps 10",
                          f"geomed {C.pct(geo)} vs omni {C.pct(omni)}", C.verdict(C.fails(geo, omni))))
    return claims


def main(argv=None) -> int:
    return C.main(NAME, "Fig. 4: random eps (a) and f=4 without Bulyan (b)", parse_args(argv), build_runs,
                  make_claims)


if __name__ == "__main__":
    raise SystemExit(main())
