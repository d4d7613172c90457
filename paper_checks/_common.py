"""Shared code of the paper checks: scales, running a set of aggregators, JSON, PNG, claims.

Every script of ``paper_checks/`` reproduces one figure of the MixTailor paper
(Ramezani-Kebrya et al.; Section 5 Figs. 1-4, Appendix A.8 Figs. 5-6). A
script builds a list of :class:`Run` (a panel of the figure, a curve label and
a :class:`~mixtailor_game.train.TrainConfig`), :func:`run_all` trains them
through the trainer's Python API (``mixtailor_game.train.train``, one run
directory each, so an interrupted script resumes), and :func:`finish` writes

* ``OUT/<name>.json``: the scale, the settings, every run's final and tail
  accuracy and its accuracy curve, and the claims of the paper checked by the
  script with our numbers and a verdict;
* ``OUT/<name>.png``: one panel per setting, test accuracy against the step.

Scales (``--scale``):

``tiny``
    the embedded ``digits`` data, logistic regression, 12 steps: smoke tests only.
``small``
    MNIST (``--data-dir``; default ``../shared/data/mnist`` next to the repo
    when it exists, else ``digits``), multinomial logistic regression
    (d = 7,850), 200 steps, lr 0.05, batch 50 per worker (Fig. 2: 128),
    momentum 0.9, weight decay 1e-4, evaluation on 2,000 test images every 20
    steps. Runs on a 2-core CPU (the stored small runs took 0.01-1.2 s a
    MixTailor step on a shared machine). With the CNN (d = 184,586) a
    MixTailor step takes ~0.20 s on 2 threads, aggregation ~0.03 s of it
    (``benchmarks/results/trainer.json``): ~2.8 h for 50K steps.
``paper``
    the paper's Table 1: the 2-conv + 2-fc CNN (``paper_cnn``), 50K
    iterations, lr 0.001, batch 50, momentum 0.9, weight decay 1e-4 (CIFAR-10:
    the same architecture, as Appendix A.8 describes one network for both data
    sets, on 3 x 32 x 32 inputs: d = 259,914; 40K iterations, batch 80); for a
    GPU (``--device cuda``).

Verdicts compare the *tail accuracy* (the mean test accuracy of the last three
evaluations, less noisy than the last one) with explicit thresholds: an
aggregator "fails" when its tail accuracy is more than ``FAIL_MARGIN`` (10
points) below the omniscient run of the same panel; "within x%" compares with
the omniscient run directly. MixTailor's draw is seeded from the run seed
(``deterministic_draw=True``) so that the results are reproducible; the
attacks of the paper do not exploit the draw (they only know the pool).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mixtailor_game.train import TrainConfig, read_metrics, train  # noqa: E402

SCALES = ("tiny", "small", "paper")
DEFAULT_MNIST = ROOT.parent / "shared" / "data" / "mnist"
FAIL_MARGIN = 0.10   # "fails": tail accuracy more than 10 points below omniscient
TAIL = 3             # tail accuracy: mean of the last TAIL evaluations

# Per-scale training settings (TrainConfig keys). Table 1 of the paper for "paper".
SCALE_SETTINGS = {
    "tiny": dict(model="logreg", steps=12, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-4,
                 eval_every=4, eval_examples=None),
    "small": dict(model="logreg", steps=200, batch_size=50, lr=0.05, momentum=0.9, weight_decay=1e-4,
                  eval_every=20, eval_examples=2000),
    "paper": dict(model="paper_cnn", steps=50_000, batch_size=50, lr=0.001, momentum=0.9, weight_decay=1e-4,
                  eval_every=1000, eval_examples=None),
}
# CIFAR-10 (Table 1): 40K iterations, batch 80; the paper's one CNN (A.8: "a 4 layer
# neural net with 2 convolutional layers + two fully connected layers", for both data
# sets), not the deeper ``cifar_cnn`` (3 conv + 2 fc, d = 620,362) of the trainer.
CIFAR_SETTINGS = {
    "tiny": dict(model="logreg", steps=12, batch_size=16, eval_every=4),
    "small": dict(model="logreg", steps=200, batch_size=80, eval_every=20),
    "paper": dict(model="paper_cnn", steps=40_000, batch_size=80, eval_every=1000),
}


# --------------------------------------------------------------------------- arguments
def parser(description: str) -> argparse.ArgumentParser:
    """The flags every paper check takes (a script adds its own)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="small",
                   help="tiny (smoke test, digits), small (MNIST on a CPU, minutes), paper (Table 1, GPU)")
    p.add_argument("--out", default=str(ROOT / "paper_checks" / "results"),
                   help="directory for <name>.json and <name>.png (default paper_checks/results)")
    p.add_argument("--runs-dir", default=None,
                   help="directory for the run directories (default OUT/runs/<name>; rerunning resumes)")
    p.add_argument("--data-dir", default=None,
                   help="MNIST IDX directory (default ../shared/data/mnist if it exists, else digits)")
    p.add_argument("--steps", type=int, default=None, help="override the scale's number of steps")
    p.add_argument("--eval-every", type=int, default=None, help="override the scale's evaluation period")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per run (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:0)")
    p.add_argument("--engine", default="auto", choices=("auto", "loop", "vmap", "fused"), help="per-worker gradient engine")
    return p


def summary(doc: str | None) -> str:
    """The first paragraph of a script's docstring: its ``--help`` description."""
    return (doc or "").strip().split("\n\n")[0]


def require(ok: bool, flag: str, constraint: str, value) -> None:
    """Exit with ``paper_checks: --<flag> must be <constraint>, got <value>`` unless ``ok``."""
    if not ok:
        raise SystemExit(f"paper_checks: --{flag} must be {constraint}, got {value}")


def parse_args(doc: str | None, argv=None, *, add=None, validate=None) -> argparse.Namespace:
    """The whole command line of a paper check: the shared flags (:func:`parser`), the script's own
    (``add(parser)``), the shared checks (:func:`check_args`), then the script's (``validate(args)``,
    which raises ``SystemExit`` through :func:`require`)."""
    p = parser(summary(doc))
    if add is not None:
        add(p)
    args = check_args(p.parse_args(argv))
    if validate is not None:
        validate(args)
    return args


def main(name: str, title, args: argparse.Namespace, build_runs, make_claims) -> int:
    """What every script's ``main`` does: build the runs, run them, write the JSON and PNG.

    ``title``: a string, or a function of ``args``; ``build_runs(args) -> (runs, settings)``;
    ``make_claims(tab, args) -> [claim, ...]``.
    """
    runs, settings = build_runs(args)
    execute(name, title(args) if callable(title) else title, args, runs,
            lambda tab: make_claims(tab, args), settings)
    return 0


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Validate the shared flags with one-line errors."""
    for name in ("steps", "eval_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"paper_checks: --{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seeds < 1:
        raise SystemExit(f"paper_checks: --seeds must be >= 1, got {args.seeds}")
    if args.seed < 0:
        raise SystemExit(f"paper_checks: --seed must be >= 0, got {args.seed}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise SystemExit(f"paper_checks: --data-dir must be an existing directory, got {args.data_dir!r}")
    cifar = getattr(args, "cifar_dir", None)
    if cifar is not None and not Path(cifar).is_dir():
        raise SystemExit(f"paper_checks: --cifar-dir must be an existing directory, got {cifar!r}")
    return args


def mnist_source(args) -> tuple[str, str | None]:
    """(dataset, data_dir): MNIST from --data-dir or the shared copy; digits at tiny scale or without MNIST."""
    if args.scale == "tiny":
        return "digits", None
    if args.data_dir is not None:
        return "mnist", str(args.data_dir)
    if DEFAULT_MNIST.is_dir():
        return "mnist", str(DEFAULT_MNIST)
    return "digits", None


def base_config(args, *, dataset: str, data_dir: str | None, cifar: bool = False, **changes) -> dict:
    """TrainConfig keys for the scale, the data set and the flags; ``changes`` win."""
    cfg = dict(SCALE_SETTINGS[args.scale])
    if cifar:
        cfg.update(CIFAR_SETTINGS[args.scale])
    cfg.update(dataset=dataset, data_dir=data_dir, workers=12, byzantine=2, seed=args.seed,
               device=args.device, engine=args.engine, deterministic_draw=True, pool="paper")
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.eval_every is not None:
        cfg["eval_every"] = args.eval_every
    cfg["eval_every"] = min(cfg["eval_every"], cfg["steps"])
    cfg["checkpoint_every"] = max(cfg["eval_every"], 50)
    cfg.update(changes)
    return cfg


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One curve of one panel: ``config`` without the seed (``run_all`` sets it).

    ``per_seed``: ``None``, or a function of the seed returning config keys
    that depend on it (e.g. the seed of a rule's own generator inside
    ``rule_params``); merged over ``config`` by :func:`config_for`.
    """

    panel: str
    label: str
    config: dict
    per_seed: Callable[[int], dict] | None = None


def config_for(run: Run, seed: int) -> dict:
    """The TrainConfig keys of ``run`` for one seed."""
    extra = run.per_seed(seed) if run.per_seed is not None else {}
    return {**run.config, **extra, "seed": seed}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "run"


def tail_accuracy(curve: list, k: int = TAIL) -> float | None:
    vals = [a for _, a in curve if a is not None]
    if not vals:
        return None
    return float(sum(vals[-k:]) / len(vals[-k:]))


def run_all(runs: list[Run], runs_dir: Path, seeds: list[int], log=print) -> list[dict]:
    """Train every run for every seed (resuming finished / interrupted run directories).

    Returns one record per (run, seed): panel, label, seed, the resolved
    config, the summary, the accuracy curve ``[[step, acc], ...]``, the final
    and tail accuracy, wall time.
    """
    records = []
    total = len(runs) * len(seeds)
    for i, run in enumerate(runs):
        for seed in seeds:
            config = TrainConfig.from_dict(config_for(run, seed))
            run_dir = Path(runs_dir) / slug(run.panel) / slug(run.label) / f"seed{seed}"
            t0 = time.perf_counter()
            summary = train(config, out=run_dir)
            rows = read_metrics(run_dir)
            curve = [[r["step"], r["test_accuracy"]] for r in rows if r.get("test_accuracy") is not None]
            rec = {
                "panel": run.panel, "label": run.label, "seed": seed,
                "config": config.result_dict(), "summary": summary, "curve": curve,
                "final_accuracy": summary.get("test_accuracy"), "tail_accuracy": tail_accuracy(curve),
                "wall_time_s": time.perf_counter() - t0,
            }
            records.append(rec)
            k = len(records)
            log(f"[{k}/{total}] {run.panel} | {run.label} | seed {seed}: final {_fmt(rec['final_accuracy'])}, "
                f"tail {_fmt(rec['tail_accuracy'])} ({rec['wall_time_s']:.1f} s)", flush=True)
    return records


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def table(records: list[dict]) -> dict:
    """``{panel: {label: {"tail": mean, "final": mean, "tail_std": std, "seeds": k}}}`` over seeds."""
    out: dict = {}
    for rec in records:
        out.setdefault(rec["panel"], {}).setdefault(rec["label"], []).append(rec)
    res: dict = {}
    for panel, labels in out.items():
        res[panel] = {}
        for label, recs in labels.items():
            tails = [r["tail_accuracy"] for r in recs if r["tail_accuracy"] is not None]
            finals = [r["final_accuracy"] for r in recs if r["final_accuracy"] is not None]
            mean = sum(tails) / len(tails) if tails else None
            std = math.sqrt(sum((t - mean) ** 2 for t in tails) / len(tails)) if tails else None
            res[panel][label] = {"tail": mean, "tail_std": std,
                                 "final": sum(finals) / len(finals) if finals else None, "seeds": len(recs)}
    return res


def acc(tab: dict, panel: str, label: str) -> float | None:
    """Tail accuracy (mean over seeds) of one curve, or None when it was not run."""
    return tab.get(panel, {}).get(label, {}).get("tail")


# --------------------------------------------------------------------------- claims
def claim(text: str, setting: str, measured: str, verdict: str, why: str = "") -> dict:
    """One row of the claims table (verdict: reproduced / not reproduced / not run)."""
    if verdict not in ("reproduced", "not reproduced", "not run", "partly reproduced"):
        raise ValueError(f"claim: verdict must be reproduced, partly reproduced, not reproduced or not run, "
                         f"got {verdict!r}")
    return {"claim": text, "setting": setting, "measured": measured, "verdict": verdict, "why": why}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def fails(x: float | None, ref: float | None, margin: float = FAIL_MARGIN) -> bool | None:
    """True when ``x`` is more than ``margin`` below ``ref`` (None when either is missing)."""
    if x is None or ref is None:
        return None
    return x < ref - margin


def verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("reproduced" if ok else "not reproduced")


def claims_markdown(claims: list[dict], scale: str, source: str) -> str:
    lines = ["| claim (paper) | setting | ours (" + scale + ") | verdict |", "|---|---|---|---|"]
    for c in claims:
        v = c["verdict"] + (f" ({c['why']})" if c.get("why") else "")
        lines.append(f"| {c['claim']} | {c['setting']} | {c['measured']} | {v} |")
    lines.append(f"\nSource: `{source}`")
    return "\n".join(lines)


# --------------------------------------------------------------------------- outputs
def plot_panels(records: list[dict], path: Path, title: str) -> Path:
    """One panel per setting; mean accuracy curve over seeds per label. Agg backend, small PNG."""
    import matplotlib

    if "matplotlib_inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict = {}
    for rec in records:
        panels.setdefault(rec["panel"], {}).setdefault(rec["label"], []).append(rec["curve"])
    k = len(panels)
    cols = min(k, 3)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    try:
        for ax, (panel, labels) in zip(axes.flat, panels.items()):
            for label, curves in labels.items():
                steps = [s for s, _ in curves[0]]
                vals = [sum(c[j][1] for c in curves) / len(curves) for j in range(len(steps))
                        if all(len(c) > j for c in curves)]
                ax.plot(steps[: len(vals)], vals, label=label, marker="." if len(vals) < 25 else None)
            ax.set_title(panel, fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylabel("test accuracy")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[k:]:
            ax.axis("off")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
    finally:
        plt.close(fig)
    return path


def write_json(path: Path, payload) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def seeds_of(args) -> list[int]:
    return list(range(args.seed, args.seed + args.seeds))


def execute(name: str, title: str, args, runs: list[Run], make_claims, settings: dict) -> dict:
    """Run everything, compute the claims, write ``OUT/<name>.json`` and ``OUT/<name>.png``."""
    out = Path(args.out)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out / "runs" / name
    t0 = time.perf_counter()
    records = run_all(runs, runs_dir, seeds_of(args))
    tab = table(records)
    claims = make_claims(tab)
    payload = {
        "experiment": name, "title": title, "scale": args.scale, "seeds": seeds_of(args),
        "settings": settings, "fail_margin": FAIL_MARGIN, "tail_evaluations": TAIL,
        "accuracy": tab, "claims": claims,
        "runs": [{k: v for k, v in r.items() if k != "summary"} | {"summary": _small_summary(r["summary"])}
                 for r in records],
        "wall_time_s": time.perf_counter() - t0,
    }
    write_json(out / f"{name}.json", payload)
    plot_panels(records, out / f"{name}.png", title)
    print(claims_markdown(claims, args.scale, f"{name}.json"))
    return payload


def _small_summary(summary: dict) -> dict:
    keep = ("test_accuracy", "best_test_accuracy", "final_loss", "steps", "aggregator_name", "attack",
            "attack_params", "parameters", "wall_time_s", "steps_per_second", "complete")
    return {k: summary.get(k) for k in keep}


def describe(cfg: dict) -> str:
    """A short human description of a base config for the JSON / table."""
    return (f"{cfg['dataset']}, {cfg['model']}, n={cfg['workers']}, f={cfg['byzantine']}, {cfg['steps']} steps, "
            f"batch {cfg['batch_size']}, lr {cfg['lr']}, momentum {cfg['momentum']}")
