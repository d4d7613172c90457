"""Data loaders and partitions: real digits / MNIST, small IDX and CIFAR files written here, errors."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mixtailor_game.data import (
    DataFileError,
    FASHION_MNIST_DIR,
    dataset_names,
    full_gradient,
    load_dataset,
    partition,
    read_idx,
)
from mixtailor_game.data.idx import IDX_FILES
from mixtailor_game.models import make_model

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


# ----------------------------------------------------------------------------- writers of small files
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    array = np.asarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist_like(directory: Path, n_train=6, n_test=4, side=28, gz=False, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, side, side)), rng.integers(0, 10, n_train)),
        "test": (rng.integers(0, 256, (n_test, side, side)), rng.integers(0, 10, n_test)),
    }
    for split, (img_name, lab_name) in IDX_FILES.items():
        write_idx(directory / img_name, arrays[split][0], gz=gz)
        write_idx(directory / lab_name, arrays[split][1], gz=gz)
    return arrays


def write_cifar(directory: Path, per_batch=3, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(directory / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, fh)
        out[name] = (data, labels)
    return out


# ----------------------------------------------------------------------------- digits
def test_digits_shapes_dtypes_normalized_and_fixed_split():
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.num_classes == 10 and ds.input_shape == (1, 8, 8) and ds.loss == "cross_entropy"
    assert abs(ds.train_x.mean().item()) < 1e-4 and abs(ds.train_x.std().item() - 1) < 1e-3
    assert set(ds.train_y.tolist()) == set(range(10)) == set(ds.test_y.tolist())
    again = load_dataset("digits")
    assert torch.equal(ds.train_x, again.train_x) and torch.equal(ds.test_y, again.test_y)


def test_digits_split_is_a_partition_of_sklearn_digits():
    from sklearn.datasets import load_digits

    raw = load_digits()
    ds = load_dataset("digits")
    assert len(ds.train_y) + len(ds.test_y) == len(raw.target)
    assert np.bincount(np.concatenate([ds.train_y.numpy(), ds.test_y.numpy()])).tolist() == np.bincount(
        raw.target
    ).tolist()


# ----------------------------------------------------------------------------- real MNIST / Fashion-MNIST
@pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(), reason="no MNIST copy in ../shared/data")
def test_mnist_test_split_from_shared_copy():
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    counts = np.bincount(labels, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_package():
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.test_y.numpy()).tolist() == [1000] * 10


# ----------------------------------------------------------------------------- IDX loader on small files
@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_values_and_normalization(tmp_path, gz):
    arrays = write_mnist_like(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.test_x.shape == (4, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28)
    expected = (arrays["train"][0].astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(ds.train_x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds.train_y.tolist() == arrays["train"][1].tolist()
    assert ds.test_y.dtype == torch.int64 and ds.test_y.tolist() == arrays["test"][1].tolist()
    fm = load_dataset("fashion-mnist", tmp_path)
    np.testing.assert_allclose(fm.test_x[:, 0].numpy(), (arrays["test"][0] / 255 - 0.2860) / 0.3530, atol=1e-5)


def test_mnist_needs_a_directory_and_names_the_flag():
    with pytest.raises(ValueError, match=r"^mnist: no data directory given; pass --data-dir"):
        load_dataset("mnist")


def test_missing_directory(tmp_path):
    with pytest.raises(DataFileError, match=r"mnist: directory .*nope not found; pass --data-dir"):
        load_dataset("mnist", tmp_path / "nope")


def test_missing_file_names_the_file(tmp_path):
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"mnist: file .*t10k-labels-idx1-ubyte\[\.gz\] not found; pass --data-dir \(data_dir= in Python\) with the four IDX files"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda p: p.write_bytes(b"\x01\x02\x08\x03" + bytes(20)), "not an IDX file"),
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), ".* data bytes, its header"),
        (lambda p: p.write_bytes(b"\x00\x00\x0d\x03" + p.read_bytes()[4:]), "IDX type 0x0d, only unsigned bytes"),
        (lambda p: p.write_bytes(b"\x00\x00\x08\x03\x00"), "a truncated IDX header"),
    ],
)
def test_corrupt_idx_file_is_named(tmp_path, corrupt, message):
    write_mnist_like(tmp_path)
    corrupt(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DataFileError, match=rf"^mnist: file .*train-images-idx3-ubyte (is |has |holds )?{message}.*; pass --data-dir"):
        load_dataset("mnist", tmp_path)


def test_corrupt_gzip_is_named(tmp_path):
    write_mnist_like(tmp_path, gz=True)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match=r"^mnist: file .*train-labels-idx1-ubyte\.gz cannot be read"):
        load_dataset("mnist", tmp_path)


def test_idx_count_mismatch_and_bad_labels(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(DataFileError, match=r"disagree: 6 images, 5 labels"):
        load_dataset("mnist", tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(6, 12))
    with pytest.raises(DataFileError, match=r"has label 12 >= 10"):
        load_dataset("mnist", tmp_path)


def test_every_message_is_one_line(tmp_path):
    with pytest.raises(DataFileError) as info:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- CIFAR-10 on small pickles
def test_cifar10_loader_layout_and_normalization(tmp_path):
    batches = write_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    data, labels = batches["data_batch_2"]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32 x 32
    green = data[1, 1024:2048].reshape(32, 32) / 255.0
    np.testing.assert_allclose(ds.train_x[4, 1].numpy(), (green - 0.4822) / 0.2435, atol=1e-5)
    assert ds.train_y[3:6].tolist() == labels and ds.test_y.tolist() == batches["test_batch"][1]


def test_cifar10_accepts_parent_of_batches_dir(tmp_path):
    inner = tmp_path / "cifar-10-batches-py"
    inner.mkdir()
    write_cifar(inner, per_batch=2)
    assert load_dataset("cifar10", tmp_path).train_x.shape == (10, 3, 32, 32)


def test_cifar10_missing_and_corrupt_batches(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataFileError, match=r"^cifar10: file .*test_batch not found; pass --data-dir"):
        load_dataset("cifar10", tmp_path)
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataFileError, match=r"^cifar10: file .*test_batch is not a CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)
    with pytest.raises(DataFileError, match=r"expected \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"^load_dataset: name must be one of digits, fashion-mnist, .*, got 'imagenet'"):
        load_dataset("imagenet")
    assert "synthetic-logistic" in dataset_names()


# ----------------------------------------------------------------------------- synthetic problems
@pytest.mark.parametrize("name", ["synthetic-quadratic", "synthetic-logistic"])
def test_synthetic_full_gradient_matches_autograd(name):
    ds = load_dataset(name)
    model = make_model("logreg", ds.input_shape, ds.num_classes).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
    out = model(ds.train_x.double())
    if ds.loss == "mse":
        loss = 0.5 * (out.squeeze(1) - ds.train_y.double()).pow(2).mean()
    else:
        loss = torch.nn.functional.cross_entropy(out, ds.train_y)
    loss.backward()
    auto = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(full_gradient(ds, model), auto, rtol=1e-10, atol=1e-12)
    assert full_gradient(ds, model).abs().max() > 1e-3


def test_synthetic_is_deterministic_and_full_gradient_validates():
    a, b = load_dataset("synthetic-logistic"), load_dataset("synthetic-logistic")
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert set(a.train_y.tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"full_gradient: params must be a logreg model or a flat tensor of length 42"):
        full_gradient(a, torch.zeros(5))


# ----------------------------------------------------------------------------- partitions
def _check_disjoint(shards, n_total):
    flat = torch.cat(shards)
    assert len(torch.unique(flat)) == len(flat)
    assert flat.min() >= 0 and flat.max() < n_total
    for s in shards:
        assert s.dtype == torch.int64 and torch.equal(s, torch.sort(s).values)


def test_iid_equal_shards_disjoint():
    y = load_dataset("digits").train_y
    shards = partition(y, 12, "iid", generator=torch.Generator().manual_seed(0))
    _check_disjoint(shards, len(y))
    assert {len(s) for s in shards} == {len(y) // 12}


@pytest.mark.parametrize("n", [10, 12, 23])
def test_label_scheme_one_label_per_worker_and_cover(n):
    y = load_dataset("digits").train_y
    shards = partition(y, n, "label", generator=torch.Generator().manual_seed(0))
    _check_disjoint(shards, len(y))
    assert sum(len(s) for s in shards) == len(y)
    assert all(len(torch.unique(y[s])) == 1 for s in shards)
    assert {int(y[s][0]) for s in shards} == set(range(10))


@pytest.mark.parametrize("n", [12, 24])
def test_label_scheme_first_workers_hold_every_class(n):
    """Workers 0 .. K-1 hold the classes in order, the extra shards come after them: the
    trainer's honest workers (all but the last f) then hold every label (paper Fig. 3).
    The class-major order gave the last two workers digits 8 and 9 alone at n = 12."""
    y = load_dataset("digits").train_y
    shards = partition(y, n, "label", generator=torch.Generator().manual_seed(0))
    assert [int(y[s][0]) for s in shards[:10]] == list(range(10))
    assert {int(y[s][0]) for s in shards[:n - 2]} == set(range(10))


def test_label_scheme_fewer_workers_than_classes_holds_whole_labels():
    y = torch.arange(10).repeat_interleave(5)
    shards = partition(y, 3, "label", generator=torch.Generator().manual_seed(1))
    assert [sorted(set(y[s].tolist())) for s in shards] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert sum(len(s) for s in shards) == 50


def test_dirichlet_reproducible_covering_and_skewed():
    y = load_dataset("digits").train_y
    a = partition(y, 12, "dirichlet", alpha=0.3, generator=torch.Generator().manual_seed(5))
    b = partition(y, 12, "dirichlet", alpha=0.3, generator=torch.Generator().manual_seed(5))
    c = partition(y, 12, "dirichlet", alpha=0.3, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    assert any(not torch.equal(s, t) for s, t in zip(a, c))
    _check_disjoint(a, len(y))
    assert sum(len(s) for s in a) == len(y) and min(len(s) for s in a) >= 1
    n1 = partition(y, 12, "dirichlet", alpha=0.3, generator=np.random.default_rng(2))
    n2 = partition(y, 12, "dirichlet", alpha=0.3, generator=np.random.default_rng(2))
    assert all(torch.equal(s, t) for s, t in zip(n1, n2))
    # small alpha concentrates each class: per-worker label histograms are far from uniform
    skewed = partition(y, 12, "dirichlet", alpha=0.05, generator=torch.Generator().manual_seed(0))
    iid_like = partition(y, 12, "dirichlet", alpha=1000.0, generator=torch.Generator().manual_seed(0))

    def mean_labels(shards):
        return np.mean([len(torch.unique(y[s])) for s in shards])

    assert mean_labels(skewed) < 6 < mean_labels(iid_like)


@given(
    n_total=st.integers(1, 60),
    k=st.integers(1, 6),
    n=st.integers(1, 60),
    scheme=st.sampled_from(["iid", "label", "dirichlet"]),
    seed=st.integers(0, 2**31),
)
def test_partition_properties(n_total, k, n, scheme, seed):
    rng = np.random.default_rng(seed)
    y = torch.from_numpy(rng.integers(0, k, n_total))
    n = min(n, n_total)
    alpha = 5.0
    try:
        shards = partition(y, n, scheme, alpha=alpha, generator=torch.Generator().manual_seed(seed))
    except ValueError as exc:  # dirichlet may be unable to give every worker an example
        assert scheme == "dirichlet" and "left a worker empty" in str(exc)
        return
    assert len(shards) == n
    _check_disjoint(shards, n_total)
    if scheme == "iid":
        assert all(len(s) == n_total // n for s in shards)
    else:
        assert sum(len(s) for s in shards) == n_total and min(len(s) for s in shards) >= 1
    if scheme == "label" and n >= len(torch.unique(y)):
        assert all(len(torch.unique(y[s])) == 1 for s in shards)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_workers": 0}, ValueError, r"partition: n_workers must be >= 1, got 0"),
        ({"n_workers": 11}, ValueError, r"partition: n_workers must be <= 10, got 11"),
        ({"n_workers": 2.0}, TypeError, r"partition: n_workers must be an integer"),
        ({"n_workers": 2, "scheme": "sorted"}, ValueError, r"partition: scheme must be one of iid, label, dirichlet, got 'sorted'"),
        ({"n_workers": 2, "scheme": "dirichlet", "alpha": 0.0}, ValueError, r"partition: alpha must be > 0, got 0.0"),
        ({"n_workers": 2, "generator": 3}, TypeError, r"partition: generator must be a torch.Generator"),
    ],
)
def test_partition_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        partition(torch.arange(10) % 3, **kwargs)


def test_partition_label_validation():
    with pytest.raises(ValueError, match=r"partition: labels must be a non-empty 1-D sequence"):
        partition(torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(TypeError, match=r"partition: labels must have an integer dtype, got float32"):
        partition(torch.zeros(4), 2)


def test_label_scheme_never_gives_a_class_more_workers_than_examples():
    # found by hypothesis: 7 examples, 7 workers, classes of sizes 1, 2, 4
    y = torch.tensor([0, 1, 1, 2, 2, 2, 2])
    shards = partition(y, 7, "label", generator=torch.Generator().manual_seed(0))
    assert sorted(len(s) for s in shards) == [1] * 7
    assert all(len(torch.unique(y[s])) == 1 for s in shards)


# ----------------------------------------------------------------------------- found by audit
def test_synthetic_logistic_follows_its_docstring():
    """The docstring's model, y ~ Bernoulli(sigmoid(3 <w*, x>)), rebuilds the labels (it said sigmoid(<w*, x>))."""
    from mixtailor_game.data import synthetic

    assert "sigmoid(3 <w*, x>)" in synthetic.__doc__
    ds = load_dataset("synthetic-logistic")
    rng = np.random.default_rng(synthetic._SEED + 1)  # the loader's draws, in its order
    x = rng.standard_normal((2500, 20))
    w = rng.standard_normal(20) / np.sqrt(20)
    u = rng.random(2500)
    np.testing.assert_array_equal(x[:2000].astype(np.float32), ds.train_x.numpy())
    y = (u < 1 / (1 + np.exp(-3 * (x @ w)))).astype(np.int64)
    np.testing.assert_array_equal(y[:2000], ds.train_y.numpy())
    assert np.mean(np.maximum(1 / (1 + np.exp(-3 * (x @ w))), 1 / (1 + np.exp(3 * (x @ w))))) == pytest.approx(0.815, abs=5e-4)


@pytest.mark.parametrize("data, dtype", [
    (np.random.default_rng(0).random((3, 3072)), "float64"),  # a preprocessed copy in [0, 1]: was all zeros
    (np.full((3, 3072), 300, np.int64), "int64"),  # 300 wrapped to 44
    (np.full((3, 3072), 7, np.int64), "int64"),  # in range, but not the official uint8 either
    (np.zeros((3, 3072), np.float32), "float32"),
])
def test_cifar10_refuses_data_that_is_not_uint8(tmp_path, data, dtype):
    write_cifar(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": data, b"labels": [0, 1, 2]}, fh)
    with pytest.raises(DataFileError) as info:
        load_dataset("cifar10", tmp_path)
    msg = str(info.value)
    assert msg.startswith(f"cifar10: file {tmp_path / 'data_batch_3'} has data of dtype {dtype}, expected uint8; pass --data-dir")
    assert "\n" not in msg


def test_idx_header_whose_size_overflows_int64_is_named(tmp_path):
    """dims (2^31, 2^31, 4): numpy's int64 product wrapped to 0, a header-only file passed the
    size check and reshape raised numpy's own error without the file name."""
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(DataFileError, match=rf"^idx: file {re.escape(str(path))} holds 0 data bytes, its header \(2147483648, 2147483648, 4\) says 18446744073709551616; "):
        read_idx(path)
    write_mnist_like(tmp_path)
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**31, 2**31, 4))
    with pytest.raises(DataFileError, match=r"^mnist: file .*train-images-idx3-ubyte holds 0 data bytes, its header .*; pass --data-dir"):
        load_dataset("mnist", tmp_path)


def test_dataset_equality_is_identity_and_hashable(tmp_path):
    """The generated __eq__ compared tensors with ==, which raised for any two distinct loads."""
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a == a and a != b and not (a == b)
    assert len({a, b, a}) == 2 and {a: 1}[a] == 1
    write_mnist_like(tmp_path)
    m = load_dataset("mnist", tmp_path)
    assert m == load_dataset("mnist", tmp_path)  # a cache hit is the same object


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_data_dir_that_is_a_file_or_empty(tmp_path, name):
    f = tmp_path / "README.md"
    f.write_text("not a directory")
    with pytest.raises(DataFileError, match=rf"^{name}: data_dir {re.escape(str(f))} is not a directory; pass --data-dir"):
        load_dataset(name, str(f))
    # "" was Path("") = the current directory, searched silently
    with pytest.raises(ValueError, match=rf"^{name}: data_dir must be a non-empty path, got ''; pass --data-dir"):
        load_dataset(name, "")


def test_gzip_bytes_under_a_plain_idx_name_get_a_precise_hint(tmp_path):
    """A download that lost its .gz extension was 'not an IDX file (bad magic number)'."""
    write_mnist_like(tmp_path)
    plain = tmp_path / "t10k-images-idx3-ubyte"
    raw = plain.read_bytes()
    plain.write_bytes(gzip.compress(raw))
    with pytest.raises(DataFileError) as info:
        load_dataset("mnist", tmp_path)
    assert str(info.value).startswith(
        f"mnist: file {plain} is gzip-compressed, not a plain IDX file: name it t10k-images-idx3-ubyte.gz; pass --data-dir"
    )
    plain.rename(tmp_path / "t10k-images-idx3-ubyte.gz")  # following the hint works
    assert load_dataset("mnist", tmp_path).test_x.shape == (4, 1, 28, 28)


def test_alpha_is_validated_only_for_dirichlet():
    """iid and label ignore alpha; a config with alpha 0 and partition iid failed for an unused value."""
    from mixtailor_game.train.config import TrainConfig

    y = torch.arange(12) % 3
    for scheme in ("iid", "label"):
        for alpha in (0.0, -1.0, float("nan")):
            gen = torch.Generator().manual_seed(0)
            ref = partition(y, 3, scheme, generator=torch.Generator().manual_seed(0))
            assert all(torch.equal(s, t) for s, t in zip(partition(y, 3, scheme, alpha=alpha, generator=gen), ref))
        TrainConfig(partition=scheme, alpha=0.0)
    with pytest.raises(ValueError, match=r"^partition: alpha must be > 0, got 0.0$"):
        partition(y, 3, "dirichlet", alpha=0.0)
    with pytest.raises(ValueError, match=r"^TrainConfig: alpha must be > 0, got 0.0$"):
        TrainConfig(partition="dirichlet", alpha=0.0)
    with pytest.raises(TypeError, match=r"TrainConfig: alpha must be a real number"):
        TrainConfig(partition="dirichlet", alpha="0.5")
