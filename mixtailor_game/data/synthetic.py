"""Synthetic problems with a known full gradient, for checkers.

``synthetic-quadratic`` (least squares): x ~ N(0, I_D), y = <w*, x> + 0.1 z,
loss l(w, b; x, y) = 0.5 (<w, x> + b - y)^2 (the ``mse`` loss of the
engines, used with ``make_model("logreg", (D,), 1)``). Full gradient over the
N examples:  grad_w = X^T r / N,  grad_b = mean(r),  r = X w + b - y.

``synthetic-logistic`` (binary classification): x ~ N(0, I_D),
y ~ Bernoulli(sigmoid(3 <w*, x>)) with w* ~ N(0, I_D / D) (the Bayes classifier
sign(<w*, x>) has expected accuracy 0.815 on these examples), 2 classes,
softmax cross-entropy with
``make_model("logreg", (D,), 2)``: with P = softmax(X W^T + b) and Y the
one-hot labels,  grad_W = (P - Y)^T X / N,  grad_b = mean(P - Y).

Both use D = 20, 2,000 train and 500 test examples and a fixed seed, so
``load_dataset`` returns the same data every time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mixtailor_game._checks import fail
from mixtailor_game.data.base import Dataset

__all__ = ["SYNTHETIC_NAMES", "load_synthetic", "full_gradient"]

SYNTHETIC_NAMES = ("synthetic-quadratic", "synthetic-logistic")
_DIM, _N_TRAIN, _N_TEST, _SEED = 20, 2000, 500, 0


def load_synthetic(name: str) -> Dataset:
    """Generate ``synthetic-quadratic`` or ``synthetic-logistic`` (deterministic)."""
    if name not in SYNTHETIC_NAMES:
        raise fail("load_synthetic", "name", f"one of {', '.join(SYNTHETIC_NAMES)}", name)
    rng = np.random.default_rng(_SEED if name == "synthetic-quadratic" else _SEED + 1)
    n = _N_TRAIN + _N_TEST
    x = rng.standard_normal((n, _DIM))
    w_star = rng.standard_normal(_DIM) / np.sqrt(_DIM)
    if name == "synthetic-quadratic":
        y = torch.from_numpy((x @ w_star + 0.1 * rng.standard_normal(n)).astype(np.float32))
        num_classes, loss = 1, "mse"
    else:
        p = 1.0 / (1.0 + np.exp(-3.0 * (x @ w_star)))
        y = torch.from_numpy((rng.random(n) < p).astype(np.int64))
        num_classes, loss = 2, "cross_entropy"
    xt = torch.from_numpy(x.astype(np.float32))
    return Dataset(
        xt[:_N_TRAIN], y[:_N_TRAIN], xt[_N_TRAIN:], y[_N_TRAIN:], num_classes, (_DIM,), name=name, loss=loss
    )


def full_gradient(dataset: Dataset, params, split: str = "train") -> torch.Tensor:
    """Exact full gradient (float64, flat in ``logreg`` parameter order: weight then bias).

    ``params``: the ``logreg`` model for this data set, or its flat parameter
    vector of length ``num_classes * D + num_classes``. ``split``: ``train``
    or ``test``. Works for any data set whose ``loss`` is ``mse`` (one output)
    or ``cross_entropy`` (formulas in the module docstring), so it also gives
    the full-batch gradient of logistic regression on images.
    """
    if split not in ("train", "test"):
        raise fail("full_gradient", "split", "'train' or 'test'", split)
    x = (dataset.train_x if split == "train" else dataset.test_x).flatten(1).to(torch.float64)
    y = dataset.train_y if split == "train" else dataset.test_y
    c, dim = dataset.num_classes, x.shape[1]
    if isinstance(params, nn.Module):
        params = torch.cat([p.detach().reshape(-1) for p in params.parameters()])
    if not isinstance(params, torch.Tensor) or params.dim() != 1 or params.numel() != c * dim + c:
        got = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
        raise fail("full_gradient", "params", f"a logreg model or a flat tensor of length {c * dim + c}", got)
    params = params.detach().to(torch.float64).cpu()
    weight, bias = params[: c * dim].view(c, dim), params[c * dim :]
    out = x @ weight.T + bias
    if dataset.loss == "mse":
        resid = out - y.to(torch.float64).view(-1, 1)
    else:
        resid = torch.softmax(out, dim=1) - torch.nn.functional.one_hot(y, c).to(torch.float64)
    n = x.shape[0]
    return torch.cat([(resid.T @ x / n).reshape(-1), resid.mean(0)])
