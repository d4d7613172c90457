"""Whole-file writes (run directories, figures, the game's and the checkers' JSON):
atomic, and readable like any file the user writes (tempfile.mkstemp's 0o600 made
every run file unreadable to the rest of a group)."""

import contextlib
import json
import os
import stat

import pytest

from mixtailor_game._atomic import atomic_write_bytes, atomic_write_text


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_a_plain_open(tmp_path, mask, expected):
    with umask(mask):
        atomic_write_bytes(tmp_path / "a" / "x.bin", b"\x00\x01\n")
        atomic_write_text(tmp_path / "y.json", "{}\n")
    assert (tmp_path / "a" / "x.bin").read_bytes() == b"\x00\x01\n"
    assert mode(tmp_path / "a" / "x.bin") == expected and mode(tmp_path / "y.json") == expected


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # fails inside the write
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_commands_write_readable_files(tmp_path, capsys):
    from mixtailor_game.cli import main as toolkit_main
    from mixtailor_game.train import TrainConfig, train
    from mixtailor_game.verify.cli import main as verify_main

    with umask(0o022):
        run = tmp_path / "run"
        train(TrainConfig(dataset="digits", model="logreg", workers=12, byzantine=2, batch_size=16, steps=3,
                          eval_every=3, aggregator="krum", attack="ipm", seed=0), run)
        probs = tmp_path / "probs.json"
        assert toolkit_main(["game", "--pool", "comed,krum", "--attacks", "ipm", "--samples", "2", "--dim", "8",
                             "--out", str(probs)]) == 0
        checked = tmp_path / "verify.json"
        assert verify_main(["theorem1", "--quick", "--n", "7", "--f", "2", "--d", "2", "--p", "2", "--laws",
                            "gaussian", "--trials", "20", "--search-trials", "20", "--directions", "e1",
                            "--no-registry", "--json", str(checked)]) == 0
    capsys.readouterr()
    files = [p for p in run.rglob("*") if p.is_file()] + [probs, checked]
    assert {"config.json", "summary.json", "checkpoint.pt", "metrics.jsonl"} <= {p.name for p in files}
    assert {p.name: mode(p) for p in files} == {p.name: 0o644 for p in files}
    assert json.loads(probs.read_text())["pool"]
