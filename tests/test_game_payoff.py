"""Payoff matrices: agreement with a plain numpy reference, averaging and standard
errors, the three payoffs, snapshots in the pinned format, and input validation."""

import math

import numpy as np
import pytest
import torch

from mixtailor_game.game import (Snapshot, defender_loss, load_snapshots, payoff_matrix, payoff_values,
                                 synthetic_samples)
from mixtailor_game.rules import make_rule


def ref_comed(G):
    """Coordinate-wise median with plain loops (even n: mean of the two middle values)."""
    G = np.asarray(G, dtype=np.float64)
    out = []
    for j in range(G.shape[1]):
        col = sorted(G[:, j])
        n = len(col)
        out.append(col[n // 2] if n % 2 else 0.5 * (col[n // 2 - 1] + col[n // 2]))
    return np.array(out)


class FixedAttack:
    """Byzantine rows = scale * honest mean (the view's honest rows), repeated f times."""

    def __init__(self, scale):
        self.scale = scale
        self.name = f"fixed[{scale}]"

    def __call__(self, view):
        return (self.scale * view.honest.mean(dim=0)).repeat(view.f, 1)


def samples(S=4, k=8, d=6, seed=0):
    return synthetic_samples(k, d, samples=S, noise=2.0, generator=torch.Generator().manual_seed(seed),
                             dtype=torch.float64)


def test_payoff_values_against_reference():
    h = samples(1)[0]
    B = torch.randn(2, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rules = [make_rule("mean"), make_rule("comed", f=2)]
    vals, norms = payoff_values(h, B, rules, "inner")
    G = np.vstack([h.numpy(), B.numpy()])
    g = h.numpy().mean(axis=0)
    aggs = [G.mean(axis=0), ref_comed(G)]
    np.testing.assert_allclose(vals, [a @ g for a in aggs], rtol=1e-12)
    np.testing.assert_allclose(norms, [np.linalg.norm(a) for a in aggs], rtol=1e-12)
    cos, _ = payoff_values(h, B, rules, "cosine")
    np.testing.assert_allclose(cos, [a @ g / np.linalg.norm(a) / np.linalg.norm(g) for a in aggs], rtol=1e-12)
    w0, lr = np.ones(6), 0.1
    lossv, _ = payoff_values(h, B, rules, "loss", loss=lambda u: float(((w0 - lr * u.numpy()) ** 2).sum()))
    np.testing.assert_allclose(lossv, [((w0 - lr * a) ** 2).sum() for a in aggs], rtol=1e-12)
    np.testing.assert_allclose(defender_loss(vals, "inner"), -vals)
    np.testing.assert_allclose(defender_loss(lossv, "loss"), lossv)


def test_matrix_means_and_standard_errors():
    S = samples(5)
    attacks = [FixedAttack(1.0), FixedAttack(-3.0)]
    rules = [make_rule("mean"), make_rule("comed", f=2)]
    pm = payoff_matrix(attacks, rules, S, f=2)
    assert pm.attacks == ("fixed[1.0]", "fixed[-3.0]") and pm.rules == ("mean", "comed")
    per = np.empty((5, 2, 2))
    for s, h in enumerate(S):
        g = h.numpy().mean(axis=0)
        for a, scale in enumerate((1.0, -3.0)):
            G = np.vstack([h.numpy(), np.tile(scale * g, (2, 1))])
            per[s, a] = [G.mean(axis=0) @ g, ref_comed(G) @ g]
    np.testing.assert_allclose(pm.values, per.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(pm.stderr, per.std(axis=0, ddof=1) / math.sqrt(5), rtol=1e-8)
    np.testing.assert_allclose(pm.loss, -pm.values)
    # sending the honest mean itself keeps the mean's payoff = ||g||^2 exactly
    np.testing.assert_allclose(pm.per_sample[:, 0, 0], [float(h.mean(0) @ h.mean(0)) for h in S], rtol=1e-10)
    assert pm.grad_norm == pytest.approx(max(float(h.mean(0).norm()) for h in S))
    assert pm.n == 10 and pm.f == 2 and pm.samples == 5


def test_single_sample_has_nan_stderr():
    pm = payoff_matrix([FixedAttack(1.0)], [make_rule("comed", f=2)], samples(1), f=2)
    assert np.isnan(pm.stderr).all()
    d = pm.to_dict()
    assert d["stderr"] == [[None]]


def test_named_attacks_and_rule_specs():
    S = samples(2)
    pm = payoff_matrix(["ipm[eps=0.5]", ("ipm", {"eps": 4.0})], ["krum[p=3]", "comed"], S, f=2)
    assert pm.attacks == ("ipm[eps=0.5]", "ipm[eps=4.0]")
    assert pm.rules == ("krum[p=3]", "comed")
    from mixtailor_game.attacks import make_attack, make_view

    gen = torch.Generator().manual_seed(0)
    expected = []
    for s, h in enumerate(S):
        B = make_attack("ipm", eps=4.0)(make_view(h, n=10, f=2, step=s, rng=gen))
        expected.append(payoff_values(h, B, [make_rule("krum", f=2, p=3.0)])[0][0])
    assert pm.values[1, 0] == pytest.approx(np.mean(expected), rel=1e-9)


def test_snapshots_roundtrip(tmp_path):
    snap_dir = tmp_path / "run" / "snapshots"
    snap_dir.mkdir(parents=True)
    gen = torch.Generator().manual_seed(1)
    for step in range(0, 100, 10):
        torch.save({"step": step, "honest": torch.randn(8, 5, generator=gen), "byzantine": torch.zeros(2, 5)},
                   snap_dir / f"step_{step:06d}.pt")
    snaps = load_snapshots(tmp_path / "run")
    assert [s.step for s in snaps] == list(range(0, 100, 10))
    few = load_snapshots(snap_dir, limit=3)
    assert [s.step for s in few] == [0, 40, 90] or [s.step for s in few] == [0, 50, 90]
    pm = payoff_matrix([FixedAttack(-1.0)], [make_rule("comed", f=2)], few, f=2)
    pm2 = payoff_matrix([FixedAttack(-1.0)], [make_rule("comed", f=2)], [s.honest for s in few], f=2)
    np.testing.assert_allclose(pm.values, pm2.values)
    assert isinstance(few[0], Snapshot)


def test_snapshot_errors(tmp_path):
    with pytest.raises(ValueError, match="load_snapshots: directory must be a directory holding step_XXXXXX.pt"):
        load_snapshots(tmp_path)
    torch.save({"step": 0, "honest": torch.zeros(3)}, tmp_path / "step_000000.pt")
    with pytest.raises(ValueError, match="load_snapshots: snapshot must be a dict with keys step, honest, byzantine"):
        load_snapshots(tmp_path)


def test_synthetic_samples_reproducible_and_scaled():
    a = synthetic_samples(200, 40, samples=2, mean_norm=2.0, noise=1.0, generator=torch.Generator().manual_seed(5))
    b = synthetic_samples(200, 40, samples=2, mean_norm=2.0, noise=1.0, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (200, 40) and a[0].dtype == torch.float32
    assert float(a[0].mean(0).norm()) == pytest.approx(2.0, rel=0.1)
    noise = (a[0] - a[0].mean(0)).norm(dim=1).pow(2).mean()
    assert float(noise) == pytest.approx(1.0, rel=0.1)


def test_validation():
    S = samples(1)
    rules = [make_rule("comed", f=2)]
    with pytest.raises(ValueError, match=r"payoff_matrix: payoff must be one of \('inner', 'cosine', 'loss'\)"):
        payoff_matrix([FixedAttack(1.0)], rules, S, f=2, payoff="regret")
    with pytest.raises(ValueError, match="payoff_matrix: loss must be a callable when payoff='loss'"):
        payoff_matrix([FixedAttack(1.0)], rules, S, f=2, payoff="loss")
    with pytest.raises(ValueError, match=r"payoff_matrix: attack 'short' output must be a Tensor\[2, 6\]"):
        payoff_matrix([_Short()], rules, S, f=2)
    with pytest.raises(ValueError, match="payoff_matrix: samples must be tensors with n - f = 9 honest rows"):
        payoff_matrix([FixedAttack(1.0)], rules, S, f=2, n=11)
    with pytest.raises(ValueError, match="krum: needs"):
        payoff_matrix([FixedAttack(1.0)], [make_rule("krum", f=4)], S, f=2)


class _Short:
    name = "short"

    def __call__(self, view):
        return torch.zeros(1, view.honest.shape[1], dtype=view.honest.dtype)


def test_non_finite_honest_samples_are_refused():
    V = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    V[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"payoff_matrix: samples must be finite honest rows \(no NaN / Inf\)"):
        payoff_matrix(["alie"], ["comed", "krum"], [V], f=2)
