"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

Format (LeCun et al.): a 4-byte magic ``0x00 0x00 <type> <ndim>``, ``ndim``
big-endian uint32 dimensions, then the data in row-major order. Only type
``0x08`` (unsigned byte), the one MNIST uses, is supported.

:func:`load_idx_dataset` keeps the data sets it loaded in an in-process cache
keyed by the normalization and, for each of the four files, its path, device
and inode numbers, size, and modification and status-change times (ns), so a
process that trains many runs on MNIST (the paper checks) reads and decodes
the files once. A file rewritten or replaced on disk is read again, even one
of the same size whose old modification time was restored (``cp -p``,
``rsync -t``, ``tar x``, ``os.utime``; MNIST and Fashion-MNIST files have
equal sizes): writing, renaming and ``utime`` all set the status-change time
to the current time, no file call sets it back, and a file renamed over
another has another inode. Only a same-size rewrite in place within one tick
of the file system's clock (up to about 10 ms on Linux) could go unseen. The cached tensors are shared
between callers: treat them as read-only. :func:`clear_idx_cache` empties the
cache; ``cache=False`` skips it.
"""

from __future__ import annotations

import gzip
import math
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from mixtailor_game.data.base import DataFileError, Dataset, data_directory, normalize_images

__all__ = ["IDX_FILES", "read_idx", "find_file", "load_idx_dataset", "clear_idx_cache"]

#: split -> (images file, labels file), without the optional ``.gz``.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


#: how many loaded data sets the in-process cache keeps (least recently used dropped first)
IDX_CACHE_SIZE = 2
_CACHE: "OrderedDict[tuple, Dataset]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_idx_cache() -> None:
    """Forget every data set :func:`load_idx_dataset` has cached in this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


def find_file(where: str, directory: Path, stem: str, hint: str) -> Path:
    """Return ``directory/stem`` or ``directory/stem.gz``; else a one-line :class:`DataFileError`."""
    for candidate in (directory / stem, directory / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"{where}: file {directory / stem}[.gz] not found; {hint}")


def read_idx(path, where: str = "idx", hint: str = "replace it with an intact copy") -> np.ndarray:
    """Read one IDX file of unsigned bytes into a numpy array of its declared shape.

    Errors: :class:`DataFileError` (one line, naming the file) when it cannot
    be read, is not gzip although named ``.gz``, is gzip although not named
    ``.gz``, has a bad magic number, a type other than unsigned byte, or a
    size that disagrees with its header.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(f"{where}: file {path} cannot be read ({exc}); {hint}") from None
    if path.suffix != ".gz" and raw[:2] == b"\x1f\x8b":
        raise DataFileError(
            f"{where}: file {path} is gzip-compressed, not a plain IDX file: name it {path.name}.gz; {hint}"
        )
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{where}: file {path} is not an IDX file (bad magic number); {hint}")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataFileError(
            f"{where}: file {path} has IDX type 0x{dtype_code:02x}, only unsigned bytes (0x08) are supported; {hint}"
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFileError(f"{where}: file {path} has a truncated IDX header; {hint}")
    dims = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)  # exact: numpy's int64 product wraps for huge headers
    if len(raw) - header != expected:
        raise DataFileError(
            f"{where}: file {path} holds {len(raw) - header} data bytes, its header {dims} says {expected}; {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _split(where: str, files: tuple[Path, Path], split: str, hint: str,
           num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    img_path, lab_path = files
    images = read_idx(img_path, where, hint)
    labels = read_idx(lab_path, where, hint)
    if images.ndim != 3:
        raise DataFileError(f"{where}: file {img_path} must hold 3-D images (N, H, W), got shape {images.shape}; {hint}")
    if labels.ndim != 1:
        raise DataFileError(f"{where}: file {lab_path} must hold 1-D labels, got shape {labels.shape}; {hint}")
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            f"{where}: files {img_path} and {lab_path} disagree: {images.shape[0]} images, {labels.shape[0]} labels; {hint}"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise DataFileError(f"{where}: file {lab_path} has label {int(labels.max())} >= {num_classes}; {hint}")
    return images, labels


def load_idx_dataset(where: str, directory, mean: float, std: float, num_classes: int = 10,
                     *, cache: bool = True) -> Dataset:
    """Load the four IDX files of an MNIST-like data set from ``directory``.

    Images become float32 ``(N, 1, H, W)``, ``(x / 255 - mean) / std``;
    labels int64. Files may be plain or ``.gz``. ``cache`` (default): return
    the data set loaded earlier in this process from the same files (same
    paths, device and inode numbers, sizes, modification and status-change
    times; see the module docstring) and normalization, without reading
    them again; its tensors are shared, so do not modify them in place.
    """
    names = ", ".join(s for pair in IDX_FILES.values() for s in pair)
    hint = f"pass --data-dir (data_dir= in Python) with the four IDX files ({names}, plain or .gz)"
    directory = data_directory(where, directory, hint)
    paths = {split: tuple(find_file(where, directory, stem, hint) for stem in IDX_FILES[split])
             for split in ("train", "test")}
    key = None
    if cache:
        try:
            stamps = tuple((str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                           for pair in paths.values() for p in pair for st in (p.stat(),))
        except OSError:
            stamps = None  # let the read below report the file that cannot be read
        if stamps is not None:
            key = (where, stamps, float(mean), float(std), int(num_classes))
            with _CACHE_LOCK:
                hit = _CACHE.get(key)
                if hit is not None:
                    _CACHE.move_to_end(key)
                    return hit
    out = []
    for split in ("train", "test"):
        images, labels = _split(where, paths[split], split, hint, num_classes)
        x = normalize_images(torch.from_numpy(images.copy()).unsqueeze(1), (mean,), (std,))
        out += [x, torch.from_numpy(labels.astype(np.int64))]
    data = Dataset(out[0], out[1], out[2], out[3], num_classes, tuple(out[0].shape[1:]), name=where)
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = data
            _CACHE.move_to_end(key)
            while len(_CACHE) > max(0, IDX_CACHE_SIZE):
                _CACHE.popitem(last=False)
    return data
