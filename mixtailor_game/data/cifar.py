"""CIFAR-10 from the "python version" pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).

Each batch is a pickled dict with ``b"data"`` (uint8, ``(N, 3072)``, channel
planes R, G, B of 32 x 32 each) and ``b"labels"`` (N ints in 0..9). Data of
another dtype (floats from a preprocessed copy, or wider integers) is
refused rather than cast, which would silently zero or wrap the pixels. The
directory may be the one holding the batches or its parent holding
``cifar-10-batches-py/``. Note: unpickling runs code from the file; load only
copies you trust (the official archive).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from mixtailor_game.data.base import DataFileError, Dataset, data_directory, normalize_images

__all__ = ["CIFAR10_FILES", "CIFAR10_MEAN", "CIFAR10_STD", "load_cifar10"]

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_HINT = "pass --data-dir (data_dir= in Python) with the CIFAR-10 python batches (data_batch_1..data_batch_5, test_batch)"


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataFileError(f"cifar10: file {path} not found; {_HINT}")
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # any unpickling / key / conversion failure means a corrupt batch
        raise DataFileError(
            f"cifar10: file {path} is not a CIFAR-10 batch ({type(exc).__name__}: {exc}); {_HINT}"
        ) from None
    if data.dtype != np.uint8:
        # a cast would turn floats in [0, 1] into zeros and wrap integers above 255
        raise DataFileError(f"cifar10: file {path} has data of dtype {data.dtype}, expected uint8; {_HINT}")
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataFileError(
            f"cifar10: file {path} has data {data.shape} and labels {labels.shape}, expected (N, 3072) and (N,); {_HINT}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFileError(f"cifar10: file {path} has labels outside 0..9; {_HINT}")
    return data, labels


def load_cifar10(directory) -> Dataset:
    """Load CIFAR-10: float32 ``(N, 3, 32, 32)`` standardized per channel, int64 labels."""
    directory = data_directory("cifar10", directory, _HINT)
    if not (directory / "data_batch_1").exists() and (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    parts = [_read_batch(directory / name) for name in CIFAR10_FILES]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    test_x, test_y = parts[5]

    def to_x(a: np.ndarray) -> torch.Tensor:
        return normalize_images(torch.from_numpy(a.reshape(-1, 3, 32, 32)), CIFAR10_MEAN, CIFAR10_STD)

    return Dataset(
        to_x(train_x), torch.from_numpy(train_y), to_x(test_x), torch.from_numpy(test_y), 10, (3, 32, 32), name="cifar10"
    )
