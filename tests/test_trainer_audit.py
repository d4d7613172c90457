"""Findings of the trainer audit: each test failed on the code before its fix.

- A Trainer object run again after an exception that came before its first
  checkpoint (a notebook re-running ``t.run()``) truncated ``metrics.jsonl`` to
  nothing and went on from the in-memory step: the rows of the finished steps
  were gone and the run was not the seeded run.
- A non-finite aggregate (``mean`` against NaN / Inf Byzantine rows) went into
  the model and the momentum for good, silently; a diverged model (all honest
  gradients NaN) was reported by the attack ("ipm: needs at least one finite
  visible row"), or not at all by the omniscient baseline.
"""

import pytest
import torch

from mixtailor_game.train import TrainConfig, Trainer, read_metrics, train

from _kill import Killed, kill_at as _kill_at

FAST = dict(dataset="digits", model="logreg", workers=12, byzantine=2, batch_size=8, eval_examples=100, seed=2)


def _weights(model):
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def _checkpoint_weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("kw", [
    dict(aggregator="krum", attack="ipm"),
    # every generator and a stateful rule: seeded draw, random Byzantine sets, centered clipping
    dict(aggregator="mixtailor", pool="centered_clipping,comed,krum", deterministic_draw=True,
         byzantine_mode="random", attack="gaussian"),
])
def test_the_same_trainer_run_again_after_an_early_exception_redoes_the_lost_steps(tmp_path, kw):
    cfg = TrainConfig(**FAST, **kw, steps=8, eval_every=8, checkpoint_every=50)
    train(cfg, tmp_path / "ref")
    t = Trainer(cfg, tmp_path / "run", callback=_kill_at(3))
    with pytest.raises(Killed):
        t.run()
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and len(read_metrics(tmp_path / "run")) == 3
    t.callback = None
    summary = t.run()
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == list(range(1, 9))  # was [4, ..., 8]
    assert read_metrics(tmp_path / "run") == read_metrics(tmp_path / "ref")
    ref, got = _checkpoint_weights(tmp_path / "ref"), _checkpoint_weights(tmp_path / "run")
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert summary["complete"] and summary["steps"] == 8


def test_the_same_trainer_run_again_after_a_later_exception_goes_on_from_its_checkpoint(tmp_path):
    cfg = TrainConfig(**FAST, aggregator="comed", attack="ipm", steps=9, eval_every=9, checkpoint_every=3)
    train(cfg, tmp_path / "ref")
    t = Trainer(cfg, tmp_path / "run", callback=_kill_at(5))
    with pytest.raises(Killed):
        t.run()
    t.callback = None
    t.run()
    assert read_metrics(tmp_path / "run") == read_metrics(tmp_path / "ref")


class _NonFinite:
    """An attack that sends ``value`` in every Byzantine row from step ``start`` (0-based) on."""

    def __init__(self, value, start=0):
        self.value, self.start = value, start

    def __call__(self, view):
        if view.step < self.start:
            return view.honest[: view.f].clone()
        return torch.full((view.f, view.d), self.value, dtype=view.honest.dtype)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_aggregate_stops_the_run_before_the_model_changes(tmp_path, value):
    cfg = TrainConfig(**FAST, aggregator="mean", attack="ipm", steps=6, eval_every=6, checkpoint_every=1)
    t = Trainer(cfg, tmp_path)
    t.attack = _NonFinite(value, start=3)
    with pytest.raises(ValueError, match=r"^Trainer: step 4: the aggregate of mean is not finite .*2 of its 12 rows"):
        t.run()
    w = _weights(t.model)
    assert torch.isfinite(w).all()  # the old code trained on with a NaN / Inf model
    saved = _checkpoint_weights(tmp_path)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    assert torch.equal(torch.cat([v.reshape(-1) for v in saved.values()]), w)  # step 4 changed nothing
    assert all(torch.isfinite(b).all() for s in t.optimizer.state.values() for b in s.values()
               if isinstance(b, torch.Tensor))


@pytest.mark.parametrize("aggregator,extra", [
    ("krum", {}), ("comed", {}), ("geomed", {}), ("trimmed_mean", {}),
    ("mixtailor", dict(pool="krum,comed,geomed,bulyan", deterministic_draw=True)),
])
def test_robust_rules_drop_non_finite_byzantine_rows(aggregator, extra):
    for value in (float("nan"), float("-inf"), 1e30):
        t = Trainer(TrainConfig(**FAST, aggregator=aggregator, attack="ipm", steps=4, eval_every=4, **extra))
        t.attack = _NonFinite(value)
        s = t.run()
        assert torch.isfinite(_weights(t.model)).all() and s["test_accuracy"] > 0.2, (aggregator, value)


@pytest.mark.parametrize("aggregator", ["krum", "omniscient"])
def test_a_diverged_model_gets_a_clear_error(aggregator):
    # lr = 1e8: the first step leaves weights so large that every honest gradient is NaN
    t = Trainer(TrainConfig(**dict(FAST, model="mlp"), aggregator=aggregator, attack="ipm", lr=1e8, steps=10))
    with pytest.raises(ValueError, match=r"^Trainer: step \d+: no honest gradient is finite .*lower lr"):
        t.run()
