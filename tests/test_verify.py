"""mixtailor_game.verify: estimators, adversary search, and the three checkers end to end."""

import json

import pytest
import torch

from mixtailor_game.rules import make_rule
from mixtailor_game.verify import bias_squared, mean_estimate, moment_ratios, run_case
from mixtailor_game.verify.adversaries import Family, builtin_families, largest_selected, outputs_byzantine
from mixtailor_game.verify.cli import main
from mixtailor_game.verify.report import exit_code, upper_bound_verdict
from mixtailor_game.verify.sampling import heterogeneous_offsets, sample_noise, search_directions

TINY = ["--n", "7", "--f", "2", "--d", "2", "--p", "2", "--laws", "gaussian", "--trials", "40",
        "--search-trials", "30", "--directions", "e1", "--no-registry"]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_bias_squared_recovers_a_known_bias_within_its_ci():
    # U = honest mean + b: ||E[U] - g||^2 = ||b||^2 exactly; count CI coverage over seeds
    b = torch.tensor([0.6, -0.3, 0.0, 0.2], dtype=torch.float64)
    truth = float(b @ b)
    covered = 0
    for seed in range(40):
        U = torch.randn(300, 4, generator=gen(seed), dtype=torch.float64) + b
        e = bias_squared(U, torch.zeros(4, dtype=torch.float64))
        covered += e.lo <= truth <= e.hi
    assert covered >= 34  # nominal 95%: 38 expected of 40


def test_bias_squared_is_unbiased_where_the_plug_in_is_not():
    vals, plug = [], []
    for seed in range(200):
        U = torch.randn(50, 20, generator=gen(1000 + seed), dtype=torch.float64)  # E[U] = 0
        vals.append(bias_squared(U, torch.zeros(20, dtype=torch.float64)).value)
        plug.append(float(U.mean(0).square().sum()))
    # U-statistic centred on 0 (sd of this mean: sqrt(2 * 20 / (50 * 49)) / sqrt(200) = 0.009)
    assert abs(sum(vals) / 200) < 0.03
    assert sum(plug) / 200 == pytest.approx(20 / 50, rel=0.1)  # plug-in: tr(Sigma) / T


def test_mean_estimate_and_moment_ratios():
    x = torch.arange(10, dtype=torch.float64)
    e = mean_estimate(x)
    assert e.value == pytest.approx(4.5) and e.lo < 4.5 < e.hi
    H = torch.ones(5, 3, 2, dtype=torch.float64)
    r = moment_ratios(2 * torch.ones(5, 2, dtype=torch.float64), H)
    assert r == pytest.approx({2: 4.0, 3: 8.0, 4: 16.0})


class PickLast:
    """A rule that outputs the last row (the Byzantine one): bias is the adversary's offset."""
    f = 1

    def check(self, n):
        pass

    def batched(self, Gb):
        return Gb[:, -1].clone()


def test_run_case_recovers_a_constructed_bias():
    # honest mean + a u with a = 1.5 sigma: ||E[U] - grad F||^2 = 2.25 sigma^2
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)

    def make(H, only=None):
        return (H.mean(1) + 1.5 * u)[None, :, None, :]

    fam = Family("constructed", ("mean+1.5u",), make)
    r = run_case(dict(law="gaussian", n=7, f=1, d=3, p=2.0, delta2=0.0), theorem=1, trials=400,
                 families=[fam], rule=PickLast(), seed=3)
    e = r["estimate"]
    assert e["lo"] <= 2.25 <= e["hi"]
    assert r["worst_adversary"] == "mean+1.5u" and r["byzantine_selected"] == 1.0


def test_noise_laws_have_the_stated_second_moment():
    for law in ("gaussian", "student-t"):
        x = sample_noise(law, (40000, 20), 2.0, gen(1))
        assert float(x.square().sum(-1).mean()) == pytest.approx(2.0, rel=0.08)
        assert float(x.mean()) == pytest.approx(0.0, abs=0.02)
    with pytest.raises(ValueError, match="sample_noise: law must be one of"):
        sample_noise("cauchy", (2, 2), 1.0, gen())


@pytest.mark.parametrize("kind", ["spread", "outlier", "split"])
@pytest.mark.parametrize("m", [2, 5, 8])
def test_heterogeneous_offsets_meet_assumption1_with_equality(kind, m):
    h = heterogeneous_offsets(kind, m, 4, 0.7, gen())
    assert torch.allclose(h.sum(0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert float(h.square().sum(-1).mean()) == pytest.approx(0.7)


def test_search_directions_deduplicate_in_one_dimension():
    dirs = search_directions(torch.tensor([1.0], dtype=torch.float64), gen())
    assert sorted(float(u) for u in dirs.values()) == [-1.0, 1.0]


def test_largest_selected_is_the_edge_of_krums_selection():
    rule = make_rule("krum", f=2, p=2.0)
    H = torch.randn(5, 6, 3, generator=gen(2), dtype=torch.float64)
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(5, -1)
    c = H.mean(1)
    lam = largest_selected(rule, H, c, u, 2, 1.0)
    at = outputs_byzantine(rule, H, (c + lam[:, None] * u)[:, None].expand(5, 2, 3))[1]
    past = outputs_byzantine(rule, H, (c + (lam * 1.01 + 1e-3)[:, None] * u)[:, None].expand(5, 2, 3))[1]
    assert bool(at[lam > 0].all()) and not bool(past.any())


def test_builtin_families_shapes_and_krum_rule_used():
    rule = make_rule("krum", f=2, p=2.0)
    g = torch.tensor([1.0, 0.0], dtype=torch.float64)
    fams = builtin_families(n=7, f=2, g=g, sigma=1.0, rule=rule, directions=search_directions(g, gen()))
    H = torch.randn(8, 5, 2, generator=gen(), dtype=torch.float64)
    for fam in fams:
        B = fam.make(H)
        assert B.shape == (len(fam.labels), 8, 2, 2)
        assert torch.equal(fam.pick(H, len(fam.labels) - 1), B[-1]) or fam.name == "krum-edge"
    assert {f.name for f in fams} >= {"fixed", "mean+offset", "top+offset", "ipm", "alie", "krum-edge"}


def test_verdicts_and_exit_codes():
    assert upper_bound_verdict(2.0, 3.0, 1.0) == "VIOLATED"
    assert upper_bound_verdict(0.1, 0.5, 1.0) == "holds"
    assert upper_bound_verdict(0.5, 1.5, 1.0) == "inconclusive"
    assert exit_code(["holds", "no-claim"]) == 0
    assert exit_code(["holds", "inconclusive"]) == 2
    assert exit_code(["inconclusive", "VIOLATED"]) == 1


@pytest.mark.parametrize("command", ["theorem1", "theorem2"])
def test_theorem_checkers_run_and_hold(command, tmp_path, capsys):
    path = tmp_path / "out.json"
    extra = ["--delta2", "0.5", "--hetero", "outlier"] if command == "theorem2" else []
    code = main([command, "--quick", *TINY, *extra, "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    payload = json.loads(path.read_text())
    case = payload["cases"][0]
    assert case["status"] == "holds" and case["bound"] > case["estimate"]["hi"]
    assert set(case["moment_ratios"]) == {"2", "3", "4"}
    assert "worst adversary" in out and "exit 0" in out


@pytest.mark.parametrize("command", ["theorem1", "theorem2"])
def test_a_too_small_bound_is_reported_violated(command, capsys):
    code = main([command, "--quick", *TINY, "--bound-scale", "1e-6"])
    out = capsys.readouterr().out
    assert code == 1
    assert "VIOLATED: theorem" in out


PROP = ["--problems", "quadratic", "--scenarios", "ipm-small", "--trials", "150", "--points", "2"]


def test_proposition1_runs_and_holds(tmp_path, capsys):
    path = tmp_path / "p.json"
    code = main(["proposition1", "--quick", *PROP, "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    s = json.loads(path.read_text())["scenarios"][0]
    assert any("krum" in name for name in s["compromised"]) and s["resilient"]
    assert s["threshold"] > 1 and any(r["claim"] for r in s["sweep"])
    # where the proposition claims positivity the mixture is positive
    assert all(r["actually_positive"] for r in s["sweep"] if r["claim"])


def test_proposition1_too_small_threshold_is_violated(capsys):
    code = main(["proposition1", "--quick", *PROP, "--bound-scale", "1e-6"])
    out = capsys.readouterr().out
    assert code == 1
    assert "VIOLATED: quadratic/ipm-small" in out


def test_grid_outside_the_regime_is_an_error(capsys):
    code = main(["theorem1", "--quick", "--n", "6", "--f", "2", "--d", "1", "--p", "2", "--no-registry"])
    assert code == 3
    assert "needs n > 2f + 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["theorem1", "--d", "0"], ["proposition1", "--points", "0"]])
def test_sizes_below_one_are_usage_errors_not_violations(argv, capsys):
    # exit 1 means "a bound was violated": a crash there read as a false violation; and
    # argparse's own exit 2 read as "inconclusive": usage errors are 3, in one line
    assert main([argv[0], "--quick", *argv[1:]]) == 3
    err = capsys.readouterr().err
    assert "must be an integer >= 1, got 0" in err and len(err.strip().splitlines()) == 1


def test_grad_norm_must_be_finite_and_positive(capsys):
    """--grad-norm nan ran to a NaN estimate and exited 2 ("inconclusive"); -1 was taken."""
    for bad in ("nan", "inf", "-1"):
        assert main(["theorem1", "--quick", "--grad-norm", bad]) == 3
        assert "argument --grad-norm: must be finite and > 0" in capsys.readouterr().err


def test_a_run_where_no_case_makes_a_claim_is_not_a_pass():
    """Proposition 1 with thresholds beyond the sweep makes no claim anywhere: it exited 0."""
    assert exit_code(["no-claim", "no-claim"]) == 2
    assert exit_code(["no-claim", "holds"]) == 0


def test_an_unwritable_json_path_fails_before_the_run(tmp_path, capsys):
    """--json under a file crashed with FileExistsError after every case had run."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code = main(["proposition1", "--quick", "--json", str(blocker / "x.json")])
    out = capsys.readouterr()
    assert code == 3 and "error: --json" in out.err and out.out == ""


def test_threads_flag_sets_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that the flag's 1 is observable
    try:
        assert main(["theorem1", "--threads", "0"]) == 3
        code = main(["theorem1", "--threads", "1", "--json", "/dev/null/x.json"])  # fails fast, after the set
        assert code == 3 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_proposition1_sweep_reaches_thresholds_above_one_hundred():
    """The sweep stopped at r = 400 resilient entries (M/q <= 101 at q = 4): the ipm-large
    thresholds (538, 1066) made no claim. Both sides of each threshold are swept now."""
    from mixtailor_game.verify.proposition1 import _sweep_values

    rs = _sweep_values(4, [538.0, 1066.0])
    ratios = [(4 + r) / 4 for r in rs]
    for t in (538.0, 1066.0):
        assert any(x <= t for x in ratios) and any(t < x < 1.01 * t for x in ratios)


def test_proposition1_rows_show_the_point_that_decides_their_status():
    """A row showed the CI of its lowest estimate while its status read every point: an
    "inconclusive" row printed [0.000106, 0.00231], above 0 (under the old 400-entry
    sweep; the sweep points here did not hit it, so this is a regression net)."""
    from mixtailor_game.verify.proposition1 import run_proposition1

    payload = run_proposition1(quick=True, trials=None, seed=0, bound_scale=1e-6, problems=["logistic"],
                               scenarios=["ipm-large"], n=None, f=None, d=None, sigma2=None, q=4, points=None)
    rows = [row for s in payload["scenarios"] for row in s["sweep"]]
    assert any(r["status"] == "inconclusive" for r in rows)
    for r in rows:
        lo, hi = r["inner"]["lo"], r["inner"]["hi"]
        if r["status"] == "inconclusive":
            assert lo <= 0 <= hi
        elif r["status"] == "VIOLATED":
            assert hi < 0
        elif r["status"] == "holds":
            assert lo > 0


# ----------------------------------------------------------------------------- audit (verify checkers)
def test_a_proposition1_run_with_no_testable_scenario_exits_2(capsys):
    """With sigma^2 = 1e-6 IPM(0.1) compromises no rule: every sweep is empty and the run
    printed "nothing was tested (exit 2)" but exited 0 ("every case holds")."""
    assert exit_code([]) == 2
    code = main(["proposition1", "--quick", "--problems", "quadratic", "--scenarios", "ipm-small",
                 "--sigma2", "1e-6", "--trials", "60", "--points", "2"])
    out = capsys.readouterr().out
    assert "no compromised rule" in out
    assert code == 2 and "exit 2" in out and "exit 0" not in out


@pytest.mark.parametrize("scenario", ["ipm-small", "ipm-large"])
def test_proposition1_lambda_bounds_the_measured_inner_products(scenario):
    """Eq. (4) of Appendix A.3, E[U_i]^T grad F >= -lambda L, on the checker's own estimates.
    lambda was sqrt of an unbiased ||E U||^2 (biased downward, not upward as documented):
    Krum's -0.39560 fell below -lambda L = -0.39555 (ipm-small), the mean's -143.353 below
    -143.333 (ipm-large). The sweep rows obey the proposition's lower bound likewise."""
    from mixtailor_game.verify.proposition1 import run_scenario

    r = run_scenario("quadratic", scenario, n=11, f=4, d=10, sigma2=4.0, trials=300, points=3, q=4,
                     bound_scale=1.0, seed=0)
    L, lam, beta = r["L"], r["lam"], r["beta_min"]
    for rule in r["rules"]:
        for e, norm in zip(rule["inner"], rule["norm_mean"]):
            assert e["value"] >= -norm * L * (1 + 1e-12)
    for row in r["sweep"]:
        M, q = row["M"], row["q"]
        assert row["inner"]["value"] >= ((M - q) * beta - q * lam * L) / M - 1e-12 * lam * L
        if row["claim"]:
            assert row["inner"]["value"] > 0 and row["status"] != "VIOLATED"


def test_proposition1_accepts_any_integer_seed_and_is_deterministic(capsys):
    """--seed -1 ended in numpy's "error: expected non-negative integer" (exit 3, no
    parameter named); the theorem checkers take any int (seed mod 2^32)."""
    from mixtailor_game.verify.proposition1 import run_scenario

    argv = ["proposition1", "--problems", "quadratic", "--scenarios", "ipm-small", "--trials", "40",
            "--points", "1"]
    assert main([*argv, "--seed", "-1"]) in (0, 2)
    assert "error" not in capsys.readouterr().err
    kw = dict(n=11, f=4, d=3, sigma2=4.0, trials=40, points=2, q=4, bound_scale=1.0)
    a, b = (run_scenario("quadratic", "ipm-small", seed=5, **kw) for _ in range(2))
    c = run_scenario("quadratic", "ipm-small", seed=5 + 2**32, **kw)
    for x in (b, c):
        assert x["sweep"] == a["sweep"] and x["rules"] == a["rules"]


def test_moment_ratios_are_not_printed_where_the_moment_is_infinite():
    """Student t_3 noise has E||G||^3 = E||G||^4 = inf: the table printed m3 = 2.43, m4 = 2.40,
    ratios of sample means that estimate nothing."""
    kw = dict(theorem=1, trials=40, search_trials=20, registry=False, directions=("e1",))
    t = run_case(dict(law="student-t", n=7, f=2, d=2, p=2.0, delta2=0.0), **kw)["moment_ratios"]
    g = run_case(dict(law="gaussian", n=7, f=2, d=2, p=2.0, delta2=0.0), **kw)["moment_ratios"]
    assert t[3] is None and t[4] is None and t[2] > 0
    assert all(isinstance(g[r], float) for r in (2, 3, 4))


def test_the_theorem1_check_fails_for_a_rule_that_is_not_krum():
    """Power: the same search against the plain mean (no robustness) must find a violation
    of Theorem 1's bound at scale 1, else "holds" would say nothing."""
    r = run_case(dict(law="gaussian", n=7, f=2, d=2, p=2.0, delta2=0.0), theorem=1, trials=60, search_trials=30,
                 registry=False, directions=("e1",), rule=make_rule("mean"))
    assert r["status"] == "VIOLATED" and r["estimate"]["lo"] > r["bound"]


def test_docstring_examples_of_the_checkers_hold():
    """bias_squared's example claimed its CI covers the truth at seed 0, one of the 5% of
    seeds where it does not (0.925 [0.865, 0.986] for 1); no test ran the examples."""
    import doctest

    from mixtailor_game import theory
    from mixtailor_game.verify import estimate

    for module in (theory, estimate):
        assert doctest.testmod(module, verbose=False).failed == 0, module.__name__


@pytest.mark.parametrize("command", ["theorem1", "theorem2"])
def test_a_killed_theorem_run_resumes_with_the_cases_it_finished(command, tmp_path, monkeypatch, capsys):
    """The full grids run for hours: --json is rewritten after every case, and --resume
    keeps those cases and runs the rest; the result is the uninterrupted run's."""
    from mixtailor_game.verify import cli

    grid = [*TINY[:6], "--p", "2", "3", "4", *TINY[8:]]
    extra = ["--delta2", "0.5", "--hetero", "outlier"] if command == "theorem2" else []
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    assert main([command, *grid, *extra, "--json", str(whole)]) == 0
    capsys.readouterr()

    real, calls = cli.run_case, []

    def dies_on_the_third(case, **kw):
        calls.append(case["p"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(case, **kw)

    monkeypatch.setattr(cli, "run_case", dies_on_the_third)
    assert main([command, *grid, *extra, "--json", str(part)]) == 130
    assert "interrupted; the finished cases are in" in capsys.readouterr().err
    kept = json.loads(part.read_text())
    assert kept["complete"] is False and [c["p"] for c in kept["cases"]] == [2.0, 3.0]

    calls.clear()
    monkeypatch.setattr(cli, "run_case", lambda case, **kw: calls.append(case["p"]) or real(case, **kw))
    assert main([command, *grid, *extra, "--json", str(part), "--resume"]) == 0
    err = capsys.readouterr().err
    assert calls == [4.0]
    assert "2 finished case(s) kept" in err and err.count("kept from the checkpoint") == 2
    assert f"{command} [3/3]" in err

    def cases(path):
        return [{k: v for k, v in c.items() if k != "wall_s"} for c in json.loads(path.read_text())["cases"]]

    assert json.loads(part.read_text())["complete"] is True
    assert cases(part) == cases(whole)


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    path = tmp_path / "run.json"
    assert main(["theorem1", *TINY, "--json", str(path)]) == 0
    capsys.readouterr()
    other = [*TINY[:10], "--trials", "50", *TINY[12:]]
    assert main(["theorem1", *other, "--json", str(path), "--resume"]) == 3
    assert "written with trials=40, this run has trials=50" in capsys.readouterr().err
    assert main(["theorem2", *TINY, "--json", str(path), "--resume"]) == 3
    assert "command='theorem1'" in capsys.readouterr().err
    assert main(["theorem1", *TINY, "--resume"]) == 3
    assert "--resume needs --json" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert main(["theorem1", *TINY, "--json", str(junk), "--resume"]) == 3
    assert "no run settings" in capsys.readouterr().err
    payload = json.loads(path.read_text())
    payload["cases"][0].pop("law")
    junk.write_text(json.dumps(payload))
    assert main(["theorem1", *TINY, "--json", str(junk), "--resume"]) == 3
    assert "its case 0 is not a checker result" in capsys.readouterr().err


def test_cases_in_worker_processes_are_the_serial_ones(tmp_path, capsys, monkeypatch):
    from mixtailor_game.verify import cli

    grid = [*TINY[:6], "--p", "2", "3", "4", *TINY[8:]]
    serial, parallel = tmp_path / "serial.json", tmp_path / "parallel.json"
    assert main(["theorem1", *grid, "--json", str(serial)]) == 0

    def not_here(case, **kw):
        raise AssertionError("--jobs 2 ran a case in the checker's own process")

    monkeypatch.setattr(cli, "run_case", not_here)  # the spawned workers import the real one
    assert main(["theorem1", *grid, "--json", str(parallel), "--jobs", "2"]) == 0
    assert capsys.readouterr().err.count("theorem1 [") == 6

    def cases(path):
        return [{k: v for k, v in c.items() if k != "wall_s"} for c in json.loads(path.read_text())["cases"]]

    assert [c["p"] for c in cases(parallel)] == [2.0, 3.0, 4.0]
    assert cases(parallel) == cases(serial)
    assert main(["theorem1", *grid, "--jobs", "0"]) == 3


def test_progress_lines_estimate_the_time_left_per_worker():
    import io

    from mixtailor_game.verify.checkpoint import Progress

    out = io.StringIO()
    progress = Progress("theorem1", 4, stream=out, jobs=2)
    case = dict(law="gaussian", n=7, f=2, d=2, p=2.0, delta2=None, status="holds", ratio=0.1)
    progress.case(case, None)
    progress.case(case, 10.0)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("kept from the checkpoint") and "[1/4]" in lines[0]
    assert "[2/4]" in lines[1] and "10.0 s;" in lines[1] and lines[1].endswith("~10 s left")  # 2 left x 10 s / 2
