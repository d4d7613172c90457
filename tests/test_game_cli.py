"""``mixtailor-game game``: prints the tables and writes probabilities that train accepts."""

import json

import numpy as np
import pytest

from mixtailor_game.cli import main


def test_game_command_end_to_end(tmp_path, capsys):
    out, full = tmp_path / "probs.json", tmp_path / "all.json"
    rc = main(["game", "--pool", "comed,krum,trimmed_mean", "--attacks", "ipm[eps=0.1],ipm[eps=10.0]",
               "--dim", "10", "--samples", "3", "--design", "2", "--out", str(out), "--json", str(full)])
    assert rc == 0
    text = capsys.readouterr().out
    for needle in ("attack \\ rule", "equilibrium (zero-sum LP, HiGHS): status optimal", "vulnerability",
                   "design K=2 (ilp, optimal)", "krum[p=2]"):
        assert needle in text
    data = json.loads(out.read_text())
    assert data["pool"] == ["comed", "krum[p=2]", "trimmed_mean[b=2]"]
    assert len(data["probs"]) == 3 and sum(data["probs"]) == pytest.approx(1.0)
    allres = json.loads(full.read_text())
    # the written mix is the LP's: its guaranteed payoff is at least the uniform mix's
    values = np.array(allres["payoff"]["values"])
    p = np.array(data["probs"])
    assert np.min(values @ p) >= np.min(values.mean(axis=1)) - 1e-9
    assert allres["equilibrium"]["gap"] <= 1e-9

    # the trainer reads the same file for the same pool spec
    from mixtailor_game.train.config import TrainConfig, parse_probs
    from mixtailor_game.train.trainer import build_server

    assert parse_probs(str(out)) == pytest.approx(tuple(data["probs"]))
    cfg = TrainConfig(workers=12, byzantine=2, aggregator="mixtailor", pool="comed,krum,trimmed_mean",
                      probs=str(out), attack="none")
    server = build_server(cfg)
    assert [r.name for r in server.mixtailor.pool] == data["pool"]


def test_paper_pool_matches_train(tmp_path, capsys):
    from mixtailor_game.game.cli import build_pool
    from mixtailor_game.train.config import TrainConfig
    from mixtailor_game.train.trainer import build_server

    pool = build_pool("families:krum,geomed", 12, 2, seed=3)
    cfg = TrainConfig(workers=12, byzantine=2, aggregator="mixtailor", pool="families:krum,geomed", seed=3,
                      attack="none")
    assert [r.name for r in pool] == [r.name for r in build_server(cfg).mixtailor.pool]
    assert len(pool) == 32


def test_bad_input_is_one_line_error(capsys):
    assert main(["game", "--byzantine", "12"]) == 2
    err = capsys.readouterr().err
    assert "game: byzantine must be <= 11, got 12" in err
    assert main(["game", "--pool", "comed,krum[p=2"]) == 2
    assert "spec: brackets must be balanced" in capsys.readouterr().err
    # the design and the vulnerability graph read <AGG, mean>: not silently skipped
    assert main(["game", "--payoff", "cosine", "--design", "2"]) == 2
    assert "game: payoff must be 'inner' with --design or --threshold, got 'cosine'" in capsys.readouterr().err
    # a design larger than the pool is refused before the matrix is computed and printed
    assert main(["game", "--pool", "comed,krum", "--design", "3"]) == 2
    out, err = capsys.readouterr()
    assert "game: design must be <= 2, got 3" in err and out == ""


# --------------------------------------------------------------------------- double oracle
DO_POOL = "comed,krum,trimmed_mean"


def _do_args(tmp_path, *extra):
    return ["game", "--pool", DO_POOL, "--attacks", "ipm[eps=0.1],ipm[eps=10.0]", "--dim", "5",
            "--samples", "2", "--double-oracle", *extra]


def test_double_oracle_prints_exploitability_and_writes_probs(tmp_path, capsys):
    out, full = tmp_path / "do.json", tmp_path / "all.json"
    rc = main(_do_args(tmp_path, "--do-iterations", "4", "--do-tol", "1e-3", "--out", str(out), "--json", str(full)))
    assert rc == 0
    text = capsys.readouterr().out
    assert "double oracle (attacker best response: solvers.ExpectedValue" in text
    assert "exploitability" in text and "uniform mix (paper)" in text
    res = json.loads(full.read_text())["double_oracle"]
    hist = res["history"]
    assert 1 <= len(hist) <= 4
    assert res["exploitability"] == pytest.approx([h["gap"] for h in hist])
    # one printed row per iteration: iteration, attacks, lower, upper, gap
    for h in hist:
        assert any(line.split()[:2] == [str(h["iteration"]), str(h["attacks"])] for line in text.splitlines())
    assert hist[0]["attacks"] == 2  # started from the two --attacks rows
    assert res["status"] in ("converged", "budget")
    if res["status"] == "converged":
        assert res["gap"] <= 1e-3
    # the line oracle is a global 1-D search: the DO mix is no more exploitable than uniform (up to the gap)
    assert res["payoff_double_oracle"] >= res["payoff_uniform"] - max(res["gap"], 1e-9)
    assert len(res["defender"]) == 3 and sum(res["defender"]) == pytest.approx(1.0)

    data = json.loads(out.read_text())
    assert data["source"] == "double_oracle" and data["status"] == res["status"]
    assert data["pool"] == ["comed", "krum[p=2]", "trimmed_mean[b=2]"]
    assert data["probs"] == pytest.approx(res["defender"])
    assert data["exploitability"] == pytest.approx(res["exploitability"])


def test_double_oracle_output_round_trips_into_train(tmp_path, capsys):
    out = tmp_path / "do.json"
    assert main(_do_args(tmp_path, "--do-iterations", "2", "--do-start", "none", "--out", str(out))) == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["source"] == "double_oracle"
    # --do-start none: the first LP holds one attack, the best response to the uniform mix
    first = [line for line in text.splitlines() if line.strip().startswith("0 ")][0]
    assert first.split()[:2] == ["0", "1"]

    from mixtailor_game.cli import build_parser
    from mixtailor_game.train.cli import config_from_args
    from mixtailor_game.train.config import parse_probs
    from mixtailor_game.train.trainer import build_server

    args = build_parser().parse_args(["train", "--aggregator", "mixtailor", "--pool", DO_POOL,
                                      "--byzantine", "2", "--probs", str(out)])
    cfg = config_from_args(args)
    assert cfg.probs == str(out)
    assert parse_probs(cfg.probs) == pytest.approx(tuple(data["probs"]))
    public = build_server(cfg).mixtailor.public
    assert [r.name for r in public.rules] == data["pool"]
    assert public.probs == pytest.approx(tuple(p / sum(data["probs"]) for p in data["probs"]))

    # and a two-step training run with that file goes through
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--model", "logreg", "--aggregator", "mixtailor", "--pool", DO_POOL,
                 "--byzantine", "2", "--probs", str(out), "--attack", "ipm", "--steps", "2", "--eval-every", "2",
                 "--eval-examples", "50", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["probs"] == str(out)


def test_zero_sum_out_says_its_source(tmp_path, capsys):
    out = tmp_path / "zs.json"
    assert main(["game", "--pool", DO_POOL, "--attacks", "ipm[eps=0.1]", "--dim", "4", "--samples", "2",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    data = json.loads(out.read_text())
    assert data["source"] == "zero_sum" and "exploitability" not in data


@pytest.mark.parametrize("argv, message", [
    (["--double-oracle", "--do-iterations", "0"], "game: do-iterations must be >= 1, got 0"),
    (["--double-oracle", "--do-tol", "-1"], "game: do-tol must be >= 0, got -1.0"),
    (["--double-oracle", "--do-tol", "nan"], "game: do-tol must be finite, got nan"),
    (["--do-iterations", "3"], "game: do-iterations must be given only with --double-oracle, got 3"),
    (["--do-start", "none"], "game: do-start must be given only with --double-oracle, got 'none'"),
])
def test_double_oracle_bad_input_is_one_line_error(argv, message, capsys):
    assert main(["game", "--pool", DO_POOL, "--dim", "3", "--samples", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_spec_pool_round_trips_into_train(tmp_path, capsys):
    # game writes rule names like krum[p=3]; train's --pool reads the same specs
    from mixtailor_game.train import TrainConfig
    from mixtailor_game.train.trainer import build_server

    out = tmp_path / "p.json"
    spec = "krum[p=3],comed,bulyan[select=krum,aggregate=comed,p=2],nnm[base=geomed[p=3]],multi_krum"
    assert main(["game", "--pool", spec, "--workers", "12", "--byzantine", "2", "--attacks", "ipm[eps=0.1]",
                 "--dim", "5", "--samples", "2", "--out", str(out)]) == 0
    assert f"--pool {spec!r}" in capsys.readouterr().out
    data = json.loads(out.read_text())
    cfg = TrainConfig(aggregator="mixtailor", pool=spec, byzantine=2, probs=str(out), attack="none")
    assert [r.name for r in build_server(cfg).mixtailor.pool] == data["pool"]
    with pytest.raises(ValueError, match=r"TrainConfig: make_rule: krum takes parameters \['f', 'p'\], got unknown \['q'\]"):
        build_server(TrainConfig(aggregator="mixtailor", pool="krum[q=3],comed", byzantine=2, attack="none"))


def test_double_oracle_payoffs_count_the_known_attacks(tmp_path, capsys, monkeypatch):
    # a heuristic oracle weaker than the --attacks rows: the printed payoffs "against the
    # attacker's best reply" were the oracle's (100 for both mixes) while an attack listed in
    # the same output did far better against them
    import importlib

    do_mod = importlib.import_module("mixtailor_game.game.double_oracle")  # the package's name is the function

    def weak_oracle(samples, f, rules, **kw):
        return lambda p: ("weak", np.full(len(rules), -100.0))  # loss -100: payoff 100

    monkeypatch.setattr(do_mod, "solvers_oracle", weak_oracle)
    full = tmp_path / "all.json"
    assert main(_do_args(tmp_path, "--do-iterations", "3", "--json", str(full))) == 0
    assert "vulnerability (edge: <AGG, mean> < 0)" in capsys.readouterr().out  # it printed "< -0"
    res = json.loads(full.read_text())
    values = np.array(res["payoff"]["values"])
    do = res["double_oracle"]
    p = np.array(do["defender"])
    assert do["status"] == "converged" and do["gap"] >= -1e-9
    assert do["payoff_double_oracle"] == pytest.approx(np.min(values @ p), abs=1e-9)
    assert do["payoff_uniform"] == pytest.approx(np.min(values.mean(axis=1)), abs=1e-9)
