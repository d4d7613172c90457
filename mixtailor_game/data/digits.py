"""scikit-learn's bundled 8 x 8 handwritten digits: the embedded default data set (no download).

1,797 images with pixel values 0..16, 10 classes. Split: a fixed, stratified
80 / 20 train / test split (``sklearn.model_selection.train_test_split`` with
``random_state=0``): 1,437 train and 360 test images. Normalization: ``x / 16``,
then standardized with the train split's mean and standard deviation (scalars).
"""

from __future__ import annotations

import numpy as np
import torch

from mixtailor_game.data.base import Dataset

__all__ = ["load_digits_dataset", "DIGITS_SPLIT_SEED"]

DIGITS_SPLIT_SEED = 0


def load_digits_dataset() -> Dataset:
    """Load the digits as float32 ``(N, 1, 8, 8)`` images and int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=DIGITS_SPLIT_SEED, stratify=y)
    mean, std = float(x_tr.mean()), float(x_tr.std())

    def to_x(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((a - mean) / std).astype(np.float32)).unsqueeze(1).contiguous()

    return Dataset(to_x(x_tr), torch.from_numpy(y_tr), to_x(x_te), torch.from_numpy(y_te), 10, (1, 8, 8), name="digits")
