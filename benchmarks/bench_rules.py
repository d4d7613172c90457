"""Aggregation rules: speed as ratios measured in one run, and peak extra memory (issue 2).

Setting: n = 12 rows, f = 2, d = 10^6 (``--quick``: d = 10^5), float32, CPU,
rows drawn from N(0, 1) with a fixed seed. Every function is called once
(warm-up, which also compiles what is compiled, see ``rules/_compile.py``)
before anything is timed; the process then waits for compile workers to
finish (``TORCHINDUCTOR_COMPILE_THREADS`` is set to 1 unless given, so inductor
compiles in this process and leaves no worker pool behind). The functions
compared in one ratio are timed interleaved in the same repeat loop (``--repeats``,
7 by default, also with ``--quick``), so machine load hits both sides alike.
Each ratio is the ratio of the medians; each row also stores, for both sides,
the min, median and max of the repeats (``numerator`` / ``denominator``), the
ratio of the minima, and ``noisy: true`` when either side's max / min exceeds
``NOISY_SPREAD``. Reported ratios (targets of issue 2 in brackets):

* comed / ``G.mean(0)`` and trimmed mean(b=f) / ``G.mean(0)`` [<= 8];
* ``torch.median(G, dim=0)`` / comed and torch.median / trimmed mean [>= 3];
* Krum, geomed vs ByzFL's ``Krum`` / ``GeometricMedian`` on the same input
  [ours / ByzFL <= 1]. ByzFL's geometric median runs a fixed T = 3 Weiszfeld
  iterations; ours runs to its tolerance, so both "ours to convergence" and
  "ours with max_iter=3" (``memory=0``: plain smoothed Weiszfeld, the
  algorithm ByzFL runs; ours accelerates by default, which pays off only
  over more iterations) are reported;
* Bulyan(krum, trimmed) against a straightforward Bulyan written here that
  recomputes the rows' pairwise distances from scratch in every selection
  round [speed-up >= 5]. Like for like: every round uses the distance function
  the measured ``bulyan`` uses once per call (``ranking_squared_distances``,
  which ``krum_scores`` uses too), bulyan's own per-round Krum pick
  (``max(k - f - 2, f, 1)`` neighbours, its tie-break) and bulyan's own
  aggregation, so only the recompute-each-round structure differs; its
  output is asserted equal to ``bulyan(G, f)`` bitwise. The previous baseline
  (float64 ``torch.cdist`` direct mode in the last two rounds, which alone
  made it ~28% slower) is still timed, as an informational row without a
  target, for comparison with results stored before this change;
* MixTailor over a one-rule pool vs the rule itself [<= 1.05];
* geomed's vectorized ``Geomed.batched`` against a loop of ``Geomed.__call__``
  on many small problems (12 x 10, float64; 1000 problems, ``--quick`` 100),
  p = 1.5, 2, 8, 16, at least 5 interleaved repeats (no target);
* peak extra memory of each rule / size of G [<= 3], each rule in its own
  fresh subprocess (Linux) run with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
  ``MALLOC_TRIM_THRESHOLD_`` fixed at 128 KiB, so blocks of 128 KiB and more are
  mapped on allocation and unmapped on free (the default dynamic threshold kept
  freed blocks of up to 32 MB resident, and later calls reused them unseen).
  The rule runs once on the rows (warm-up: code paths loaded, kernels
  compiled), then the peak resident set (VmHWM) is reset through
  ``/proc/self/clear_refs`` and read after a second call (``tracemalloc`` does
  not see torch's allocator; ``ru_maxrss`` cannot be reset). A reading below
  the size of the rule's own output (a fresh d-vector, 1/n of size(G)) cannot
  be right and is stored with ``valid: false``.

Every results JSON records the UTC date, ``git describe --always --dirty`` of
the repository, the torch version, the thread counts, and the load average
before and after the run.

ByzFL is never a dependency: run the script with a Python that has it (e.g.
``python -m venv --system-site-packages /tmp/byzfl-venv &&
/tmp/byzfl-venv/bin/pip install --no-deps byzfl``, then
``/tmp/byzfl-venv/bin/python benchmarks/bench_rules.py``). Without it the ByzFL
columns are skipped and the output says so.

    python benchmarks/bench_rules.py [--quick] [--out PATH] [--repeats R] [--d D] [--batch B]

(``--json PATH`` is an alias of ``--out``.) Results: ``benchmarks/results/rules.json``
(``rules_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import os

# Before torch is imported: inductor reads it once. With the default (one compile
# worker per core, in a subprocess pool) the first timed group could start while
# workers were still busy; with 1 inductor compiles in this process, synchronously.
# (TORCH_COMPILE_THREADS is not read by torch; this is the variable it reads.)
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _provenance import git_describe, load_average  # noqa: E402

from mixtailor_game.rules import (  # noqa: E402
    Comed, Geomed, MixTailor, bulyan, comed, geomed, geomed_solve, krum, krum_scores, trimmed_mean,
)
from mixtailor_game.rules._compile import MIN_ELEMENTS, compile_mode  # noqa: E402
from mixtailor_game.rules._distances import CHUNK_COLS, ranking_squared_distances  # noqa: E402
from mixtailor_game.rules.bulyan import _pick_krum, bulyan_aggregate, closest_to_median_mean  # noqa: E402

N, F = 12, 2
BATCH = 1000  # small geomed problems in the batched comparison (--quick: BATCH_QUICK)
BATCH_QUICK = 100
BATCH_PS = (1.5, 2.0, 8.0, 16.0)
MIN_REPEATS = 5  # every ratio: at least this many interleaved repeats
NOISY_SPREAD = 1.5  # a side whose max / min of the repeats exceeds this is flagged noisy
MEMORY_RULES = ("mean", "torch.median", "comed", "trimmed_mean", "krum", "krum_p3", "geomed", "geomed_p3",
                "bulyan", "bulyan_geomed_comed", "mixtailor_comed")  # the snippet's calls, one subprocess each
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def load_byzfl():
    """ByzFL's aggregators module, or None. ``byzfl/__init__`` imports its training
    benchmark (torchvision); we load only the aggregators subpackage."""
    spec = importlib.util.find_spec("byzfl")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "byzfl" not in sys.modules:
        pkg = types.ModuleType("byzfl")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["byzfl"] = pkg
    try:
        from byzfl.aggregators import aggregators  # type: ignore
    except Exception as exc:  # pragma: no cover - depends on the environment
        print(f"ByzFL found but its aggregators did not import ({exc!r}); skipping ByzFL columns")
        return None
    return aggregators


def byzfl_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("byzfl")
    except Exception:
        return None


def bulyan_recompute_select(G: torch.Tensor, f: int, p: float = 2.0) -> list[int]:
    """Bulyan(krum)'s selection done the straightforward way: in every round the rows
    left are gathered and their pairwise squared distances computed from scratch,
    by the function ``bulyan`` calls once per call (``ranking_squared_distances``;
    ``krum_scores`` uses it too), and the row is picked by bulyan's own per-round
    rule (``_pick_krum``: ``max(k - f - 2, f, 1)`` neighbours, the same tie-break)."""
    remaining = list(range(G.shape[0]))
    chosen = []
    for _ in range(G.shape[0] - 2 * f):
        D2 = ranking_squared_distances(G[remaining], p)
        chosen.append(remaining.pop(_pick_krum(D2, list(range(len(remaining))), f)))
    return chosen


def bulyan_recompute(G: torch.Tensor, f: int, p: float = 2.0) -> torch.Tensor:
    """Straightforward Bulyan(krum, trimmed), like for like with :func:`bulyan`: the
    distances recomputed every round (:func:`bulyan_recompute_select`), then
    bulyan's own aggregation of the chosen rows. Only the recompute-each-round
    structure differs from the measured rule."""
    return bulyan_aggregate(G, bulyan_recompute_select(G, f, p), f, "trimmed", p)


def bulyan_recompute_cdist(G: torch.Tensor, f: int, p: float = 2.0) -> torch.Tensor:
    """The previous baseline, kept only to compare with results stored before it was
    replaced: Krum's scores via ``krum_scores`` while ``k > 2f + 2``, but the last
    two rounds through a float64 ``torch.cdist`` in its direct mode (a full float64
    copy of the rows and cdist's slow path), and the chosen rows gathered before
    aggregating. Not like for like (audit finding 1)."""
    remaining = list(range(G.shape[0]))
    chosen = []
    for _ in range(G.shape[0] - 2 * f):
        sub = G[remaining]
        k = len(remaining)
        if k > 2 * f + 2:
            scores = krum_scores(sub, f, p)
        else:
            D2 = torch.cdist(sub.double(), sub.double(), compute_mode="donot_use_mm_for_euclid_dist").square()
            D2.fill_diagonal_(math.inf)
            scores = D2.topk(max(k - f - 2, f, 1), dim=1, largest=False).values.sum(1)
        chosen.append(remaining.pop(int(torch.argmin(scores))))
    S = G[chosen]
    return closest_to_median_mean(S, S.shape[0] - 2 * f)


def time_interleaved(fns: dict, repeats: int, warm_up: bool = True) -> dict:
    """Seconds of every call: ``{name: [repeats floats]}``, after one warm-up call each
    (unless ``warm_up`` is False), the functions interleaved within each repeat."""
    if warm_up:
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return times


def summary(runs: list) -> dict:
    lo, hi = min(runs), max(runs)
    return {"median": statistics.median(runs), "min": lo, "max": hi,
            "spread": hi / lo if lo > 0 else math.inf, "runs": runs}


def child_pids() -> list[int]:
    """This process's live child processes (inductor's compile workers, if any)."""
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            kids.append(int(entry))
    return kids


def settle(limit_s: float = 60.0, quiet_s: float = 1.0) -> dict:
    """Wait until this process has no child process left (compile workers), then
    ``quiet_s`` more: run after the warm-up that compiled, before the first timing."""
    start = time.perf_counter()
    while child_pids() and time.perf_counter() - start < limit_s:
        time.sleep(0.2)
    left = child_pids()
    time.sleep(quiet_s)
    return {"waited_s": round(time.perf_counter() - start, 2), "children_left": len(left)}




def inductor_compile_threads() -> int | None:
    try:
        import torch._inductor.config as inductor_config
    except Exception:  # pragma: no cover - depends on the torch build
        return None
    return inductor_config.compile_threads




MEMORY_SNIPPET = r"""
import gc, json, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from mixtailor_game.rules import comed, trimmed_mean, krum, geomed, bulyan, MixTailor, Comed

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: resets VmHWM to the current RSS
        fh.write("5")

G = torch.randn({n}, {d}, generator=torch.Generator().manual_seed(0))
calls = {{
    "mean": lambda X: X.mean(0),
    "torch.median": lambda X: torch.median(X, dim=0).values,
    "comed": comed,
    "trimmed_mean": lambda X: trimmed_mean(X, {f}),
    "krum": lambda X: krum(X, {f}, 2.0),
    "krum_p3": lambda X: krum(X, {f}, 3.0),
    "geomed": lambda X: geomed(X, 2.0),
    "geomed_p3": lambda X: geomed(X, 3.0, max_iter=3),
    "bulyan": lambda X: bulyan(X, {f}),
    "bulyan_geomed_comed": lambda X: bulyan(X, {f}, "geomed", "comed"),
    "mixtailor_comed": lambda X: MixTailor([Comed(f={f})])(X),
}}
fn = calls[sys.argv[1]]
y = fn(G)  # warm-up on the same rows: loads every code path and compiles what is compiled (rules/_compile.py)
del y
gc.collect()
size = G.numel() * G.element_size()
reset_peak()
before = peak_kib()
y = fn(G)
after = peak_kib()
print(json.dumps({{"extra": (after - before) * 1024 / size, "output": y.numel() * y.element_size() / size,
                   "resident_before_mib": before / 1024}}))
"""


def peak_extra_memory(d: int) -> dict:
    """Peak extra resident memory of each rule / size of G, each rule in its own fresh
    subprocess with glibc's mmap and trim thresholds fixed (``MALLOC_ENV``): VmHWM is
    reset (``/proc/self/clear_refs``) before the measured call, after a warm-up call of
    the same rule on the same rows. ``valid`` is False for a reading below the size of
    the rule's own output, which the call must have allocated."""
    code = MEMORY_SNIPPET.format(root=str(ROOT), threads=torch.get_num_threads(), n=N, d=d, f=F)
    env = {**os.environ, **MALLOC_ENV}
    out = {}
    for name in MEMORY_RULES:
        proc = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True, env=env)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["valid"] = r["extra"] >= r["output"]
        out[name] = r
    return out


def eager_tail_note(d: int, reading: float | None) -> str | None:
    """Why Krum p = 3 read far above 3x size(G) at small d (see the JSON note): only when
    the reading is still high (84906e0 made the callers of the chunked kernel decide once
    for the whole rows, so the tail chunk is compiled too: 12x -> 0.03x at d = 10^5)."""
    tail = d % CHUNK_COLS
    if not (d > CHUNK_COLS and tail and N * tail < MIN_ELEMENTS <= N * d and compile_mode() == "auto"):
        return None
    if reading is not None and reading < 1.0:
        return None
    pairs = N * (N - 1) // 2
    est = (3 * pairs * tail * 8 + N * tail * 8) / (N * d * 4)
    got = "" if reading is None else f" Measured here: {reading:.2f}x."
    return (
        f"peak extra memory of krum_p3 (and of any pairwise l_p distance with 1 < p < inf, p != 2, on CPU: "
        f"Krum, Bulyan's Krum selection, ...): rules/_distances._power_sums runs the compiled pair kernel "
        f"_FUSED_POWER_SUMS on column chunks of CHUNK_COLS = {CHUNK_COLS}. The last chunk here has {tail} "
        f"columns; {N} x {tail} = {N * tail} elements is below the compile threshold MIN_ELEMENTS = "
        f"{MIN_ELEMENTS} (rules/_compile.py), so that chunk runs the eager version of _pair_power_sums_fused, "
        f"which materializes the gathered float64 rows Xd[i], Xd[j] and their difference, each ({pairs} pairs x "
        f"{tail}) float64, at once: 3 x {pairs} x {tail} x 8 B + the {N} x {tail} float64 copy = "
        f"{est:.2f}x size(G), fixed by the tail's width, not by d.{got} The compiled chunks add almost nothing "
        f"(with MIXTAILOR_COMPILE=always, which compiles the tail too, krum_p3 read 0.08x at d = 10^5 by hand "
        f"on 2026-11-29). "
        f"Not a fixed-size buffer of the compiled kernel and not a recompilation. Since 84906e0 the tail is "
        f"compiled too (CompiledKernel(..., wanted=True)); a reading this high means that path is not taken."
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"d = 10^5, {BATCH_QUICK} problems in the batched comparison (about 2 minutes)")
    ap.add_argument("--d", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None, help=f"default 7 (at least {MIN_REPEATS} are used)")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"problems in the batched geomed comparison (default {BATCH}, {BATCH_QUICK} with --quick)")
    ap.add_argument("--out", "--json", dest="out", default=None,
                    help="output file (default benchmarks/results/rules.json, rules_quick.json with --quick); "
                         "--json is an alias")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "results" / ("rules_quick.json" if args.quick else "rules.json"))
    d = args.d or (100_000 if args.quick else 1_000_000)
    repeats = max(MIN_REPEATS, args.repeats or 7)
    batch = args.batch or (BATCH_QUICK if args.quick else BATCH)
    batch_repeats = max(MIN_REPEATS, repeats // 2)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = load_average()
    wall_start = time.perf_counter()
    G = torch.randn(N, d, generator=torch.Generator().manual_seed(0))
    byz = load_byzfl()
    rows, notes = [], []
    times: dict = {}

    def add(what, num, den, target, detail="", baseline="denominator"):
        a, b = summary(times[num]), summary(times[den])
        ratio = a["median"] / b["median"]
        ok = None if target is None else (ratio <= target[1] if target[0] == "<=" else ratio >= target[1])
        rows.append({"measure": what, "ratio": ratio, "ratio_of_minima": a["min"] / b["min"],
                     "target": None if target is None else f"{target[0]} {target[1]}", "ok": ok,
                     "noisy": max(a["spread"], b["spread"]) > NOISY_SPREAD,
                     "numerator": {"name": num, **a}, "denominator": {"name": den, **b},
                     "baseline": baseline, "detail": detail})

    group1 = {
        "mean": lambda: G.mean(0),
        "comed": lambda: comed(G),
        "trimmed": lambda: trimmed_mean(G, F),
        "torch.median": lambda: torch.median(G, dim=0),
    }
    group2 = {
        "krum": lambda: krum(G, F, 2.0),
        "bulyan": lambda: bulyan(G, F),
        "bulyan_recompute": lambda: bulyan_recompute(G, F),
        "bulyan_recompute_cdist": lambda: bulyan_recompute_cdist(G, F),
        "geomed": lambda: geomed(G, 2.0),
        "geomed_3it": lambda: geomed(G, 2.0, max_iter=3, memory=0, span=False),
        "geomed_rows": lambda: geomed(G, 2.0, span=False),
        "comed_rule": lambda: Comed(f=F)(G),
        "mixtailor": lambda: MixTailor([Comed(f=F)])(G),
    }
    if byz is not None:
        byz_krum, byz_gm = byz.Krum(f=F), byz.GeometricMedian(nu=0.1, T=3)
        group2["byzfl_krum"] = lambda: byz_krum(G)
        group2["byzfl_geomed"] = lambda: byz_gm(G)
    Gs = torch.randn(batch, N, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    batched_groups = {}
    for p in BATCH_PS:
        rule = Geomed(f=F, p=p)
        batched_groups[p] = {f"geomed_p{p:g}_batched": (lambda rule=rule: rule.batched(Gs)),
                             f"geomed_p{p:g}_loop": (lambda rule=rule: torch.stack([rule(x) for x in Gs]))}

    # Like for like: the baseline picks the same rows and returns bulyan's output bitwise.
    ref = bulyan(G, F)
    assert torch.equal(bulyan_recompute(G, F), ref), "bulyan_recompute differs from bulyan(G, f)"
    old_equal = torch.equal(bulyan_recompute_cdist(G, F), ref)

    # Warm up everything (compiles every kernel the timed calls use) and let compile
    # workers finish before the first timed group.
    compile_start = time.perf_counter()
    for fn in [*group1.values(), *group2.values(), *(f for g in batched_groups.values() for f in g.values())]:
        fn()
    warm_up_s = time.perf_counter() - compile_start
    settled = settle()

    times.update(time_interleaved(group1, repeats))
    add("comed / G.mean(0)", "comed", "mean", ("<=", 8))
    add("trimmed_mean(b=2) / G.mean(0)", "trimmed", "mean", ("<=", 8))
    add("torch.median / comed", "torch.median", "comed", (">=", 3), baseline="numerator")
    add("torch.median / trimmed_mean(b=2)", "torch.median", "trimmed", (">=", 3), baseline="numerator")

    times.update(time_interleaved(group2, repeats))
    res = geomed_solve(G, 2.0)
    if byz is not None:
        add("krum / ByzFL Krum", "krum", "byzfl_krum", ("<=", 1))
        add("geomed (to convergence) / ByzFL GeometricMedian(T=3)", "geomed", "byzfl_geomed", None,
            f"ours ran {res.iterations} iterations (converged={res.converged}), ByzFL 3")
        add("geomed (max_iter=3, memory=0) / ByzFL GeometricMedian(T=3)", "geomed_3it", "byzfl_geomed",
            ("<=", 1), "the same algorithm (smoothed Weiszfeld, no acceleration) for the same 3 iterations")
    else:
        notes.append("ByzFL is not installed in this Python: the ByzFL columns are skipped "
                     "(see the module docstring to run them).")
    rows_res = geomed_solve(G, 2.0, span=False)
    add("geomed p=2 iterating on the rows (span=False) / geomed (speed-up of the span solve)", "geomed_rows",
        "geomed", None, f"the same minimizer: IRLS on the rows ({rows_res.iterations} iterations) against "
        f"geomed's default, solved in the rows' span ({res.iterations} iterations reported); objectives "
        f"{rows_res.objective:.9g} and {res.objective:.9g}", baseline="numerator")
    like = ("baseline recomputes every round's pairwise distances with bulyan's own distance function "
            "(ranking_squared_distances), bulyan's per-round Krum pick and bulyan's aggregation; output "
            "asserted bitwise equal to bulyan(G, f)")
    add("Bulyan(krum, trimmed) / straightforward Bulyan (Krum recomputed each round)",
        "bulyan", "bulyan_recompute", None, "no ByzFL Bulyan; the inverse is the speed-up; " + like)
    add("straightforward Bulyan / Bulyan (speed-up)", "bulyan_recompute", "bulyan", (">=", 5), like,
        baseline="numerator")
    add("previous baseline (float64 cdist in the last two rounds) / Bulyan (speed-up), not like for like",
        "bulyan_recompute_cdist", "bulyan", None,
        "for comparison with results stored before this baseline was replaced (audit finding 1): its last "
        "two rounds "
        f"use torch.cdist's float64 direct mode; output equal to bulyan's bitwise: {old_equal}",
        baseline="numerator")
    add("MixTailor([comed]) / comed", "mixtailor", "comed_rule", ("<=", 1.05))

    # many small problems (the line search's dense grid, the verify checkers): geomed's
    # vectorized batch against the loop over the batch that Rule.batched does by default
    for p, fns in batched_groups.items():
        times.update(time_interleaved(fns, batch_repeats, warm_up=False))  # warmed up above (seconds a call)
        add(f"geomed p={p:g}, {batch} problems of {N} x 10: loop / batched (speed-up)",
            f"geomed_p{p:g}_loop", f"geomed_p{p:g}_batched", None,
            f"Geomed.batched against a loop of Geomed.__call__ (float64), {batch_repeats} interleaved repeats",
            baseline="numerator")
    if batch != BATCH:
        notes.append(f"batched geomed comparison on {batch} problems, not the full run's {BATCH}.")

    mem = peak_extra_memory(d)
    for name, r in mem.items():
        target = None if name in ("mean", "torch.median") else ("<=", 3)
        ok = None if target is None or not r["valid"] else r["extra"] <= target[1]
        rows.append({"measure": f"peak extra memory / size(G): {name}", "ratio": r["extra"],
                     "target": None if target is None else f"{target[0]} {target[1]}", "ok": ok,
                     "valid": r["valid"], "output_over_size_G": r["output"],
                     "detail": "" if r["valid"] else "INVALID: below the size of the rule's own output"})
        if not r["valid"]:
            notes.append(f"peak extra memory of {name} read {r['extra']:.3f}x size(G), below its output's "
                         f"{r['output']:.3f}x: invalid reading (ok left null).")
    tail_note = eager_tail_note(d, mem.get("krum_p3", {}).get("extra"))
    if tail_note:
        notes.append(tail_note)

    load_after = load_average()
    result = {
        "setting": {"n": N, "f": F, "d": d, "dtype": "float32", "device": "cpu", "repeats": repeats,
                    "batch_problems": batch, "batch_repeats": batch_repeats,
                    "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "byzfl": bool(byz), "byzfl_version": byzfl_version() if byz else None, "quick": args.quick,
                    "mixtailor_compile": compile_mode(),
                    "inductor_compile_threads": inductor_compile_threads()},
        "run": {"date_utc": started.isoformat(timespec="seconds"), "git": git_describe(),
                "load_average_before": load_before, "load_average_after": load_after,
                "warm_up_s": round(warm_up_s, 2), "settle": settled,
                "wall_s": round(time.perf_counter() - wall_start, 1),
                "noisy_rows": [r["measure"] for r in rows if r.get("noisy")],
                "noisy_spread": NOISY_SPREAD},
        "seconds": {k: statistics.median(v) for k, v in times.items()},
        "rows": rows,
        "notes": notes,
        "memory_method": "VmHWM delta (reset through /proc/self/clear_refs) around one call, each rule in its "
                         f"own fresh subprocess with {MALLOC_ENV} (freed blocks of 128 KiB and more go back to "
                         "the OS), after a warm-up call of the same rule on the same rows; a reading below the "
                         "size of the rule's output is marked valid: false",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.out)

    print(f"n={N}, f={F}, d={d}, float32, CPU, {torch.get_num_threads()} threads, median of {repeats} "
          f"({batch_repeats} for the batched rows), ByzFL {'yes' if byz else 'no'}; {result['run']['git']}, "
          f"load {load_before} -> {load_after}")
    print("| measure | ratio (medians) | ratio (minima) | spread num / den | target | ok |")
    print("|---|---:|---:|---|---|---|")
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        if "numerator" in r:
            extra = (f"{r['ratio_of_minima']:.2f} | {r['numerator']['spread']:.2f} / "
                     f"{r['denominator']['spread']:.2f}{' NOISY' if r['noisy'] else ''}")
        else:
            extra = " | " + ("" if r["valid"] else "INVALID")
        print(f"| {r['measure']} | {r['ratio']:.2f} | {extra} | {r['target'] or ''} | {ok} |")
    for note in notes:
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
