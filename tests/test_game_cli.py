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
