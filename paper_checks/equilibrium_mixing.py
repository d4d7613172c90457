"""Uniform MixTailor vs equilibrium-mixed MixTailor under an adaptive attacker.

The paper's MixTailor draws every rule of its pool with probability 1/M. The
game layer computes the defender's minimax mix over the same pool against a
set of attacks (``mixtailor_game.game``). This check trains the same model
twice per data set, once with each mix, against an adaptive attacker that
knows the pool *and its probabilities* (``make_attack("adaptive",
problem="expected")``: it minimizes the expected ``<AGG, honest mean>`` under
the published probabilities, see ``solvers.ExpectedValue``), and compares test
accuracy. An omniscient run (the mean of the honest rows only) gives the
no-attack reference.

Steps, for every data set (digits always; MNIST when ``--data-dir`` is given):

1. pilot: a short run of uniform MixTailor without attack that saves gradient
   snapshots (``save_snapshots``);
2. game: the payoff matrix ``<AGG_r, honest mean>`` of ``--game-attacks`` x
   pool on those snapshots, and its zero-sum equilibrium (HiGHS LP, with the
   best-response gap as certificate);
3. training: uniform mix vs equilibrium mix under ``--attack`` (default the
   adaptive attacker above), plus the omniscient reference, ``--seeds`` seeds;
4. outputs in ``--out``: ``accuracy_<dataset>.png`` (curves),
   ``results.json`` (probabilities, payoff matrix, final accuracies) and
   ``table.md`` (final test accuracy, mean +- std over seeds).

Usage::

    python paper_checks/equilibrium_mixing.py --quick               # digits, minutes on CPU
    python paper_checks/equilibrium_mixing.py --data-dir ../shared/data/mnist --steps 500

Exit status 0 when every run finished; the comparison is reported, not
asserted (whether equilibrium mixing helps depends on the pool and attacks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mixtailor_game.game import load_snapshots, payoff_matrix, solve_zero_sum  # noqa: E402
from mixtailor_game.game._spec import parse_spec, split_top_level  # noqa: E402
from mixtailor_game.game.cli import build_pool  # noqa: E402
from mixtailor_game.rules import RulePool  # noqa: E402
from mixtailor_game.train import TrainConfig, plot_runs, read_metrics, train  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="MNIST directory (IDX files); adds the mnist data set")
    p.add_argument("--datasets", default=None, help="comma list (default: digits, plus mnist with --data-dir)")
    p.add_argument("--pool", default="comed,krum,geomed,trimmed_mean", help="pool spec as train takes it")
    p.add_argument("--game-attacks", default="ipm[eps=0.1],ipm[eps=10.0],alie,fang_krum,sign_flip",
                   help="attacks of the payoff matrix (specs)")
    p.add_argument("--attack", default="adaptive[problem=expected]",
                   help="training attack spec (default: the adaptive attacker that knows the probabilities)")
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--byzantine", type=int, default=2)
    p.add_argument("--model", default=None, help="model (default: mlp for digits, paper_cnn for mnist)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--pilot-steps", type=int, default=None, help="pilot run length (default steps // 4)")
    p.add_argument("--eval-every", type=int, default=None, help="default steps // 10")
    p.add_argument("--eval-examples", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="default: TrainConfig's")
    p.add_argument("--quick", action="store_true", help="digits only, 120 steps, 1 seed")
    p.add_argument("--out", default=str(ROOT / "paper_checks" / "results" / "equilibrium_mixing"))
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = min(args.steps, 120), 1
    return args


def equilibrium_probs(args, dataset: str, model: str, out: Path) -> dict:
    """Pilot run with snapshots -> payoff matrix -> zero-sum equilibrium over the pool."""
    pilot_steps = args.pilot_steps or max(10, args.steps // 4)
    every = max(1, pilot_steps // 10)
    cfg = TrainConfig(dataset=dataset, data_dir=args.data_dir if dataset != "digits" else None, model=model,
                      workers=args.workers, byzantine=args.byzantine, aggregator="mixtailor", pool=args.pool,
                      attack="none", steps=pilot_steps, eval_every=pilot_steps, save_snapshots=every, seed=0,
                      eval_examples=args.eval_examples, **({"lr": args.lr} if args.lr else {}))
    run_dir = out / dataset / "pilot"
    train(cfg, run_dir)
    snaps = load_snapshots(run_dir)
    rules = build_pool(args.pool, args.workers, args.byzantine, 0)
    defense = RulePool(tuple(rules), tuple([1.0 / len(rules)] * len(rules)))
    pm = payoff_matrix(split_top_level(args.game_attacks), rules, snaps, n=args.workers, f=args.byzantine,
                       defense=defense)
    eq = solve_zero_sum(pm.loss)
    if not eq.ok:
        raise RuntimeError(f"equilibrium LP failed on {dataset}: {eq.status} ({eq.message})")
    probs = [float(x) for x in eq.defender]
    uniform = np.full(len(rules), 1.0 / len(rules))
    return {"probs": probs, "pool": list(pm.rules), "payoff": pm.to_dict(), "value": eq.value, "gap": eq.gap,
            "equilibrium_guaranteed_inner": float(-eq.value),
            "uniform_guaranteed_inner": float(np.min(pm.values @ uniform)),
            "snapshots": len(snaps)}


def final_accuracy(run_dir: Path) -> float:
    rows = [r for r in read_metrics(run_dir) if r.get("test_accuracy") is not None]
    return float(rows[-1]["test_accuracy"]) if rows else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = split_top_level(args.datasets) if args.datasets else (
        ["digits"] + (["mnist"] if args.data_dir and not args.quick else []))
    attack_name, attack_params = parse_spec(args.attack)
    eval_every = args.eval_every or max(1, args.steps // 10)
    results = {"args": vars(args), "datasets": {}}
    table = ["| dataset | aggregator | final test accuracy (mean +- std) | seeds |", "|---|---|---|---|"]
    t0 = time.time()
    for ds in datasets:
        model = args.model or ("mlp" if ds == "digits" else "paper_cnn")
        game = equilibrium_probs(args, ds, model, out)
        print(f"[{ds}] equilibrium probs {dict(zip(game['pool'], [round(p, 3) for p in game['probs']]))}; "
              f"guaranteed <AGG, mean>: equilibrium {game['equilibrium_guaranteed_inner']:.4g}, "
              f"uniform {game['uniform_guaranteed_inner']:.4g} (gap {game['gap']:.1e})", flush=True)
        variants = {
            "uniform": dict(aggregator="mixtailor", pool=args.pool, probs=None,
                            attack=attack_name, attack_params=attack_params),
            "equilibrium": dict(aggregator="mixtailor", pool=args.pool, probs=game["probs"],
                                attack=attack_name, attack_params=attack_params),
            "omniscient": dict(aggregator="omniscient", attack="none"),
        }
        accs = {k: [] for k in variants}
        dirs = {k: [] for k in variants}
        for name, kw in variants.items():
            for seed in range(args.seeds):
                cfg = TrainConfig(dataset=ds, data_dir=args.data_dir if ds != "digits" else None, model=model,
                                  workers=args.workers, byzantine=args.byzantine, steps=args.steps,
                                  eval_every=eval_every, eval_examples=args.eval_examples, seed=seed,
                                  **({"lr": args.lr} if args.lr else {}), **kw)
                run_dir = out / ds / f"{name}_seed{seed}"
                train(cfg, run_dir)
                accs[name].append(final_accuracy(run_dir))
                dirs[name].append(run_dir)
                print(f"[{ds}] {name} seed {seed}: test accuracy {accs[name][-1]:.4f} "
                      f"({time.time() - t0:.0f} s)", flush=True)
        png = plot_runs([d for k in variants for d in dirs[k]], out / f"accuracy_{ds}.png",
                        labels=[f"{k} s{i}" for k in variants for i in range(len(dirs[k]))],
                        title=f"{ds}: uniform vs equilibrium MixTailor under {args.attack}")
        for name in variants:
            a = np.array(accs[name])
            table.append(f"| {ds} | {name} | {a.mean():.4f} +- {a.std():.4f} | {len(a)} |")
        results["datasets"][ds] = {"game": game, "final_accuracy": accs, "plot": str(png),
                                   "runs": {k: [str(d) for d in v] for k, v in dirs.items()}}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "table.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and accuracy_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
