"""``mixtailor-game train | compare | plot``: flags, config files, errors, outputs."""

import argparse
import json
import re

import pytest
import torch

from mixtailor_game.cli import build_parser, main
from mixtailor_game.train import TrainConfig, read_metrics
from mixtailor_game.train.cli import config_from_args

FAST = ["--model", "logreg", "--steps", "6", "--eval-every", "3", "--batch-size", "8", "--quiet"]


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_train_writes_a_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--aggregator", "krum", "--attack", "ipm", "--eps", "0.1", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "krum[p=2] vs ipm" in printed and "finished" in printed
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["aggregator"] == "krum" and summary["attack"] == "ipm"
    assert len(read_metrics(out)) == 6


def test_flags_config_file_and_defaults_combine(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"workers": 9, "byzantine": 1, "aggregator": "comed", "steps": 7}))
    c = config_from_args(parse("train", "--config", str(path), "--steps", "11", "--lr", "0.2"))
    assert (c.workers, c.byzantine, c.aggregator, c.steps, c.lr) == (9, 1, "comed", 11, 0.2)
    assert c.dataset == TrainConfig().dataset
    # attack parameters: default eps for ipm, shortcuts and pass-through
    assert config_from_args(parse("train")).attack_params == {"eps": 0.1}
    assert config_from_args(parse("train", "--eps", "10")).attack_params == {"eps": 10.0}
    c = config_from_args(parse("train", "--attack", "alie", "--z", "1.5"))
    assert c.attack == "alie" and c.attack_params == {"z": 1.5}
    c = config_from_args(parse("train", "--attack", "random_eps", "--attack-param", "eps_set=[0.1, 10]"))
    assert c.attack_params == {"eps_set": [0.1, 10]}
    c = config_from_args(parse("train", "--aggregator", "krum", "--rule-param", "p=3"))
    assert c.rule_params == {"p": 3}
    c = config_from_args(parse("train", "--deterministic-draw", "--pool", "krum,comed", "--probs", "0.25,0.75"))
    assert c.deterministic_draw and c.pool == "krum,comed" and c.probs == "0.25,0.75"


@pytest.mark.parametrize("argv, message", [
    (["--aggregator", "krum", "--workers", "6", "--byzantine", "2"], r"krum: needs n > 2f \+ 2, got n=6, f=2"),
    (["--aggregator", "kurm"], "aggregator must be one of"),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "data_dir must be an existing directory"),
    (["--knowledge", "half"], "knowledge must be full, own or partial:K"),
    (["--lr", "-1"], "lr must be > 0"),
])
def test_bad_settings_fail_with_one_line_before_training(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *FAST, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err
    assert re.search(message, err)
    assert not (out / "metrics.jsonl").exists()


def test_unknown_config_key_is_rejected(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"stpes": 3}))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'stpes'" in err and "valid keys: dataset" in err


def test_compare_prints_table_and_writes_curves(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--aggregators", "omniscient,krum,mixtailor", "--pool", "krum,comed", "--out", str(out), *FAST]
    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert {"aggregator", "omniscient", "krum", "mixtailor"} <= set(lines)
    assert "vs omniscient" in lines["aggregator"]
    data = json.loads((out / "compare.json").read_text())
    assert set(data["results"]) == {"omniscient", "krum", "mixtailor"}
    for name in ("omniscient", "krum", "mixtailor"):
        assert json.loads((out / name / "summary.json").read_text())["steps"] == 6
        acc = data["results"][name]["test_accuracy"]
        assert f"{acc:.4f}" in lines[name]
    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # rerunning reuses the finished runs
    mtime = (out / "krum" / "summary.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "krum" / "summary.json").stat().st_mtime_ns == mtime


def test_plot_any_run_directories(tmp_path, capsys):
    for agg in ("comed", "krum"):
        assert main(["train", "--aggregator", agg, "--out", str(tmp_path / agg), *FAST]) == 0
    png = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "comed"), str(tmp_path / "krum"), "--out", str(png), "--metric", "loss"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(png)]) == 2
    assert "must hold metrics.jsonl" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "comed"), "--out", str(png), "--metric", "foo"]) == 2
    assert "plot: metric must be one of [" in capsys.readouterr().err


def test_max_steps_then_rerun_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--aggregator", "comed", "--out", str(out), *FAST]
    assert main([*argv, "--max-steps", "4"]) == 0  # FAST evaluates every 3 steps
    printed = capsys.readouterr().out
    # the accuracy is step 3's: it said "after 4 steps"
    assert "stopped at step 4 (rerun to resume)" in printed and "at step 3 (the last evaluation" in printed
    assert main(argv) == 0
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4, 5, 6]
    assert "after 6 steps" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["test_accuracy_step"] == 6


def test_subcommands_are_registered():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"train", "compare", "plot", "game"} <= set(sub.choices)


@pytest.mark.parametrize("kind", ["file", "under_file"])
def test_an_out_path_that_cannot_be_a_directory_fails_with_one_line(tmp_path, capsys, kind):
    """A file where the run directory should go raised FileExistsError / NotADirectoryError
    as a traceback; now the CLI's one-line error with the path."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out = blocker if kind == "file" else blocker / "sub"
    code = main(["train", "--steps", "1", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train: error:" in err[0] and "afile" in err[0]
    # it says what is wrong (was "[Errno 17] File exists: '...afile'")
    want = "is a file, not a directory" if kind == "file" else "a folder above .* is a file"
    assert re.search(want, err[0]) and "Errno" not in err[0]


def test_cli_warnings_are_one_line(tmp_path, capsys):
    """A resumed run's warning (here: a checkpoint written by other code) printed the
    source line after it; the CLI prints one line."""
    out = tmp_path / "run"
    assert main(["train", "--steps", "2", "--max-steps", "1", "--out", str(out), "--quiet"]) == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["code"] = "0.0.1"
    torch.save(ckpt, out / "checkpoint.pt")
    capsys.readouterr()
    assert main(["train", "--steps", "2", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mixtailor-game train: warning: Trainer: run directory")


def test_compare_refuses_probs_without_mixtailor(tmp_path, capsys):
    code = main(["compare", "--aggregators", "krum,comed", "--probs", "0.5,0.5", "--steps", "1",
                 "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--probs applies to mixtailor only" in err and not (tmp_path / "c").exists()


def test_compare_says_when_it_reads_a_finished_run_back(tmp_path, capsys):
    """A second `compare` into the same directory trains nothing; it said "training N steps"."""
    argv = ["compare", "--steps", "2", "--out", str(tmp_path / "cmp")]
    assert main(argv) == 0
    assert "[krum] training 2 steps" in capsys.readouterr().err
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[krum] finished run, read back" in err and "training" not in err


def test_compare_gives_rule_params_to_the_plain_rules_only(tmp_path, capsys):
    # --rule-param p=3 is krum's; omniscient and mixtailor took it silently (now a single run
    # of them refuses it, and compare leaves it out of theirs)
    out = tmp_path / "cmp"
    argv = ["compare", "--aggregators", "omniscient,krum,mixtailor", "--pool", "krum,comed", "--rule-param", "p=3",
            "--out", str(out), *FAST]
    assert main(argv) == 0
    params = {name: json.loads((out / name / "config.json").read_text())["rule_params"]
              for name in ("omniscient", "krum", "mixtailor")}
    assert params == {"omniscient": {}, "krum": {"p": 3}, "mixtailor": {}}
    code = main(["train", "--aggregator", "mixtailor", "--pool", "krum,comed", "--rule-param", "p=3",
                 "--out", str(tmp_path / "t"), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "rule_params must be empty for mixtailor" in err
