"""The configuration of one simulated training run: a strict, frozen dataclass.

``TrainConfig`` only stores and checks values (types, ranges, choices); what
needs the rest of the library (the rule's ``n``/``f`` regime, the data
directory, the attack name) is checked by :func:`mixtailor_game.train.trainer.build`
before the first step, so a bad run fails in a second with a one-line message.

Defaults are the main job (``mixtailor-game compare``): the embedded
``digits`` data set (no download), logistic regression (d = 650), n = 12,
f = 2, the tailored attack ``ipm`` with eps = 0.1, 200 steps of SGD with
``lr=0.05``, ``momentum=0.9``, ``weight_decay=1e-4``, 16 examples per worker
and step, test accuracy every 20 steps. On 2 CPU cores the four default runs
(omniscient, krum, comed, mixtailor with the paper pool) take well under 3
minutes; the omniscient run reaches about 96% and Krum about 85%.

The paper's MNIST settings (Table 1 of Ramezani-Kebrya et al.) are
``lr=0.001, momentum=0.9, weight_decay=1e-4, batch_size=50, steps=50_000``
with ``model="paper_cnn"`` (pass them explicitly). The small model keeps the
default fast: the paper pool's geometric medians under l_p norms and Bulyan
with geomed selection dominate a MixTailor step, and their cost grows with d.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import check_int, check_real, fail

WHERE = "TrainConfig"
SPACES = ("gradient", "model")
BUCKETING_MODES = ("buckets", "resample")
BYZANTINE_MODES = ("fixed", "random")
PARTITIONS = ("iid", "label", "dirichlet")
ENGINES = ("auto", "loop", "vmap", "fused")
# Fields that change how a run is executed but not what it computes: a run
# directory may be resumed with different values of these.
EXECUTION_FIELDS = ("device", "engine", "checkpoint_every")


def _check_choice(param: str, value, choices) -> str:
    if value not in choices:
        raise fail(WHERE, param, f"one of {', '.join(map(str, choices))}", value)
    return value


def _check_name(param: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{WHERE}: {param} must be a non-empty string, got {value!r}")
    return value


# Parameters used when a config names an attack without parameters: the
# tailored attack of the paper's Fig. 1 (eps = 0.1 corrupts Krum).
DEFAULT_ATTACK_PARAMS = {"ipm": {"eps": 0.1}}


def default_attack_params(attack) -> dict:
    """The parameters an attack gets when the config gives none (``{}`` for most)."""
    return dict(DEFAULT_ATTACK_PARAMS.get(attack, {}))


def check_knowledge(value, n: int, f: int) -> str:
    """Check ``"full"``, ``"own"`` or ``"partial:K"`` with ``0 < K < n - f``."""
    if value in ("full", "own"):
        return value
    if isinstance(value, str) and value.startswith("partial:"):
        try:
            k = int(value.split(":", 1)[1])
        except ValueError:
            raise fail(WHERE, "knowledge", "full, own or partial:K with an integer K", value) from None
        if not 0 < k < n - f:
            raise fail(WHERE, "knowledge", f"partial:K with 0 < K < n - f = {n - f}", value)
        return value
    raise fail(WHERE, "knowledge", "full, own or partial:K", value)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one simulated run (see the module docstring for defaults).

    Parameters
    ----------
    dataset, data_dir : data set name of ``mixtailor_game.data.load_dataset``
        and its directory (``None``: the data set's default location).
    model : name of ``mixtailor_game.models.make_model``.
    workers, byzantine : ``n >= 1`` workers, ``0 <= f < n`` of them Byzantine.
    aggregator : a ``make_rule`` name, ``"mixtailor"`` or ``"omniscient"``
        (the mean of the honest rows only: the no-attack reference).
    rule_params : extra keyword arguments of ``make_rule(aggregator, ...)``. A spec
        ``aggregator="krum[p=3]"`` (a rule's name) is split into the name and these.
    pool : for ``mixtailor``: ``"paper"`` (the 64 rules of ``paper_pool``)
        or a comma list of rule names (each built with ``as_rule(name, f)``: ``f``
        passed as ``b`` to ``trimmed_mean``, none to ``mean``).
    probs : for ``mixtailor``: ``None`` (uniform), a list of probabilities, a
        comma list, or the path of a JSON file (a list, or an object with a
        ``"probs"`` entry, as written by ``mixtailor-game game``); non-negative
        weights, divided by their sum (``1,1,2`` is 1/4, 1/4, 1/2; ``MixTailor``
        itself asks for a sum of 1).
    deterministic_draw : seed MixTailor's draw and bucketing's permutation
        from ``seed`` (reproducible and resumable, but predictable); default:
        OS entropy (DESIGN.md), and then a resumed run continues correctly but
        its metrics differ from an uninterrupted one.
    attack, attack_params : ``make_attack(attack, **attack_params)``;
        ``"none"``: the Byzantine workers send their honest gradients. A spec
        ``attack="ipm[eps=0.5]"`` (an attack's name) is split into the name and these.
        ``attack_params=None`` resolves to :data:`DEFAULT_ATTACK_PARAMS`
        (``ipm``: ``eps=0.1``, the tailored attack that corrupts Krum).
    knowledge : what the adversary sees: ``"full"`` (all honest rows),
        ``"partial:K"`` (the first K honest rows), ``"own"`` (its own data only).
    partition : ``iid``, ``label`` (paper Fig. 3) or ``dirichlet`` (``alpha``
        > 0; checked only for ``dirichlet``, the other schemes ignore it).
    byzantine_mode : ``fixed`` (the last f workers) or ``random`` (f workers
        drawn anew at every step).
    bucketing : ``None`` or ``s >= 1``: wrap the rule in
        ``make_rule("bucketing", base=rule, s=s, mode=bucketing_mode)``.
    bucketing_mode : ``buckets`` (ceil(n/s) bucket means, the base keeps f) or
        ``resample`` (s-resampling, paper Fig. 3: n rows, the base rule or
        pool is built for ``s * f`` Byzantine rows).
    space, local_steps : ``gradient`` aggregation (``local_steps`` must be 1)
        or ``model`` aggregation after ``local_steps`` (tau) local SGD steps
        (paper Remark 1).
    steps, batch_size, lr, momentum, weight_decay : SGD at the server
        (``torch.optim.SGD``), ``batch_size`` examples per worker and step.
    eval_every, eval_examples : test accuracy every ``eval_every`` steps (and
        at the last step) on the first ``eval_examples`` test examples
        (``None``: all of them).
    checkpoint_every : write ``checkpoint.pt`` every so many steps (and at
        every evaluation).
    save_snapshots : ``0`` or K: save the step's honest and Byzantine rows
        every K steps to ``snapshots/step_XXXXXX.pt`` (for the game layer).
    seed, device, engine : randomness (data split, batches, attack, pool),
        torch device, per-worker gradient engine (``auto``, ``loop``, ``vmap``, ``fused``).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "logreg"
    workers: int = 12
    byzantine: int = 2
    aggregator: str = "mixtailor"
    rule_params: dict = field(default_factory=dict)
    pool: str = "paper"
    probs: Any = None
    deterministic_draw: bool = False
    attack: str = "ipm"
    attack_params: dict | None = None
    knowledge: str = "full"
    partition: str = "iid"
    alpha: float = 0.5
    byzantine_mode: str = "fixed"
    bucketing: int | None = None
    bucketing_mode: str = "buckets"
    space: str = "gradient"
    local_steps: int = 1
    steps: int = 200
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    eval_every: int = 20
    eval_examples: int | None = None
    checkpoint_every: int = 50
    save_snapshots: int = 0
    seed: int = 0
    device: str = "cpu"
    engine: str = "auto"

    def _split_specs(self):
        """``attack="ipm[eps=0.5]"`` / ``aggregator="krum[p=3]"`` (names as attacks and rules
        print them, as the game writes them) become the name and its parameters, merged
        into ``attack_params`` / ``rule_params`` (a parameter given both ways must agree):
        the stored config.json holds the plain name either way."""
        from ..rules.spec import parse_spec

        for name_field, params_field in (("attack", "attack_params"), ("aggregator", "rule_params")):
            value = getattr(self, name_field)
            if not (isinstance(value, str) and "[" in value):
                continue
            try:
                name, spec = parse_spec(value)
            except ValueError as exc:
                raise fail(WHERE, name_field, f"a name or a spec name[key=value,...] ({exc})", value) from None
            given = getattr(self, params_field)
            given = {} if given is None else given
            if not isinstance(given, dict):
                continue  # the dict check below says so
            clash = sorted(k for k in spec if k in given and given[k] != spec[k])
            if clash:
                raise fail(WHERE, name_field, f"a spec whose parameters agree with {params_field} ({clash} differ)",
                           value)
            object.__setattr__(self, name_field, name)
            object.__setattr__(self, params_field, {**spec, **given})

    def __post_init__(self):
        for name in ("dataset", "model", "aggregator", "pool", "attack", "device"):
            _check_name(name, getattr(self, name))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise TypeError(f"{WHERE}: data_dir must be a string or None, got {self.data_dir!r}")
        n = check_int(WHERE, "workers", self.workers, low=1)
        f = check_int(WHERE, "byzantine", self.byzantine, low=0, high=n - 1)
        self._split_specs()
        if self.attack_params is None:
            object.__setattr__(self, "attack_params", default_attack_params(self.attack))
        for name in ("rule_params", "attack_params"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise TypeError(f"{WHERE}: {name} must be a dict with string keys, got {value!r}")
        if not isinstance(self.deterministic_draw, bool):
            raise TypeError(f"{WHERE}: deterministic_draw must be a bool, got {self.deterministic_draw!r}")
        check_knowledge(self.knowledge, n, f)
        _check_choice("partition", self.partition, PARTITIONS)
        if self.partition == "dirichlet":  # as partition(): iid and label ignore alpha
            check_real(WHERE, "alpha", self.alpha, low=0.0, low_open=True)
        _check_choice("byzantine_mode", self.byzantine_mode, BYZANTINE_MODES)
        if self.bucketing is not None:
            check_int(WHERE, "bucketing", self.bucketing, low=1, high=n)
        _check_choice("bucketing_mode", self.bucketing_mode, BUCKETING_MODES)
        if self.bucketing_mode == "resample" and self.bucketing is None:
            raise fail(WHERE, "bucketing_mode", "'buckets' unless bucketing (s) is set", self.bucketing_mode)
        _check_choice("space", self.space, SPACES)
        tau = check_int(WHERE, "local_steps", self.local_steps, low=1)
        if self.space == "gradient" and tau != 1:
            raise fail(WHERE, "local_steps", "1 when space='gradient' (use space='model' for local steps)", tau)
        check_int(WHERE, "steps", self.steps, low=1)
        check_int(WHERE, "batch_size", self.batch_size, low=1)
        check_real(WHERE, "lr", self.lr, low=0.0, low_open=True)
        check_real(WHERE, "momentum", self.momentum, low=0.0, high=1.0)
        if self.momentum >= 1.0:
            raise fail(WHERE, "momentum", "in [0, 1)", self.momentum)
        check_real(WHERE, "weight_decay", self.weight_decay, low=0.0)
        check_int(WHERE, "eval_every", self.eval_every, low=1)
        if self.eval_examples is not None:
            check_int(WHERE, "eval_examples", self.eval_examples, low=1)
        check_int(WHERE, "checkpoint_every", self.checkpoint_every, low=1)
        check_int(WHERE, "save_snapshots", self.save_snapshots, low=0)
        check_int(WHERE, "seed", self.seed, low=0)
        _check_choice("engine", self.engine, ENGINES)
        if self.aggregator == "mixtailor":
            parse_probs(self.probs)  # format only; the length is checked against the pool in build()
        elif self.probs is not None:
            raise fail(WHERE, "probs", "None unless aggregator='mixtailor'", self.probs)

    # ------------------------------------------------------------------ I/O
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Build a config from a mapping; unknown keys raise ``ValueError`` listing the valid ones."""
        if not isinstance(data, dict):
            raise TypeError(f"{WHERE}: config must be a JSON object / dict, got {type(data).__name__}")
        valid = cls.field_names()
        unknown = sorted(k for k in data if k not in valid)
        if unknown:
            raise ValueError(
                f"{WHERE}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}"
            )
        return cls(**data)

    @classmethod
    def from_file(cls, path) -> "TrainConfig":
        """Read a JSON config file (the ``config.json`` of a run directory works)."""
        return cls.from_dict(read_config_file(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        unknown = sorted(k for k in changes if k not in self.field_names())
        if unknown:
            raise ValueError(
                f"{WHERE}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)

    def result_dict(self) -> dict:
        """The settings that determine the result (all but :data:`EXECUTION_FIELDS`)."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}


def read_config_file(path) -> dict:
    """Load a JSON object from ``path`` with a one-line error for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise fail(WHERE, "config file", "an existing JSON file", str(path))
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{WHERE}: config file {str(path)!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TypeError(f"{WHERE}: config file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def probs_file_pool(probs) -> dict | None:
    """The ``pool`` (rule names, in the order of its ``probs``) and ``byzantine`` a probs
    JSON file was written for (``mixtailor-game game --out``), or ``None`` (numbers, a
    comma list, a plain JSON list). :func:`parse_probs` has checked the file."""
    if not isinstance(probs, str) or not Path(probs.strip()).is_file():
        return None
    data = json.loads(Path(probs.strip()).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("pool"), list):
        return None
    return {"pool": [str(x) for x in data["pool"]], "byzantine": data.get("byzantine")}


def parse_probs(probs) -> tuple[float, ...] | None:
    """Normalize ``probs``: ``None``, a sequence of numbers, a comma list or a JSON file path.

    A JSON file may hold a list of numbers or an object with a ``"probs"``
    list (the output of ``mixtailor-game game``). Values must be finite and
    ``>= 0`` with a positive sum; they are returned as given (MixTailor
    checks the sum and the length against its pool).
    """
    if probs is None:
        return None
    values = probs
    if isinstance(probs, str):
        text = probs.strip()
        if text.endswith(".json") or Path(text).is_file():
            path = Path(text)
            if not path.is_file():
                raise fail(WHERE, "probs", "a comma list of numbers or an existing JSON file", probs)
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{WHERE}: probs file {text!r} is not valid JSON ({exc})") from None
            values = data.get("probs") if isinstance(data, dict) else data
            if values is None:
                raise fail(WHERE, "probs", "a JSON list or an object with a 'probs' list", text)
        else:
            try:
                values = [float(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise fail(WHERE, "probs", "a comma list of numbers or a JSON file path", probs) from None
    if not isinstance(values, (list, tuple)) or not values:
        raise fail(WHERE, "probs", "a non-empty list of numbers", probs)
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise fail(WHERE, "probs", "finite numbers >= 0", probs)
        out.append(float(v))
    if sum(out) <= 0:
        raise fail(WHERE, "probs", "numbers with a positive sum", probs)
    return tuple(out)
