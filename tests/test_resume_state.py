"""State inside stateful rules and attacks survives a kill and resume.

Centered clipping keeps the previous aggregate as its center, MixTailor (with
``deterministic_draw``) and bucketing keep generators: a run killed between
checkpoints and resumed from its run directory must end with the same metrics
and the same final parameters as an uninterrupted run, wherever such a rule
sits (alone, in a MixTailor pool, behind a bucketing wrapper), and with an
attack that keeps state. The kill is simulated by an exception from the
per-step callback (tests/test_trainer_resume.py has the real SIGKILL test).
"""

import random
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest
import torch

from mixtailor_game.attacks.ipm import IPM
from mixtailor_game.rules import Bucketing, CenteredClipping, Comed, Krum, MixTailor, NNM
from mixtailor_game.rules.state import (
    collect_state, generator_state, iter_stateful, restore_state, set_generator_state,
)
from mixtailor_game.train import TrainConfig, Trainer, read_metrics, train

from _kill import Killed, kill_at as _kill_at

BASE = dict(dataset="digits", model="logreg", workers=8, byzantine=1, attack="ipm", attack_params={"eps": 0.1},
            batch_size=16, steps=12, eval_every=6, checkpoint_every=5, eval_examples=200, seed=5)
CC = {"base": "comed", "tau": 0.5}

CASES = {
    "centered_clipping": TrainConfig(**BASE, aggregator="centered_clipping", rule_params=CC),
    "mixtailor_pool_with_cc": TrainConfig(**BASE, aggregator="mixtailor", pool="centered_clipping,comed,krum",
                                          deterministic_draw=True, byzantine_mode="random"),
    "bucketing_around_cc": TrainConfig(**BASE, aggregator="centered_clipping", rule_params=CC, bucketing=2,
                                       deterministic_draw=True),
    "bucketing_around_mixtailor": TrainConfig(**BASE, aggregator="mixtailor", pool="centered_clipping,comed",
                                              bucketing=2, deterministic_draw=True),
}


def _weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _kill_and_resume(cfg, out, die_at, setup=lambda t: None):
    t = Trainer(cfg, out, callback=_kill_at(die_at))
    setup(t)
    with pytest.raises(Killed):
        t.run()
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] < die_at
    t = Trainer(cfg, out)
    setup(t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a current checkpoint restores everything: no warning
        return t.run()


def _reference(cfg, out, setup=lambda t: None):
    t = Trainer(cfg, out)
    setup(t)
    return t.run()


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_equals_uninterrupted_run(tmp_path, case):
    cfg = CASES[case]
    ref = _reference(cfg, tmp_path / "ref")
    got = _kill_and_resume(cfg, tmp_path / "run", die_at=9)  # checkpoints at 5, 6 (eval): steps 7-9 redone
    assert read_metrics(tmp_path / "run") == read_metrics(tmp_path / "ref")
    assert _same_weights(_weights(tmp_path / "run"), _weights(tmp_path / "ref"))
    assert got["test_accuracy"] == ref["test_accuracy"] and got["steps"] == cfg.steps


def test_checkpoint_holds_the_centers_by_path(tmp_path):
    cfg = CASES["bucketing_around_mixtailor"]
    Trainer(cfg, tmp_path).run(max_steps=7)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state = ckpt["rule_state"]
    assert set(state) == {"", "base", "base.pool.0"}  # bucketing, MixTailor, the clipping rule of the pool
    assert state[""]["generator"]["kind"] == "torch"
    assert state["base"]["rng"]["kind"] == "torch" and state["base"]["last_index"] in (0, 1)
    center = state["base.pool.0"]["center"]
    assert center is None or center.shape == (Trainer(cfg).d,)
    assert ckpt["attack_state"] == {}  # ipm is stateless


def test_old_checkpoint_without_rule_state_loads_with_a_warning(tmp_path):
    cfg = CASES["centered_clipping"]
    _reference(cfg, tmp_path / "ref")
    out = tmp_path / "old"
    with pytest.raises(Killed):
        Trainer(cfg, out, callback=_kill_at(9)).run()
    path = out / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=False)
    del ckpt["rule_state"], ckpt["attack_state"]  # what a checkpoint of the previous version holds
    torch.save(ckpt, path)
    with pytest.warns(RuntimeWarning, match=r"holds no rule state .*<root>.*starts fresh at step 6"):
        summary = Trainer(cfg, out).run()
    assert summary["steps"] == cfg.steps
    # the lost center shows: the resumed run leaves the reference at step 7
    ref_rows, rows = read_metrics(tmp_path / "ref"), read_metrics(out)
    assert rows[:6] == ref_rows[:6] and rows[6]["inner"] != ref_rows[6]["inner"]


def test_old_checkpoint_of_a_generator_only_rule_loads_silently(tmp_path):
    # MixTailor's draw and a top-level bucketing generator were already in "generators"
    cfg = TrainConfig(**BASE, aggregator="mixtailor", pool="comed,trimmed_mean", deterministic_draw=True,
                      bucketing=2)
    _reference(cfg, tmp_path / "ref")
    out = tmp_path / "old"
    with pytest.raises(Killed):
        Trainer(cfg, out, callback=_kill_at(9)).run()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    del ckpt["rule_state"], ckpt["attack_state"]
    torch.save(ckpt, out / "checkpoint.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(cfg, out).run()
    assert read_metrics(out) == read_metrics(tmp_path / "ref")


# --------------------------------------------------------------------------- a stateful attack
@dataclass(frozen=True, kw_only=True)
class MomentumIPM(IPM):
    """IPM on a running average of the honest mean (state: the average)."""

    family: ClassVar[str] = "momentum_ipm"
    beta: float = 0.5
    _m: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def craft(self, view):
        mu = view.visible("momentum_ipm").mean(dim=0)
        m = self._m.get("m")
        m = mu if m is None else self.beta * m + (1 - self.beta) * mu
        self._m["m"] = m
        return -self.eps * m.unsqueeze(0).expand(view.f, -1).clone()

    def state_dict(self):
        return {"m": self._m.get("m")}

    def load_state_dict(self, state):
        self._m.clear()
        if state["m"] is not None:
            self._m["m"] = state["m"].clone()


def _use_momentum_attack(t):
    t.attack = MomentumIPM(eps=2.0)


def test_stateful_attack_resumes(tmp_path):
    cfg = CASES["centered_clipping"]
    ref = _reference(cfg, tmp_path / "ref", _use_momentum_attack)
    got = _kill_and_resume(cfg, tmp_path / "run", die_at=9, setup=_use_momentum_attack)
    assert read_metrics(tmp_path / "run") == read_metrics(tmp_path / "ref")
    assert _same_weights(_weights(tmp_path / "run"), _weights(tmp_path / "ref"))
    assert got["test_accuracy"] == ref["test_accuracy"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["attack_state"]
    assert set(state) == {""} and state[""]["m"].shape == (Trainer(cfg).d,)
    # and the state matters: the plain ipm attack with eps = 2 gives other metrics
    plain = cfg.replace(attack_params={"eps": 2.0})
    train(plain, tmp_path / "plain")
    assert read_metrics(tmp_path / "plain") != read_metrics(tmp_path / "ref")


# --------------------------------------------------------------------------- the walker
def test_walker_paths_dedupe_and_round_trip():
    G = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))

    def build():  # the same object (c) twice in the pool: saved once, under its first path
        c = CenteredClipping(base="comed", tau=0.5, f=1)
        b = Bucketing(base=CenteredClipping(base="comed", tau=0.5, f=1), s=2, f=1,
                      generator=torch.Generator().manual_seed(1))
        return MixTailor([c, Comed(f=1), b, NNM(base=CenteredClipping(base="krum", f=1), f=1), c],
                         rng=torch.Generator().manual_seed(2))

    m = build()
    assert [p for p, _ in iter_stateful(m)] == ["", "pool.0", "pool.2", "pool.2.base", "pool.3.base"]
    noise = torch.Generator().manual_seed(3)
    for _ in range(20):
        m(G + torch.randn(12, 4, generator=noise))
    saved = collect_state(m)
    after_a = [m(G).clone() for _ in range(6)]
    fresh = build()
    assert restore_state(fresh, saved) == []
    after_b = [fresh(G).clone() for _ in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(after_a, after_b))
    assert fresh.last_index == m.last_index
    # the same objects without restoring: other draws or centers
    other = build()
    assert not all(torch.equal(a, other(G)) for a in after_a)


def test_restore_reports_mismatches_and_bad_states():
    m = MixTailor([CenteredClipping(base="comed", f=1), Krum(f=1)], rng=torch.Generator().manual_seed(0))
    problems = restore_state(m, {"": m.state_dict(), "pool.7": {"center": None}})
    assert problems == ["missing: pool.0", "unused: pool.7"]
    with pytest.raises(ValueError, match=r"'pool.0' \(CenteredClipping\).*center"):
        restore_state(m, {"": m.state_dict(), "pool.0": {"center": torch.zeros(2, 2)}})
    with pytest.raises(ValueError, match=r"<root>.*kind 'numpy'"):
        restore_state(m, {"": {"rng": generator_state(np.random.default_rng(0)), "last_index": None}})


@pytest.mark.parametrize("make", [lambda: np.random.default_rng(3), lambda: random.Random(3),
                                  lambda: torch.Generator().manual_seed(3)])
def test_mixtailor_state_with_every_generator_kind(make):
    pool = [Comed(f=1), Krum(f=1), Krum(f=1, p=1.0)]
    a = MixTailor(pool, rng=make())
    for _ in range(5):
        a.draw()
    s = a.state_dict()
    b = MixTailor(pool, rng=make())
    b.load_state_dict(s)
    assert [a.draw() for _ in range(20)] == [b.draw() for _ in range(20)]


def test_os_entropy_draw_has_no_state_to_save():
    m = MixTailor([Comed(f=1), Krum(f=1)])  # random.SystemRandom
    assert generator_state(m.rng) is None and m.state_dict()["rng"] is None
    assert list(collect_state(m)) == [""]  # has the methods (last_index), nothing to replay
    set_generator_state(m.rng, None)
    assert collect_state(Bucketing(base="comed", s=2)) == {}  # OS-entropy bucketing: stateless
