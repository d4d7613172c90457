"""Data sets and partitions for the simulated trainer (layer 1).

``load_dataset(name, data_dir=None)`` returns a :class:`Dataset`:

==========================  ==========================================================  ===================
name                        source                                                      default directory
==========================  ==========================================================  ===================
``digits``                  scikit-learn's bundled 8 x 8 digits (embedded default)     none needed
``fashion-mnist``           IDX files, Debian package ``dataset-fashion-mnist``         /usr/share/datasets/fashion-mnist
``mnist``                   IDX files (plain or .gz) from a directory                   required
``cifar10``                 python pickle batches from a directory                     required
``synthetic-quadratic``     least squares, known gradient (:func:`full_gradient`)      none needed
``synthetic-logistic``      binary logistic regression, known gradient                  none needed
==========================  ==========================================================  ===================

Nothing is ever downloaded. Missing or corrupt files raise
:class:`DataFileError` (a ``ValueError`` and ``FileNotFoundError``) with one
line naming the file and what to do.
"""

from __future__ import annotations

from mixtailor_game._checks import fail
from mixtailor_game.data.base import DataFileError, Dataset
from mixtailor_game.data.cifar import load_cifar10
from mixtailor_game.data.digits import load_digits_dataset
from mixtailor_game.data.idx import load_idx_dataset, read_idx
from mixtailor_game.data.partition import PARTITION_SCHEMES, partition
from mixtailor_game.data.synthetic import SYNTHETIC_NAMES, full_gradient, load_synthetic

__all__ = [
    "Dataset",
    "DataFileError",
    "load_dataset",
    "dataset_names",
    "partition",
    "PARTITION_SCHEMES",
    "full_gradient",
    "read_idx",
    "FASHION_MNIST_DIR",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_NAMES = ("digits", "fashion-mnist", "mnist", "cifar10") + SYNTHETIC_NAMES
# Standard normalization constants (mean, std of the training pixels / 255).
_MNIST_STATS = (0.1307, 0.3081)
_FASHION_STATS = (0.2860, 0.3530)


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return list(_NAMES)


def load_dataset(name: str, data_dir=None) -> Dataset:
    """Load a data set by name (table in the module docstring).

    ``data_dir``: directory of the files; ignored by ``digits`` and the
    synthetic problems, optional for ``fashion-mnist``, required for ``mnist``
    and ``cifar10``. The empty string is refused (it would mean the current
    directory), and so is a path that is not a directory.

    >>> ds = load_dataset("digits")
    >>> tuple(ds.train_x.shape), ds.num_classes, ds.input_shape
    ((1437, 1, 8, 8), 10, (1, 8, 8))
    """
    if not isinstance(name, str) or name not in _NAMES:
        raise fail("load_dataset", "name", f"one of {', '.join(_NAMES)}", name)
    if name == "digits":
        return load_digits_dataset()
    if name in SYNTHETIC_NAMES:
        return load_synthetic(name)
    if name == "fashion-mnist":
        if data_dir is None:
            data_dir = FASHION_MNIST_DIR
        try:
            return load_idx_dataset(name, data_dir, *_FASHION_STATS)
        except DataFileError as exc:
            if str(data_dir) != FASHION_MNIST_DIR:
                raise
            raise DataFileError(f"{exc} (or install it: apt-get install dataset-fashion-mnist)") from None
    if data_dir is None:
        what = "the four MNIST IDX files" if name == "mnist" else "the CIFAR-10 python batches"
        raise DataFileError(f"{name}: no data directory given; pass --data-dir (data_dir= in Python) with {what}")
    if name == "mnist":
        return load_idx_dataset(name, data_dir, *_MNIST_STATS)
    return load_cifar10(data_dir)
