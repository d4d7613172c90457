"""Models: parameter counts worked out by hand, output shapes, dropout switch, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixtailor_game.models import make_model, model_names, num_parameters


def conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def fc(d_in, d_out):
    return d_in * d_out + d_out


@pytest.mark.parametrize(
    "name, shape, classes, expected",
    [
        # the paper's MNIST CNN: d = 184,586 (issue 5)
        ("paper_cnn", (1, 28, 28), 10, conv(1, 32, 5) + conv(32, 64, 5) + fc(64 * 4 * 4, 128) + fc(128, 10)),
        ("paper_cnn", (1, 8, 8), 10, conv(1, 32, 5) + conv(32, 64, 5) + fc(64 * 2 * 2, 128) + fc(128, 10)),
        ("paper_cnn", (3, 32, 32), 10, conv(3, 32, 5) + conv(32, 64, 5) + fc(64 * 5 * 5, 128) + fc(128, 10)),
        ("cifar_cnn", (3, 32, 32), 10, conv(3, 32, 3) + conv(32, 64, 3) + conv(64, 128, 3) + fc(2048, 256) + fc(256, 10)),
        ("mlp", (1, 8, 8), 10, fc(64, 200) + fc(200, 200) + fc(200, 10)),
        ("logreg", (1, 28, 28), 10, fc(784, 10)),
        ("logreg", (20,), 1, fc(20, 1)),
    ],
)
def test_parameter_counts_and_output_shape(name, shape, classes, expected):
    model = make_model(name, shape, classes)
    assert num_parameters(model) == expected
    assert model(torch.zeros(3, *shape)).shape == (3, classes)


def test_paper_cnn_mnist_has_the_issues_d():
    assert num_parameters(make_model("paper_cnn", (1, 28, 28), 10)) == 184_586


def test_dropout_layers_present_and_removable():
    with_drop = make_model("paper_cnn", (1, 8, 8), 10)
    # after the convolutions (paper A.8) and between the fc layers (this project's reading, documented)
    assert sum(isinstance(m, nn.Dropout) for m in with_drop.modules()) == 2
    without = make_model("paper_cnn", (1, 8, 8), 10, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())
    assert num_parameters(with_drop) == num_parameters(without)
    x = torch.randn(4, 1, 8, 8)
    without.train()
    torch.testing.assert_close(without(x), without(x))


def test_dropout_active_only_in_train_mode():
    model = make_model("cifar_cnn", (3, 16, 16), 10, dropout=0.5)
    x = torch.randn(2, 3, 16, 16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.train()
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("resnet", (1, 8, 8), 10), {}, ValueError, r"make_model: name must be one of paper_cnn, cifar_cnn, mlp, logreg, got 'resnet'"),
        (("paper_cnn", (64,), 10), {}, ValueError, r"paper_cnn: input_shape must be \(C, H, W\), got \(64,\)"),
        (("paper_cnn", (1, 3, 3), 10), {}, ValueError, r"paper_cnn: input_shape must be \(C, H, W\) with H, W >= 4"),
        (("cifar_cnn", (3, 4, 4), 10), {}, ValueError, r"cifar_cnn: input_shape must be \(C, H, W\) with H, W >= 8"),
        (("mlp", (1, 8, 8), 0), {}, ValueError, r"mlp: num_classes must be >= 1, got 0"),
        (("mlp", (1, 8.0, 8), 10), {}, TypeError, r"mlp: input_shape entry must be an integer"),
        (("logreg", [], 10), {}, ValueError, r"logreg: input_shape must be a non-empty tuple"),
        (("paper_cnn", (1, 8, 8), 10), {"dropout": 1.0}, ValueError, r"paper_cnn: dropout must be in \[0, 1\), got 1.0"),
        # every bad value states the one constraint (1.5 said "<= 1", found by audit)
        (("paper_cnn", (1, 8, 8), 10), {"dropout": 1.5}, ValueError, r"^paper_cnn: dropout must be in \[0, 1\), got 1.5$"),
        (("cifar_cnn", (3, 8, 8), 10), {"dropout": -0.1}, ValueError, r"^cifar_cnn: dropout must be in \[0, 1\), got -0.1$"),
        (("paper_cnn", (1, 8, 8), 10), {"dropout": float("nan")}, ValueError, r"^paper_cnn: dropout must be in \[0, 1\), got nan$"),
        (("paper_cnn", (1, 8, 8), 10), {"dropout": float("inf")}, ValueError, r"^paper_cnn: dropout must be in \[0, 1\), got inf$"),
        (("paper_cnn", (1, 8, 8), 10), {"dropout": 10**400}, ValueError, r"^paper_cnn: dropout must be in \[0, 1\), got an int of about 1e\+400$"),
        (("paper_cnn", (1, 8, 8), 10), {"dropout": "0.5"}, TypeError, r"paper_cnn: dropout must be a real number"),
    ],
)
def test_make_model_validation(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_model(*args, **kwargs)


def test_model_names():
    assert model_names() == ["paper_cnn", "cifar_cnn", "mlp", "logreg"]


def test_paper_cnn_docstrings_say_the_second_dropout_is_this_projects_reading():
    """A.8 names one place for dropout; the model has two (found by audit): the docs must say so."""
    import mixtailor_game.models as models

    for doc in (models.__doc__, models.PaperCNN.__doc__):
        text = " ".join(doc.split())
        assert "between the two fully connected layers" in text and "not stated by the paper" in text
    layers = [type(m).__name__ for m in make_model("paper_cnn", (1, 28, 28), 10).classifier]
    assert layers == ["Flatten", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
