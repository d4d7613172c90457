"""Benchmarks of solvers/: times as ratios to a baseline measured in the same run.

1. P3 and ExpectedValue (1-D line search) against the paper's pool at n = 12,
   f = 2 and d = 184,586 (the paper's MNIST CNN), reported with the time of one
   pass of aggregation over the pool (every pool entry called once on the same
   rows, as MixTailor would if it ran them all). ``--pool`` picks the families
   (default krum,comed, the quick families; ``--pool paper`` adds the geometric
   medians and Bulyans, whose l_p IRLS makes one pass of the whole pool ~1.4 s
   at this d on the 2-core CPU and an ExpectedValue solve ~25 s; ``--d 18459``
   runs it at d / 10).
2. SCP on comed at d = 10^4 (n = 12, f = 2, f free rows), with the exact
   optimum (comed is separable and monotone in each Byzantine entry: sending
   ``-sign(mu_j) * inf`` is optimal) for the gap.
3. MILP on comed / trimmed mean at n = 12, f = 2, d = 20 to proven optimality.
4. MIQCP (SCIP, optional ``pyscipopt``) on Krum, alone and pooled with comed,
   at the sizes it targets (n = 5..7, d = 1..3): time to proven optimality and
   gap, next to the 1-D line search on the same problem (its value is never
   better than the proven bound); and Bulyan(select=krum) (trimmed / average,
   p = 1, 2, inf), alone and pooled with Krum and comed, at n = 7, f = 1, d = 1, 2.

5. P3 and ExpectedValue over closed-form rules (comed, trimmed mean) at full d:
   the line method over every breakpoint (optimal) and the relaxation with a
   valid bound, as multiples of one pass of those rules.
6. ``--coordinatewise-only``: the closed forms of ``method="coordinatewise"`` (P1 over
   comed + trimmed mean, the tailored lambda on trimmed mean) at d = 10^4, 10^5
   against the MILP and SCP on the same problem, in passes of the rules.

Usage: ``python benchmarks/bench_solvers.py [--quick] [--pool krum,comed|paper] [--d D] [--seed S]
[--problems P3,ExpectedValue] [--line-only | --miqcp-only [--bulyan-only] | --closed-forms-only |
--coordinatewise-only]``.
Results: ``benchmarks/results/solvers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import solvers  # noqa: E402
from mixtailor_game.rules import Comed, TrimmedMean, paper_pool, pool_from_families  # noqa: E402


def honest_rows(k, d, seed, mu=0.002, sigma=0.01, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (sigma * torch.randn(k, d, generator=g, dtype=torch.float64) + mu).to(dtype)


def one_pass(pool, G):
    t = time.perf_counter()
    for r in pool:
        r(G)
    return time.perf_counter() - t


def bench_line(pool_name, d, n=12, f=2, seed=0, problems=("P3", "ExpectedValue")):
    pool = paper_pool(f, seed) if pool_name == "paper" else pool_from_families(f, pool_name.split(","), seed)
    V = honest_rows(n - f, d, seed)
    G = torch.cat([V[:f], V])
    for r in set(pool):  # warm-up: the first call of each norm p compiles (rules/_compile.py)
        r(G)
    base = one_pass(pool, G)
    out = {"pool": pool_name, "rules": len(pool), "distinct_rules": len(set(pool)), "n": n, "f": f, "d": d,
           "one_pass_s": base}
    for name in problems:
        prob = solvers.P3(V, f, pool) if name == "P3" else solvers.ExpectedValue(V, f, pool)
        t = time.perf_counter()
        sol = solvers.solve(prob)
        wall = time.perf_counter() - t
        out[name] = {"seconds": wall, "passes": wall / base, "value": sol.value, "status": sol.status,
                     "method": sol.method, "line_evaluations": sol.iterations, "t": sol.info.get("t"),
                     "certificate": sol.certificate}
        print(f"{name:14s} {pool_name} d={d}: {wall:.2f} s = {wall / base:.2f} passes "
              f"(one pass {base:.2f} s), value {sol.value:.4g}, {sol.status}", flush=True)
    return out


def bench_closed_forms(d, n=12, f=2, seed=0):
    """P3 / ExpectedValue over closed-form rules (comed, trimmed mean) at full d: the
    line method scores every breakpoint (optimal) and relax samples all of them (a
    valid bound); times next to one pass of the same rules on one set of rows."""
    V = honest_rows(n - f, d, seed)
    G = torch.cat([V[:f], V])
    cases = {"P3 trimmed_mean[b=2]": solvers.P3(V, f, [TrimmedMean(b=f)]),
             "ExpectedValue comed+trimmed_mean[b=2]": solvers.ExpectedValue(V, f, [Comed(f=f), TrimmedMean(b=f)]),
             "P3 comed+trimmed_mean[b=2]": solvers.P3(V, f, [Comed(f=f), TrimmedMean(b=f)])}
    out = {}
    for name, prob in cases.items():
        pool = list(prob.compile().rules)
        for r in pool:
            r(G)  # warm-up (comed's sorting network compiles once per n)
        base = one_pass(pool, G)
        row = {"one_pass_s": base}
        for method in ("line", "relax"):
            t = time.perf_counter()
            sol = solvers.solve(prob, method=method)
            wall = time.perf_counter() - t
            row[method] = {"seconds": wall, "passes": wall / base, "value": sol.value, "status": sol.status,
                           "bound": sol.bound, "candidates": sol.iterations}
            print(f"{name:40s} d={d} {method:5s}: {wall:.2f} s = {wall / base:.0f} passes, {sol.status}, "
                  f"value {sol.value:.10g}, bound {sol.bound}, {sol.iterations} candidates", flush=True)
        out[name] = row
    return out


def bench_scp(d=10_000, n=12, f=2, seed=1, max_iter=40):
    V = honest_rows(n - f, d, seed, dtype=torch.float64)
    prob = solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="inner")
    inst = prob.compile()
    t = time.perf_counter()
    exact_B = (-1e6 * torch.sign(inst.u)).expand(f, -1)
    exact = solvers.evaluate(inst, exact_B)["value"]
    G = torch.cat([exact_B, inst.R])
    base = one_pass([Comed(f=f)], G)
    out = {"n": n, "f": f, "d": d, "exact_optimum": exact, "one_comed_call_s": base}
    # a deliberately poor start (the honest mean) shows what SCP itself does
    for start in ("line", "mean"):
        init = None if start == "line" else inst.R.mean(0).expand(f, -1)
        t = time.perf_counter()
        sol = solvers.solve(prob, method="scp", max_iter=max_iter, init=init)
        wall = time.perf_counter() - t
        out[f"start_{start}"] = {"seconds": wall, "value": sol.value, "gap_to_exact": sol.value - exact,
                                 "iterations": sol.iterations, "accepted": sol.info["accepted"],
                                 "status": sol.status}
        print(f"SCP comed d={d} start={start}: {wall:.2f} s, {sol.iterations} it, value {sol.value:.6g}, "
              f"gap to exact {sol.value - exact:.3g}", flush=True)
    return out


def bench_milp(d=20, n=12, f=2, seed=2):
    V = honest_rows(n - f, d, seed, dtype=torch.float64)
    out = {}
    cases = {
        "comed": solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="inner"),
        "trimmed_mean[b=2]": solvers.TailoredAttack(V, f, TrimmedMean(b=f), structure="optimal",
                                                    objective="inner"),
        "P1 comed+trimmed": solvers.P1(V, f, [Comed(f=f), TrimmedMean(b=f)]),
        "P2 comed+trimmed eps(l_inf)": solvers.P2(V, f, [Comed(f=f), TrimmedMean(b=f)], eps=0.01,
                                                  eps_p=float("inf")),
        "comed lambda": solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="lambda"),
    }
    for name, prob in cases.items():
        t = time.perf_counter()
        sol = solvers.solve(prob, method="milp", time_limit=120)
        wall = time.perf_counter() - t
        out[name] = {"seconds": wall, "status": sol.status, "value": sol.value, "bound": sol.bound,
                     "gap": sol.gap, "binaries": sol.info["binaries"], "nodes": sol.iterations}
        print(f"MILP {name} n={n} f={f} d={d}: {wall:.2f} s, {sol.status}, value {sol.value:.6g}, "
              f"gap {sol.gap}", flush=True)
    return out


def bench_coordinatewise(ds=(10_000, 100_000), n=12, f=2, seed=1):
    """P1 over comed + trimmed mean (b = f) and the tailored ``"lambda"`` problem on trimmed
    mean: the closed forms (``method="coordinatewise"``) against the MILP (``reduce=True``:
    an LP with no binary) and SCP from the line start, all to the same value, and as
    multiples of one pass of the pool's rules on the same rows (the baseline)."""
    out = {}
    for d in ds:
        V = honest_rows(n - f, d, seed, dtype=torch.float64)
        pool = [Comed(f=f), TrimmedMean(b=f)]
        G = torch.cat([V[:f], V])
        for r in pool:  # the first call at a new shape compiles the rules' kernels
            r(G)
        base = one_pass(pool, G)
        cases = {"P1 comed+trimmed": (solvers.P1(V, f, pool), ("coordinatewise", "milp", "scp")),
                 "lambda trimmed": (solvers.TailoredAttack(V, f, TrimmedMean(b=f), objective="lambda"),
                                    ("coordinatewise",))}
        for name, (prob, methods) in cases.items():
            row = {"one_pass_s": base}
            for m in methods:
                t = time.perf_counter()
                sol = solvers.solve(prob, method=m)
                wall = time.perf_counter() - t
                row[m] = {"seconds": wall, "passes": wall / base, "value": sol.value, "status": sol.status}
                print(f"{name} d={d} {m}: {wall:.3f} s = {wall / base:.1f} passes, value {sol.value:.10g}, "
                      f"{sol.status}", flush=True)
            out[f"{name},d={d}"] = row
    return out


def _bulyan_cases(seed):
    """Bulyan(select=krum) at the only size the exact model covers: n = 7, f = 1, d = 1, 2."""
    from mixtailor_game.rules import Krum, make_rule

    cases = {}
    for d in (1, 2):
        V = honest_rows(6, d, seed + 10 + d, mu=1.0, sigma=1.0, dtype=torch.float64)
        for agg in ("trimmed", "average"):
            for p in (1.0, 2.0, float("inf")):
                rule = make_rule("bulyan", f=1, select="krum", aggregate=agg, p=p)
                cases[f"bulyan tailored {agg} p={p:g} n=7 f=1 d={d}"] = solvers.TailoredAttack(
                    V, 1, rule, structure="optimal", objective="inner")
        cases[f"bulyan P1 bulyan(trimmed)+krum+comed n=7 f=1 d={d}"] = solvers.P1(
            V, 1, [make_rule("bulyan", f=1, select="krum"), Krum(f=1), Comed(f=1)])
    return cases


def bench_miqcp(seed=3, bulyan_only=False):
    """Time to proven optimality and gap (SCIP), with the line search's value next to it."""
    from mixtailor_game.rules import Krum
    from solvers.miqcp import scip_available

    if not scip_available():
        print("MIQCP skipped: pyscipopt is not installed (pip install -e '.[exact]')")
        return {"skipped": "pyscipopt not installed"}
    cases = {}
    for n, f, d in (() if bulyan_only else ((5, 1, 1), (5, 1, 2), (7, 2, 3))):
        V = honest_rows(n - f, d, seed + d, mu=1.0, sigma=1.0, dtype=torch.float64)
        for p in (1.0, 2.0, float("inf")):
            cases[f"tailored krum p={p:g} n={n} f={f} d={d}"] = solvers.TailoredAttack(
                V, f, Krum(f=f, p=p), structure="optimal", objective="inner")
        cases[f"P1 krum+comed n={n} f={f} d={d}"] = solvers.P1(V, f, [Krum(f=f), Comed(f=f)])
    cases.update(_bulyan_cases(seed))
    out = {}
    for name, prob in cases.items():
        t = time.perf_counter()
        sol = solvers.solve(prob, method="miqcp", time_limit=120)
        wall = time.perf_counter() - t
        t = time.perf_counter()
        line = solvers.solve(prob, method="line") if ("tailored" in name or "bulyan" in name) else None
        line_wall = time.perf_counter() - t
        out[name] = {"seconds": wall, "status": sol.status, "value": sol.value, "bound": sol.bound, "gap": sol.gap,
                     "line_value": None if line is None else line.value,
                     "line_seconds": None if line is None else line_wall}
        extra = "" if line is None else f"; line search {line.value:.6g} in {line_wall:.2f} s"
        print(f"MIQCP {name}: {wall:.2f} s, {sol.status}, value {sol.value:.6g}, gap {sol.gap}{extra}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="krum,comed", help="'paper' or comma-separated families")
    ap.add_argument("--d", type=int, default=184_586)
    ap.add_argument("--seed", type=int, default=0, help="the pool's norms and the honest rows (line part)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--problems", default="P3,ExpectedValue",
                    help="which line problems to time (ExpectedValue over the paper pool evaluates every rule "
                         "at every candidate: tens of passes)")
    ap.add_argument("--line-only", action="store_true", help="skip the SCP, MILP and MIQCP parts")
    ap.add_argument("--miqcp-only", action="store_true", help="run only the MIQCP part")
    ap.add_argument("--closed-forms-only", action="store_true",
                    help="run only P3 / ExpectedValue over comed and trimmed mean (every breakpoint)")
    ap.add_argument("--bulyan-only", action="store_true", help="with --miqcp-only: only the Bulyan cases")
    ap.add_argument("--coordinatewise-only", action="store_true",
                    help="run only the closed forms of method='coordinatewise' against the MILP and SCP")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "solvers.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    d = 2000 if args.quick else args.d
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__}}
    if args.coordinatewise_only:
        res["coordinatewise"] = bench_coordinatewise((1000,) if args.quick else (10_000, 100_000))
    elif not args.miqcp_only:
        res["closed_forms"] = bench_closed_forms(d)
    only = args.miqcp_only or args.closed_forms_only or args.coordinatewise_only
    if not only:
        res["line"] = bench_line(args.pool, d, seed=args.seed,
                                 problems=[x.strip() for x in args.problems.split(",") if x.strip()])
    if not args.line_only and not only:
        res["scp"] = bench_scp(d=1000 if args.quick else 10_000, max_iter=10 if args.quick else 40)
        res["milp"] = bench_milp(d=5 if args.quick else 20)
    if not args.line_only and not args.closed_forms_only and not args.coordinatewise_only:
        res["miqcp"] = bench_miqcp(bulyan_only=args.bulyan_only)
    path = Path(args.out)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    else:
        old = {}
    key = "quick" if args.quick else f"pool={args.pool},d={d}" + ("" if args.problems == "P3,ExpectedValue" else
                                                                 f",problems={args.problems}")
    key += f",seed={args.seed}" if args.seed else ""
    if args.miqcp_only:
        key = "miqcp_bulyan" if args.bulyan_only else "miqcp"
    if args.closed_forms_only:
        key = f"closed_forms,d={d}"
    if args.coordinatewise_only:
        key = "coordinatewise" + (",quick" if args.quick else "")
    old[key] = res
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(old, indent=2, default=float))
    tmp.replace(path)
    print(f"wrote {path} [{key}]")


if __name__ == "__main__":
    main()
