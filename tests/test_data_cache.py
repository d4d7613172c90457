"""The in-process cache of ``load_idx_dataset`` (MNIST-like IDX files): a second load reads no file."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest

from mixtailor_game.data import idx as idx_mod
from mixtailor_game.data import load_dataset


def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(raw)
    else:
        path.write_bytes(raw)


def make_mnist(directory, n_train=20, n_test=8, seed=0, gz=False):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img, lab = idx_mod.IDX_FILES[split]
        write_idx(directory / img, rng.integers(0, 256, size=(n, 28, 28)), gz)
        write_idx(directory / lab, rng.integers(0, 10, size=(n,)), gz)
    return directory


@pytest.fixture
def count_reads(monkeypatch):
    """Count the IDX files actually read (``read_idx`` calls) and start from an empty cache."""
    idx_mod.clear_idx_cache()
    calls = []
    real = idx_mod.read_idx

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(idx_mod, "read_idx", counting)
    yield calls
    idx_mod.clear_idx_cache()


@pytest.mark.parametrize("gz", [False, True])
def test_second_load_reads_no_file(tmp_path, count_reads, gz):
    d = make_mnist(tmp_path / "mnist", gz=gz)
    a = load_dataset("mnist", str(d))
    assert len(count_reads) == 4
    b = load_dataset("mnist", str(d))
    assert len(count_reads) == 4, "the second load read files again"
    assert b is a and tuple(a.train_x.shape) == (20, 1, 28, 28)
    # the same directory through another spelling (trailing slash) hits the same entry
    load_dataset("mnist", str(d) + os.sep)
    assert len(count_reads) == 4


def test_changed_file_is_read_again(tmp_path, count_reads):
    d = make_mnist(tmp_path / "mnist")
    a = load_dataset("mnist", str(d))
    make_mnist(d, n_train=24, seed=1)  # rewrite: new size and mtime
    st = (d / "train-images-idx3-ubyte").stat()
    os.utime(d / "train-images-idx3-ubyte", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = load_dataset("mnist", str(d))
    assert len(count_reads) == 8 and b is not a and b.train_x.shape[0] == 24


def test_keys_separate_directories_normalizations_and_cache_off(tmp_path, count_reads):
    d1, d2 = make_mnist(tmp_path / "a"), make_mnist(tmp_path / "b", seed=3)
    x1, x2 = load_dataset("mnist", str(d1)), load_dataset("mnist", str(d2))
    assert len(count_reads) == 8 and x1 is not x2
    f = idx_mod.load_idx_dataset("fashion-mnist", d1, 0.286, 0.353)  # same files, other normalization
    assert len(count_reads) == 12 and f is not x1
    idx_mod.load_idx_dataset("mnist", d1, 0.1307, 0.3081, cache=False)
    assert len(count_reads) == 16
    idx_mod.clear_idx_cache()
    load_dataset("mnist", str(d1))
    assert len(count_reads) == 20


def test_cache_is_bounded(tmp_path, count_reads, monkeypatch):
    monkeypatch.setattr(idx_mod, "IDX_CACHE_SIZE", 1)
    d1, d2 = make_mnist(tmp_path / "a"), make_mnist(tmp_path / "b", seed=3)
    load_dataset("mnist", str(d1))
    load_dataset("mnist", str(d2))
    load_dataset("mnist", str(d1))  # evicted by d2: read again
    assert len(count_reads) == 12 and len(idx_mod._CACHE) == 1


def test_errors_are_not_cached(tmp_path, count_reads):
    d = make_mnist(tmp_path / "mnist")
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09" + bytes(3))
    for _ in range(2):
        with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
            load_dataset("mnist", str(d))
    assert len(idx_mod._CACHE) == 0
