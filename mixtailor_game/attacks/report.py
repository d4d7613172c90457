"""Cosine between each rule's output and the honest mean, for every (attack, rule) pair.

``python -m mixtailor_game.attacks.report [--seed 0] [--d 100] [--json PATH]``
prints a markdown table on a fixed synthetic honest sample: ``n = 12`` workers,
``f = 2`` Byzantine, honest rows ``mu + xi_i`` with ``mu = 0.1 * 1_d`` and
``xi_i ~ N(0, I_d)`` (the per-row noise is 10 times the mean, as for SGD),
and the Byzantines' own honest rows drawn the same way (``view.own``, used by
sign flip and label flip). Every attack sees everything (``knowledge="full"``)
and its generator is seeded. The MixTailor column is the expected cosine over
the paper's 64-rule pool with uniform probabilities (``paper_pool(f, seed)``):
``sum_m p_m cos(AGG_m(G), mu_hat)``. It is the raw material of the game
layer's payoff matrix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from .._checks import check_int
from ..rules import make_rule, paper_pool
from .registry import make_attack
from .view import make_view

N, F = 12, 2

# (label, attack name, params): the literature's attacks with their usual settings.
ATTACKS = [
    ("ipm eps=0.1", "ipm", dict(eps=0.1)),
    ("ipm eps=10", "ipm", dict(eps=10.0)),
    ("random_eps {0.1,10}", "random_eps", dict(eps_set=(0.1, 10.0))),
    ("alie", "alie", {}),
    ("fang_krum", "fang_krum", {}),
    ("fang_trim", "fang_trim", {}),
    ("min_max unit", "min_max", dict(perturbation="unit")),
    ("min_max std", "min_max", dict(perturbation="std")),
    ("min_sum unit", "min_sum", dict(perturbation="unit")),
    ("mimic", "mimic", {}),
    ("gaussian sigma=10", "gaussian", dict(sigma=10.0)),
    ("sign_flip", "sign_flip", {}),
    ("label_flip (own rows)", "label_flip", {}),
]


def rules():
    """(label, callable) for the report's columns; MixTailor is handled separately."""
    return [
        ("mean", make_rule("mean")),
        ("comed", make_rule("comed", f=F)),
        ("trimmed_mean b=2", make_rule("trimmed_mean", b=2)),
        ("krum p=2", make_rule("krum", f=F, p=2.0)),
        (f"multi_krum m={N - F}", make_rule("multi_krum", f=F, m=N - F)),
        ("geomed", make_rule("geomed", f=F)),
        ("bulyan", make_rule("bulyan", f=F)),
    ]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    if na == 0.0 or nb == 0.0 or not math.isfinite(na):
        return 0.0 if math.isfinite(na) else float("nan")
    return float(a @ b) / (na * nb)


def sample(seed: int, d: int):
    """The fixed synthetic honest sample and the Byzantines' own rows (float64)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.full((d,), 0.1, dtype=torch.float64)
    honest = mu + torch.randn(N - F, d, generator=g, dtype=torch.float64)
    own = mu + torch.randn(F, d, generator=g, dtype=torch.float64)
    return honest, own


def compute(seed: int = 0, d: int = 100) -> dict:
    """Every (attack, rule) cosine; returns ``{"params": ..., "rules": [...], "rows": [...]}``."""
    seed = check_int("report", "seed", seed, low=0)
    d = check_int("report", "d", d, low=1)
    honest, own = sample(seed, d)
    mu_hat = honest.mean(0)
    cols = rules()
    pool = paper_pool(F, seed)
    rows = []
    for label, name, params in ATTACKS:
        view = make_view(honest, n=N, f=F, own=own, rng=torch.Generator().manual_seed(seed))
        B = make_attack(name, **params)(view)
        G = torch.cat([B, honest])
        cos = {rl: cosine(rule(G), mu_hat) for rl, rule in cols}
        cos["mixtailor (expected)"] = sum(cosine(rule(G), mu_hat) for rule in pool) / len(pool)
        rows.append({"attack": label, "name": name, "params": params, "cosine": cos})
    return {
        "params": {"n": N, "f": F, "d": d, "seed": seed, "honest": "0.1 * ones(d) + N(0, I)",
                   "pool": "paper_pool(f=2, seed), uniform"},
        "rules": [rl for rl, _ in cols] + ["mixtailor (expected)"],
        "rows": rows,
    }


def markdown(result: dict) -> str:
    cols = result["rules"]
    lines = ["| attack | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in result["rows"]:
        lines.append(f"| {row['attack']} | " + " | ".join(f"{row['cosine'][c]:+.3f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mixtailor_game.attacks.report", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the honest sample, the pool norms and the attacks")
    ap.add_argument("--d", type=int, default=100, help="dimension of the gradients")
    ap.add_argument("--json", metavar="PATH", help="also write the table as JSON to PATH")
    args = ap.parse_args(argv)
    try:
        result = compute(args.seed, args.d)
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    p = result["params"]
    print(f"Cosine(rule output, honest mean): n={p['n']}, f={p['f']}, d={p['d']}, seed={p['seed']}\n")
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
