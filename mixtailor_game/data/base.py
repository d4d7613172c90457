"""The :class:`Dataset` record every loader returns and the loaders' error type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Dataset", "DataFileError", "normalize_images", "data_directory"]


class DataFileError(FileNotFoundError, ValueError):
    """A data file is missing or corrupt: one line naming the file and what to do.

    Subclasses both ``FileNotFoundError`` and ``ValueError`` so that callers
    catching either (the CLI catches ``ValueError``) see it.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits of one data set, ready for the trainer.

    ``train_x`` / ``test_x``: float32 tensors ``(N, *input_shape)``, normalized
    (images: per-channel standardization with the data set's usual constants,
    see each loader). ``train_y`` / ``test_y``: int64 class labels in
    ``[0, num_classes)``, or float32 targets when ``loss == "mse"``
    (``synthetic-quadratic``, ``num_classes == 1``). ``name``: the name
    given to :func:`load_dataset`; ``loss``: the loss the trainer should use
    with it (``"cross_entropy"`` or ``"mse"``).

    Equality is identity (``eq=False``): two loads compare equal only when they
    are the same object (a cache hit), and a ``Dataset`` is hashable. Compare
    contents with ``torch.equal`` on the tensors.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple
    name: str = ""
    loss: str = "cross_entropy"

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.train_x.shape)}, test={tuple(self.test_x.shape)}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape}, loss={self.loss!r})"
        )


def normalize_images(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """Map uint8 images ``(N, C, H, W)`` to float32 ``(x / 255 - mean_c) / std_c``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x_uint8.to(torch.float32).div_(255.0) - mean_t).div_(std_t)


def data_directory(where: str, directory, hint: str) -> Path:
    """``directory`` (``~`` expanded) as a :class:`~pathlib.Path` of an existing directory.

    Errors (one-line :class:`DataFileError` ending with ``hint``): the empty
    string (``Path("")`` would silently mean the current directory), a path
    that does not exist, a path that is not a directory.
    """
    if isinstance(directory, str) and directory == "":
        raise DataFileError(f"{where}: data_dir must be a non-empty path, got ''; {hint}")
    path = Path(os.path.expanduser(str(directory)))
    if not path.is_dir():
        if path.exists():
            raise DataFileError(f"{where}: data_dir {path} is not a directory; {hint}")
        raise DataFileError(f"{where}: directory {path} not found; {hint}")
    return path
