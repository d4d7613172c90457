"""The GPU paths agree with the CPU ones (skipped without CUDA; run on a lent GPU machine).

CI has no GPU, so these run only where ``torch.cuda.is_available()``:
``python -m pytest tests/test_cuda.py`` (``benchmarks/run_device_checks.sh``
runs them first on a lent machine). Every rule of the conformance registry,
the per-worker gradient engines, a trainer run and the 1-D solver are run on
the GPU and compared with the same call on the CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from test_rules_conformance import CASES, IDS, honest_rows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> None:
    scale = float(b.abs().max()) + 1.0
    assert float((a.cpu() - b).abs().max()) <= rtol * scale, (a, b)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rule_on_cuda_matches_cpu(case):
    G = honest_rows(11, case.n, 40, 1.0)
    if case.f >= 1:
        G[0] = math.nan  # a Byzantine row must not poison the GPU path either
    if case.f >= 2:
        G[-1, 3] = 1e30
    cpu = case.make()(G)
    gpu = case.make()(G.cuda())
    assert gpu.device.type == "cuda" and torch.isfinite(gpu).all()
    _close(gpu, cpu, max(case.rtol, 1e-9))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batched_on_cuda_matches_cpu(case):
    Gb = torch.stack([honest_rows(s, case.n, 9, 1.0) for s in range(3)])
    _close(case.make().batched(Gb.cuda()), case.make().batched(Gb), max(case.rtol, 1e-9))


@pytest.fixture
def full_float32():
    """cuDNN and cuBLAS use TF32 by default on Ampere and later (10-bit mantissa): off for a comparison."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("engine", ["loop", "vmap", "fused"])
def test_engines_on_cuda_match_cpu(engine, full_float32):
    from mixtailor_game.models import make_model
    from mixtailor_game.train.engines import per_worker_gradients

    torch.manual_seed(0)
    model = make_model("paper_cnn", (1, 28, 28), 10).eval()
    g = torch.Generator().manual_seed(1)
    xs, ys = torch.randn(4, 6, 1, 28, 28, generator=g), torch.randint(0, 10, (4, 6), generator=g)
    cpu, _ = per_worker_gradients(model, xs, ys, engine="loop")
    gpu, losses = per_worker_gradients(model.cuda(), xs.cuda(), ys.cuda(), engine=engine)
    assert gpu.device.type == "cuda" and losses.shape == (4,)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-5)


def test_trainer_runs_on_cuda_with_mixtailor_and_the_tailored_attack(tmp_path):
    from mixtailor_game.train import TrainConfig, Trainer

    config = TrainConfig(dataset="digits", model="mlp", workers=12, byzantine=2, aggregator="mixtailor",
                         pool="paper", attack="ipm", attack_params={"eps": 0.1}, steps=6, eval_every=3,
                         device="cuda", seed=0)
    summary = Trainer(config, out=tmp_path).run()
    assert summary["steps"] == 6 and 0.0 <= summary["test_accuracy"] <= 1.0


def test_line_search_on_cuda_matches_cpu():
    import solvers
    from mixtailor_game.rules import Bulyan, Comed, Krum

    V = honest_rows(5, 10, 30, 1.0) * 0.1 + 0.05
    # Krum and Bulyan with a Krum part read the distances shared along the line
    pool = [Krum(f=2, p=2.0), Comed(f=2), Bulyan(f=1, select="krum", aggregate="krum", p=2.0),
            Bulyan(f=1, select="average", aggregate="krum", p=3.0)]
    cpu = solvers.solve(solvers.P3(V, 2, pool), method="line")
    gpu = solvers.solve(solvers.P3(V.cuda(), 2, pool), method="line")
    assert gpu.status == cpu.status
    assert math.isclose(gpu.value, cpu.value, rel_tol=1e-6, abs_tol=1e-9)


def test_model_space_attack_takes_a_cpu_model_with_cuda_rows():
    """A model-space attack with w_0 on the CPU and the rows on the GPU (w_0 moved, not an error)."""
    from mixtailor_game.attacks import make_attack, make_view

    V = torch.randn(10, 7, generator=torch.Generator().manual_seed(0))
    w0 = torch.randn(7, generator=torch.Generator().manual_seed(1))
    attack = make_attack("ipm", eps=0.5, space="model")
    cpu = attack(make_view(V, n=12, f=2, model=w0))
    gpu = attack(make_view(V.cuda(), n=12, f=2, model=w0))
    assert gpu.device.type == "cuda"
    _close(gpu, cpu, 1e-6)


@pytest.mark.parametrize("t", [0.1, 30.0])
def test_geomed_p2_span_and_bulyan_selection_on_cuda_match_cpu(t, full_float32):
    """p = 2 at this size is solved in the rows' span (Gram on the GPU, small solve on
    the host): the same median and the same Bulyan(select=geomed) rows as on the CPU."""
    from mixtailor_game.rules import bulyan_select, geomed_solve

    g = torch.Generator().manual_seed(0)
    V = 0.01 * torch.randn(10, 20_000, generator=g) + 0.002
    G = torch.cat([(-t * V.sum(0)).expand(2, -1), V]).contiguous()
    cpu, gpu = geomed_solve(G, 2.0), geomed_solve(G.cuda(), 2.0)
    assert gpu.iterations == 1 and gpu.z.device.type == "cuda"
    _close(gpu.z, cpu.z, 1e-6)
    assert bulyan_select(G.cuda(), 2, "geomed", 2.0) == bulyan_select(G, 2, "geomed", 2.0)
