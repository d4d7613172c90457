"""``mixtailor-game train | compare | plot``: parse flags, build a config, run, report.

Settings come from three places, later ones winning: :class:`TrainConfig`'s
defaults, ``--config FILE`` (a JSON object with TrainConfig keys; unknown keys
are errors), and the flags given on the command line.

``compare`` (the main job) runs several aggregators against one attack, one
run directory each under ``--out``, prints their final test accuracies next to
the omniscient baseline and writes ``accuracy.png`` and ``compare.json``.
Rerunning a command with the same ``--out`` resumes unfinished runs and reuses
finished ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import TrainConfig, default_attack_params, read_config_file

COMPARE_DEFAULT_AGGREGATORS = "omniscient,krum,comed,mixtailor"

# flag -> TrainConfig field, for the flags that map one to one.
_FIELD_FLAGS = {
    "dataset": str, "data_dir": str, "model": str, "workers": int, "byzantine": int,
    "pool": str, "probs": str, "attack": str, "knowledge": str, "partition": str, "alpha": float,
    "byzantine_mode": str, "bucketing": int, "bucketing_mode": str, "space": str, "local_steps": int, "steps": int,
    "batch_size": int, "lr": float, "momentum": float, "weight_decay": float, "eval_every": int,
    "eval_examples": int, "checkpoint_every": int, "save_snapshots": int, "seed": int,
    "device": str, "engine": str,
}
_ATTACK_FLAGS = ("eps", "z")  # shortcuts for --attack-param eps=..., z=...


def _key_value(text: str):
    """``key=value`` with value parsed as JSON when it is JSON (numbers, true, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_run_flags(p: argparse.ArgumentParser, *, compare: bool) -> None:
    d = TrainConfig()
    g = p.add_argument_group("run settings (defaults: TrainConfig, then --config FILE)")
    g.add_argument("--config", metavar="FILE", help="JSON file of TrainConfig keys (flags override it)")
    g.add_argument("--dataset", help=f"digits, mnist, fashion-mnist, cifar10, synthetic-* (default {d.dataset})")
    g.add_argument("--data-dir", dest="data_dir", help="directory of the data set's files")
    g.add_argument("--model", help=f"paper_cnn, cifar_cnn, mlp, logreg (default {d.model})")
    g.add_argument("--workers", type=int, help=f"n, number of workers (default {d.workers})")
    g.add_argument("--byzantine", type=int, help=f"f, number of Byzantine workers (default {d.byzantine})")
    if compare:
        g.add_argument("--aggregators", default=COMPARE_DEFAULT_AGGREGATORS,
                       help=f"comma list of aggregators (default {COMPARE_DEFAULT_AGGREGATORS})")
    else:
        g.add_argument("--aggregator", help=f"a make_rule name or spec (krum[p=3]), mixtailor or omniscient (default {d.aggregator})")
    g.add_argument("--rule-param", dest="rule_param", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="extra make_rule parameter (repeatable), e.g. p=3")
    g.add_argument("--pool", help="mixtailor pool: paper, families:krum,comed,... or a comma list of rule names")
    g.add_argument("--probs", help="mixtailor probabilities: comma list or JSON file (mixtailor-game game)")
    g.add_argument("--deterministic-draw", dest="deterministic_draw", action="store_const", const=True,
                   help="seed MixTailor's draw from --seed (reproducible, predictable; default OS entropy)")
    g.add_argument("--attack", help=f"a make_attack name or spec (ipm[eps=0.5]) or none (default {d.attack})")
    g.add_argument("--eps", type=float, help="attack parameter eps (e.g. ipm's scale)")
    g.add_argument("--z", type=float, help="attack parameter z (e.g. 'A Little' attack)")
    g.add_argument("--attack-param", dest="attack_param", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="any attack parameter (repeatable)")
    g.add_argument("--knowledge", help="adversary's view: full, partial:K, own (default full)")
    g.add_argument("--partition", help="iid, label, dirichlet (default iid)")
    g.add_argument("--alpha", type=float, help="Dirichlet concentration (default 0.5)")
    g.add_argument("--byzantine-mode", dest="byzantine_mode", help="fixed or random (default fixed)")
    g.add_argument("--bucketing", type=int, metavar="S", help="bucketing / resampling with buckets of S rows")
    g.add_argument("--bucketing-mode", dest="bucketing_mode",
                   help="buckets (ceil(n/S) means, default) or resample (n rows, base rule for S*f)")
    g.add_argument("--space", help="gradient or model aggregation (default gradient)")
    g.add_argument("--local-steps", dest="local_steps", type=int, help="tau local steps (space=model)")
    g.add_argument("--steps", type=int, help=f"training steps (default {d.steps})")
    g.add_argument("--batch-size", dest="batch_size", type=int, help=f"examples per worker and step (default {d.batch_size})")
    g.add_argument("--lr", type=float, help=f"learning rate (default {d.lr}; paper MNIST: 0.001)")
    g.add_argument("--momentum", type=float, help=f"SGD momentum (default {d.momentum})")
    g.add_argument("--weight-decay", dest="weight_decay", type=float, help=f"weight decay (default {d.weight_decay})")
    g.add_argument("--eval-every", dest="eval_every", type=int, help=f"steps between evaluations (default {d.eval_every})")
    g.add_argument("--eval-examples", dest="eval_examples", type=int, help="evaluate on the first K test examples")
    g.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                   help=f"steps between checkpoints (default {d.checkpoint_every})")
    g.add_argument("--save-snapshots", dest="save_snapshots", type=int, metavar="K",
                   help="save honest and Byzantine rows every K steps to snapshots/")
    g.add_argument("--seed", type=int, help=f"seed (default {d.seed})")
    g.add_argument("--device", help="torch device (default cpu)")
    g.add_argument("--engine", help="per-worker gradients: auto, loop, vmap, fused (default auto: fused where the model allows it)")
    p.add_argument("--out", help="run directory" + (" (one sub-directory per aggregator)" if compare else ""))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1, metavar="T",
                   help="torch intra-op threads (default 1: n small per-worker gradients gain little from "
                        "threads and contend on a shared machine; 0 keeps torch's default)")
    p.add_argument("--max-steps", dest="max_steps", type=int, metavar="K",
                   help="stop after K steps in this invocation (rerun the command to resume)")


def config_from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    """TrainConfig from defaults < ``--config FILE`` < flags < ``overrides``."""
    data = read_config_file(args.config) if getattr(args, "config", None) else {}
    TrainConfig.from_dict(data)  # unknown keys and bad values of the file fail here, naming the file's keys
    for name in _FIELD_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    if getattr(args, "deterministic_draw", None):
        data["deterministic_draw"] = True
    if getattr(args, "aggregator", None) is not None:
        data["aggregator"] = args.aggregator
    if args.rule_param:
        data["rule_params"] = dict(data.get("rule_params", {}), **dict(args.rule_param))
    flags = {name: getattr(args, name) for name in _ATTACK_FLAGS if getattr(args, name, None) is not None}
    flags.update(dict(args.attack_param or []))
    if flags:
        base = data.get("attack_params")
        if base is None:
            base = default_attack_params(data.get("attack", TrainConfig.attack))
        data["attack_params"] = dict(base, **flags)
    data.update(overrides)
    return TrainConfig.from_dict(data)


def _default_out(config: TrainConfig, kind: str) -> Path:
    return Path("runs") / f"{kind}-{config.dataset}-{config.attack}-seed{config.seed}"


def _fmt(x, spec=".4f") -> str:
    return "-" if x is None else format(x, spec)


# --------------------------------------------------------------------------- train
def _set_threads(args) -> None:
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)


def cmd_train(args) -> int:
    from .trainer import Trainer

    _set_threads(args)
    config = config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"train-{config.aggregator}-{config.attack}-seed{config.seed}"
    trainer = Trainer(config, out, progress=not args.quiet)
    summary = trainer.run(max_steps=args.max_steps)
    state = "finished" if summary["complete"] else f"stopped at step {summary['steps']} (rerun to resume)"
    evaluated = summary.get("test_accuracy_step")
    when = (f"after {summary['steps']} steps" if evaluated in (None, summary["steps"])
            else f"at step {evaluated} (the last evaluation; --eval-every {config.eval_every})")
    print(f"{summary['aggregator_name']} vs {config.attack} {config.attack_params}: {state}, "
          f"test accuracy {_fmt(summary['test_accuracy'])} {when} "
          f"({summary['wall_time_s']:.1f} s); run directory {out}")
    return 0


# --------------------------------------------------------------------------- compare
def compare_table(results: dict) -> str:
    """A text table: aggregator, final and best accuracy, difference to omniscient, time."""
    base = results.get("omniscient", {}).get("test_accuracy")
    lines = [f"{'aggregator':<14} {'final acc':>9} {'best acc':>9} {'vs omniscient':>13} {'time (s)':>9}"]
    for name, s in results.items():
        acc = s.get("test_accuracy")
        delta = "-" if base is None or acc is None or name == "omniscient" else f"{acc - base:+.4f}"
        lines.append(f"{name:<14} {_fmt(acc):>9} {_fmt(s.get('best_test_accuracy')):>9} {delta:>13} "
                     f"{s.get('wall_time_s', 0.0):>9.1f}")
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from . import rundir
    from .trainer import Trainer

    _set_threads(args)
    names = [a.strip() for a in args.aggregators.split(",") if a.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"compare: --aggregators must be a comma list of distinct names, got {args.aggregators!r}")
    if getattr(args, "probs", None) is not None and "mixtailor" not in names:
        raise ValueError(f"compare: --probs applies to mixtailor only, which --aggregators {args.aggregators!r} "
                         "does not hold")
    base = config_from_args(args, aggregator="mixtailor")  # checks --pool / --probs as well
    configs = {}
    for name in names:
        configs[name] = base.replace(
            aggregator=name,
            probs=base.probs if name == "mixtailor" else None,
            rule_params={} if name in ("omniscient", "mixtailor") else base.rule_params,
            bucketing=None if name == "omniscient" else base.bucketing,
            bucketing_mode="buckets" if name == "omniscient" else base.bucketing_mode,
        )
    out = Path(args.out) if args.out else _default_out(base, "compare")
    # Build every trainer first: a bad setting for any aggregator fails before training starts.
    trainers = {name: Trainer(cfg, out / name, progress=not args.quiet) for name, cfg in configs.items()}
    results = {}
    for name, trainer in trainers.items():
        if not args.quiet:
            done = (trainer.out / rundir.SUMMARY).is_file()  # read back, not trained (checked by run())
            what = "finished run, read back" if done else f"training {trainer.config.steps} steps ..."
            print(f"[{name}] {what}", file=sys.stderr, flush=True)
        results[name] = trainer.run(max_steps=args.max_steps)
    print(f"{base.dataset}, n={base.workers}, f={base.byzantine}, attack {base.attack} {base.attack_params}, "
          f"{base.steps} steps, seed {base.seed}")
    print(compare_table(results))
    complete = all(s["complete"] for s in results.values())
    png = rundir.plot_runs([out / n for n in names], out / "accuracy.png", labels=names,
                           title=f"{base.dataset}: n={base.workers}, f={base.byzantine}, attack {base.attack}")
    rundir.atomic_write_json(out / "compare.json", {"config": base.to_dict(), "results": results})
    print(f"curves: {png}" + ("" if complete else " (unfinished: rerun the command to resume)"))
    return 0


# --------------------------------------------------------------------------- plot
def cmd_plot(args) -> int:
    from .rundir import plot_runs

    out = Path(args.out) if args.out else Path("accuracy.png")
    plot_runs(args.runs, out, metric=args.metric, title=args.title)
    print(f"wrote {out}")
    return 0


def register(subparsers) -> None:
    """Add the ``train``, ``compare`` and ``plot`` sub-commands to an argparse ``subparsers``."""
    p = subparsers.add_parser("train", help="train one run (resumes when --out exists)",
                              description="Simulated training: n workers, f Byzantine, one server rule.")
    _add_run_flags(p, compare=False)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("compare", help="the main job: several aggregators against one attack",
                              description="Train one run per aggregator against the same attack, print final "
                                          "accuracies next to the omniscient baseline, plot the curves.")
    _add_run_flags(p, compare=True)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("plot", help="plot metrics of run directories",
                              description="Draw a metric of several run directories against the step.")
    p.add_argument("runs", nargs="+", help="run directories (holding metrics.jsonl)")
    p.add_argument("--out", help="PNG file (default accuracy.png)")
    p.add_argument("--metric", default="test_accuracy", help="test_accuracy, loss, test_loss, cosine, inner")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=cmd_plot)
