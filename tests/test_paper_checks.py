"""The paper checks (paper_checks/*.py): argument parsing, run lists, claims, and a smoke run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from mixtailor_game.train.trainer import build_server

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "paper_checks"
SCRIPTS = ["fig1_iid", "fig2_krum_fails", "fig3_noniid", "fig4_random_eps", "fig5_ablation", "fig6_alie"]


def load(name):
    if str(CHECKS) not in sys.path:
        sys.path.insert(0, str(CHECKS))
    if name == "_common":
        return importlib.import_module("_common")  # the scripts import it the same way
    key = f"paper_checks_{name}"
    spec = importlib.util.spec_from_file_location(key, CHECKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_defaults_and_scales(name, tmp_path):
    mod = load(name)
    args = mod.parse_args(["--out", str(tmp_path)])
    assert args.scale == "small" and args.seeds == 1
    for scale in ("tiny", "small", "paper"):
        args = mod.parse_args(["--scale", scale, "--out", str(tmp_path)])
        runs, settings = mod.build_runs(args)
        assert runs and settings
        C = load("_common")
        for run in runs:
            cfg = C.TrainConfig.from_dict(C.config_for(run, 0))   # every config is valid
            build_server(cfg)                                      # and every rule is in its regime
            assert cfg.steps == C.SCALE_SETTINGS[scale]["steps"]
            if scale == "paper":
                assert (cfg.model, cfg.lr, cfg.momentum in (0.0, 0.9)) == ("paper_cnn", 0.001, True)
        labels = [(r.panel, r.label) for r in runs]
        assert len(labels) == len(set(labels)), "two curves share a panel and a label"


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize("bad", [["--scale", "huge"], ["--steps", "0"], ["--seeds", "0"],
                                 ["--data-dir", "/nonexistent/dir"]])
def test_bad_arguments_exit_with_a_message(name, bad, capsys):
    mod = load(name)
    with pytest.raises(SystemExit) as exc:
        mod.parse_args(bad)
    assert exc.value.code != 0


@pytest.mark.parametrize("name", SCRIPTS)
def test_shared_flags_and_help(name, capsys):
    mod = load(name)
    with pytest.raises(SystemExit) as exc:
        mod.parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--scale", "--out", "--runs-dir", "--data-dir", "--steps", "--eval-every", "--seeds", "--seed",
                 "--device", "--engine"):
        assert flag in text
    assert mod.__doc__.strip().split("\n\n")[0].split()[0] in text


@pytest.mark.parametrize("name,argv", [("fig2_krum_fails", ["--batch-size", "0"]),
                                       ("fig3_noniid", ["--workers", "4"]),
                                       ("fig3_noniid", ["--workers", "12", "--bucket", "13"]),
                                       ("fig3_noniid", ["--resampling", "shuffle"])])
def test_script_specific_checks(name, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).parse_args(argv)
    assert exc.value.code != 0
    if isinstance(exc.value.code, str):
        assert exc.value.code.startswith("paper_checks: --") and " must be " in exc.value.code


def test_paper_settings_follow_table_1(tmp_path):
    fig1 = load("fig1_iid")
    args = fig1.parse_args(["--scale", "paper", "--out", str(tmp_path), "--cifar-dir", str(tmp_path)])
    runs, _ = fig1.build_runs(args)
    by_ds = {r.config["dataset"]: r.config for r in runs}
    assert set(by_ds) >= {"cifar10"}
    mn = next(c for d, c in by_ds.items() if d != "cifar10")
    assert (mn["steps"], mn["batch_size"], mn["weight_decay"]) == (50_000, 50, 1e-4)
    cf = by_ds["cifar10"]
    # A.8: one 2-conv + 2-fc network for both data sets
    assert (cf["model"], cf["steps"], cf["batch_size"]) == ("paper_cnn", 40_000, 80)
    assert {r.label for r in runs} == {"omniscient", "krum", "comed", "mixtailor"}
    assert {r.config["attack_params"]["eps"] for r in runs} == {0.1, 10.0}


def test_specific_settings(tmp_path):
    out = ["--scale", "small", "--out", str(tmp_path)]
    runs, _ = load("fig2_krum_fails").build_runs(load("fig2_krum_fails").parse_args(out))
    assert {r.config["batch_size"] for r in runs} == {128}
    assert {r.config["attack_params"]["eps"] for r in runs} == {0.2}
    f3 = load("fig3_noniid")
    runs, settings = f3.build_runs(f3.parse_args(out))
    assert {r.config["partition"] for r in runs} == {"label"}
    assert {r.config["workers"] for r in runs} == {12, 24}
    C = load("_common")
    for n, pool, rules in ((12, "families:krum,comed,geomed", 48), (24, "paper", 64)):
        mix = [r for r in runs if r.config["workers"] == n and r.label == "mixtailor+resampling(s=2)"]
        assert len(mix) == 1
        cfg = C.config_for(mix[0], 3)
        assert cfg["aggregator"] == "mixtailor" and cfg["bucketing"] == 2 and cfg["bucketing_mode"] == "resample"
        assert cfg["deterministic_draw"] and cfg["seed"] != C.config_for(mix[0], 4)["seed"]
        server = build_server(C.TrainConfig.from_dict(cfg))
        assert server.rule.f == 2 and server.rule.mode == "resample" and server.rule.base.f == 4
        assert len(server.mixtailor.pool) == rules and {r.f for r in server.mixtailor.pool} == {4}
        plain = [r for r in runs if r.config["workers"] == n and r.label == "mixtailor (no resampling)"]
        assert plain[0].config["pool"] == pool
        panel = mix[0].panel
        assert settings[panel]["base_f"] == 4 and settings[panel]["pool_rules"] == rules
    runs, _ = f3.build_runs(f3.parse_args(out + ["--resampling", "buckets", "--workers", "24"]))
    assert any(r.config.get("bucketing") == 2 and r.config["aggregator"] == "mixtailor" for r in runs)
    f4 = load("fig4_random_eps")
    runs, _ = f4.build_runs(f4.parse_args(out))
    f4runs = [r for r in runs if r.config["byzantine"] == 4]
    assert f4runs and all(r.config["pool"] == "families:krum,comed,geomed" for r in f4runs)
    assert any(r.config["attack"] == "random_eps" for r in runs)
    f5 = load("fig5_ablation")
    runs, _ = f5.build_runs(f5.parse_args(out))
    pools = {r.config["pool"] for r in runs if r.config["aggregator"] == "mixtailor"}
    assert pools == {"paper", "families:comed,geomed,bulyan", "families:krum,geomed,bulyan",
                     "families:krum,comed,bulyan", "families:krum,comed,geomed"}
    f6 = load("fig6_alie")
    runs, _ = f6.build_runs(f6.parse_args(out))
    assert {(r.config["attack"], r.config["momentum"]) for r in runs} == {("alie", 0.0)}


def test_claims_verdicts_follow_the_numbers(tmp_path):
    C = load("_common")
    fig1 = load("fig1_iid")
    args = fig1.parse_args(["--scale", "tiny", "--out", str(tmp_path)])

    def tab(krum, comed, mix):
        return {f"digits eps={e:g}": {"omniscient": {"tail": 0.9}, "krum": {"tail": krum[i]},
                                      "comed": {"tail": comed[i]}, "mixtailor": {"tail": mix[i]}}
                for i, e in enumerate((0.1, 10.0))}

    good = {c["claim"]: c["verdict"] for c in fig1.make_claims(tab((0.3, 0.85), (0.88, 0.4), (0.89, 0.885)), args)}
    assert set(good.values()) == {"reproduced"}
    bad = {c["claim"]: c["verdict"] for c in fig1.make_claims(tab((0.89, 0.85), (0.88, 0.87), (0.7, 0.6)), args)}
    assert bad["MixTailor within 2% of omniscient (digits, iid)"] == "not reproduced"
    assert bad["Krum fails at eps 0.1 (digits)"] == "not reproduced"
    missing = fig1.make_claims({}, args)
    assert {c["verdict"] for c in missing} == {"not run"}
    assert C.fails(0.5, 0.9) and not C.fails(0.85, 0.9) and C.fails(None, 0.9) is None
    with pytest.raises(ValueError, match="verdict"):
        C.claim("x", "y", "z", "maybe")


def test_fig2_defends_claim_needs_krum_to_fail(tmp_path):
    """"MixTailor defends where Krum fails" is reproduced only when Krum failed and MixTailor did not."""
    fig2 = load("fig2_krum_fails")
    args = fig2.parse_args(["--scale", "tiny", "--out", str(tmp_path)])

    def defends(krum, mix):
        tab = {"digits eps=0.2 batch 128": {"omniscient": {"tail": 0.9}, "krum": {"tail": krum},
                                            "comed": {"tail": 0.88}, "mixtailor": {"tail": mix}}}
        (c,) = [c for c in fig2.make_claims(tab, args) if c["claim"].startswith("MixTailor defends")]
        return c["verdict"], c["why"]

    # the stored small-scale case: Krum 82.1% against 89.5% (hurt, not failed), MixTailor fine
    verdict, why = defends(0.85, 0.89)
    assert verdict == "not reproduced" and why.startswith("premise not met: Krum did not fail")
    assert defends(0.85, 0.5)[0] == "not reproduced"        # neither premise nor defence
    assert defends(0.3, 0.89) == ("reproduced", "")          # Krum failed, MixTailor did not
    assert defends(0.3, 0.5)[0] == "not reproduced"          # both failed
    assert defends(None, 0.89)[0] == "not run" and defends(0.3, None)[0] == "not run"


def test_stored_claims_follow_the_stored_accuracies(tmp_path):
    """Every stored fig*.json's verdicts are what its script's make_claims gives on its stored accuracies.
    The data set named in the stored panels is passed explicitly: without ``../shared/data/mnist`` (a
    fresh clone in CI) the scripts fall back to digits and would look for digits panels."""
    files = sorted((CHECKS / "results").glob("fig*.json")) + sorted((CHECKS / "results").glob("*/fig*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        mod = load(data["experiment"])
        argv = ["--scale", data["scale"]]
        if any(str(k).startswith("mnist") for k in data["accuracy"]):
            argv += ["--data-dir", str(tmp_path)]  # only named, never read by make_claims
        if data["experiment"] == "fig1_iid":   # the eps actually run
            argv += ["--eps"] + sorted({k.split("eps=")[1] for k in data["accuracy"]}, key=float)
        got = mod.make_claims(data["accuracy"], mod.parse_args(argv))
        key = lambda cs: [(c["setting"], c["measured"], c["verdict"], c["why"]) for c in cs]  # noqa: E731
        assert key(got) == key(data["claims"]), path.name


def test_claims_table_names_the_run_length_of_nested_settings(tmp_path):
    """A shortened paper-scale Fig. 3 run (lengths inside settings[panel]["config"]) must not read as 50K steps."""
    table = load("claims_table")
    claim = {"claim": "c", "setting": "s", "measured": "m", "verdict": "reproduced", "why": ""}
    fig3 = {"experiment": "fig3_noniid", "scale": "paper", "seeds": [0], "claims": [claim],
            "settings": {"draw": "seeded from the run seed",
                         "panel n=12": {"n": 12, "config": "mnist, paper_cnn, n=12, f=2, 500 steps, batch 50"},
                         "panel n=24": {"n": 24, "config": "mnist, paper_cnn, n=24, f=2, 500 steps, batch 50"}}}
    (tmp_path / "fig3_noniid.json").write_text(json.dumps(fig3))
    # no length in the settings: the runs' configs give it
    runs_only = {"experiment": "fig9", "scale": "small", "seeds": [0, 1], "claims": [claim], "settings": {},
                 "runs": [{"config": {"steps": 120}}, {"config": {"steps": 120}}]}
    (tmp_path / "fig9.json").write_text(json.dumps(runs_only))
    lines = table.rows(tmp_path)
    assert lines[2].startswith("| fig3_noniid (paper, 500 steps, 1 seed) |")
    assert lines[3].startswith("| fig9 (small, 120 steps, 2 seeds) |")
    for line in table.rows(CHECKS / "results")[2:]:
        assert " steps, " in line.split(" | ")[0], line   # every committed row names its length


def test_tail_accuracy_and_table():
    C = load("_common")
    assert C.tail_accuracy([[1, 0.1], [2, 0.5], [3, 0.6], [4, 0.7]]) == pytest.approx(0.6)
    assert C.tail_accuracy([]) is None
    recs = [{"panel": "p", "label": "a", "tail_accuracy": t, "final_accuracy": t} for t in (0.4, 0.6)]
    tab = C.table(recs)
    assert tab["p"]["a"]["tail"] == pytest.approx(0.5) and tab["p"]["a"]["tail_std"] == pytest.approx(0.1)


@pytest.mark.slow
def test_smoke_run_writes_json_and_png(tmp_path):
    """fig6 at the tiny scale (digits, logistic regression, a few steps) end to end, then resumed."""
    mod = load("fig6_alie")
    argv = ["--scale", "tiny", "--steps", "6", "--eval-every", "3", "--out", str(tmp_path)]
    assert mod.main(argv) == 0
    data = json.loads((tmp_path / "fig6_alie.json").read_text())
    png = tmp_path / "fig6_alie.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["scale"] == "tiny" and len(data["runs"]) == 4
    assert {r["label"] for r in data["runs"]} == {"omniscient", "krum", "comed", "mixtailor"}
    for r in data["runs"]:
        assert r["summary"]["steps"] == 6 and r["curve"][-1][0] == 6
        assert 0.0 <= r["final_accuracy"] <= 1.0
    assert data["claims"] and data["claims"][0]["verdict"] in ("reproduced", "not reproduced")
    # rerunning reuses the finished run directories and gives the same numbers
    assert mod.main(argv) == 0
    again = json.loads((tmp_path / "fig6_alie.json").read_text())
    assert again["accuracy"] == data["accuracy"]
