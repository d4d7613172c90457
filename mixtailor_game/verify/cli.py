"""``python -m mixtailor_game.verify theorem1 | theorem2 | proposition1``.

The CLI parses the grid, calls :mod:`~mixtailor_game.verify.krum_bias` or
:mod:`~mixtailor_game.verify.proposition1`, prints one table row per case and
exits with 0 when every case holds, 1 when a case violates its bound, 2 when
some case is inconclusive (its CI straddles the bound) and none violates, or when no
case makes a claim (nothing was tested), and 3 on bad input (one line on stderr; argparse's
own usage errors exited 2, the code of "inconclusive"); 130 when interrupted. The theorem
checkers print a line per case on stderr, keep their finished cases in ``--json PATH``
(``--resume``) and can run cases in worker processes (``--jobs``): see
:mod:`~mixtailor_game.verify.checkpoint`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import sys
import time

import torch

from .._checks import os_error_message
from .checkpoint import Progress, case_key, resumed_cases
from .krum_bias import grid_cases, run_case
from .report import VIOLATED, HOLDS, exit_code, table, write_json
from .sampling import DIRECTIONS, HETEROGENEITY, LAWS

QUICK = {
    1: dict(n=[7, 11], f=[2, 4], pairs=[(7, 2), (11, 4)], d=[1, 10], p=[1.0, 2.0, 4.0], laws=list(LAWS), trials=200,
            search_trials=100, directions=["e1", "-grad", "random"], registry_budget=0.0),
    2: dict(n=[7, 11], f=[2, 4], pairs=[(7, 2), (11, 4)], d=[1, 10], p=[2.0], laws=list(LAWS), delta2=[1.0], trials=200,
            search_trials=100, directions=["e1", "-grad", "random"], registry_budget=0.0),
}
FULL = {
    1: dict(n=[7, 11, 21], f=[1, 2, 4, 8], d=[1, 10, 100], p=[1.0, 1.5, 2.0, 3.0, 4.0, 8.0],
            laws=list(LAWS), trials=1000, search_trials=500, directions=list(DIRECTIONS), registry_budget=10.0),
    2: dict(n=[7, 11, 21], f=[1, 2, 4, 8], d=[1, 10, 100], p=[1.0, 2.0, 4.0], laws=list(LAWS),
            delta2=[0.1, 0.5, 2.0], trials=1000, search_trials=500, directions=list(DIRECTIONS),
            registry_budget=10.0),
}


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text):
        v = int(text)
        if v < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text}")
        return v
    return parse


_trials_int = _int_at_least(2)  # a variance needs two trials
_size_int = _int_at_least(1)


def _positive_float(text):
    v = float(text)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return v


class _UsageError(Exception):
    """A command-line error argparse found (reported in one line, exit 3)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{self.prog}: {message}")


def _common(sp, name: str):
    sp.add_argument("--quick", action="store_true",
                    help="the small default grid (about 2 minutes for theorem1 on 2 shared cores)")
    sp.add_argument("--json", metavar="PATH", help="write the full results (every case, notes) as JSON")
    if name != "proposition1":
        sp.add_argument("--resume", action="store_true",
                        help="with --json PATH: keep the cases PATH already holds from a run with the same "
                             "settings (it is rewritten after every case) and run only the others")
        sp.add_argument("--jobs", type=_size_int, default=1, metavar="J",
                        help="cases run in J worker processes at once (default 1; the same results, each "
                             "with --threads threads)")
    sp.add_argument("--threads", type=_size_int, default=1, metavar="T",
                    help="torch intra-op threads (default 1: the cases are small; on a loaded machine two "
                         "threads made tiny kernels ~10^4 times slower)")
    sp.add_argument("--trials", type=_trials_int, help="Monte Carlo trials per estimate (confirmation)")
    sp.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    sp.add_argument("--bound-scale", type=_positive_float, default=1.0, metavar="S",
                    help="multiply every bound (threshold) by S; S << 1 shows the checker failing")
    sp.add_argument("--n", type=int, nargs="+", help="numbers of workers")
    sp.add_argument("--f", type=int, nargs="+", help="numbers of Byzantine workers")
    sp.add_argument("--d", type=_size_int, nargs="+", help="dimensions")
    sp.add_argument("--sigma2", type=_positive_float,
                    help="honest variance sigma^2 (default 1; 4 for proposition1)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m mixtailor_game.verify",
                 description="Empirical checks of the MixTailor paper's Theorems 1, 2 "
                             "and Proposition 1 against a worst-case adversary search.")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, help_ in (("theorem1", "bias of generalized Krum, iid honest workers"),
                        ("theorem2", "bias of generalized Krum, heterogeneous honest workers")):
        sp = sub.add_parser(name, help=help_)
        _common(sp, name)
        sp.add_argument("--p", type=float, nargs="+", help="norms of generalized Krum (p >= 1)")
        sp.add_argument("--laws", nargs="+", choices=LAWS, help="honest noise laws")
        sp.add_argument("--search-trials", type=_trials_int, help="trials of the search phase")
        sp.add_argument("--directions", nargs="+", choices=DIRECTIONS, help="searched directions")
        sp.add_argument("--grad-norm", type=_positive_float, default=1.0, help="||grad F|| (default 1; finite, > 0)")
        sp.add_argument("--no-registry", action="store_true",
                        help="skip mixtailor_game.attacks / solvers families")
        sp.add_argument("--registry-budget", type=_positive_float,
                        help="seconds per case a registry family may take")
        if name == "theorem2":
            sp.add_argument("--delta2", type=float, nargs="+", help="heterogeneity Delta^2 values")
            sp.add_argument("--hetero", nargs="+", choices=HETEROGENEITY,
                            help="shapes of heterogeneity searched")
    sp = sub.add_parser("proposition1", help="sufficient condition for a mixed pool")
    _common(sp, "proposition1")
    sp.add_argument("--problems", nargs="+", choices=("quadratic", "logistic"),
                    help="problems with an exact gradient")
    sp.add_argument("--scenarios", nargs="+", help="attack scenarios (see proposition1.SCENARIOS)")
    sp.add_argument("--q", type=int, default=4, help="compromised rules in every pool (default 4)")
    sp.add_argument("--points", type=_size_int, help="points w of Omega")
    return ap


def _pick(args, key, defaults):
    v = getattr(args, key, None)
    return defaults[key] if v is None else v


def run_theorem(args, theorem: int) -> tuple[dict, int]:
    base = QUICK[theorem] if args.quick else FULL[theorem]
    pairs = base.get("pairs") if args.n is None and args.f is None else None
    cases, skipped = grid_cases(_pick(args, "n", base), _pick(args, "f", base), _pick(args, "d", base),
                                _pick(args, "p", base), _pick(args, "laws", base),
                                _pick(args, "delta2", base) if theorem == 2 else (0.0,), pairs=pairs)
    if not cases:
        raise ValueError(f"verify: the grid must hold a case with n > 2f + 2, got {'; '.join(skipped)}")
    trials = _pick(args, "trials", base)
    search_trials = args.search_trials or (min(base["search_trials"], trials) if args.trials is None else trials)
    budget = base["registry_budget"] if args.registry_budget is None else args.registry_budget
    registry = not args.no_registry and budget > 0
    hetero = list(getattr(args, "hetero", None) or HETEROGENEITY) if theorem == 2 else None
    directions = list(_pick(args, "directions", base))
    # what a checkpoint must share with this run for --resume to keep its cases
    settings = dict(command=f"theorem{theorem}", seed=args.seed, trials=trials, search_trials=search_trials,
                    sigma2=args.sigma2 or 1.0, grad_norm=args.grad_norm, bound_scale=args.bound_scale,
                    registry_budget=budget if registry else 0.0, directions=directions, hetero=hetero)
    done = {}
    if args.resume:
        done, message = resumed_cases(args.json, settings)
        print(message, file=sys.stderr)
    print(f"theorem{theorem}: {len(cases)} cases{'' if args.quick else ' (the full grid; --quick runs the small one)'}"
          f", one line each below; the table at the end", file=sys.stderr, flush=True)
    if not args.json and len(cases) > 50:
        print("  (pass --json PATH to keep finished cases across a kill, --resume to go on from them, "
              "--jobs J to run J at once)", file=sys.stderr, flush=True)
    progress = Progress(f"theorem{theorem}", len(cases), jobs=args.jobs)
    finished = {}  # grid position -> result
    for i, case in enumerate(cases):
        if case_key(case) in done:
            finished[i] = done[case_key(case)]
            progress.case(finished[i], None)
    todo = [(i, case) for i, case in enumerate(cases) if i not in finished]
    options = dict(theorem=theorem, trials=trials, search_trials=search_trials, sigma2=args.sigma2 or 1.0,
                   grad_norm=args.grad_norm, bound_scale=args.bound_scale, seed=args.seed, registry=registry,
                   registry_budget=budget, hetero=hetero or HETEROGENEITY, directions=directions)
    for i, r, seconds in _run_cases(todo, options, args.jobs, args.threads):
        finished[i] = r
        progress.case(r, seconds)
        if args.json:  # a killed run keeps its finished cases (--resume)
            write_json(args.json, dict(settings=settings, complete=False,
                                       cases=[finished[k] for k in sorted(finished)], skipped=skipped))
    results = [finished[i] for i in range(len(cases))]
    notes = []
    if not registry:
        notes.append("registry families (mixtailor_game.attacks, solvers) not run: "
                     + ("--no-registry" if args.no_registry else "--quick sets no registry budget; "
                        "pass --registry-budget S (seconds per family and case) to include them"))
    for r in results:
        for note in r["notes"]:
            key = note.split(":")[0] + ":" + note.split(":")[1] if note.count(":") > 1 else note
            if not any(n.startswith(key) for n in notes):
                notes.append(note + " (first case; may repeat)")
    header = ["law", "n", "f", "d", "p"] + (["D2", "hetero"] if theorem == 2 else []) + [
        "bias^2", "95% CI", "bound", "ratio", "status", "worst adversary", "byz%", "m2", "m3", "m4"]
    rows = []
    for r in results:
        e = r["estimate"]
        rows.append([r["law"], str(r["n"]), str(r["f"]), str(r["d"]), f"{r['p']:g}"]
                    + ([f"{r['delta2']:g}", r["heterogeneity"]] if theorem == 2 else [])
                    + [e["value"], f"[{e['lo']:.3g}, {e['hi']:.3g}]", r["scaled_bound"], r["ratio"],
                       r["status"], r["worst_adversary"], f"{100 * r['byzantine_selected']:.0f}"]
                    + [r["moment_ratios"][k] for k in (2, 3, 4)])
    bound_txt = "2 sigma^2 (1 + Lambda)" if theorem == 1 else "C_1 + C_2 Lambda"
    print(f"Theorem {theorem}: ||E[U] - grad F||^2 <= {bound_txt} for U = krum(G, f, p) "
          f"(mixtailor_game.rules), worst adversary of a search; bound x {args.bound_scale:g}; "
          f"{trials} confirmation trials, {search_trials} search trials, seed {args.seed}")
    print(table(header, rows))
    for s in skipped:
        print(f"skipped: {s}")
    for note in notes:
        print(f"note: {note}")
    payload = dict(command=f"theorem{theorem}", bound_scale=args.bound_scale, seed=args.seed, trials=trials,
                   search_trials=search_trials, sigma2=args.sigma2 or 1.0, cases=results, skipped=skipped, notes=notes,
                   settings=settings, complete=True)
    return payload, exit_code(r["status"] for r in results)


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker within a second of its parent (a killed
    checker would otherwise leave it running its case, then waiting forever)."""
    import os
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _timed_case(case: dict, options: dict, threads: int) -> tuple[dict, float]:
    """One case in a worker process (``--jobs``): its result and run time."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    return run_case(case, **options), time.perf_counter() - t0


def _run_cases(todo: list, options: dict, jobs: int, threads: int):
    """``(position, result, seconds)`` for each ``(position, case)`` of ``todo`` as it
    finishes: in this process one after the other (``jobs = 1``), else in ``jobs``
    worker processes (each case draws from its own generator, so the results are
    the same; a registry family's time budget is wall time, which sharing the
    cores can exhaust sooner)."""
    if jobs == 1 or len(todo) <= 1:
        for i, case in todo:
            t0 = time.perf_counter()
            r = run_case(case, **options)
            yield i, r, time.perf_counter() - t0
        return
    import concurrent.futures as cf
    import multiprocessing
    import os

    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_timed_case, case, options, threads): i for i, case in todo}
        try:
            for fut in cf.as_completed(futures):
                r, seconds = fut.result()
                yield futures[fut], r, seconds
        except BaseException:  # interrupted: the cases in progress are lost anyway
            for fut in futures:
                fut.cancel()
            # stop the workers now: the executor (and the interpreter's exit) would wait
            # for the cases they are running, minutes each (no public call before 3.14)
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            raise


def run_prop1(args) -> tuple[dict, int]:
    from .proposition1 import print_report, run_proposition1

    payload = run_proposition1(quick=args.quick, trials=args.trials, seed=args.seed,
                               bound_scale=args.bound_scale, problems=args.problems, scenarios=args.scenarios,
                               n=args.n, f=args.f, d=args.d, sigma2=args.sigma2, q=args.q, points=args.points)
    print_report(payload)
    return payload, exit_code(row["status"] for s in payload["scenarios"] for row in s["sweep"])


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if getattr(args, "resume", False) and not args.json:
        print("error: --resume needs --json PATH (the checkpoint it resumes from)", file=sys.stderr)
        return 3
    torch.set_num_threads(args.threads)
    if args.json:  # a path that cannot be written fails now, not after the whole run
        target = Path(args.json)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(f"--json {args.json} is a directory")
        except OSError as exc:
            print(f"error: --json {args.json}: {os_error_message(exc)}", file=sys.stderr)
            return 3
    t0 = time.perf_counter()
    try:
        if args.command == "proposition1":
            payload, code = run_prop1(args)
        else:
            payload, code = run_theorem(args, 1 if args.command == "theorem1" else 2)
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        kept = (f"; the finished cases are in {args.json} (run again with --resume)"
                if args.json and args.command != "proposition1" else "")
        print(f"interrupted{kept}", file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    payload["wall_s"] = wall
    payload["exit_code"] = code
    if args.json:
        write_json(args.json, payload)
    cases = payload.get("cases") or [row for s in payload.get("scenarios", []) for row in s["sweep"]]
    bad = [c for c in cases if c["status"] != HOLDS and c["status"] != "no-claim"]
    violated = [c for c in bad if c["status"] == VIOLATED]
    claims = sum(c["status"] != "no-claim" for c in cases)
    print(f"{len(cases)} cases, {len(cases) - len(bad)} hold or make no claim ({claims} make a claim), "
          f"{len(violated)} VIOLATED, {len(bad) - len(violated)} inconclusive; wall time {wall:.1f} s; exit {code}")
    if not claims:
        print("  no case makes a claim: nothing was tested (exit 2)")
    for c in bad:
        print(f"  {c['status']}: {case_label(c)}")
    return code


def case_label(c: dict) -> str:
    if "problem" in c:
        return (f"{c['problem']}/{c['scenario']} M={c['M']} q={c['q']}: mixture inner "
                f"{c['inner']['value']:.4g} [{c['inner']['lo']:.3g}, {c['inner']['hi']:.3g}] "
                f"while M/q={c['ratio_Mq']:.3g} > threshold {c['threshold_scaled']:.3g}")
    extra = f", Delta^2={c['delta2']:g} ({c['heterogeneity']})" if c.get("theorem") == 2 else ""
    e = c["estimate"]
    return (f"theorem{c['theorem']} {c['law']} n={c['n']} f={c['f']} d={c['d']} p={c['p']:g}{extra}: "
            f"bias^2 {e['value']:.4g} [{e['lo']:.3g}, {e['hi']:.3g}] vs bound {c['scaled_bound']:.4g} "
            f"({c['worst_adversary']})")
