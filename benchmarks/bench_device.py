"""Rules and the 1-D solvers on one device (a GPU when lent), as ratios to a memory pass.

Measured in one run on ``--device`` (synchronized timers, median of
``--repeats`` after a warm-up):

1. Every rule family at n = 12, f = 2, d = ``--d`` (default 10^6, float32),
   divided by the time of ``G.sum(0)`` on the same rows (one read of G: the
   memory-bandwidth floor of any rule that reads every row once).
2. One pass of the paper's 64-rule pool at the paper CNN's d = 184,586
   (every entry called once on the same rows), and P3 / ExpectedValue solved
   by the line search on that device, as a multiple of that pass (issue 4's
   "time of one solve as a multiple of one pass").

    python benchmarks/bench_device.py --device cuda [--d 1000000] [--repeats 9] [--out PATH]

Results: ``benchmarks/results/device_<device>.json`` unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import solvers  # noqa: E402
from mixtailor_game.rules import as_rule, paper_pool  # noqa: E402
from mixtailor_game.train.rundir import atomic_write_json  # noqa: E402

N, F = 12, 2
RULES = {
    "mean": dict(name="mean", f=0),
    "comed": dict(name="comed"),
    "trimmed_mean": dict(name="trimmed_mean", b=F),
    "krum p=2": dict(name="krum", p=2.0),
    "krum p=1": dict(name="krum", p=1.0),
    "krum p=7": dict(name="krum", p=7.0),
    "geomed p=2": dict(name="geomed", p=2.0),
    "geomed p=7": dict(name="geomed", p=7.0),
    "bulyan(krum, trimmed)": dict(name="bulyan"),
    "bulyan(geomed, average) p=7": dict(name="bulyan", select="geomed", aggregate="average", p=7.0),
    "centered_clipping": dict(name="centered_clipping"),
    "bucketing(s=2, comed)": dict(name="bucketing", base="comed", s=2),
    "nnm(comed)": dict(name="nnm", base="comed"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def bench_rules(device, d: int, repeats: int) -> dict:
    G = torch.randn(N, d, generator=torch.Generator().manual_seed(0)).to(device)
    floor = timed(lambda: G.sum(0), device, repeats)
    out = {"d": d, "memory_pass_s": floor, "rules": {}}
    for label, spec in RULES.items():
        rule = as_rule(spec, f=F)
        t = timed(lambda: rule(G), device, repeats)
        out["rules"][label] = {"seconds": t, "per_memory_pass": t / floor}
        print(f"  {label:<30} {1e3 * t:9.3f} ms = {t / floor:8.1f} memory passes", flush=True)
    return out


def bench_pool_solvers(device, d: int, problems) -> dict:
    pool = paper_pool(F, 0)
    g = torch.Generator().manual_seed(0)
    V = (0.01 * torch.randn(N - F, d, generator=g, dtype=torch.float64) + 0.002).float().to(device)
    G = torch.cat([V[:F], V])
    for r in pool:  # warm-up: first calls allocate and (on a GPU) load kernels
        r(G)

    def one_pass():
        for r in pool:
            r(G)

    pass_s = timed(one_pass, device, 1)
    out = {"d": d, "rules": len(pool), "one_pass_s": pass_s}
    print(f"  one pass of the paper pool (64 rules) at d={d}: {pass_s:.3f} s", flush=True)
    for name in problems:
        prob = solvers.P3(V, F, pool) if name == "P3" else solvers.ExpectedValue(V, F, pool)
        start = time.perf_counter()
        sol = solvers.solve(prob)
        sync(device)
        wall = time.perf_counter() - start
        out[name] = {"seconds": wall, "passes": wall / pass_s, "value": sol.value, "status": sol.status,
                     "method": sol.method, "line_evaluations": sol.iterations}
        print(f"  {name:<14} {wall:.2f} s = {wall / pass_s:.1f} passes, value {sol.value:.4g}, "
              f"{sol.status} ({sol.method})", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--d", type=int, default=1_000_000, help="coordinates for the per-rule ratios")
    ap.add_argument("--pool-d", type=int, default=184_586, help="coordinates for the pool pass and solvers")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--problems", default="P3,ExpectedValue", help="comma-separated; empty to skip the solvers")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device} ({device_name(device)}), torch {torch.__version__}", flush=True)
    print(f"rules at n={N}, f={F}, d={args.d}, float32:", flush=True)
    report = {
        "benchmark": "rules as multiples of one memory pass (G.sum(0)); paper pool pass and 1-D solvers",
        "device": f"{device} ({device_name(device)})",
        "torch": torch.__version__,
        "command": "python benchmarks/bench_device.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rules": bench_rules(device, args.d, args.repeats),
    }
    problems = [p for p in args.problems.split(",") if p]
    print(f"paper pool and solvers at d={args.pool_d}:", flush=True)
    report["pool"] = bench_pool_solvers(device, args.pool_d, problems)
    out = args.out or str(ROOT / "benchmarks" / "results" / f"device_{device.type}.json")
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
