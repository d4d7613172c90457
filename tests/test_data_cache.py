"""The in-process cache of ``load_idx_dataset`` (MNIST-like IDX files): a second load reads no file."""

from __future__ import annotations

import gzip
import os
import struct
import time

import numpy as np
import pytest
import torch

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


def _on_disk(d):
    return idx_mod.load_idx_dataset("mnist", d, 0.1307, 0.3081, cache=False)


def test_changed_file_is_read_again(tmp_path, count_reads):
    d = make_mnist(tmp_path / "mnist")
    a = load_dataset("mnist", str(d))
    sizes = {p.name: p.stat().st_size for p in d.iterdir()}
    make_mnist(d, seed=1)  # rewrite in place: same shapes, so the same sizes, other data
    assert {p.name: p.stat().st_size for p in d.iterdir()} == sizes
    for p in d.iterdir():  # a later mtime, whatever the file system's timestamp granularity
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = load_dataset("mnist", str(d))
    assert len(count_reads) == 8 and b is not a
    assert not torch.equal(b.train_y, a.train_y) and torch.equal(b.train_y, _on_disk(d).train_y)


@pytest.mark.parametrize("how", ["in_place", "renamed_over"])
def test_same_size_same_mtime_replacement_is_read_again(tmp_path, count_reads, how):
    """Files replaced by others of the same size whose old mtimes are restored (``cp -p``,
    ``rsync -t``, ``tar x``, ``os.utime``; MNIST and Fashion-MNIST files have equal sizes)
    are read again: the key also holds the inode and the status-change time (found by audit)."""
    d = make_mnist(tmp_path / "mnist")
    a = load_dataset("mnist", str(d))
    old = {p.name: p.stat() for p in d.iterdir()}
    src = make_mnist(tmp_path / "other", seed=1)
    for name, st in old.items():
        if how == "in_place":
            (d / name).write_bytes((src / name).read_bytes())
        else:  # rsync's way: a new file (new inode) renamed over the old one
            tmp = d / (name + ".part")
            tmp.write_bytes((src / name).read_bytes())
            os.replace(tmp, d / name)
        os.utime(d / name, ns=(st.st_atime_ns, st.st_mtime_ns))
        # a rewrite within one tick of the file system's clock keeps the ctime: wait for the tick
        deadline = time.monotonic() + 5
        while (d / name).stat().st_ctime_ns == st.st_ctime_ns and time.monotonic() < deadline:
            time.sleep(0.005)
            os.utime(d / name, ns=(st.st_atime_ns, st.st_mtime_ns))  # sets the ctime to now
        new = (d / name).stat()
        assert (new.st_size, new.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    b = load_dataset("mnist", str(d))
    assert len(count_reads) == 8 and b is not a, "the cache served the replaced files"
    assert not torch.equal(b.train_y, a.train_y) and torch.equal(b.train_y, _on_disk(d).train_y)


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
