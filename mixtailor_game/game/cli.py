"""``mixtailor-game game``: payoff matrix, equilibrium mix and vulnerability of a pool.

The sub-command measures the payoff ``<AGG_r, honest mean>`` (or the cosine)
of every attack of ``--attacks`` against every rule of ``--pool`` on honest
samples (synthetic Gaussian rows by default, or a training run's snapshots
with ``--snapshots DIR``), solves the zero-sum game for the defender's
minimax mix, prints the vulnerability summary (Proposition 1 per attack) and,
with ``--design K``, the pool of K rules that keeps the largest worst-case
fraction of resilient rules. ``--out probs.json`` writes
``{"pool": [rule names], "probs": [...], ...}``, which
``mixtailor-game train --aggregator mixtailor --pool SPEC --probs probs.json``
accepts (same ``--pool`` spec, ``--byzantine`` and ``--seed``: the pool is
built as the trainer builds it, ``name[param=...]`` entries included).

``--double-oracle`` also runs the double oracle (:mod:`.double_oracle`): the
attacker is no longer restricted to ``--attacks`` but best-responds to the
current mix by ``solvers.ExpectedValue`` (it knows the probabilities), one
set of Byzantine rows per sample; the per-iteration exploitability is printed
and ``--out`` then holds the double-oracle mix (same format).

This module only parses, calls the library and reports.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from .._atomic import atomic_write_text
from .._checks import check_int, check_real, fail
from ..rules.spec import split_top_level

DEFAULT_POOL = "comed,krum,geomed,trimmed_mean"
DEFAULT_ATTACKS = "ipm[eps=0.1],ipm[eps=2.0],ipm[eps=10.0],alie"
TRAIN_PREFIXES = ("paper", "families:")
DO_ITERATIONS = 20
DO_TOL = 1e-3
DO_STRUCTURES = ("line", "suboptimal", "optimal")
DO_METHODS = ("auto", "line", "milp", "miqcp", "scp", "relax", "coordinatewise")
DO_FLAGS = {"do_iterations": "do-iterations", "do_tol": "do-tol", "do_structure": "do-structure",
            "do_method": "do-method", "do_start": "do-start"}


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``game`` sub-command to ``subparsers`` (of ``mixtailor-game``)."""
    p = subparsers.add_parser(
        "game",
        help="payoff matrix, equilibrium mix and vulnerability of a pool",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--pool", default=DEFAULT_POOL,
                   help="paper, families:krum,comed,... or a comma list of rules (names as train takes them, "
                        f"or specs such as krum[p=3]) (default {DEFAULT_POOL})")
    p.add_argument("--attacks", default=DEFAULT_ATTACKS,
                   help=f"comma list of attack specs such as ipm[eps=0.5] (default {DEFAULT_ATTACKS})")
    p.add_argument("--workers", type=int, default=12, help="n (default 12)")
    p.add_argument("--byzantine", type=int, default=2, help="f (default 2)")
    p.add_argument("--dim", type=int, default=50, help="d of the synthetic sample (default 50)")
    p.add_argument("--samples", type=int, default=8, help="synthetic samples (default 8)")
    p.add_argument("--noise", type=float, default=3.0,
                   help="norm of an honest row's noise relative to the mean's norm 1 (default 3)")
    p.add_argument("--snapshots", metavar="DIR", help="a run directory or its snapshots/ (instead of synthetic)")
    p.add_argument("--snapshot-limit", dest="snapshot_limit", type=int, default=20,
                   help="use at most K snapshots, evenly spaced (default 20)")
    p.add_argument("--payoff", choices=("inner", "cosine"), default="inner", help="payoff (default inner)")
    p.add_argument("--knowledge", default="full", help="adversary's view: full, partial:K, own (default full)")
    p.add_argument("--defense", choices=("pool", "none"), default="pool",
                   help="what the attacks know: the public pool with uniform probabilities, or nothing")
    p.add_argument("--threshold", type=float, default=0.0,
                   help="edge when <AGG, mean> < -threshold (default 0)")
    p.add_argument("--design", type=int, metavar="K", help="also design a pool of K rules from --pool")
    p.add_argument("--seed", type=int, default=0, help="seed: samples, attacks, paper pool norms (default 0)")
    g = p.add_argument_group("double oracle (attacker best response by solvers.ExpectedValue)")
    g.add_argument("--double-oracle", dest="double_oracle", action="store_true",
                   help="also compute the mix against an attacker that knows the probabilities and best-responds "
                        "(solvers.ExpectedValue on every sample); --out then writes this mix")
    g.add_argument("--do-iterations", dest="do_iterations", type=int, default=None, metavar="K",
                   help=f"at most K best responses (default {DO_ITERATIONS})")
    g.add_argument("--do-tol", dest="do_tol", type=float, default=None, metavar="TOL",
                   help="stop when the exploitability bound (best response's loss - LP value, in payoff units) "
                        f"is <= TOL (default {DO_TOL:g})")
    g.add_argument("--do-structure", dest="do_structure", choices=DO_STRUCTURES, default=None,
                   help="Byzantine rows the oracle searches: line (1-D, any d), suboptimal (one replicated row), "
                        "optimal (f free rows) (default line)")
    g.add_argument("--do-method", dest="do_method", choices=DO_METHODS, default=None,
                   help="solvers method (default auto: solvers.solve picks)")
    g.add_argument("--do-start", dest="do_start", choices=("attacks", "none"), default=None,
                   help="initial attack set: the rows of --attacks, or the best response to the uniform mix "
                        "(default attacks)")
    p.add_argument("--out", metavar="JSON", help="write {pool, probs} for train --probs")
    p.add_argument("--json", dest="json_path", metavar="JSON", help="write every result to this JSON file")
    p.set_defaults(func=run)
    return p


# --------------------------------------------------------------------------- building
def build_pool(spec: str, n: int, f: int, seed: int) -> list:
    """The rules of ``spec`` (``paper``, ``families:...``, names or ``name[param=...]``
    specs), built by ``train``'s own builder: the pool ``--out`` files name is the
    one ``train --pool spec`` runs."""
    from ..train.config import TrainConfig
    from ..train.trainer import build_server

    try:
        cfg = TrainConfig(workers=n, byzantine=f, aggregator="mixtailor", pool=spec.strip(), seed=seed,
                          attack="none")
        return list(build_server(cfg).mixtailor.pool)
    except ValueError as exc:  # the message under this command's name
        raise ValueError(str(exc).replace("TrainConfig: ", "game: ", 1)) from None


def _samples(args, n: int, f: int):
    from .payoff import load_snapshots, synthetic_samples

    if args.snapshots:
        snaps = load_snapshots(args.snapshots, limit=args.snapshot_limit)
        k, fb = snaps[0].honest.shape[0], snaps[0].byzantine.shape[0]
        if (k + fb, fb) != (n, f):
            raise fail("game", "snapshots", f"saved with n={n}, f={f} (pass --workers / --byzantine)",
                       f"n={k + fb}, f={fb}")
        return [s.honest for s in snaps], f"{len(snaps)} snapshots of {args.snapshots} (d={snaps[0].honest.shape[1]})"
    gen = torch.Generator().manual_seed(args.seed)
    samples = synthetic_samples(n - f, args.dim, samples=args.samples, noise=args.noise, generator=gen)
    return samples, f"{args.samples} synthetic samples (d={args.dim}, noise {args.noise:g})"


# --------------------------------------------------------------------------- printing
def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}"


def format_matrix(pm) -> str:
    """Attacks x rules table of ``mean +- stderr``."""
    cells = [[f"{_fmt(v)}+-{_fmt(s)}" if np.isfinite(s) else _fmt(v) for v, s in zip(rv, rs)]
             for rv, rs in zip(pm.values, pm.stderr)]
    head = ["attack \\ rule"] + list(pm.rules)
    rows = [[a] + c for a, c in zip(pm.attacks, cells)]
    widths = [max(len(str(r[j])) for r in [head] + rows) for j in range(len(head))]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [head] + rows]
    return "\n".join(lines)


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


# --------------------------------------------------------------------------- run
def run(args) -> int:
    """Run ``mixtailor-game game`` with parsed ``args``; return the exit status."""
    from ..rules import RulePool
    from .design import design_pool
    from .graph import attack_summaries, vulnerability_graph
    from .payoff import payoff_matrix
    from .zero_sum import solve_zero_sum

    where = "game"
    n = check_int(where, "workers", args.workers, low=2)
    f = check_int(where, "byzantine", args.byzantine, low=1, high=n - 1)
    check_int(where, "dim", args.dim, low=1)
    check_int(where, "samples", args.samples, low=1)
    check_real(where, "noise", args.noise, low=0.0)
    check_real(where, "threshold", args.threshold, low=0.0)
    check_int(where, "seed", args.seed, low=0)
    if args.payoff != "inner" and (args.design is not None or args.threshold != 0.0):
        # the vulnerability graph and the design read <AGG, mean>: they would be skipped silently
        raise fail(where, "payoff", "'inner' with --design or --threshold", args.payoff)
    do_opts = _double_oracle_options(args)
    rules = build_pool(args.pool, n, f, args.seed)
    M = len(rules)
    K = None if args.design is None else check_int(where, "design", args.design, low=1, high=M)  # before the run
    attacks = split_top_level(args.attacks)
    if not attacks:
        raise fail(where, "attacks", "a non-empty comma list of attack specs", args.attacks)
    samples, source = _samples(args, n, f)
    defense = RulePool(tuple(rules), tuple([1.0 / len(rules)] * len(rules))) if args.defense == "pool" else None
    gen = torch.Generator().manual_seed(args.seed)
    pm = payoff_matrix(attacks, rules, samples, n=n, f=f, payoff=args.payoff, knowledge=args.knowledge,
                       defense=defense, generator=gen)
    eq = solve_zero_sum(pm.loss)
    uniform = np.full(M, 1.0 / M)
    out = sys.stdout
    print(f"payoff = {'<AGG, honest mean>' if args.payoff == 'inner' else 'cos(AGG, honest mean)'}"
          f" (mean +- stderr over {source}), n={n}, f={f}, pool {args.pool!r} ({M} rules)", file=out)
    print(format_matrix(pm), file=out)
    print("", file=out)
    result = {"payoff": pm.to_dict(), "pool_spec": args.pool, "seed": args.seed}
    if eq.ok:
        worst_uniform = float(np.min(pm.values @ uniform))
        print(f"equilibrium (zero-sum LP, HiGHS): status {eq.status}, certificate gap {eq.gap:.2e}", file=out)
        print(f"  guaranteed payoff of the equilibrium mix: {_fmt(-eq.value)}"
              f"   of the uniform mix (paper): {_fmt(worst_uniform)}", file=out)
        print("  defender: " + ", ".join(f"{r}={p:.3f}" for r, p in zip(pm.rules, eq.defender) if p > 5e-4), file=out)
        print("  attacker: " + ", ".join(f"{a}={q:.3f}" for a, q in zip(pm.attacks, eq.attacker) if q > 5e-4),
              file=out)
        result["equilibrium"] = {"defender": eq.defender.tolist(), "attacker": eq.attacker.tolist(),
                                 "value": eq.value, "gap": eq.gap, "uniform_worst_payoff": worst_uniform}
    else:
        print(f"equilibrium: LP failed, status {eq.status} ({eq.message})", file=out)
        result["equilibrium"] = {"status": eq.status, "message": eq.message}
    print("", file=out)
    if args.payoff == "inner":
        G = vulnerability_graph(pm, threshold=args.threshold)
        sums = attack_summaries(pm, threshold=args.threshold)
        edge = -args.threshold + 0.0  # threshold 0 printed "< -0"
        print(f"vulnerability (edge: <AGG, mean> < {edge:g}): {G.number_of_edges()} edges; "
              f"L = max ||honest mean|| = {_fmt(pm.grad_norm)}", file=out)
        for s in sums:
            cond = {True: "holds", False: "fails", None: "n/a"}[s.condition]
            print(f"  {s.attack}: q/M = {s.q}/{s.M} = {s.fraction:.2f}, beta_min {_fmt(s.beta_min)}, "
                  f"lambda {_fmt(s.lam)}, Prop. 1 {cond}, bound {_fmt(s.bound)}, "
                  f"uniform mix payoff {_fmt(s.uniform_inner)}", file=out)
        result["vulnerability"] = [s.to_dict() for s in sums]
        if K is not None:
            C = pm.values < -args.threshold
            designs = [design_pool(C, K, method="greedy"), design_pool(C, K, method="ilp")]
            print("", file=out)
            for d in designs:
                print(f"design K={K} ({d.method}, {d.status}): worst-case resilient fraction "
                      f"{d.worst_fraction:.2f}: {', '.join(d.names(pm.rules))}", file=out)
            result["design"] = [{"method": d.method, "status": d.status, "rules": d.names(pm.rules),
                                 "indices": list(d.indices), "worst_fraction": d.worst_fraction} for d in designs]
    do = None
    if do_opts is not None:
        do, do_json = _run_double_oracle(args, do_opts, pm, rules, samples, f, out)
        result["double_oracle"] = do_json
    if args.json_path:
        _write_json(args.json_path, result)
        print(f"wrote {args.json_path}", file=out)
    if args.out:
        if do is not None:
            if do.defender is None:
                raise ValueError(f"game: no probabilities to write, the double oracle failed ({do.status})")
            probs, extra = do.defender, {"source": "double_oracle", "value": do.value, "upper": do.upper,
                                         "gap": do.gap, "status": do.status,
                                         "exploitability": [float(x) for x in do.exploitability]}
        else:
            if not eq.ok:
                raise ValueError(f"game: no probabilities to write, the LP failed ({eq.status})")
            probs, extra = eq.defender, {"source": "zero_sum", "value": eq.value, "gap": eq.gap}
        _write_json(args.out, {"pool": list(pm.rules), "probs": [float(x) for x in probs],
                               "pool_spec": args.pool, "workers": n, "byzantine": f, "seed": args.seed, **extra})
        print(f"wrote {args.out}: train with --aggregator mixtailor --pool {args.pool!r} "
              f"--byzantine {f} --seed {args.seed} --probs {args.out}", file=out)
    return 0


# --------------------------------------------------------------------------- double oracle
def _double_oracle_options(args) -> dict | None:
    """Checked ``--do-*`` options, or ``None`` without ``--double-oracle`` (then none may be given)."""
    where = "game"
    if not args.double_oracle:
        for dest, flag in DO_FLAGS.items():
            if getattr(args, dest) is not None:
                raise fail(where, flag, "given only with --double-oracle", getattr(args, dest))
        return None
    iters = DO_ITERATIONS if args.do_iterations is None else args.do_iterations
    tol = DO_TOL if args.do_tol is None else args.do_tol
    return {"max_iter": check_int(where, "do-iterations", iters, low=1),
            "tol": check_real(where, "do-tol", tol, low=0.0),
            "structure": args.do_structure or "line",
            "method": None if args.do_method in (None, "auto") else args.do_method,
            "start": args.do_start or "attacks"}


def _cached(oracle):
    """``oracle`` that remembers its last answers (the uniform mix is asked twice)."""
    memo: dict = {}

    def call(p):
        key = np.asarray(p, dtype=np.float64).round(12).tobytes()
        if key not in memo:
            memo[key] = oracle(p)
        return memo[key]

    return call


def _run_double_oracle(args, opts: dict, pm, rules, samples, f: int, out):
    """Run :func:`.double_oracle.double_oracle` with the ``solvers`` oracle; print and return (result, json)."""
    from .double_oracle import double_oracle, solvers_oracle

    M = len(rules)
    oracle = _cached(solvers_oracle(samples, f, rules, payoff=args.payoff, method=opts["method"],
                                    structure=opts["structure"]))
    initial = [(a, pm.loss[i]) for i, a in enumerate(pm.attacks)] if opts["start"] == "attacks" else []
    res = double_oracle(oracle, M, initial=initial, tol=opts["tol"], max_iter=opts["max_iter"])
    sign = 1.0 if args.payoff == "loss" else -1.0  # payoff = sign * defender loss
    print("", file=out)
    print(f"double oracle (attacker best response: solvers.ExpectedValue, structure {opts['structure']}, "
          f"method {opts['method'] or 'auto'}; start {opts['start']}, tol {opts['tol']:g}, "
          f"at most {opts['max_iter']} iterations):", file=out)
    if args.payoff != "inner":  # the solver's objective is the inner product's
        print(f"  note: the oracle minimizes expected inner products, not the {args.payoff} payoff: its "
              f"replies are not best responses there and the exploitability bounds certify nothing", file=out)
    print("  iter  attacks  LP value (lower)  best response (upper)  exploitability", file=out)
    for h in res.history:
        print(f"  {h['iteration']:<4d}  {h['attacks']:<7d}  {h['lower']:<16.6g}  {h['upper']:<21.6g}  "
              f"{h['gap']:.3g}", file=out)
    # the --attacks keep their names; the oracle's attacks are numbered in order of discovery
    labels, k = [], 0
    for a in res.attacks:
        labels.append(a if isinstance(a, str) else f"best_response_{k}")
        k += not isinstance(a, str)
    data = {"status": res.status, "structure": opts["structure"], "method": opts["method"] or "auto",
            "start": opts["start"], "tol": opts["tol"], "max_iter": opts["max_iter"],
            "history": res.history, "exploitability": [float(x) for x in res.exploitability]}
    if res.defender is None:
        print(f"  status {res.status}: no mix", file=out)
        return res, data
    uniform = np.full(M, 1.0 / M)
    reply = oracle(uniform)
    # the best known reply to the uniform mix, as res.upper is for the double-oracle mix: the
    # oracle's, or an attack of the set (--attacks and those found) if that one is stronger
    known = res.matrix @ uniform
    uniform_upper = float(max(np.max(known), reply[1] @ uniform) if reply is not None else np.max(known))
    print(f"  status {res.status} after {len(res.history)} iterations, exploitability bound {res.gap:.3g}", file=out)
    print(f"  payoff against the attacker's best known reply: double-oracle mix {_fmt(sign * res.upper)}"
          f"   uniform mix (paper) {_fmt(sign * uniform_upper)}", file=out)
    print("  defender: " + ", ".join(f"{r}={p:.3f}" for r, p in zip(pm.rules, res.defender) if p > 5e-4), file=out)
    print("  attacker: " + ", ".join(f"{a}={q:.3f}" for a, q in zip(labels, res.attacker) if q > 5e-4), file=out)
    data.update({"defender": res.defender.tolist(), "attacker": res.attacker.tolist(), "attacks": labels,
                 "matrix": res.matrix.tolist(), "value": res.value, "upper": res.upper, "gap": res.gap,
                 "uniform_upper": uniform_upper, "payoff_double_oracle": sign * res.upper,
                 "payoff_uniform": sign * uniform_upper})
    return res, data
