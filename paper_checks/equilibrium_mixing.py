"""Uniform MixTailor vs equilibrium-mixed MixTailor under an adaptive attacker.

The paper's MixTailor draws every rule of its pool with probability 1/M. The
game layer computes the defender's minimax mix over the same pool against a
set of attacks (``mixtailor_game.game``). This check trains the same model
once per data set and entry of ``--mixes`` (default all four: ``uniform``,
``equilibrium``, ``double_oracle`` and ``omniscient``) against an adaptive
attacker that knows the pool *and its probabilities*
(``make_attack("adaptive", problem="expected")``: it minimizes the expected
``<AGG, honest mean>`` under the published probabilities, see
``solvers.ExpectedValue``), and compares test accuracy. The omniscient run
(the mean of the honest rows only, no attack) is the no-attack reference.

Steps, for every data set of ``--datasets`` (default: digits, plus MNIST when
``--data-dir`` is given and not ``--quick``; the stored MNIST run used
``--datasets mnist``, so it has no digits panel):

1. pilot: a short run of uniform MixTailor without attack that saves gradient
   snapshots (``save_snapshots``);
2. game on those snapshots:
   ``equilibrium``: the zero-sum equilibrium (HiGHS LP, best-response gap as
   certificate) of the payoff matrix ``<AGG_r, honest mean>`` of
   ``--game-attacks`` x pool (a *fixed* attack set);
   ``double_oracle``: the double oracle started from those rows, where the
   attacker's best response to the current mix is ``solvers.ExpectedValue``
   on every snapshot (the same problem the adaptive attacker solves in
   training), so the mix is computed against the attacker it will meet;
3. training: every mix of ``--mixes`` under ``--attack`` (default the adaptive
   attacker above; the omniscient reference without attack), ``--seeds`` seeds; the
   server's draw is seeded (``deterministic_draw``) as in the other checks;
4. outputs in ``--out``: ``equilibrium_mixing.json`` (probabilities, payoff
   matrix, double-oracle history, every run's curve, final / tail accuracy and
   attack statistics), ``equilibrium_mixing.png`` (one panel per data set,
   mean curve over seeds) and ``equilibrium_mixing.md`` (the table); run
   directories in ``--runs-dir`` (default ``OUT/runs/equilibrium_mixing``,
   git-ignored; a rerun resumes finished runs).

Usage::

    python paper_checks/equilibrium_mixing.py --quick --model logreg     # digits, ~1 min on CPU
    python paper_checks/equilibrium_mixing.py --model logreg --steps 200 --seeds 2
    python paper_checks/equilibrium_mixing.py --datasets mnist --data-dir ../shared/data/mnist --model logreg

Exit status 0 when every run finished; the comparison is reported, not
asserted (whether equilibrium mixing helps depends on the pool and attacks).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mixtailor_game.game import (double_oracle, load_snapshots, payoff_matrix, solve_zero_sum,  # noqa: E402
                                 solvers_oracle)
from mixtailor_game.rules.spec import parse_spec, split_top_level  # noqa: E402
from mixtailor_game.game.cli import build_pool  # noqa: E402
from mixtailor_game.rules import RulePool  # noqa: E402
from mixtailor_game.train import TrainConfig, read_metrics, train  # noqa: E402
from _common import plot_panels, tail_accuracy, write_json  # noqa: E402

NAME = "equilibrium_mixing"
MIXES = ("uniform", "equilibrium", "double_oracle", "omniscient")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="MNIST directory (IDX files); adds the mnist data set")
    p.add_argument("--datasets", default=None, help="comma list (default: digits, plus mnist with --data-dir)")
    p.add_argument("--pool", default="comed,krum,geomed,trimmed_mean", help="pool spec as train takes it")
    p.add_argument("--game-attacks", default="ipm[eps=0.1],ipm[eps=10.0],alie,fang_krum,sign_flip",
                   help="attacks of the payoff matrix (specs)")
    p.add_argument("--attack", default="adaptive[problem=expected]",
                   help="training attack spec (default: the adaptive attacker that knows the probabilities)")
    p.add_argument("--mixes", default=",".join(MIXES),
                   help=f"comma list of the runs to train, from {', '.join(MIXES)} (default all)")
    p.add_argument("--do-iterations", type=int, default=10, help="double oracle: most best responses (default 10)")
    p.add_argument("--do-tol", type=float, default=1e-3,
                   help="double oracle: stop at this exploitability bound, payoff units (default 1e-3)")
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--byzantine", type=int, default=2)
    p.add_argument("--model", default=None,
                   help="mlp, logreg, paper_cnn, ... (default: mlp for digits, paper_cnn for mnist)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--pilot-steps", type=int, default=None, help="pilot run length (default steps // 4, >= 10)")
    p.add_argument("--batch-size", type=int, default=None, help="default: TrainConfig's")
    p.add_argument("--eval-every", type=int, default=None, help="default steps // 10")
    p.add_argument("--eval-examples", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="default: TrainConfig's")
    p.add_argument("--quick", action="store_true", help="digits only, at most 120 steps, 1 seed")
    p.add_argument("--out", default=str(ROOT / "paper_checks" / "results"),
                   help=f"directory for {NAME}.json / .png / .md (default paper_checks/results)")
    p.add_argument("--runs-dir", default=None, help=f"run directories (default OUT/runs/{NAME})")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = min(args.steps, 120), 1
    where = "equilibrium_mixing"
    for name in ("steps", "seeds", "workers", "do_iterations", "eval_examples"):
        if getattr(args, name) < 1:
            raise SystemExit(f"{where}: {name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("pilot_steps", "eval_every", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise SystemExit(f"{where}: {name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 1 <= args.byzantine < args.workers:
        raise SystemExit(f"{where}: byzantine must be in [1, workers - 1], got {args.byzantine}")
    if not (args.do_tol >= 0 and np.isfinite(args.do_tol)):
        raise SystemExit(f"{where}: do-tol must be a finite number >= 0, got {args.do_tol}")
    if args.lr is not None and not args.lr > 0:
        raise SystemExit(f"{where}: lr must be > 0, got {args.lr}")
    args.mix_list = split_top_level(args.mixes)
    bad = [m for m in args.mix_list if m not in MIXES]
    if bad or not args.mix_list:
        raise SystemExit(f"{where}: mixes must be a comma list from {', '.join(MIXES)}, got {args.mixes!r}")
    return args


def _train_kwargs(args) -> dict:
    kw = {}
    if args.lr:
        kw["lr"] = args.lr
    if args.batch_size:
        kw["batch_size"] = args.batch_size
    return kw


def equilibrium_probs(args, dataset: str, model: str, runs: Path) -> dict:
    """Pilot run with snapshots -> payoff matrix -> zero-sum equilibrium and double oracle over the pool."""
    pilot_steps = args.pilot_steps or max(10, args.steps // 4)
    every = max(1, pilot_steps // 10)
    cfg = TrainConfig(dataset=dataset, data_dir=args.data_dir if dataset != "digits" else None, model=model,
                      workers=args.workers, byzantine=args.byzantine, aggregator="mixtailor", pool=args.pool,
                      attack="none", steps=pilot_steps, eval_every=pilot_steps, save_snapshots=every, seed=0,
                      deterministic_draw=True, eval_examples=args.eval_examples, **_train_kwargs(args))
    run_dir = runs / dataset / "pilot"
    train(cfg, run_dir)
    snaps = load_snapshots(run_dir)
    rules = build_pool(args.pool, args.workers, args.byzantine, 0)
    M = len(rules)
    defense = RulePool(tuple(rules), tuple([1.0 / M] * M))
    pm = payoff_matrix(split_top_level(args.game_attacks), rules, snaps, n=args.workers, f=args.byzantine,
                       defense=defense)
    eq = solve_zero_sum(pm.loss)
    if not eq.ok:
        raise RuntimeError(f"equilibrium LP failed on {dataset}: {eq.status} ({eq.message})")
    uniform = np.full(M, 1.0 / M)
    game = {"pool": list(pm.rules), "payoff": pm.to_dict(), "snapshots": len(snaps),
            "equilibrium": {"probs": [float(x) for x in eq.defender], "value": eq.value, "gap": eq.gap,
                            "guaranteed_inner": float(-eq.value),
                            "uniform_guaranteed_inner": float(np.min(pm.values @ uniform))}}
    if "double_oracle" in args.mix_list:
        t0 = time.perf_counter()
        oracle = solvers_oracle([s.honest for s in snaps], args.byzantine, rules)
        do = double_oracle(oracle, M, initial=[(a, pm.loss[i]) for i, a in enumerate(pm.attacks)],
                           tol=args.do_tol, max_iter=args.do_iterations)
        if do.defender is None:
            raise RuntimeError(f"double oracle failed on {dataset}: {do.status}")
        u_reply = oracle(uniform)
        eq_reply = oracle(eq.defender)
        game["double_oracle"] = {
            "probs": [float(x) for x in do.defender], "status": do.status, "value": do.value, "upper": do.upper,
            "gap": do.gap, "history": do.history, "exploitability": do.exploitability,
            # <AGG, mean> that the best response (line search, all snapshots) leaves to each mix
            "best_response_inner": {
                "double_oracle": float(-do.upper),
                "equilibrium": float(-(eq_reply[1] @ eq.defender)) if eq_reply is not None else None,
                "uniform": float(-(u_reply[1] @ uniform)) if u_reply is not None else None},
            "wall_time_s": time.perf_counter() - t0}
    return game


def _attack_stats(run_dir: Path) -> dict:
    rows = [r for r in read_metrics(run_dir) if r.get("inner") is not None]
    inner = np.array([r["inner"] for r in rows], dtype=float)
    if inner.size == 0:
        return {"mean_inner": None, "negative_fraction": None}
    return {"mean_inner": float(inner.mean()), "negative_fraction": float((inner < 0).mean())}


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None or not np.isfinite(x) else format(x, spec)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    runs = Path(args.runs_dir) if args.runs_dir else out / "runs" / NAME
    out.mkdir(parents=True, exist_ok=True)
    datasets = split_top_level(args.datasets) if args.datasets else (
        ["digits"] + (["mnist"] if args.data_dir and not args.quick else []))
    attack_name, attack_params = parse_spec(args.attack)
    eval_every = args.eval_every or max(1, args.steps // 10)
    settings = {k: v for k, v in vars(args).items() if k != "mix_list"}
    results = {"experiment": NAME, "settings": settings, "datasets": {}}
    table = ["| dataset | mix | probabilities (" + args.pool + ") | tail accuracy (mean +- std) "
             "| final accuracy | steps with <AGG, mean> < 0 | seeds |", "|---|---|---|---|---|---|---|"]
    records = []
    t0 = time.time()
    for ds in datasets:
        model = args.model or ("mlp" if ds == "digits" else "paper_cnn")
        game = equilibrium_probs(args, ds, model, runs)
        eq = game["equilibrium"]
        print(f"[{ds}] zero-sum equilibrium {dict(zip(game['pool'], [round(p, 3) for p in eq['probs']]))}; "
              f"guaranteed <AGG, mean> vs --game-attacks: equilibrium {eq['guaranteed_inner']:.4g}, "
              f"uniform {eq['uniform_guaranteed_inner']:.4g} (gap {eq['gap']:.1e})", flush=True)
        probs = {"uniform": None, "equilibrium": eq["probs"]}
        if "double_oracle" in game:
            do = game["double_oracle"]
            probs["double_oracle"] = do["probs"]
            print(f"[{ds}] double oracle ({do['status']}, {len(do['history'])} iterations, "
                  f"{do['wall_time_s']:.1f} s): {dict(zip(game['pool'], [round(p, 3) for p in do['probs']]))}; "
                  f"exploitability per iteration {[float(f'{g:.3g}') for g in do['exploitability']]}; "
                  f"<AGG, mean> left by the best response: " + ", ".join(
                      f"{k} {_fmt(v, '.4g')}" for k, v in do["best_response_inner"].items()), flush=True)
        variants = {}
        for name in args.mix_list:
            if name == "omniscient":
                variants[name] = dict(aggregator="omniscient", attack="none")
            else:
                variants[name] = dict(aggregator="mixtailor", pool=args.pool, probs=probs[name],
                                      deterministic_draw=True, attack=attack_name, attack_params=attack_params)
        summary = {}
        for name, kw in variants.items():
            recs = []
            for seed in range(args.seeds):
                cfg = TrainConfig(dataset=ds, data_dir=args.data_dir if ds != "digits" else None, model=model,
                                  workers=args.workers, byzantine=args.byzantine, steps=args.steps,
                                  eval_every=eval_every, eval_examples=args.eval_examples, seed=seed,
                                  **_train_kwargs(args), **kw)
                run_dir = runs / ds / f"{name}_seed{seed}"
                s = train(cfg, run_dir)
                curve = [[r["step"], r["test_accuracy"]] for r in read_metrics(run_dir)
                         if r.get("test_accuracy") is not None]
                rec = {"panel": ds, "label": name, "seed": seed, "curve": curve,
                       "final_accuracy": s.get("test_accuracy"), "tail_accuracy": tail_accuracy(curve),
                       "wall_time_s": s.get("wall_time_s"), "run_dir": str(run_dir), **_attack_stats(run_dir)}
                recs.append(rec)
                records.append(rec)
                print(f"[{ds}] {name} seed {seed}: final {_fmt(rec['final_accuracy'], '.4f')}, tail "
                      f"{_fmt(rec['tail_accuracy'], '.4f')}, steps with <AGG, mean> < 0: "
                      f"{_fmt(rec['negative_fraction'], '.2f')} ({time.time() - t0:.0f} s)", flush=True)
            tails = np.array([r["tail_accuracy"] for r in recs], dtype=float)
            finals = np.array([r["final_accuracy"] for r in recs], dtype=float)
            neg = [r["negative_fraction"] for r in recs if r["negative_fraction"] is not None]
            summary[name] = {"tail": float(tails.mean()), "tail_std": float(tails.std()),
                             "final": float(finals.mean()), "seeds": len(recs),
                             "negative_fraction": float(np.mean(neg)) if neg and name != "omniscient" else None,
                             "probs": probs.get(name)}
            pr = ("-" if name == "omniscient" else "uniform" if probs.get(name) is None
                  else ", ".join(f"{x:.3f}" for x in probs[name]))
            table.append(f"| {ds} | {name} | {pr} | {summary[name]['tail']:.4f} +- {summary[name]['tail_std']:.4f} "
                         f"| {summary[name]['final']:.4f} | {_fmt(summary[name]['negative_fraction'], '.2f')} "
                         f"| {len(recs)} |")
        results["datasets"][ds] = {"model": model, "game": game, "accuracy": summary}
    results["runs"] = records
    results["wall_time_s"] = time.time() - t0
    write_json(out / f"{NAME}.json", results)
    plot_panels(records, out / f"{NAME}.png", "MixTailor mixes vs an attacker that knows them")
    (out / f"{NAME}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"wrote {out / (NAME + '.json')}, {out / (NAME + '.png')} and {out / (NAME + '.md')} "
          f"({results['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
