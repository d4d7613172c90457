"""Share of a MixTailor training step spent in aggregation and attack (issue 5, speed).

Setting: the paper's CNN on MNIST (``../shared/data/mnist``), n = 12 workers,
f = 2, 50 examples per worker, the tailored attack (``ipm``, eps = 0.1) with
full knowledge, MixTailor with the paper's pool of 64 rules (seeded draw, so
the sequence of rules drawn is the same in every run of this script).

Real trainer steps are timed (``Trainer.train_step``), with timers around the
per-worker gradients, the attack and the server's aggregation; the rest of the
step (batch sampling, the SGD update, metrics) is "other". The share is
``(aggregation + attack) / step`` summed over the steps run (target <= 20%).
The per-step cost of MixTailor depends on the rule drawn (Krum and comed are
cheap; geometric medians under l_p, p > 2, and Bulyan with geomed selection
run an iterative solver over d = 184,586 coordinates), so the script runs
steps until ``--budget`` seconds are spent (at least ``--min-steps``) and
reports every step. Before timing, every distinct rule of the pool is called
once (``pool_warm_up_s``): large inputs run compiled kernels, and each new
norm p compiles once per process, a cost a long run pays once. For contrast, the same steps with Krum alone (one rule,
no draw) are timed in the same run.

On CUDA every timer (each part and the whole step) synchronizes the device at
both ends, so GPU work queued by the gradients finishes inside the gradients
timer rather than in whichever later part synchronizes first.

Expected share: the measured share depends on the one seeded sequence of rules
drawn. ``expected_share_aggregation_and_attack`` does not: each rule family
(the rule's name without its norm ``p``; Bulyan split by its selection, which
dominates its cost) gets its mean measured aggregation cost per step, weighted
by the pool's probability of drawing that family; that expected aggregation
plus the mean attack is divided by the expected step (the mean step with its
aggregation replaced by the expected one). A family of the pool never drawn in
the timed steps is listed in ``families_not_drawn`` and makes
``expected_share_complete`` false (the expected share then leaves it out).

Every result records the UTC date, ``git describe --always --dirty``, the
command, torch, threads and the 1/5/15-min load average before and after.

    python benchmarks/bench_trainer.py [--budget 300] [--min-steps 3] [--threads 2] \
        [--device cpu] [--engine auto] [--aggregators krum,mixtailor] [--out benchmarks/results/trainer.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _provenance import git_describe, load_average  # noqa: E402

from mixtailor_game.train import TrainConfig, Trainer  # noqa: E402
from mixtailor_game.models import make_model  # noqa: E402
from mixtailor_game.train.engines import resolve_engine  # noqa: E402
from mixtailor_game.train.rundir import atomic_write_json  # noqa: E402


def make_sync(device) -> callable:
    """A function that waits for the device's queued work (CUDA); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


class Timed:
    """Wrap a callable and add its wall time to ``self.seconds``; ``sync`` runs at both
    ends (``torch.cuda.synchronize`` on CUDA) so that only this call's device work is counted."""

    def __init__(self, fn, sync=lambda: None, **attrs):
        self.fn, self.sync, self.seconds = fn, sync, 0.0
        self.__dict__.update(attrs)

    def __call__(self, *args, **kwargs):
        self.sync()
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.sync()
        self.seconds += time.perf_counter() - start
        return out






def family(name: str) -> str:
    """A rule's family: its name without the norm ``p``; Bulyan keeps its selection only."""
    base = name.split("[")[0]
    select = re.search(r"select=([^,\]]+)", name)
    return f"{base}[select={select.group(1)}]" if select else base


def pool_families(trainer: Trainer) -> dict:
    """Probability of drawing each family: MixTailor's pool and probabilities, else the one rule."""
    mt = trainer.server.mixtailor
    if mt is None:
        return {family(trainer.server.name): 1.0}
    probs = defaultdict(float)
    for rule, p in zip(mt.pool, mt.probs):
        probs[family(rule.name)] += float(p)
    return dict(probs)


def expected_share(steps: list, probs: dict) -> dict:
    """Share of aggregation + attack with each family's mean measured aggregation cost
    weighted by its probability (independent of the sequence drawn)."""
    cost = defaultdict(list)
    for s in steps:
        cost[family(s["rule"])].append(s["aggregation_s"])
    mean_cost = {fam: sum(v) / len(v) for fam, v in cost.items()}
    missing = {fam: p for fam, p in probs.items() if p > 0 and fam not in mean_cost}
    expected_agg = sum(p * mean_cost[fam] for fam, p in probs.items() if fam in mean_cost)
    k = len(steps)
    rest = sum(s["step_s"] - s["aggregation_s"] for s in steps) / k
    attack = sum(s["attack_s"] for s in steps) / k
    expected_step = rest + expected_agg
    return {
        "expected_share_aggregation_and_attack": (expected_agg + attack) / expected_step,
        "expected_share_aggregation": expected_agg / expected_step,
        "expected_aggregation_s": expected_agg,
        "expected_step_s": expected_step,
        "expected_share_complete": not missing,
        "families": {fam: {"probability": p, "times_drawn": len(cost.get(fam, ())),
                           "mean_aggregation_s": mean_cost.get(fam)} for fam, p in sorted(probs.items())},
        "families_not_drawn": missing,
    }


def instrument(trainer: Trainer, sync) -> dict:
    timers = {
        "gradients": Timed(trainer._per_worker_gradients, sync),
        "attack": Timed(trainer.attack, sync, data_hook=getattr(trainer.attack, "data_hook", None)),
        "aggregation": Timed(trainer.server.rule, sync),
    }
    trainer._per_worker_gradients = timers["gradients"]
    trainer.attack = timers["attack"]
    trainer.server.rule = timers["aggregation"]
    return timers


def warm_pool(trainer: Trainer, sync) -> float:
    """Call every distinct rule of a MixTailor pool once on rows of the step's shape.

    Large inputs run compiled kernels (``rules/_compile.py``): each new norm p
    compiles once per process (seconds), which a long run pays once and a
    64-step sample would count many times. Returns the seconds spent."""
    mt = trainer.server.mixtailor
    if mt is None:
        return 0.0
    g = torch.Generator().manual_seed(0)
    G = torch.randn(trainer.config.workers, trainer.d, generator=g).to(trainer.config.device)
    sync()
    start = time.perf_counter()
    for rule in set(mt.pool):
        rule(G)
    sync()
    return time.perf_counter() - start


def time_steps(config: TrainConfig, budget: float, min_steps: int, max_steps: int) -> dict:
    trainer = Trainer(config)
    sync = make_sync(config.device)
    probs = pool_families(trainer)
    warm_up_s = warm_pool(trainer, sync)
    trainer.train_step()  # warm-up (first calls allocate)
    timers = instrument(trainer, sync)
    steps, spent = [], 0.0
    while len(steps) < max_steps and (len(steps) < min_steps or spent < budget):
        before = {k: t.seconds for k, t in timers.items()}
        sync()
        start = time.perf_counter()
        row = trainer.train_step()
        sync()
        total = time.perf_counter() - start
        spent += total
        parts = {k: timers[k].seconds - before[k] for k in timers}
        steps.append({"rule": row["rule"], "step_s": total, **{f"{k}_s": v for k, v in parts.items()}})
        print(f"  {config.aggregator:<9} step {len(steps):>3}: {total:7.2f} s  rule {row['rule']:<45} "
              f"aggregation {parts['aggregation']:7.2f} s  attack {parts['attack']:.4f} s", flush=True)
    total = sum(s["step_s"] for s in steps)
    agg = sum(s["aggregation_s"] for s in steps)
    att = sum(s["attack_s"] for s in steps)
    grads = sum(s["gradients_s"] for s in steps)
    expected = expected_share(steps, probs)
    return {
        "aggregator": config.aggregator,
        "pool_warm_up_s": warm_up_s,
        "steps_timed": len(steps),
        "mean_step_s": total / len(steps),
        "steps_per_s": len(steps) / total,
        "share_aggregation_and_attack": (agg + att) / total,
        "share_aggregation": agg / total,
        "share_attack": att / total,
        "share_gradients": grads / total,
        **expected,
        "steps": steps,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of MixTailor steps (default 300)")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="auto", help="per-worker gradient engine: auto, loop, vmap, fused")
    parser.add_argument("--aggregators", default="krum,mixtailor", help="comma-separated, timed in this order")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "trainer.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    date_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = load_average()
    base = TrainConfig(dataset="mnist", data_dir=args.data_dir, model="paper_cnn", workers=12, byzantine=2,
                       aggregator="mixtailor", pool="paper", deterministic_draw=True, attack="ipm",
                       attack_params={"eps": 0.1}, batch_size=50, lr=0.001, momentum=0.9, weight_decay=1e-4,
                       steps=10**6, eval_examples=1000, device=args.device, engine=args.engine, seed=0)
    results = {}
    for agg in args.aggregators.split(","):
        print(f"{agg}:", flush=True)
        results[agg] = time_steps(base.replace(aggregator=agg, pool="paper"), args.budget if agg == "mixtailor"
                                  else min(args.budget, 60.0), args.min_steps, args.max_steps)
    mt = results.get("mixtailor", next(iter(results.values())))
    device = torch.device(args.device)
    report = {
        "benchmark": "share of a trainer step spent in aggregation + attack (tailored attack ipm eps=0.1)",
        "setting": "paper_cnn on MNIST, n=12, f=2, batch 50 per worker, full knowledge, paper pool (64 rules)",
        "d": Trainer(base.replace(steps=1)).d,
        "device": f"{args.device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.machine()})",
        "engine": resolve_engine(args.engine, device, make_model("paper_cnn", (1, 28, 28), 10)),
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "command": "python benchmarks/bench_trainer.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date_utc": date_utc,
        "git_describe": git_describe(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "cuda_synchronized_timers": device.type == "cuda",
        "target_share": 0.20,
        "mixtailor_share_aggregation_and_attack": mt["share_aggregation_and_attack"],
        "meets_target": mt["share_aggregation_and_attack"] <= 0.20,
        "mixtailor_expected_share_aggregation_and_attack": mt["expected_share_aggregation_and_attack"],
        "expected_meets_target": mt["expected_share_aggregation_and_attack"] <= 0.20,
        "expected_share_complete": mt["expected_share_complete"],
        "results": results,
        "note": ("share_*: over the steps timed, so MixTailor's depends on the rules drawn (seeded draw, the same "
                 "sequence in every run); expected_share_*: each family's mean aggregation cost weighted by the "
                 "pool's probability of drawing it, over the expected step (independent of the draw)"),
    }
    atomic_write_json(args.out, report)
    for agg, r in results.items():
        print(f"{agg:<9}: {r['steps_timed']} steps, mean {r['mean_step_s']:.4f} s/step "
              f"({r['steps_per_s']:.1f} steps/s, engine {report['engine']}), "
              f"aggregation+attack {100 * r['share_aggregation_and_attack']:.1f}% "
              f"(aggregation {100 * r['share_aggregation']:.1f}%, attack {100 * r['share_attack']:.2f}%, "
              f"gradients {100 * r['share_gradients']:.1f}%); expected aggregation+attack "
              f"{100 * r['expected_share_aggregation_and_attack']:.1f}%"
              + ("" if r["expected_share_complete"] else
                 f" (families never drawn, left out: {', '.join(r['families_not_drawn'])})"))
    print(f"load average (1/5/15 min) before {report['load_average_before']}, after {report['load_average_after']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
