"""Per-worker gradient engines: loop == vmap, a backward() reference, finite differences, dropout seeding."""

from __future__ import annotations

import pytest
import torch

from mixtailor_game.models import make_model
from mixtailor_game.train import engines
from mixtailor_game.train.engines import (
    fastest_engine,
    fused_group_size,
    flat_to_grads,
    flatten_params,
    num_params,
    per_worker_gradients,
    resolve_engine,
    set_flat_params,
)


def _model(name, shape, classes=10, seed=0, **kw):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_model(name, shape, classes, **kw)


def _batch(n, b, shape, classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, b, *shape, generator=g), torch.randint(0, classes, (n, b), generator=g)


def _reference_row(model, x, y):
    """Worker gradient the plain way: zero_grad, loss.backward(), concatenate p.grad."""
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    row = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return row


@pytest.mark.parametrize(
    "name, shape",
    [("paper_cnn", (1, 8, 8)), ("paper_cnn", (1, 28, 28)), ("cifar_cnn", (3, 16, 16)), ("mlp", (1, 8, 8)), ("logreg", (1, 8, 8))],
)
def test_loop_and_vmap_agree_and_match_backward(name, shape):
    model = _model(name, shape).eval()
    n = 4 if shape != (1, 28, 28) else 3
    xs, ys = _batch(n, 6, shape)
    g_loop, l_loop = per_worker_gradients(model, xs, ys, engine="loop")
    g_vmap, l_vmap = per_worker_gradients(model, xs, ys, engine="vmap")
    assert g_loop.shape == g_vmap.shape == (n, num_params(model)) and l_loop.shape == (n,)
    g_fused, l_fused = per_worker_gradients(model, xs, ys, engine="fused")
    torch.testing.assert_close(g_vmap, g_loop, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(l_vmap, l_loop, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_fused, g_loop, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(l_fused, l_loop, rtol=1e-5, atol=1e-6)
    assert not g_fused.requires_grad and not g_vmap.requires_grad and not g_loop.requires_grad
    torch.testing.assert_close(g_loop[1], _reference_row(model, xs[1], ys[1]), rtol=1e-5, atol=1e-7)
    expected_loss = torch.nn.functional.cross_entropy(model(xs[2]), ys[2])
    torch.testing.assert_close(l_loop[2], expected_loss.detach())
    assert not torch.allclose(g_loop[0], g_loop[1])


def test_train_mode_without_dropout_agrees_too():
    model = _model("paper_cnn", (1, 8, 8), dropout=0.0).train()
    xs, ys = _batch(5, 4, (1, 8, 8))
    torch.testing.assert_close(
        per_worker_gradients(model, xs, ys, engine="vmap")[0],
        per_worker_gradients(model, xs, ys, engine="loop")[0],
        rtol=1e-4,
        atol=1e-6,
    )


def test_mse_loss_engines_agree_with_closed_form():
    model = _model("logreg", (5,), 1).double()
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    ys = torch.randn(3, 7, generator=g, dtype=torch.float64)
    g_loop, losses = per_worker_gradients(model, xs, ys, engine="loop", loss="mse")
    g_vmap, _ = per_worker_gradients(model, xs, ys, engine="vmap", loss="mse")
    g_fused, l_fused = per_worker_gradients(model, xs, ys, engine="fused", loss="mse")
    w, b = model.linear.weight.detach().view(-1), model.linear.bias.detach()
    resid = xs @ w + b - ys  # (3, 7)
    closed = torch.cat([(resid.unsqueeze(-1) * xs).mean(1), resid.mean(1, keepdim=True)], dim=1)
    torch.testing.assert_close(g_loop, closed)
    torch.testing.assert_close(g_vmap, closed)
    torch.testing.assert_close(g_fused, closed)
    torch.testing.assert_close(losses, 0.5 * resid.pow(2).mean(1))
    torch.testing.assert_close(l_fused, losses)


@pytest.mark.parametrize("engine", ["loop", "vmap", "fused"])
def test_finite_difference_logreg_entry(engine):
    model = _model("logreg", (1, 8, 8)).double()
    xs, ys = _batch(2, 9, (1, 8, 8))
    xs = xs.double()
    G, _ = per_worker_gradients(model, xs, ys, engine=engine)
    theta = flatten_params(model)
    for j in (3, 200, theta.numel() - 1):  # weight entries and the last bias
        values = []
        for sign in (1.0, -1.0):
            shifted = theta.clone()
            shifted[j] += sign * 1e-6
            set_flat_params(model, shifted)
            with torch.no_grad():
                values.append(torch.nn.functional.cross_entropy(model(xs[1]), ys[1]).item())
        set_flat_params(model, theta)
        assert abs((values[0] - values[1]) / 2e-6 - G[1, j].item()) < 1e-7


def test_dropout_masks_seeded_per_engine_and_global_rng_untouched():
    model = _model("paper_cnn", (1, 8, 8)).train()
    x1, y1 = _batch(1, 8, (1, 8, 8))
    xs, ys = x1.expand(4, *x1.shape[1:]).contiguous(), y1.expand(4, 8).contiguous()
    for engine in ("loop", "vmap", "fused"):
        state = torch.get_rng_state()
        a, _ = per_worker_gradients(model, xs, ys, engine=engine, generator=torch.Generator().manual_seed(7))
        b, _ = per_worker_gradients(model, xs, ys, engine=engine, generator=torch.Generator().manual_seed(7))
        c, _ = per_worker_gradients(model, xs, ys, engine=engine, generator=torch.Generator().manual_seed(8))
        assert torch.equal(torch.get_rng_state(), state)
        assert torch.equal(a, b) and not torch.equal(a, c)
        # identical data on every worker: rows differ only through each worker's own masks
        assert not torch.allclose(a[0], a[1])
    model.eval()
    e, _ = per_worker_gradients(model, xs, ys, engine="vmap")
    torch.testing.assert_close(e[0], e[3])


def test_fused_group_size_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    cnn, mlp = _model("paper_cnn", (1, 8, 8)), _model("mlp", (1, 8, 8))
    assert fused_group_size(cnn, 12, 50, cpu) == 2  # 100 examples a call: the paper CNN's 600 leave the cache
    assert fused_group_size(cnn, 12, 16, cpu) == 8
    assert fused_group_size(cnn, 12, 200, cpu) == 1  # never fewer than one worker
    assert fused_group_size(cnn, 3, 8, cpu) == 3
    assert fused_group_size(cnn, 12, 50, cuda) == 12
    assert fused_group_size(mlp, 12, 50, cpu) == 12  # Linear layers only: one call


@pytest.mark.parametrize("dropout", [False, True])
def test_fused_in_groups_matches_one_call_and_the_loop(monkeypatch, dropout):
    """Five workers of 50 examples: groups of 2, 2, 1 on CPU. Without dropout the rows are
    the one-call fused engine's and the loop's; with it a seeded run is reproducible, each
    group draws its own masks (identical data: every row differs)."""
    model = _model("paper_cnn", (1, 8, 8))
    model.train() if dropout else model.eval()
    xs, ys = _batch(5, 50, (1, 8, 8))
    if dropout:
        xs, ys = xs[:1].expand(5, *xs.shape[1:]).contiguous(), ys[:1].expand(5, 50).contiguous()
    assert fused_group_size(model, 5, 50, xs.device) == 2
    seed = (lambda: torch.Generator().manual_seed(3)) if dropout else (lambda: None)
    grouped, l_grouped = per_worker_gradients(model, xs, ys, engine="fused", generator=seed())
    again, _ = per_worker_gradients(model, xs, ys, engine="fused", generator=seed())
    assert torch.equal(grouped, again)
    if dropout:
        assert all(not torch.allclose(grouped[i], grouped[j]) for i in range(5) for j in range(i))
        return
    monkeypatch.setattr(engines, "FUSED_CPU_EXAMPLES", 10 ** 6)
    assert fused_group_size(model, 5, 50, xs.device) == 5
    whole, l_whole = per_worker_gradients(model, xs, ys, engine="fused")
    loop, l_loop = per_worker_gradients(model, xs, ys, engine="loop")
    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(l_grouped, l_whole)
    torch.testing.assert_close(grouped, loop, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(l_grouped, l_loop, rtol=1e-5, atol=1e-6)


def test_engine_leaves_model_untouched():
    model = _model("mlp", (1, 8, 8)).eval()
    before = flatten_params(model)
    xs, ys = _batch(3, 4, (1, 8, 8))
    for engine in ("loop", "vmap", "fused"):
        per_worker_gradients(model, xs, ys, engine=engine)
    assert torch.equal(flatten_params(model), before)
    assert all(p.grad is None for p in model.parameters())


def test_frozen_parameters_get_zero_entries():
    model = _model("mlp", (1, 8, 8)).eval()
    model.net[1].weight.requires_grad_(False)
    xs, ys = _batch(2, 4, (1, 8, 8))
    start = model.net[1].weight.numel()
    for engine in ("loop", "vmap", "fused"):
        G, _ = per_worker_gradients(model, xs, ys, engine=engine)
        assert G.shape[1] == num_params(model)
        assert torch.equal(G[:, :start], torch.zeros(2, start)) and G[:, start:].abs().sum() > 0


class _Shared(torch.nn.Module):
    """A Linear layer used twice and a strided, dilated conv: the fused engine must sum both uses."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=2, bias=False)
        self.lin = torch.nn.Linear(3, 3)
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x):
        h = self.conv(x).mean((2, 3))
        return self.head(self.lin(torch.tanh(self.lin(h))))


def test_fused_handles_weight_sharing_and_conv_options():
    with torch.random.fork_rng():
        torch.manual_seed(4)
        model = _Shared()
    xs, ys = _batch(3, 5, (2, 9, 9), classes=4)
    torch.testing.assert_close(
        per_worker_gradients(model, xs, ys, engine="fused")[0],
        per_worker_gradients(model, xs, ys, engine="loop")[0],
        rtol=1e-4,
        atol=1e-6,
    )


def test_fused_refuses_layers_it_cannot_split():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    xs, ys = _batch(2, 3, (4,), classes=3)
    with pytest.raises(ValueError, match=r"per_worker_gradients: engine must be 'loop' or 'vmap' for this model .*LayerNorm"):
        per_worker_gradients(model, xs, ys, engine="fused")
    torch.testing.assert_close(
        per_worker_gradients(model, xs, ys, engine="vmap")[0], per_worker_gradients(model, xs, ys, engine="loop")[0]
    )


def test_flat_helpers_roundtrip_and_optimizer_step():
    model = _model("paper_cnn", (1, 8, 8))
    theta = flatten_params(model)
    assert theta.shape == (num_params(model),)
    set_flat_params(model, theta * 2)
    torch.testing.assert_close(flatten_params(model), theta * 2)
    set_flat_params(model, theta)
    grad = torch.linspace(-1, 1, theta.numel())
    flat_to_grads(model, grad)
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    torch.testing.assert_close(flatten_params(model), theta - 0.1 * grad)
    with pytest.raises(ValueError, match=rf"set_flat_params: flat must be a 1-D tensor of length d={theta.numel()}, got \(3,\)"):
        set_flat_params(model, torch.zeros(3))
    with pytest.raises(TypeError, match=r"flat_to_grads: flat must be a torch.Tensor"):
        flat_to_grads(model, [0.0])


def test_auto_rule_and_fastest_engine_measures():
    model = _model("logreg", (4,)).eval()
    assert resolve_engine("auto", torch.device("cpu"), model) == "fused"
    assert resolve_engine("auto", torch.device("cpu"), torch.nn.Sequential(torch.nn.LayerNorm(4))) == "loop"
    assert resolve_engine("auto", torch.device("cuda", 0), model) == "fused"
    assert resolve_engine("auto", torch.device("cuda", 0), torch.nn.Sequential(torch.nn.LayerNorm(4))) == "vmap"
    assert resolve_engine("vmap", torch.device("cpu"), model) == "vmap"
    xs, ys = _batch(3, 5, (4,))
    torch.testing.assert_close(
        per_worker_gradients(model, xs, ys)[0], per_worker_gradients(model, xs, ys, engine="loop")[0]
    )
    assert fastest_engine(model, xs, ys, repeats=1) in ("loop", "vmap", "fused")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"engine": "jit"}, ValueError, r"per_worker_gradients: engine must be one of loop, vmap, fused, auto, got 'jit'"),
        ({"loss": "hinge"}, ValueError, r"per_worker_gradients: loss must be one of cross_entropy, mse, got 'hinge'"),
        ({"ys": torch.zeros(3, 4, dtype=torch.long)}, ValueError, r"per_worker_gradients: ys must be of shape \(n, b, \.\.\.\) = \(2, 4\)"),
        ({"ys": torch.zeros(2, 4)}, TypeError, r"ys must be int64 class labels for cross_entropy, got torch.float32"),
        ({"loss": "mse"}, TypeError, r"ys must be floating targets for mse, got torch.int64"),
        ({"xs": torch.zeros(2, 4)}, ValueError, r"per_worker_gradients: xs must be of shape \(n, b, \.\.\.\)"),
        ({"xs": [1.0]}, TypeError, r"per_worker_gradients: xs must be a torch.Tensor, got list"),
    ],
)
def test_per_worker_gradients_validation(kwargs, error, message):
    model = _model("logreg", (4,))
    args = {"xs": torch.zeros(2, 4, 4), "ys": torch.zeros(2, 4, dtype=torch.long), **kwargs}
    with pytest.raises(error, match=message):
        per_worker_gradients(model, **args)


@pytest.mark.parametrize(
    "c_in, kwargs, side",
    [
        (1, {"kernel_size": 5}, 12),  # the paper CNN's first layer (contiguous path)
        (3, {"kernel_size": 3}, 9),  # C_in > 1: channels-last path
        (2, {"kernel_size": 3, "stride": 2}, 10),  # grouped output larger than the kernel: cropped
        (3, {"kernel_size": (2, 3), "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "bias": False}, 9),
        (1, {"kernel_size": 3, "stride": 3, "padding": 2, "dilation": 2}, 11),
    ],
)
def test_conv2d_worker_grads_match_per_worker_autograd(c_in, kwargs, side):
    from mixtailor_game.train.engines import _conv2d_worker_grads

    with torch.random.fork_rng():
        torch.manual_seed(5)
        conv = torch.nn.Conv2d(c_in, 4, **kwargs).double()
    n, b = 3, 4
    g = torch.Generator().manual_seed(6)
    a = torch.randn(n * b, c_in, side, side + 1, generator=g, dtype=torch.float64)
    out_shape = conv(a).shape
    grad_out = torch.randn(out_shape, generator=g, dtype=torch.float64)
    weight, bias = _conv2d_worker_grads(conv, a, grad_out, n, b)
    assert weight.shape == (n, *conv.weight.shape)
    params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    for w in range(n):
        rows = slice(w * b, (w + 1) * b)
        expected = torch.autograd.grad((conv(a[rows]) * grad_out[rows]).sum(), params)
        torch.testing.assert_close(weight[w], expected[0], rtol=1e-10, atol=1e-12)
        if conv.bias is None:
            assert bias is None
        else:
            torch.testing.assert_close(bias[w], expected[1], rtol=1e-10, atol=1e-12)


def test_fused_matches_loop_for_strided_conv_model_in_float64():
    with torch.random.fork_rng():
        torch.manual_seed(8)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(4, 5, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False),
            torch.nn.Flatten(),
            torch.nn.Linear(5 * 4 * 3, 6),
        ).double()
    xs, ys = _batch(4, 3, (3, 13, 15), classes=6)
    xs = xs.double()
    g_fused, l_fused = per_worker_gradients(model, xs, ys, engine="fused")
    g_loop, l_loop = per_worker_gradients(model, xs, ys, engine="loop")
    torch.testing.assert_close(g_fused, g_loop, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(l_fused, l_loop, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(g_fused[0], g_fused[1])
