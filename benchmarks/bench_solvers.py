"""Benchmarks of solvers/: times as ratios to a baseline measured in the same run.

1. P3 and ExpectedValue (1-D line search) against the paper's pool at n = 12,
   f = 2 and d = 184,586 (the paper's MNIST CNN), reported as multiples of one
   pass of aggregation over the pool (every pool entry called once on the same
   rows, as MixTailor would if it ran them all). ``--pool`` picks the families
   (default krum,comed, the quick families; ``--pool paper`` adds the geometric
   medians and Bulyans, whose l_p IRLS makes one pass of the whole pool take
   seconds at this d on the 2-core CPU and an ExpectedValue solve tens of
   passes; ``--d 18459`` runs it at d / 10).
2. SCP on comed at d = 10^4 (n = 12, f = 2, f free rows), with the exact
   optimum (comed is separable and monotone in each Byzantine entry: sending
   ``-sign(mu_j) * inf`` is optimal) for the gap.
3. MILP on comed / trimmed mean at n = 12, f = 2, d = 20 to proven optimality.
4. MIQCP (SCIP, optional ``pyscipopt``) on Krum, alone and pooled with comed,
   at the sizes it targets (n = 5..7, d = 1..3): time to proven optimality and
   gap, next to the 1-D line search on the same problem (its value is never
   better than the proven bound); and Bulyan(select=krum) (trimmed / average,
   p = 1, 2, inf), alone and pooled with Krum and comed, at n = 7, f = 1, d = 1, 2.
5. ``--closed-forms-only``: P3 and ExpectedValue over closed-form rules (comed, trimmed mean) at full d:
   the line method over every breakpoint (optimal) and the relaxation with a
   valid bound, as multiples of one pass of those rules.
6. ``--coordinatewise-only``: the closed forms of ``method="coordinatewise"`` (P1 over
   comed + trimmed mean, the tailored lambda on trimmed mean) at d = 10^4, 10^5
   against the MILP and SCP on the same problem, in passes of the rules.

Baselines and repeats: a "pass" (one call of every rule of the pool on the
same rows) is timed ``--pass-repeats`` times (default 3) before and again after
each timed solve; its median over those before and after timings is the
baseline of that solve, and every timing is kept. Each solve is timed once by
default; ``--repeats N`` times it N times (a fresh problem each time, built
outside the timer) and reports the median, keeping all N.

Each command writes one key of the results JSON (merged into the file; other
keys are kept), and each measured part lives in one key only:

* ``(no part flag)``: ``pool=POOL,d=D[,problems=...][,seed=S]`` with the
  line (1.), SCP (2.), MILP (3.) and MIQCP (4., Krum and Bulyan) parts;
* ``--line-only``: ``line,pool=POOL,d=D[,problems=...][,seed=S]`` (1. only);
* ``--closed-forms-only``: ``closed_forms,d=D`` (5.; no other command runs it);
* ``--miqcp-only``: ``miqcp`` (4., Krum and Bulyan); with ``--bulyan-only``:
  ``miqcp_bulyan`` (the Bulyan cases of 4. only);
* ``--coordinatewise-only``: ``coordinatewise`` (6.);
* ``--quick`` (small sizes, a smoke run; it also runs 5. when no part flag is
  given) appends ``,quick`` to the key.

Every key records the machine (CPU, threads, torch) and the run: the UTC date,
``git describe --always --dirty``, the command, the repeats and the 1/5/15-min
load average before and after.

Usage: ``python benchmarks/bench_solvers.py [--quick] [--pool krum,comed|paper] [--d D] [--seed S]
[--problems P3,ExpectedValue] [--repeats N] [--pass-repeats K] [--line-only | --miqcp-only [--bulyan-only] |
--closed-forms-only | --coordinatewise-only] [--out PATH]``.
Results: ``benchmarks/results/solvers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _provenance import git_describe, load_average  # noqa: E402

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


def pass_block(pool, G, k):
    """``k`` timings of one pass of ``pool`` on ``G`` (seconds each)."""
    return [one_pass(pool, G) for _ in range(k)]


def timed_runs(make, repeats):
    """Call ``make()`` (outside the timer: it builds the problem) then the solve it returns,
    ``repeats`` times; the last solution and every wall time."""
    walls, sol = [], None
    for _ in range(max(1, repeats)):
        run = make()
        t = time.perf_counter()
        sol = run()
        walls.append(time.perf_counter() - t)
    return sol, walls


def against_passes(pool, G, jobs, repeats, pass_repeats):
    """Time each job (``name -> make``, see :func:`timed_runs`) between blocks of
    ``pass_repeats`` passes of ``pool`` on ``G``; a job's baseline is the median
    of the block before it and the block after it (a later job shares the block
    between them), so load that comes or goes during the run hits both sides.
    Returns ``{name: (solution, timing)}`` and every pass timing, in order."""
    blocks = [pass_block(pool, G, pass_repeats)]
    out = {}
    for name, make in jobs.items():
        sol, walls = timed_runs(make, repeats)
        blocks.append(pass_block(pool, G, pass_repeats))
        before, after = blocks[-2], blocks[-1]
        base = statistics.median(before + after)
        wall = statistics.median(walls)
        out[name] = (sol, {"seconds": wall, "seconds_all": walls, "passes": wall / base,
                           "passes_all": [w / base for w in walls], "one_pass_s": base,
                           "one_pass_before_s": before, "one_pass_after_s": after})
    return out, [t for b in blocks for t in b]


def bench_line(pool_name, d, n=12, f=2, seed=0, problems=("P3", "ExpectedValue"), repeats=1, pass_repeats=3):
    pool = paper_pool(f, seed) if pool_name == "paper" else pool_from_families(f, pool_name.split(","), seed)
    V = honest_rows(n - f, d, seed)
    G = torch.cat([V[:f], V])
    for r in set(pool):  # warm-up: the first call of each norm p compiles (rules/_compile.py)
        r(G)

    def job(name):
        def make():
            prob = solvers.P3(V, f, pool) if name == "P3" else solvers.ExpectedValue(V, f, pool)
            return lambda: solvers.solve(prob)
        return make

    timed, passes = against_passes(pool, G, {name: job(name) for name in problems}, repeats, pass_repeats)
    out = {"pool": pool_name, "rules": len(pool), "distinct_rules": len(set(pool)), "n": n, "f": f, "d": d,
           "one_pass_s": statistics.median(passes), "one_pass_all_s": passes}
    for name, (sol, timing) in timed.items():
        out[name] = {**timing, "value": sol.value, "status": sol.status, "method": sol.method,
                     "line_evaluations": sol.iterations, "t": sol.info.get("t"), "certificate": sol.certificate}
        print(f"{name:14s} {pool_name} d={d}: {timing['seconds']:.2f} s = {timing['passes']:.2f} passes "
              f"(median of {len(timing['seconds_all'])}; one pass {timing['one_pass_s']:.2f} s, median of "
              f"{2 * pass_repeats}), value {sol.value:.4g}, {sol.status}", flush=True)
    return out


def bench_closed_forms(d, n=12, f=2, seed=0, repeats=1, pass_repeats=3):
    """P3 / ExpectedValue over closed-form rules (comed, trimmed mean) at full d: the
    line method scores every breakpoint (optimal) and relax samples all of them (a
    valid bound); times next to passes of the same rules on one set of rows."""
    V = honest_rows(n - f, d, seed)
    G = torch.cat([V[:f], V])
    cases = {"P3 trimmed_mean[b=2]": lambda: solvers.P3(V, f, [TrimmedMean(b=f)]),
             "ExpectedValue comed+trimmed_mean[b=2]":
                 lambda: solvers.ExpectedValue(V, f, [Comed(f=f), TrimmedMean(b=f)]),
             "P3 comed+trimmed_mean[b=2]": lambda: solvers.P3(V, f, [Comed(f=f), TrimmedMean(b=f)])}
    out = {}
    for name, build in cases.items():
        pool = list(build().compile().rules)
        for r in pool:
            r(G)  # warm-up (comed's sorting network compiles once per n)

        def job(method, build=build):
            def make():
                prob = build()
                return lambda: solvers.solve(prob, method=method)
            return make

        timed, passes = against_passes(pool, G, {m: job(m) for m in ("line", "relax")}, repeats, pass_repeats)
        row = {"one_pass_s": statistics.median(passes), "one_pass_all_s": passes}
        for method, (sol, timing) in timed.items():
            row[method] = {**timing, "value": sol.value, "status": sol.status, "bound": sol.bound,
                           "candidates": sol.iterations}
            print(f"{name:40s} d={d} {method:5s}: {timing['seconds']:.2f} s = {timing['passes']:.0f} passes, "
                  f"{sol.status}, value {sol.value:.10g}, bound {sol.bound}, {sol.iterations} candidates", flush=True)
        out[name] = row
    return out


def bench_scp(d=10_000, n=12, f=2, seed=1, max_iter=40, repeats=1, pass_repeats=3):
    V = honest_rows(n - f, d, seed, dtype=torch.float64)
    prob = solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="inner")
    inst = prob.compile()
    exact_B = (-1e6 * torch.sign(inst.u)).expand(f, -1)
    exact = solvers.evaluate(inst, exact_B)["value"]
    G = torch.cat([exact_B, inst.R])
    Comed(f=f)(G)  # warm-up

    # a deliberately poor start (the honest mean) shows what SCP itself does
    def job(start):
        def make():
            p = solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="inner")
            init = None if start == "line" else inst.R.mean(0).expand(f, -1)
            return lambda: solvers.solve(p, method="scp", max_iter=max_iter, init=init)
        return make

    timed, passes = against_passes([Comed(f=f)], G, {s: job(s) for s in ("line", "mean")}, repeats, pass_repeats)
    out = {"n": n, "f": f, "d": d, "exact_optimum": exact, "one_comed_call_s": statistics.median(passes),
           "one_comed_call_all_s": passes}
    for start, (sol, timing) in timed.items():
        out[f"start_{start}"] = {**timing, "value": sol.value, "gap_to_exact": sol.value - exact,
                                 "iterations": sol.iterations, "accepted": sol.info["accepted"],
                                 "status": sol.status}
        print(f"SCP comed d={d} start={start}: {timing['seconds']:.2f} s = {timing['passes']:.0f} comed calls, "
              f"{sol.iterations} it, value {sol.value:.6g}, gap to exact {sol.value - exact:.3g}", flush=True)
    return out


def bench_milp(d=20, n=12, f=2, seed=2, repeats=1):
    V = honest_rows(n - f, d, seed, dtype=torch.float64)
    out = {}
    cases = {
        "comed": lambda: solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="inner"),
        "trimmed_mean[b=2]": lambda: solvers.TailoredAttack(V, f, TrimmedMean(b=f), structure="optimal",
                                                            objective="inner"),
        "P1 comed+trimmed": lambda: solvers.P1(V, f, [Comed(f=f), TrimmedMean(b=f)]),
        "P2 comed+trimmed eps(l_inf)": lambda: solvers.P2(V, f, [Comed(f=f), TrimmedMean(b=f)], eps=0.01,
                                                          eps_p=float("inf")),
        "comed lambda": lambda: solvers.TailoredAttack(V, f, Comed(f=f), structure="optimal", objective="lambda"),
    }
    for name, build in cases.items():
        def make(build=build):
            prob = build()
            return lambda: solvers.solve(prob, method="milp", time_limit=120)

        sol, walls = timed_runs(make, repeats)
        wall = statistics.median(walls)
        out[name] = {"seconds": wall, "seconds_all": walls, "status": sol.status, "value": sol.value,
                     "bound": sol.bound, "gap": sol.gap, "binaries": sol.info["binaries"], "nodes": sol.iterations}
        print(f"MILP {name} n={n} f={f} d={d}: {wall:.2f} s, {sol.status}, value {sol.value:.6g}, "
              f"gap {sol.gap}", flush=True)
    return out


def bench_coordinatewise(ds=(10_000, 100_000), n=12, f=2, seed=1, repeats=1, pass_repeats=3):
    """P1 over comed + trimmed mean (b = f) and the tailored ``"lambda"`` problem on trimmed
    mean: the closed forms (``method="coordinatewise"``) against the MILP (``reduce=True``:
    an LP with no binary) and SCP from the line start, all to the same value, and as
    multiples of passes of the pool's rules on the same rows (the baseline)."""
    out = {}
    for d in ds:
        V = honest_rows(n - f, d, seed, dtype=torch.float64)
        pool = [Comed(f=f), TrimmedMean(b=f)]
        G = torch.cat([V[:f], V])
        for r in pool:  # the first call at a new shape compiles the rules' kernels
            r(G)
        cases = {"P1 comed+trimmed": (lambda: solvers.P1(V, f, pool), ("coordinatewise", "milp", "scp")),
                 "lambda trimmed": (lambda: solvers.TailoredAttack(V, f, TrimmedMean(b=f), objective="lambda"),
                                    ("coordinatewise",))}
        for name, (build, methods) in cases.items():
            def job(m, build=build):
                def make():
                    prob = build()
                    return lambda: solvers.solve(prob, method=m)
                return make

            timed, passes = against_passes(pool, G, {m: job(m) for m in methods}, repeats, pass_repeats)
            row = {"one_pass_s": statistics.median(passes), "one_pass_all_s": passes}
            for m, (sol, timing) in timed.items():
                row[m] = {**timing, "value": sol.value, "status": sol.status}
                print(f"{name} d={d} {m}: {timing['seconds']:.3f} s = {timing['passes']:.1f} passes, "
                      f"value {sol.value:.10g}, {sol.status}", flush=True)
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
                cases[f"bulyan tailored {agg} p={p:g} n=7 f=1 d={d}"] = (
                    lambda V=V, agg=agg, p=p: solvers.TailoredAttack(
                        V, 1, make_rule("bulyan", f=1, select="krum", aggregate=agg, p=p),
                        structure="optimal", objective="inner"))
        cases[f"bulyan P1 bulyan(trimmed)+krum+comed n=7 f=1 d={d}"] = (
            lambda V=V: solvers.P1(V, 1, [make_rule("bulyan", f=1, select="krum"), Krum(f=1), Comed(f=1)]))
    return cases


def bench_miqcp(seed=3, bulyan_only=False, repeats=1):
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
            cases[f"tailored krum p={p:g} n={n} f={f} d={d}"] = (
                lambda V=V, f=f, p=p: solvers.TailoredAttack(V, f, Krum(f=f, p=p), structure="optimal",
                                                             objective="inner"))
        cases[f"P1 krum+comed n={n} f={f} d={d}"] = lambda V=V, f=f: solvers.P1(V, f, [Krum(f=f), Comed(f=f)])
    cases.update(_bulyan_cases(seed))
    out = {}
    for name, build in cases.items():
        def make(method, build=build):
            prob = build()
            if method == "miqcp":
                return lambda: solvers.solve(prob, method="miqcp", time_limit=120)
            return lambda: solvers.solve(prob, method="line")

        sol, walls = timed_runs(lambda: make("miqcp"), repeats)
        wall = statistics.median(walls)
        line, line_walls = None, None
        if "tailored" in name or "bulyan" in name:
            line, line_walls = timed_runs(lambda: make("line"), repeats)
        out[name] = {"seconds": wall, "seconds_all": walls, "status": sol.status, "value": sol.value,
                     "bound": sol.bound, "gap": sol.gap,
                     "line_value": None if line is None else line.value,
                     "line_seconds": None if line is None else statistics.median(line_walls),
                     "line_seconds_all": line_walls}
        extra = "" if line is None else f"; line search {line.value:.6g} in {statistics.median(line_walls):.2f} s"
        print(f"MIQCP {name}: {wall:.2f} s, {sol.status}, value {sol.value:.6g}, gap {sol.gap}{extra}", flush=True)
    return out






def result_key(args, d):
    """The one key of the results JSON a command writes (see the module docstring)."""
    if args.miqcp_only:
        key = "miqcp_bulyan" if args.bulyan_only else "miqcp"
    elif args.closed_forms_only:
        key = f"closed_forms,d={d}"
    elif args.coordinatewise_only:
        key = "coordinatewise"
    else:
        key = ("line," if args.line_only else "") + f"pool={args.pool},d={d}"
        key += "" if args.problems == "P3,ExpectedValue" else f",problems={args.problems}"
        key += f",seed={args.seed}" if args.seed else ""
    return key + (",quick" if args.quick else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="krum,comed", help="'paper' or comma-separated families")
    ap.add_argument("--d", type=int, default=184_586)
    ap.add_argument("--seed", type=int, default=0, help="the pool's norms and the honest rows (line part)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run; key suffix ',quick')")
    ap.add_argument("--problems", default="P3,ExpectedValue",
                    help="which line problems to time (ExpectedValue over the paper pool evaluates every rule "
                         "at every candidate: tens of passes)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="time every solve N times and report the median (all N are stored; default 1)")
    ap.add_argument("--pass-repeats", type=int, default=3,
                    help="passes of the pool timed before and after each solve (the baseline is their median)")
    part = ap.add_mutually_exclusive_group()
    part.add_argument("--line-only", action="store_true",
                      help="only the line part (key 'line,pool=...'); no closed forms, SCP, MILP or MIQCP")
    part.add_argument("--miqcp-only", action="store_true", help="run only the MIQCP part (key 'miqcp')")
    part.add_argument("--closed-forms-only", action="store_true",
                      help="run only P3 / ExpectedValue over comed and trimmed mean (every breakpoint; "
                           "key 'closed_forms,d=D', the only command that runs them outside --quick)")
    part.add_argument("--coordinatewise-only", action="store_true",
                      help="run only the closed forms of method='coordinatewise' against the MILP and SCP")
    ap.add_argument("--bulyan-only", action="store_true",
                    help="with --miqcp-only: only the Bulyan cases (key 'miqcp_bulyan')")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "solvers.json"))
    args = ap.parse_args(argv)
    if args.bulyan_only and not args.miqcp_only:
        ap.error("--bulyan-only needs --miqcp-only")
    if args.repeats < 1 or args.pass_repeats < 1:
        ap.error("--repeats and --pass-repeats must be >= 1")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    d = 2000 if args.quick else args.d
    key = result_key(args, d)
    reps = {"repeats": args.repeats, "pass_repeats": args.pass_repeats}
    res = {"machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__},
           "run": {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "git_describe": git_describe(),
                   "command": "python benchmarks/bench_solvers.py "
                              + " ".join(argv if argv is not None else sys.argv[1:]),
                   **reps, "load_average_before": load_average()}}
    start = time.perf_counter()
    default = not (args.line_only or args.miqcp_only or args.closed_forms_only or args.coordinatewise_only)
    if args.coordinatewise_only:
        res["coordinatewise"] = bench_coordinatewise((1000,) if args.quick else (10_000, 100_000), **reps)
    if args.closed_forms_only or (default and args.quick):
        res["closed_forms"] = bench_closed_forms(d, **reps)
    if default or args.line_only:
        res["line"] = bench_line(args.pool, d, seed=args.seed,
                                 problems=[x.strip() for x in args.problems.split(",") if x.strip()], **reps)
    if default:
        res["scp"] = bench_scp(d=1000 if args.quick else 10_000, max_iter=10 if args.quick else 40, **reps)
        res["milp"] = bench_milp(d=5 if args.quick else 20, repeats=args.repeats)
    if default or args.miqcp_only:
        res["miqcp"] = bench_miqcp(bulyan_only=args.bulyan_only, repeats=args.repeats)
    res["run"]["load_average_after"] = load_average()
    res["run"]["wall_s"] = time.perf_counter() - start
    path = Path(args.out)
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    else:
        old = {}
    old[key] = res
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(old, indent=2, default=float))
    tmp.replace(path)
    print(f"load average (1/5/15 min) before {res['run']['load_average_before']}, "
          f"after {res['run']['load_average_after']}")
    print(f"wrote {path} [{key}]")


if __name__ == "__main__":
    main()
