"""Models for the simulated trainer: the paper's CNN, a CIFAR-10 CNN, an MLP and
logistic regression, built by name with :func:`make_model`.

``paper_cnn`` (paper Appendix A.8: "a 4 layer neural net with 2 convolutional
layers + two fully connected layers. Drop out is used between the
convolutional layers and the fully connected layers")::

    conv(C, 32, 5) -> ReLU -> maxpool 2 -> conv(32, 64, 5) -> ReLU -> maxpool 2
    -> dropout -> fc(flat, 128) -> ReLU -> dropout -> fc(128, num_classes)

The first dropout (after the convolutions) is the one A.8 states. The second,
between the two fully connected layers, is this project's reading, not
stated by the paper (A.8 says only "between the convolutional layers and the
fully connected layers"); it is kept because the stored GPU results were
computed with it. It adds no parameters, but it adds dropout noise to the
honest gradients.

On MNIST (1 x 28 x 28, 10 classes) this has d = 832 + 51,264 + 131,200 + 1,290
= 184,586 parameters, the d the issue quotes for the paper's model (the paper
gives layer counts but not widths; this is the standard 2-conv + 2-fc design
with that exact count; the classic conv3x3 32/64 + fc 9216-128 variant has
1,199,882 and the conv5x5 10/20 + fc 320-50 one 21,840). Inputs too small for
two unpadded 5x5 convolutions and two poolings (side < 16, e.g. the 8 x 8
``digits``) use padding 2 ("same" convolutions); 8 x 8 gives flat = 64*2*2.

Dropout is ``torch.nn.Dropout``: under ``torch.func.vmap`` it needs
``randomness="different"`` (each worker its own masks), which the vmap engine
of :mod:`mixtailor_game.train.engines` uses. Pass ``dropout=0.0`` to build a
model without dropout layers (deterministic gradients).
"""

from __future__ import annotations

from math import prod

import torch
from torch import nn

from mixtailor_game._checks import check_int, check_real, fail

__all__ = ["make_model", "model_names", "num_parameters", "PaperCNN", "CifarCNN", "MLP", "LogReg"]


def _conv_out(side: int, kernel: int, padding: int) -> int:
    return side + 2 * padding - kernel + 1


class PaperCNN(nn.Module):
    """The paper's CNN (Appendix A.8): 2 conv + 2 fully connected layers with dropout.

    Dropout after the convolutions, as A.8 states, and also between the two
    fully connected layers: that second one is this project's reading, not
    stated by the paper (A.8: "between the convolutional layers and the fully
    connected layers"), kept because the stored GPU results used it.

    Parameters: ``input_shape`` = (C, H, W) with H, W >= 4 (H, W >= 16 use
    unpadded convolutions, smaller ones padding 2); ``num_classes`` >= 1;
    ``dropout`` in [0, 1) (0 removes the dropout layers).
    """

    def __init__(self, input_shape, num_classes: int, dropout: float = 0.5):
        super().__init__()
        c, h, w = input_shape
        pad = 0 if min(h, w) >= 16 else 2
        side_h, side_w = h, w
        for _ in range(2):
            side_h, side_w = _conv_out(side_h, 5, pad) // 2, _conv_out(side_w, 5, pad) // 2
        if side_h < 1 or side_w < 1:
            raise fail("paper_cnn", "input_shape", "(C, H, W) with H, W >= 4", tuple(input_shape))
        self.padding = pad
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 5, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        drop = (lambda: [nn.Dropout(dropout)]) if dropout > 0 else (lambda: [])
        self.classifier = nn.Sequential(
            nn.Flatten(), *drop(), nn.Linear(64 * side_h * side_w, 128), nn.ReLU(), *drop(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CifarCNN(nn.Module):
    """A small VGG-style CNN for CIFAR-10 sized inputs (3 x 32 x 32).

    Three blocks conv3x3(pad 1) -> ReLU -> maxpool 2 with 32, 64, 128 channels,
    then dropout -> fc(flat, 256) -> ReLU -> dropout -> fc(256, num_classes).
    On 3 x 32 x 32, 10 classes: d = 620,362. Needs H, W >= 8.
    """

    def __init__(self, input_shape, num_classes: int, dropout: float = 0.5):
        super().__init__()
        c, h, w = input_shape
        if min(h, w) < 8:
            raise fail("cifar_cnn", "input_shape", "(C, H, W) with H, W >= 8", tuple(input_shape))
        layers: list[nn.Module] = []
        channels = c
        for width in (32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        flat = 128 * (h // 8) * (w // 8)
        drop = (lambda: [nn.Dropout(dropout)]) if dropout > 0 else (lambda: [])
        self.classifier = nn.Sequential(
            nn.Flatten(), *drop(), nn.Linear(flat, 256), nn.ReLU(), *drop(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Multi-layer perceptron: flatten -> [fc -> ReLU] per hidden width -> fc(num_classes).

    Default hidden widths (200, 200) (the "2NN" of McMahan et al. 2017).
    """

    def __init__(self, input_shape, num_classes: int, hidden=(200, 200)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LogReg(nn.Module):
    """Multinomial logistic regression: flatten -> fc(prod(input_shape), num_classes).

    With ``num_classes = 1`` and the ``mse`` loss it is linear least squares
    (the ``synthetic-quadratic`` problem). Parameters in order: ``linear.weight``
    (num_classes, D), ``linear.bias`` (num_classes,).
    """

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(prod(input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


_IMAGE_MODELS = {"paper_cnn": PaperCNN, "cifar_cnn": CifarCNN}
_NAMES = ("paper_cnn", "cifar_cnn", "mlp", "logreg")


def model_names() -> list[str]:
    """Names accepted by :func:`make_model`."""
    return list(_NAMES)


def num_parameters(model: nn.Module) -> int:
    """Total number of parameters d (the length of a flat gradient row)."""
    return sum(p.numel() for p in model.parameters())


def make_model(name: str, input_shape, num_classes: int, *, dropout: float = 0.5) -> nn.Module:
    """Build a model by name: ``paper_cnn``, ``cifar_cnn``, ``mlp`` or ``logreg``.

    ``input_shape``: shape of one example without the batch dimension, e.g.
    (1, 28, 28); the CNNs need (C, H, W). ``num_classes`` >= 1 (1 = a single
    regression output). ``dropout`` in [0, 1) for the CNNs (0 builds them
    without dropout layers). Parameters are initialised from torch's global
    generator (PyTorch's default); seed by wrapping the call in
    ``torch.random.fork_rng()`` + ``torch.manual_seed`` or load a state dict.

    Errors: ``ValueError`` for an unknown name or bad shape, ``TypeError`` for
    non-integer dimensions.

    >>> make_model("paper_cnn", (1, 28, 28), 10).__class__.__name__
    'PaperCNN'
    >>> num_parameters(make_model("paper_cnn", (1, 28, 28), 10))
    184586
    """
    if name not in _NAMES:
        raise fail("make_model", "name", f"one of {', '.join(_NAMES)}", name)
    if not isinstance(input_shape, (tuple, list, torch.Size)) or len(input_shape) == 0:
        raise fail(name, "input_shape", "a non-empty tuple of positive integers", input_shape)
    shape = tuple(check_int(name, "input_shape entry", s, low=1) for s in input_shape)
    num_classes = check_int(name, "num_classes", num_classes, low=1)
    try:
        dropout = check_real(name, "dropout", dropout, low=0.0, high=1.0, high_open=True)
    except ValueError:  # one constraint for every bad value (NaN, inf, < 0, >= 1)
        raise fail(name, "dropout", "in [0, 1)", dropout) from None
    if name in _IMAGE_MODELS:
        if len(shape) != 3:
            raise fail(name, "input_shape", "(C, H, W)", shape)
        return _IMAGE_MODELS[name](shape, num_classes, dropout=dropout)
    if name == "mlp":
        return MLP(shape, num_classes)
    return LogReg(shape, num_classes)
