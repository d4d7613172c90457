"""A run killed mid-way and resumed from its run directory ends with the same
metrics as an uninterrupted run (seeded CPU, deterministic MixTailor draw)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mixtailor_game.train import TrainConfig, Trainer, read_metrics, train

from _kill import Killed, kill_at as _kill_at

REPO = Path(__file__).resolve().parents[1]
# MixTailor with a seeded draw, random Byzantine sets and dropout-free momentum SGD:
# every generator of the trainer is exercised by a resume.
CFG = TrainConfig(dataset="digits", model="logreg", workers=12, byzantine=2, aggregator="mixtailor",
                  pool="krum,comed,geomed", deterministic_draw=True, attack="ipm", byzantine_mode="random",
                  batch_size=16, steps=30, eval_every=7, checkpoint_every=4, seed=11)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    summary = train(CFG, out)
    return read_metrics(out), summary


def _final_weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("die_at", [10, 14])  # between checkpoints, and right after an eval
def test_killed_by_an_exception_resumes_to_the_same_metrics(tmp_path, reference, die_at):
    ref_rows, ref_summary = reference
    with pytest.raises(Killed):
        Trainer(CFG, tmp_path, callback=_kill_at(die_at)).run()
    partial = read_metrics(tmp_path)
    assert die_at - CFG.checkpoint_every <= len(partial) <= die_at
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] < CFG.steps and not (tmp_path / "summary.json").exists()
    summary = Trainer(CFG, tmp_path).run()
    assert read_metrics(tmp_path) == ref_rows
    assert summary["test_accuracy"] == ref_summary["test_accuracy"]
    assert summary["invocations"] == 2


def test_max_steps_stops_cleanly_and_resumes(tmp_path, reference):
    ref_rows, _ = reference
    for expected in (9, 18, 27, 30):
        s = Trainer(CFG, tmp_path).run(max_steps=9)
        assert s["steps"] == expected and len(read_metrics(tmp_path)) == expected
    assert read_metrics(tmp_path) == ref_rows
    # a finished run is not trained again
    again = Trainer(CFG, tmp_path).run()
    assert again["steps"] == 30 and read_metrics(tmp_path) == ref_rows


def test_half_written_metrics_line_is_dropped_on_resume(tmp_path, reference):
    ref_rows, _ = reference
    with pytest.raises(Killed):
        Trainer(CFG, tmp_path, callback=_kill_at(6)).run()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 7, "loss": 0.')  # a kill in the middle of a write
    Trainer(CFG, tmp_path).run()
    assert read_metrics(tmp_path) == ref_rows
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == CFG.steps


@pytest.mark.slow
def test_sigkilled_subprocess_resumes_to_the_same_metrics(tmp_path):
    # A real kill: the CLI in a subprocess, SIGKILL once some steps are logged.
    cfg = CFG.replace(model="mlp", steps=150, eval_every=25, checkpoint_every=5)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mixtailor_game", "train", "--config", str(cfg_path), "--out", str(out), "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(read_metrics(out)) >= 12:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    assert len(read_metrics(out)) < cfg.steps
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the CLI uses (--threads 1): the same float reduction order
    try:
        train(cfg, ref)
    finally:
        torch.set_num_threads(threads)
    assert read_metrics(out) == read_metrics(ref)
    ref_w, got_w = _final_weights(ref), _final_weights(out)
    for k in ref_w:
        assert torch.equal(ref_w[k], got_w[k])


def test_resume_under_other_code_keeps_the_steps_and_warns(tmp_path, reference):
    """A run directory written by another version or commit of the toolkit is resumed (or
    its summary handed back) as before, with a warning: Fig. 3's stored runs, made before a
    data-split fix, would otherwise have come back silently on a rerun."""
    import warnings

    from mixtailor_game import __version__
    from mixtailor_game.train import rundir

    assert rundir.code_version().startswith(__version__)
    cfg = CFG.replace(steps=8, eval_every=4)
    Trainer(cfg, tmp_path).run(max_steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(cfg, tmp_path).run(max_steps=1)  # same code: silent
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    ckpt["code"] = "0.0.1+gdeadbeef"
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match=r"written by mixtailor-game 0\.0\.1\+gdeadbeef, this is .*"
                                         r"its finished steps are kept"):
        s = Trainer(cfg, tmp_path).run()
    assert s["steps"] == 8
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    del ckpt["code"]  # a checkpoint from before the field
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning, match="of an unrecorded version"):
        assert Trainer(cfg, tmp_path).run()["steps"] == 8


@pytest.mark.parametrize("cut", ["deleted", "mid-line"])
def test_metrics_removed_by_hand_are_not_padded_with_nul_bytes(tmp_path, cut):
    """metrics.jsonl deleted, or cut inside a row, before a resume: truncating it up to the
    checkpoint's offset padded the gap with NUL bytes, and no reader parsed it again."""
    cfg = CFG.replace(steps=8, eval_every=4)
    Trainer(cfg, tmp_path).run(max_steps=4)
    log = tmp_path / "metrics.jsonl"
    text = log.read_text()
    if cut == "deleted":
        log.unlink()
        kept = []
    else:
        lines = text.splitlines(keepends=True)
        log.write_text(lines[0] + lines[1][:5])
        kept = [json.loads(lines[0])]
    with pytest.warns(UserWarning, match=r"rows of finished steps were removed outside the trainer"):
        Trainer(cfg, tmp_path).run()
    assert b"\x00" not in log.read_bytes()
    rows = read_metrics(tmp_path)
    assert rows[:len(kept)] == kept and [r["step"] for r in rows[len(kept):]] == [5, 6, 7, 8]


def test_resume_with_grouped_fused_gradients_and_dropout(tmp_path):
    """The paper CNN with dropout on, b = 50: the fused engine takes two workers a call
    on CPU (engines.fused_group_size); a run stopped and resumed draws the same masks."""
    cfg = TrainConfig(dataset="digits", model="paper_cnn", workers=12, byzantine=2, aggregator="comed",
                      attack="ipm", batch_size=50, steps=6, eval_every=3, checkpoint_every=2, seed=5,
                      engine="fused")
    straight = train(cfg, tmp_path / "straight")
    for _ in range(2):
        Trainer(cfg, tmp_path / "resumed").run(max_steps=3)
    assert read_metrics(tmp_path / "resumed") == read_metrics(tmp_path / "straight")
    a, b = _final_weights(tmp_path / "straight"), _final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["steps"] == 6
