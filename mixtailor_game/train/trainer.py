"""The simulated trainer: n workers, f of them Byzantine, one server, one adversary.

One step (gradient space, the paper's Section 5 setting)::

    1. choose the Byzantine indices B (fixed: the last f workers; random: f
       workers drawn anew at every step) and the honest ones H;
    2. every worker draws ``batch_size`` examples of its shard; the attack's
       ``data_hook`` (label flipping) rewrites the Byzantine workers' batches;
    3. per-worker gradients g_1..g_n at the current model w_t (one batched
       call: ``engines.per_worker_gradients``);
    4. the adversary sees ``make_view(g_H, knowledge=..., defense=..., own=g_B)``
       (the defense is the rule, or MixTailor's public pool, never the rule
       drawn at this step) and returns the f rows sent by B;
    5. the server aggregates the n rows: any ``make_rule`` rule, MixTailor
       (the draw happens after the rows arrive), optionally behind bucketing,
       or the omniscient baseline: the mean of g_H (the attack is not called);
    6. SGD with momentum and weight decay (``torch.optim.SGD``) takes the
       aggregate as the gradient.

Non-finite values: Byzantine rows with NaN / Inf go to the rule as they are (a
robust rule drops them, DESIGN.md). An aggregate that is not finite (a rule
that is not robust, e.g. ``mean``, or the honest mean of a diverged model)
stops the run with a one-line ``ValueError`` naming the step and the rule,
before the model or the momentum is touched (the checkpoint keeps the last
finished step); so does a step whose honest rows are all non-finite (the
model diverged: lower ``lr``), before the attack is called.

Model space (paper Remark 1, ``space="model"``): every worker starts from the
global model w_0 and takes ``local_steps`` (tau) plain SGD steps (``lr``,
``weight_decay``, no momentum) on its own batches; the rows are the local
models, the adversary's view carries ``model = w_0``, and the server sets
``w_1 = AGG(rows)``. Metrics then compare the displacements ``w_0 - AGG`` and
``w_0 - mean(honest rows)``.

Randomness: every source is its own generator derived from ``seed`` (data
split, batches and dropout, Byzantine indices, attack, pool norms, bucketing,
and MixTailor's draw only with ``deterministic_draw``); their states go into
``checkpoint.pt``, so a seeded CPU run killed and resumed from its run
directory ends with the same metrics as an uninterrupted run. Without
``deterministic_draw`` MixTailor draws from OS entropy (DESIGN.md): such a
run resumes, but its draws (and so its metrics) differ from any other run.
Model initialisation and dropout masks use torch's global generator inside
``torch.random.fork_rng``, seeded from our generators (dropout: the
``generator`` argument of ``engines.per_worker_gradients``), so the caller's
global random state is left untouched.

State kept inside the rule and attack objects is checkpointed too
(``rule_state`` / ``attack_state``, collected by
:func:`mixtailor_game.rules.state.collect_state` by a stable path): centered
clipping's center (also inside a MixTailor pool or a bucketing wrapper),
MixTailor's seeded draw generator, bucketing's seeded permutation generator,
and anything with ``state_dict`` / ``load_state_dict``. A checkpoint written
before this state was saved still loads: that state starts fresh, with a
``RuntimeWarning``.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .._checks import fail
from ..rules.base import finite_rows
from . import rundir
from .config import EXECUTION_FIELDS, TrainConfig, parse_probs, probs_file_pool

FAMILIES_PREFIX = "families:"


def _seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for random stream ``stream`` of run seed ``seed``."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


(STREAM_SPLIT, STREAM_BATCH, STREAM_BYZ, STREAM_ATTACK, STREAM_POOL, STREAM_DRAW, STREAM_BUCKET, STREAM_INIT,
 STREAM_DROPOUT) = range(9)


# --------------------------------------------------------------------------- building
@dataclass
class Server:
    """The server's aggregation: ``rule`` (``None`` for omniscient), the MixTailor
    object inside it (for logging the rule drawn) and what the adversary knows."""

    rule: object
    mixtailor: object
    defense: object
    name: str


def _rule_error(where: str, exc: Exception) -> ValueError:
    return ValueError(f"{where}: {exc}")


def build_server(config: TrainConfig) -> Server:
    """Build and validate the server's rule for ``config`` (raises before any training).

    Checks the rule name, its parameters and its ``n``/``f`` regime
    (``rule.check(n)``; for MixTailor every rule of the pool), and the length
    of ``probs`` against the pool.
    """
    from ..rules import MixTailor, as_rule, make_rule, paper_pool, pool_from_families, rule_names

    n, f = config.workers, config.byzantine
    if config.bucketing is not None and config.bucketing_mode == "resample":
        f = config.bucketing * f  # a Byzantine row reaches up to s resampled rows
    agg = config.aggregator
    if agg in ("omniscient", "mixtailor") and config.rule_params:
        # they were ignored silently; a pool's rules take theirs in --pool (krum[p=3])
        raise fail("TrainConfig", "rule_params", f"empty for {agg} (rule parameters go in --pool entries, "
                   "e.g. krum[p=3])", dict(config.rule_params))
    if agg == "omniscient":
        if config.bucketing is not None:
            raise fail("TrainConfig", "bucketing", "None for the omniscient baseline", config.bucketing)
        return Server(rule=None, mixtailor=None, defense=None, name="omniscient")
    mixtailor = None
    if agg == "mixtailor":
        pool_seed = _seed(config.seed, STREAM_POOL)
        pool_spec = config.pool.strip()
        if pool_spec == "paper":
            pool = paper_pool(f, np.random.default_rng(pool_seed))
        elif pool_spec.startswith(FAMILIES_PREFIX):
            fams = [s.strip() for s in pool_spec[len(FAMILIES_PREFIX):].split(",") if s.strip()]
            pool = pool_from_families(f, fams, np.random.default_rng(pool_seed))
        else:
            from ..rules.spec import parse_spec, split_top_level  # the game CLI's spec syntax

            try:
                specs = [parse_spec(s) for s in split_top_level(pool_spec)]
            except ValueError as exc:
                raise _rule_error("TrainConfig", exc) from None
            if not specs:
                raise fail("TrainConfig", "pool", "'paper', 'families:a,b' or a comma list of rule names", config.pool)
            bad = [name for name, _ in specs if name not in rule_names() or name == "mixtailor"]
            if bad:
                raise fail("TrainConfig", "pool", f"rule names from {rule_names()}", ",".join(bad))
            try:  # name[param=value,...] entries as the game CLI writes them (krum[p=3])
                pool = [as_rule(dict(name=name, **params), f) for name, params in specs]
            except (TypeError, ValueError) as exc:
                raise _rule_error("TrainConfig", exc) from None
        probs = parse_probs(config.probs)
        if probs is not None:
            if len(probs) != len(pool):
                raise fail("TrainConfig", "probs", f"{len(pool)} numbers (one per rule of the pool)", len(probs))
            probs = _probs_for_pool(config, probs, [r.name for r in pool])
            total = sum(probs)
            probs = tuple(p / total for p in probs)
        rng = torch.Generator().manual_seed(_seed(config.seed, STREAM_DRAW)) if config.deterministic_draw else None
        rule = mixtailor = MixTailor(pool, probs=probs, rng=rng)
    else:
        if agg not in rule_names():
            valid = ", ".join(sorted(set(rule_names()) | {"omniscient"}))
            raise fail("TrainConfig", "aggregator", f"one of {valid}", agg)
        params = dict(config.rule_params)
        takes = _factory_params(agg)
        if agg != "mean" and "f" in takes:  # the plain mean tolerates f = 0 by definition
            params.setdefault("f", f)
        elif "b" in takes:  # trimmed_mean(b): trims f per side, as in a pool (as_rule)
            params.setdefault("b", f)
        try:
            rule = make_rule(agg, **params)
        except (TypeError, ValueError) as exc:
            raise _rule_error("TrainConfig", exc) from None
    rule.check(n)
    defense = mixtailor.public if mixtailor is not None else rule
    if config.bucketing is not None:
        try:
            rule = make_rule("bucketing", **_bucketing_params(rule, config))
        except (TypeError, ValueError) as exc:
            raise _rule_error("TrainConfig", exc) from None
        rule.check(n)
        if mixtailor is None:
            defense = rule
    name = mixtailor.name if mixtailor is not None else rule.name
    if config.bucketing is not None and mixtailor is not None:
        mode = "" if config.bucketing_mode == "buckets" else f",mode={config.bucketing_mode}"
        name = f"bucketing[s={config.bucketing}{mode}]({name})"
    return Server(rule=rule, mixtailor=mixtailor, defense=defense, name=name)


def _factory_params(name: str) -> list[str]:
    from ..rules import registry

    return registry._params_of(registry._REGISTRY[name])


def _bucketing_params(base, config: TrainConfig) -> dict:
    params = {"base": base, "s": config.bucketing}
    takes = _factory_params("bucketing")
    if "generator" in takes and config.deterministic_draw:
        # like MixTailor's draw: OS entropy unless the run asks for reproducible server randomness
        params["generator"] = torch.Generator().manual_seed(_seed(config.seed, STREAM_BUCKET))
    if "f" in takes:
        params["f"] = config.byzantine
    if "mode" in takes:
        params["mode"] = config.bucketing_mode
    return params


def build_attack(config: TrainConfig):
    """``make_attack(config.attack, **config.attack_params)``, or ``None`` for ``"none"``."""
    if config.attack == "none":
        if config.attack_params:
            raise fail("TrainConfig", "attack_params", "empty when attack='none'", config.attack_params)
        return None
    from ..attacks import attack_names, attack_params, make_attack

    if config.attack not in attack_names():
        raise fail("TrainConfig", "attack", f"one of none, {', '.join(attack_names())}", config.attack)
    params = dict(config.attack_params)
    if config.space == "model":
        takes_space = config.attack == "adaptive" or "space" in attack_params(config.attack)
        if not takes_space:
            raise fail("TrainConfig", "attack", "an attack with a model-space version when space='model'", config.attack)
        params.setdefault("space", "model")
    try:
        return make_attack(config.attack, **params)
    except (TypeError, ValueError) as exc:
        raise _rule_error("TrainConfig", exc) from None


def _probs_for_pool(config: TrainConfig, probs: tuple, names: list) -> tuple:
    """``probs`` in the order of ``names`` (this run's pool). A probs file written by
    ``mixtailor-game game`` names its pool and f: the weights follow the names (the same
    rules listed in another order gave geomed's equilibrium weight to Krum), and a file
    for another pool or another f is refused."""
    meta = probs_file_pool(config.probs)
    if meta is None:
        return probs
    file_f = meta["byzantine"]
    if file_f is not None and file_f != config.byzantine:
        raise ValueError(f"TrainConfig: probs file {config.probs!r} was written for byzantine={file_f}, "
                         f"this run has byzantine={config.byzantine}; write it again with game --byzantine "
                         f"{config.byzantine}")
    if meta["pool"] == names:
        return probs
    if sorted(meta["pool"]) != sorted(names) or len(set(names)) != len(names):
        raise ValueError(f"TrainConfig: probs file {config.probs!r} is for the pool {meta['pool']}, this run's "
                         f"pool is {names}; pass the pool the file was written for")
    weight = dict(zip(meta["pool"], probs))
    return tuple(weight[name] for name in names)


def load_data(config: TrainConfig):
    """Load the data set, with a one-line error for a missing directory."""
    from ..data import load_dataset

    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise fail("TrainConfig", "data_dir", "an existing directory", config.data_dir)
    return load_dataset(config.dataset, data_dir=config.data_dir)


class _StopOnInterrupt:
    """While a run with a directory trains: the first Ctrl-C (SIGINT) lets the step in
    progress finish and be checkpointed (an interrupt inside the optimizer's update
    could leave the model half updated); a second one stops at once. Main thread
    only (Python delivers signals there)."""

    def __init__(self):
        self.asked = False
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.asked = True
        self.restore()

    def restore(self) -> None:
        if self.installed:
            # None: a handler not set from Python; Python's own then
            signal.signal(signal.SIGINT, signal.default_int_handler if self.previous is None else self.previous)
            self.installed = False


def make_partition(config: TrainConfig, labels: torch.Tensor) -> list[torch.Tensor]:
    from ..data import partition

    gen = torch.Generator().manual_seed(_seed(config.seed, STREAM_SPLIT))
    if labels.is_floating_point():  # regression targets (synthetic-*): only iid needs no classes
        if config.partition != "iid":
            raise fail("TrainConfig", "partition", "'iid' for a regression data set (no classes to split by)",
                       config.partition)
        labels = torch.zeros(len(labels), dtype=torch.long)
    shards = partition(labels, config.workers, scheme=config.partition, alpha=config.alpha, generator=gen)
    for i, shard in enumerate(shards):
        if len(shard) == 0:
            raise ValueError(
                f"TrainConfig: partition {config.partition!r} gives worker {i} no examples "
                f"(n={config.workers}, {len(labels)} training examples)"
            )
    return [torch.as_tensor(s, dtype=torch.long) for s in shards]


# --------------------------------------------------------------------------- trainer
def _fork_rng(device: torch.device):
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _set_flat(model: torch.nn.Module, flat: torch.Tensor, attr: str = "data") -> None:
    offset = 0
    for p in model.parameters():
        k = p.numel()
        chunk = flat[offset:offset + k].view_as(p)
        if attr == "data":
            p.data.copy_(chunk)
        else:
            p.grad = chunk.clone()
        offset += k


class Trainer:
    """A run: ``Trainer(config, out).run()`` trains, logs and checkpoints.

    ``out`` is the run directory (``None``: nothing is written, no resume).
    Rerunning with the same ``out`` resumes from its ``checkpoint.pt`` (or
    returns the stored summary of a finished run); a directory that holds a
    different run (another result-defining setting) is refused.
    ``progress``: show a tqdm bar on stderr (only when stderr is a TTY).
    ``callback(step, row)`` is called after each logged step.
    Everything that can be checked is checked in the constructor, before the
    first step.
    """

    def __init__(self, config: TrainConfig, out=None, *, progress: bool = False,
                 callback: Callable | None = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.out = None if out is None else Path(out)
        self.progress = progress
        self.callback = callback
        c = config
        self.n, self.f = c.workers, c.byzantine
        try:
            self.device = torch.device(c.device)
        except RuntimeError:
            raise fail("TrainConfig", "device", "a torch device such as cpu or cuda:0", c.device) from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise fail("TrainConfig", "device", "an available device (CUDA is not available)", c.device)
        if self.out is not None:
            self._check_run_dir()
        # Cheap checks first: rule regime and names, attack, then data.
        self.server = build_server(c)
        self.attack = build_attack(c)  # built (and checked) even for omniscient, which never calls it
        from ..models import make_model
        from .engines import per_worker_gradients

        self._per_worker_gradients = per_worker_gradients
        data = load_data(c)
        self.num_classes = int(data.num_classes)
        # one output: a regression (synthetic-quadratic), trained and evaluated with the squared error
        self.loss = "mse" if self.num_classes == 1 else "cross_entropy"
        self.train_x = torch.as_tensor(data.train_x).to(self.device)
        self.train_y = torch.as_tensor(data.train_y).to(self.device)
        test_x, test_y = torch.as_tensor(data.test_x), torch.as_tensor(data.test_y)
        if c.eval_examples is not None:
            test_x, test_y = test_x[: c.eval_examples], test_y[: c.eval_examples]
        self.test_x, self.test_y = test_x.to(self.device), test_y.to(self.device)
        self.shards = [s.to(self.device) for s in make_partition(c, torch.as_tensor(data.train_y).cpu())]
        with _fork_rng(self.device):
            torch.manual_seed(_seed(c.seed, STREAM_INIT))
            self.model = make_model(c.model, tuple(data.input_shape), self.num_classes).to(self.device)
        self.model.train()
        # model space: a second model that holds each worker's local copy in turn
        self._scratch = copy.deepcopy(self.model) if c.space == "model" else None
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )
        self.d = sum(p.numel() for p in self.model.parameters())
        self.gen_batch = torch.Generator().manual_seed(_seed(c.seed, STREAM_BATCH))
        self.gen_byz = torch.Generator().manual_seed(_seed(c.seed, STREAM_BYZ))
        self.gen_attack = torch.Generator().manual_seed(_seed(c.seed, STREAM_ATTACK))
        self.gen_dropout = torch.Generator().manual_seed(_seed(c.seed, STREAM_DROPOUT))
        self.fixed_byz = torch.arange(self.n - self.f, self.n)
        self.step = 0
        self.wall_time = 0.0
        self.invocations = 0
        self.last_accuracy = None
        self.last_eval_step = None  # the step test_accuracy is from (a run stopped early)
        self.last_loss = None
        self.best_accuracy = None
        # the state before step 1 (model, optimizer, generators, rule and attack state):
        # run() goes back to it when this object trained steps that no checkpoint holds (an
        # exception before the first checkpoint), as a new Trainer would start; without it,
        # a second run() truncated metrics.jsonl to nothing and went on from the lost steps
        self._initial_state = copy.deepcopy(self.state_dict(0)) if self.out is not None else None

    # ---------------------------------------------------------------- run dir
    def _check_run_dir(self) -> None:
        cfg_path = self.out / rundir.CONFIG
        if not cfg_path.is_file():
            return
        try:
            old = rundir.read_json(cfg_path)
        except (ValueError, OSError):
            return  # written atomically: unreadable means foreign; the checkpoint's config decides
        self._check_same_run(old, "config.json")

    def _check_same_run(self, old: dict, where: str) -> None:
        """Raise unless ``old`` (a saved ``result_dict``) is this run's, execution fields
        aside; compared as JSON (a tuple saved reads back as a list)."""
        new = json.loads(json.dumps(self.config.result_dict()))
        old = json.loads(json.dumps(old))
        diff = sorted(k for k in set(old) | set(new)
                      if k not in EXECUTION_FIELDS and old.get(k) != new.get(k))
        if diff:
            k = diff[0]
            raise ValueError(
                f"Trainer: run directory {str(self.out)!r} holds a different run "
                f"({k}: {old.get(k)!r} in its {where}, {new.get(k)!r} now); use another --out"
            )

    def _check_same_probs(self, state: dict | None) -> None:
        """Raise if the checkpoint's MixTailor weights are not the ones this config gives now
        (a ``--probs`` file rewritten between a run and its resume; checkpoints from before
        the weights were saved are not checked)."""
        saved = None if state is None else state.get("probs")
        mt = self.server.mixtailor
        if saved is None or mt is None:
            return
        now = [float(x) for x in mt.probs]
        if saved != now:
            raise ValueError(f"Trainer: run directory {str(self.out)!r} was trained with MixTailor weights {saved}, "
                             f"probs={self.config.probs!r} now gives {now}; restore them or use another --out")

    def _generators(self) -> dict:
        gens = {"batch": self.gen_batch, "byz": self.gen_byz, "attack": self.gen_attack,
                "dropout": self.gen_dropout}
        mt = self.server.mixtailor
        if mt is not None and isinstance(mt.rng, torch.Generator):
            gens["draw"] = mt.rng
        bucket_rng = getattr(self.server.rule, "generator", None)
        if self.config.bucketing is not None and isinstance(bucket_rng, torch.Generator):
            gens["bucket"] = bucket_rng
        return gens

    def state_dict(self, metrics_offset: int) -> dict:
        rule_state, attack_state = self._object_states()
        return {
            "step": self.step,
            "metrics_offset": metrics_offset,
            "wall_time": self.wall_time,
            "invocations": self.invocations,
            "last_accuracy": self.last_accuracy,
            "last_eval_step": self.last_eval_step,
            "best_accuracy": self.best_accuracy,
            "last_loss": self.last_loss,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generators": {k: g.get_state() for k, g in self._generators().items()},
            # state kept inside stateful rules (centered clipping's center, MixTailor's draw,
            # bucketing's permutation generator, wherever they sit in the rule tree) and attacks
            "rule_state": rule_state,
            "attack_state": attack_state,
            "config": self.config.result_dict(),
            "code": rundir.code_version(),
            # the weights themselves: config.json keeps a --probs file's path only
            "probs": None if self.server.mixtailor is None else [float(x) for x in self.server.mixtailor.probs],
        }

    def _object_states(self) -> tuple[dict, dict]:
        from ..rules.state import collect_state

        rule = collect_state(self.server.rule) if self.server.rule is not None else {}
        attack = collect_state(self.attack) if self.attack is not None else {}
        return rule, attack

    def _restore_object_states(self, state: dict) -> None:
        from ..rules.state import iter_stateful, restore_state

        # objects whose whole state an older checkpoint restores through its "generators" entry:
        # MixTailor's seeded draw, the top-level bucketing wrapper's generator
        gens = self._generators()
        legacy = set()
        if "draw" in gens:
            legacy.add(id(self.server.mixtailor))
        if "bucket" in gens:
            legacy.add(id(self.server.rule))
        where = "" if self.out is None else f" of {str(self.out)!r}"
        for key, obj, what in (("rule_state", self.server.rule, "rule"), ("attack_state", self.attack, "attack")):
            if obj is None:
                continue
            if key not in state:
                fresh = [path or "<root>" for path, o in iter_stateful(obj) if id(o) not in legacy]
                if fresh:
                    warnings.warn(
                        f"Trainer: checkpoint{where} holds no {what} state (written by an older version); "
                        f"the state of {', '.join(fresh)} in the {what} (e.g. centered clipping's center) starts "
                        f"fresh at step {self.step}, so the resumed run may differ from an uninterrupted one",
                        RuntimeWarning, stacklevel=4)
                continue
            problems = restore_state(obj, state[key])
            if problems:
                warnings.warn(
                    f"Trainer: checkpoint{where}: {what} state does not match the {what} built from the config "
                    f"({'; '.join(problems)}); missing parts start fresh, unused parts are ignored",
                    RuntimeWarning, stacklevel=4)

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.wall_time = float(state["wall_time"])
        self.invocations = int(state.get("invocations", 0))
        self.last_accuracy = state.get("last_accuracy")
        self.last_eval_step = state.get("last_eval_step")
        self.best_accuracy = state.get("best_accuracy")
        self.last_loss = state.get("last_loss")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        gens = self._generators()
        for k, s in state["generators"].items():
            if k in gens:
                gens[k].set_state(s)
        self._restore_object_states(state)

    # ---------------------------------------------------------------- one step
    def _byzantine(self) -> torch.Tensor:
        if self.f == 0:
            return torch.empty(0, dtype=torch.long)
        if self.config.byzantine_mode == "fixed":
            return self.fixed_byz
        return torch.randperm(self.n, generator=self.gen_byz)[: self.f].sort().values

    def _batches(self, byz: torch.Tensor):
        b = self.config.batch_size
        idx = []
        for shard in self.shards:
            m = len(shard)
            if m >= b:
                pos = torch.randperm(m, generator=self.gen_batch)[:b]
            else:
                pos = torch.randint(m, (b,), generator=self.gen_batch)
            idx.append(shard[pos.to(shard.device)])
        idx = torch.stack(idx)
        xs, ys = self.train_x[idx], self.train_y[idx]
        hook = getattr(self.attack, "data_hook", None)
        if hook is not None and len(byz):
            xs, ys = xs.clone(), ys.clone()
            for i in byz.tolist():
                xs[i], ys[i] = hook(xs[i], ys[i], self.num_classes, self.gen_attack)
        return xs, ys

    def _gradients(self, model, xs, ys):
        return self._per_worker_gradients(model, xs, ys, engine=self.config.engine, loss=self.loss,
                                          generator=self.gen_dropout)

    def _local_models(self, byz):
        """Model space: every worker's model after ``local_steps`` plain SGD steps from w_0."""
        c = self.config
        w0 = _flat_params(self.model)
        rows = w0.unsqueeze(0).repeat(self.n, 1)
        first_losses = None
        for _ in range(c.local_steps):
            xs, ys = self._batches(byz)
            grads = torch.empty_like(rows)
            losses = torch.empty(self.n, device=rows.device)
            for i in range(self.n):
                _set_flat(self._scratch, rows[i])
                g, loss = self._gradients(self._scratch, xs[i:i + 1], ys[i:i + 1])
                grads[i], losses[i] = g[0], loss[0]
            rows = rows - c.lr * (grads + c.weight_decay * rows)
            if first_losses is None:
                first_losses = losses
        return w0, rows, first_losses

    def train_step(self) -> dict:
        """One step of the protocol (module docstring); returns its metrics row."""
        c = self.config
        byz = self._byzantine()
        mask = torch.ones(self.n, dtype=torch.bool)
        mask[byz] = False
        hon = torch.nonzero(mask).squeeze(1)
        model_space = c.space == "model"
        if model_space:
            w0, rows, losses = self._local_models(byz)
        else:
            w0 = None
            xs, ys = self._batches(byz)
            rows, losses = self._gradients(self.model, xs, ys)
        rows = rows.detach()
        hon_dev, byz_dev = hon.to(rows.device), byz.to(rows.device)
        honest, own = rows[hon_dev], rows[byz_dev]
        if not bool(finite_rows(honest).any()):  # one sum pass when all is well
            # before the attack: its statistics of the visible rows named the attack, not the cause
            what = "model" if model_space else "gradient"
            raise ValueError(f"Trainer: step {self.step + 1}: no honest {what} is finite (NaN/Inf): the model "
                             f"diverged; lower lr (got {c.lr})")
        server = self.server
        if server.rule is None or self.attack is None or self.f == 0:
            sent = own
        else:
            from ..attacks import make_view

            view = make_view(
                honest, n=self.n, f=self.f, knowledge=c.knowledge, defense=server.defense,
                model=w0, step=self.step, rng=self.gen_attack, own=own,
            )
            sent = self.attack(view)
            if not isinstance(sent, torch.Tensor) or tuple(sent.shape) != (self.f, self.d):
                shape = tuple(sent.shape) if isinstance(sent, torch.Tensor) else type(sent).__name__
                raise ValueError(f"Trainer: attack {c.attack!r} must return a Tensor[{self.f}, {self.d}], got {shape}")
            sent = sent.to(device=rows.device, dtype=rows.dtype)
        if c.save_snapshots and (self.step + 1) % c.save_snapshots == 0 and self.out is not None:
            rundir.save_snapshot(self.out, self.step + 1, honest, sent)
        honest_mean = honest.mean(dim=0)
        if server.rule is None:
            agg = honest_mean
            drawn = "omniscient"
        else:
            G = torch.empty_like(rows)
            G[hon_dev] = honest
            G[byz_dev] = sent
            agg = server.rule(G)
            drawn = server.mixtailor.last_rule.name if server.mixtailor is not None else server.name
        if not bool(finite_rows(agg.unsqueeze(0)).all()):
            # a NaN / Inf aggregate would stay in the model and the momentum for good: stop before
            # either is touched (the checkpoint keeps the last finished step)
            received = G if server.rule is not None else honest
            bad = len(received) - int(finite_rows(received).sum())
            raise ValueError(f"Trainer: step {self.step + 1}: the aggregate of {drawn} is not finite (NaN/Inf; "
                             f"{bad} of its {len(received)} rows non-finite); the model was not updated: a rule "
                             "that is not robust (e.g. mean) cannot take NaN / Inf rows")
        if model_space:
            u, v = w0 - agg, w0 - honest_mean
            _set_flat(self.model, agg)
        else:
            u, v = agg, honest_mean
            _set_flat(self.model, agg.to(next(self.model.parameters()).dtype), attr="grad")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        inner = float(torch.dot(u.double(), v.double()))
        norms = float(u.double().norm() * v.double().norm())
        cosine = inner / norms if norms > 0 and math.isfinite(norms) else float("nan")
        self.step += 1
        loss = float(losses[hon_dev].mean())
        row = {"step": self.step, "loss": loss, "rule": drawn, "inner": inner, "cosine": cosine}
        if c.byzantine_mode == "random":
            row["byzantine"] = byz.tolist()
        self.last_loss = loss
        return row

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(test accuracy, test loss) of the current model (eval mode, no dropout)."""
        self.model.eval()
        correct, total_loss = 0, 0.0
        for start in range(0, len(self.test_y), 1024):
            x, y = self.test_x[start:start + 1024], self.test_y[start:start + 1024]
            out = self.model(x)
            if self.loss == "mse":
                total_loss += 0.5 * float((out.reshape(y.shape) - y).square().sum())
            else:
                total_loss += float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(dim=1) == y).sum())
        self.model.train()
        m = max(1, len(self.test_y))
        return (None if self.loss == "mse" else correct / m), total_loss / m

    # ---------------------------------------------------------------- the loop
    def run(self, max_steps: int | None = None) -> dict:
        """Train until ``config.steps`` (or ``max_steps`` more steps) and return the summary.

        With a run directory: resumes from ``checkpoint.pt``, appends to
        ``metrics.jsonl``, checkpoints every ``checkpoint_every`` steps, at
        every evaluation and when it stops, and writes ``summary.json`` at the
        end. A finished run directory returns its summary without training.
        """
        c = self.config
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise fail("Trainer.run", "max_steps", "None or an integer >= 1", max_steps)
        log = None
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            summary_path = self.out / rundir.SUMMARY
            state = rundir.load_checkpoint(self.out)
            if state is not None and isinstance(state.get("config"), dict):
                # config.json may be gone or foreign; checked before a finished run's summary
                # is handed back (with config.json deleted, another run's result came back)
                self._check_same_run(state["config"], "checkpoint")
            self._check_same_probs(state)
            if state is not None and state.get("code") != rundir.code_version():
                # kept (finished work is not thrown away), but not silently: a fix to a rule
                # or a data split does not reach the steps already done
                warnings.warn(f"Trainer: run directory {str(self.out)!r} was written by mixtailor-game "
                              f"{state.get('code') or 'of an unrecorded version'}, this is {rundir.code_version()}; "
                              "its finished steps are kept (use another --out to redo them)", stacklevel=2)
            if summary_path.is_file() and state is not None and state["step"] >= c.steps:
                return rundir.read_json(summary_path)
            # a directory this call starts: if its first step fails (a setting only a step
            # can check, e.g. alie with one visible row) the files go again, so that the
            # corrected command is not refused as "a different run"
            created = [p for p in (self.out / rundir.CONFIG, self.out / rundir.METRICS, self.out / rundir.CHECKPOINT)
                       if state is None and not p.exists()]
            rundir.atomic_write_json(self.out / rundir.CONFIG, c.to_dict())
            offset = 0
            if state is not None:
                self.load_state_dict(state)
                offset = int(state["metrics_offset"])
            elif self.step > 0:
                # this object trained steps that no checkpoint holds: the log restarts empty, so
                # must the run (the steps lost are redone, as by a new Trainer)
                self.load_state_dict(self._initial_state)
            log = rundir.MetricsLog(self.out / rundir.METRICS, offset)
        self.invocations += 1
        bar = self._progress_bar()
        stop = c.steps if max_steps is None else min(c.steps, self.step + max_steps)
        t_start = time.perf_counter()
        t_last = t_start
        stop_signal = _StopOnInterrupt() if log is not None else None
        finished_here = 0
        try:
            while self.step < stop:
                row = self.train_step()
                finished_here += 1
                if self.step % c.eval_every == 0 or self.step == c.steps:
                    acc, test_loss = self.evaluate()
                    row["test_accuracy"], row["test_loss"] = acc, test_loss
                    self.last_accuracy, self.last_eval_step = acc, self.step
                    if acc is not None:
                        self.best_accuracy = acc if self.best_accuracy is None else max(self.best_accuracy, acc)
                now = time.perf_counter()
                self.wall_time += now - t_last
                t_last = now
                if log is not None:
                    log.append(row)
                    if "test_accuracy" in row or self.step % c.checkpoint_every == 0 or self.step == stop:
                        self._checkpoint(log)
                if bar is not None:
                    bar.update(1)
                    post = {"loss": f"{row['loss']:.3f}"}
                    if self.last_accuracy is not None:
                        post["acc"] = f"{self.last_accuracy:.3f}"
                    bar.set_postfix(post, refresh=False)
                if self.callback is not None:
                    self.callback(self.step, row)
                if stop_signal is not None and stop_signal.asked:
                    # Ctrl-C waited for this step to finish: keep it, then stop
                    self._checkpoint(log)
                    raise KeyboardInterrupt
        except Exception:
            if log is not None and finished_here == 0 and created:
                log.close()
                for path in created:
                    path.unlink(missing_ok=True)
            raise
        finally:
            if stop_signal is not None:
                stop_signal.restore()
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
        summary = self.summary()
        if self.out is not None and self.step >= c.steps:
            rundir.atomic_write_json(self.out / rundir.SUMMARY, summary)
        return summary

    def _checkpoint(self, log: rundir.MetricsLog) -> None:
        log.sync()
        rundir.atomic_torch_save(self.out / rundir.CHECKPOINT, self.state_dict(log.offset))

    def _progress_bar(self):
        if not self.progress or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        label = self.config.aggregator
        return tqdm(total=self.config.steps, initial=self.step, desc=label, file=sys.stderr,
                    dynamic_ncols=True, leave=False)

    def summary(self) -> dict:
        c = self.config
        return {
            "test_accuracy": self.last_accuracy,
            "test_accuracy_step": self.last_eval_step,
            "best_test_accuracy": self.best_accuracy,
            "final_loss": self.last_loss,
            "steps": self.step,
            "aggregator": c.aggregator,
            "aggregator_name": self.server.name,
            "attack": c.attack,
            "attack_params": dict(c.attack_params),
            "knowledge": c.knowledge,
            "dataset": c.dataset,
            "model": c.model,
            "workers": self.n,
            "byzantine": self.f,
            "parameters": self.d,
            "space": c.space,
            "seed": c.seed,
            "deterministic_draw": c.deterministic_draw,
            "wall_time_s": self.wall_time,
            "steps_per_second": self.step / self.wall_time if self.wall_time > 0 else None,
            "invocations": self.invocations,
            "complete": self.step >= c.steps,
        }


def train(config: TrainConfig, out=None, *, progress: bool = False, max_steps: int | None = None,
          callback: Callable | None = None) -> dict:
    """Build a :class:`Trainer` (all checks happen here) and run it; returns the summary."""
    return Trainer(config, out, progress=progress, callback=callback).run(max_steps=max_steps)
