"""The (attack, rule) cosine report and the lazy 'adaptive' registry entry."""

import dataclasses
import json
import sys
import types

import pytest
import torch

from mixtailor_game.attacks import make_attack, report
from mixtailor_game.rules import paper_pool


@pytest.fixture
def small(monkeypatch):
    """A few attacks and 8 pool rules (2 per family) keep the test fast; the
    command itself runs the full pool."""
    monkeypatch.setattr(report, "ATTACKS", [a for a in report.ATTACKS if a[0] in ("ipm eps=0.1", "ipm eps=10", "fang_krum")])
    monkeypatch.setattr(report, "paper_pool", lambda f, seed: paper_pool(f, seed)[::8])


def test_report_cosines(small):
    res = report.compute(seed=0, d=20)
    assert res["rules"][-1] == "mixtailor (expected)" and len(res["rows"]) == 3
    by = {r["attack"]: r["cosine"] for r in res["rows"]}
    for cos in by.values():
        assert all(-1 - 1e-9 <= c <= 1 + 1e-9 for c in cos.values())
    # the paper's tailored attacks: small eps defeats Krum, large eps defeats the mean
    assert by["ipm eps=0.1"]["krum p=2"] == pytest.approx(-1.0)
    assert by["ipm eps=10"]["mean"] == pytest.approx(-1.0)
    assert by["fang_krum"]["krum p=2"] < 0
    # the MixTailor column is the uniform average over the pool
    honest, own = report.sample(0, 20)
    from mixtailor_game.attacks import make_view
    B = make_attack("ipm", eps=0.1)(make_view(honest, n=12, f=2, own=own))
    G = torch.cat([B, honest])
    pool = paper_pool(2, 0)[::8]
    expected = sum(report.cosine(r(G), honest.mean(0)) for r in pool) / len(pool)
    assert by["ipm eps=0.1"]["mixtailor (expected)"] == pytest.approx(expected)
    assert report.compute(seed=0, d=20) == res  # seeded: the same table twice


def test_report_command_prints_markdown_and_writes_json(small, tmp_path, capsys):
    path = tmp_path / "r.json"
    assert report.main(["--d", "20", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| attack | mean | comed | trimmed_mean b=2 | krum p=2 |" in out
    assert "| ipm eps=0.1 |" in out
    data = json.loads(path.read_text())
    assert data["params"]["n"] == 12 and data["params"]["f"] == 2 and len(data["rows"]) == 3
    assert report.main(["--d", "0"]) == 2
    assert "report: d must be >= 1, got 0" in capsys.readouterr().err


def test_adaptive_is_imported_lazily_with_the_params(monkeypatch):
    calls = {}

    @dataclasses.dataclass
    class FakeAdaptive:  # make_attack checks the names against its fields
        problem: str = "expected"
        method: str | None = None

        def __post_init__(self):
            calls.update(problem=self.problem, method=self.method)

    fake = types.ModuleType("mixtailor_game.attacks.adaptive")
    fake.AdaptiveAttack = FakeAdaptive
    monkeypatch.setitem(sys.modules, "mixtailor_game.attacks.adaptive", fake)
    att = make_attack("adaptive", problem="p2", method="pgd")
    assert isinstance(att, FakeAdaptive) and calls == {"problem": "p2", "method": "pgd"}
