"""The simulated trainer: engines agree inside it, seeded runs repeat, it learns,
Krum is hurt by the tailored attack, bad settings fail before the first step."""

import json

import pytest
import torch

from mixtailor_game.train import TrainConfig, Trainer, read_metrics, train

# A small, fast setting: digits, logistic regression, n = 12, f = 2.
FAST = dict(dataset="digits", model="logreg", workers=12, byzantine=2, batch_size=16, lr=0.05,
            eval_every=10, seed=3)


def cfg(**kw):
    return TrainConfig(**dict(FAST, **kw))


@pytest.mark.parametrize("aggregator", ["omniscient", "krum"])
def test_loop_and_vmap_engines_agree_inside_the_trainer(aggregator):
    runs = {}
    for engine in ("loop", "vmap"):
        t = Trainer(cfg(aggregator=aggregator, attack="ipm", steps=8, engine=engine))
        rows = [t.train_step() for _ in range(8)]
        runs[engine] = (rows, torch.nn.utils.parameters_to_vector(t.model.parameters()).detach())
    (rows_l, w_l), (rows_v, w_v) = runs["loop"], runs["vmap"]
    assert [r["rule"] for r in rows_l] == [r["rule"] for r in rows_v]
    for a, b in zip(rows_l, rows_v):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
        assert a["cosine"] == pytest.approx(b["cosine"], rel=1e-4, abs=1e-5)
    torch.testing.assert_close(w_l, w_v, rtol=1e-4, atol=1e-5)
    # and the run moved away from its initial point
    t0 = Trainer(cfg(aggregator=aggregator, steps=8))
    assert not torch.allclose(w_l, torch.nn.utils.parameters_to_vector(t0.model.parameters()).detach())


def test_seeded_cpu_run_is_reproducible(tmp_path):
    c = cfg(aggregator="mixtailor", pool="krum,comed,geomed", deterministic_draw=True, attack="ipm",
            byzantine_mode="random", steps=25)
    s1 = train(c, tmp_path / "a")
    s2 = train(c, tmp_path / "b")
    m1, m2 = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert len(m1) == 25 and m1 == m2
    assert s1["test_accuracy"] == s2["test_accuracy"]
    # the draw and the Byzantine set really vary from step to step
    assert len({r["rule"] for r in m1}) > 1
    assert len({tuple(r["byzantine"]) for r in m1}) > 1
    # another seed gives another run
    train(c.replace(seed=4), tmp_path / "c")
    m3 = read_metrics(tmp_path / "c")
    assert [r["loss"] for r in m3] != [r["loss"] for r in m1]


def test_mixtailor_draw_uses_os_entropy_without_the_flag():
    c = cfg(aggregator="mixtailor", pool="krum,comed,geomed", attack="ipm", steps=30)
    t1, t2 = Trainer(c), Trainer(c)
    seq1 = [t1.train_step()["rule"] for _ in range(30)]
    seq2 = [t2.train_step()["rule"] for _ in range(30)]
    assert seq1 != seq2  # 3^-30 chance of a false failure
    assert t1.server.mixtailor.rng.__class__.__name__ == "SystemRandom"


def test_short_run_learns_on_digits_without_attack():
    s = train(cfg(aggregator="krum", attack="none", steps=80, eval_every=40))
    assert s["test_accuracy"] > 0.8  # chance is 0.1
    assert s["complete"] and s["steps"] == 80


@pytest.mark.slow
def test_krum_under_ipm_is_worse_than_omniscient():
    acc = {}
    for agg in ("omniscient", "krum"):
        acc[agg] = train(TrainConfig(aggregator=agg, attack="ipm", attack_params={"eps": 0.1}, steps=150,
                                     eval_every=50))["test_accuracy"]
    assert acc["omniscient"] > 0.9
    assert acc["krum"] < acc["omniscient"] - 0.05


def test_metrics_and_summary_files(tmp_path):
    s = train(cfg(aggregator="krum", attack="ipm", steps=12, eval_every=5), tmp_path)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert [r["step"] for r in rows if "test_accuracy" in r] == [5, 10, 12]
    assert all(r["rule"] == "krum[p=2]" for r in rows)
    for r in rows:
        assert -1.0 - 1e-9 <= r["cosine"] <= 1.0 + 1e-9
        assert (r["inner"] > 0) == (r["cosine"] > 0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("test_accuracy", "steps", "aggregator", "attack", "wall_time_s"):
        assert key in summary
    assert summary == s and summary["steps"] == 12 and summary["aggregator"] == "krum"
    assert TrainConfig.from_file(tmp_path / "config.json") == cfg(aggregator="krum", attack="ipm", steps=12,
                                                                   eval_every=5)


def test_inner_and_cosine_against_a_direct_computation():
    t = Trainer(cfg(aggregator="omniscient", attack="ipm", steps=1))
    row = t.train_step()
    # omniscient aggregates the honest mean itself: cosine 1, inner = ||mean||^2 > 0
    assert row["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert row["inner"] > 0
    t = Trainer(cfg(aggregator="mean", attack="ipm", attack_params={"eps": 100.0}, steps=1))
    row = t.train_step()
    # mean of 10 honest rows and 2 rows -100 mu: (10 mu - 200 mu) / 12 points against mu
    assert row["cosine"] == pytest.approx(-1.0, abs=1e-5)


def test_snapshots_for_the_game_layer(tmp_path):
    train(cfg(aggregator="krum", attack="ipm", steps=10, save_snapshots=5), tmp_path)
    files = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert files == ["step_000005.pt", "step_000010.pt"]
    snap = torch.load(tmp_path / "snapshots" / "step_000005.pt")
    assert snap["step"] == 5
    assert snap["honest"].shape == (10, 650) and snap["byzantine"].shape == (2, 650)
    torch.testing.assert_close(snap["byzantine"][0], -0.1 * snap["honest"].mean(dim=0))


def test_model_aggregation_with_local_steps():
    c = cfg(aggregator="comed", attack="ipm", space="model", local_steps=2, steps=20, eval_every=10, lr=0.1)
    t = Trainer(c)
    w0 = torch.nn.utils.parameters_to_vector(t.model.parameters()).detach().clone()
    row = t.train_step()
    assert row["rule"] == "comed"
    assert not torch.equal(w0, torch.nn.utils.parameters_to_vector(t.model.parameters()).detach())
    s = t.run()
    assert s["test_accuracy"] > 0.5


def test_model_space_attack_and_tau_checks():
    with pytest.raises(ValueError, match="local_steps must be 1 when space='gradient'"):
        cfg(local_steps=3)
    t = Trainer(cfg(aggregator="krum", attack="ipm", space="model", local_steps=2))
    assert t.attack.space == "model"


def test_label_flipping_data_hook_changes_only_the_byzantine_rows(tmp_path):
    snaps = {}
    for attack in ("none", "label_flip"):
        train(cfg(aggregator="krum", attack=attack, steps=1, save_snapshots=1), tmp_path / attack)
        snaps[attack] = torch.load(tmp_path / attack / "snapshots" / "step_000001.pt")
    assert Trainer(cfg(attack="label_flip")).attack.data_hook is not None
    torch.testing.assert_close(snaps["none"]["honest"], snaps["label_flip"]["honest"])
    assert not torch.allclose(snaps["none"]["byzantine"], snaps["label_flip"]["byzantine"])


# ------------------------------------------------------------------ bad settings fail early
def test_rule_regime_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"krum: needs n > 2f \+ 2, got n=6, f=2"):
        Trainer(cfg(aggregator="krum", workers=6, byzantine=2), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_paper_pool_regime_fails_before_training():
    with pytest.raises(ValueError, match="bulyan: needs"):
        Trainer(cfg(aggregator="mixtailor", workers=10, byzantine=2))


def test_unknown_rule_attack_and_missing_data_dir(tmp_path):
    with pytest.raises(ValueError, match=r"aggregator must be one of .*krum.*omniscient.*got 'kurm'"):
        Trainer(cfg(aggregator="kurm"))
    with pytest.raises(ValueError, match=r"attack must be one of none, .*ipm.*got 'ipn'"):
        Trainer(cfg(attack="ipn"))
    with pytest.raises(ValueError, match=r"data_dir must be an existing directory, got '.*nowhere'"):
        Trainer(cfg(dataset="mnist", data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="make_attack: ipm takes parameters"):
        Trainer(cfg(attack="ipm", attack_params={"epsilon": 0.1}))


def test_probs_must_match_the_pool(tmp_path):
    with pytest.raises(ValueError, match="probs must be 3 numbers"):
        Trainer(cfg(aggregator="mixtailor", pool="krum,comed,geomed", probs="0.5,0.5"))
    probs_file = tmp_path / "eq.json"
    probs_file.write_text(json.dumps({"probs": [0.0, 1.0, 0.0]}))
    t = Trainer(cfg(aggregator="mixtailor", pool="krum,comed,geomed", probs=str(probs_file)))
    assert {t.train_step()["rule"] for _ in range(5)} == {"comed"}


def test_a_game_probs_file_follows_its_rule_names(tmp_path):
    """`game --out` names the pool its probabilities are for: the same rules listed in
    another order took the weights by position (geomed's 1.0 went to Krum, silently);
    a file for another pool or another f is refused."""
    probs_file = tmp_path / "eq.json"
    probs_file.write_text(json.dumps({"pool": ["comed", "krum[p=2]", "geomed[p=2]", "trimmed_mean[b=2]"],
                                      "probs": [0.0, 0.0, 1.0, 0.0], "byzantine": 2}))
    t = Trainer(cfg(aggregator="mixtailor", pool="trimmed_mean,geomed,krum,comed", probs=str(probs_file),
                    byzantine=2))
    assert {t.train_step()["rule"] for _ in range(4)} == {"geomed[p=2]"}
    with pytest.raises(ValueError, match=r"was written for byzantine=2, this run has byzantine=1"):
        Trainer(cfg(aggregator="mixtailor", pool="comed,krum,geomed,trimmed_mean", probs=str(probs_file),
                    byzantine=1))
    with pytest.raises(ValueError, match=r"is for the pool \['comed', 'krum\[p=2\]', .*this run's pool is "
                                         r"\['comed', 'krum\[p=3\]'"):
        Trainer(cfg(aggregator="mixtailor", pool="comed,krum[p=3],geomed,trimmed_mean", probs=str(probs_file),
                    byzantine=2))


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'lerning_rate'; valid keys: dataset, .*lr"):
        TrainConfig.from_dict({"lerning_rate": 0.1})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "wokers": 3}))
    with pytest.raises(ValueError, match="unknown key.*'wokers'"):
        TrainConfig.from_file(path)
    with pytest.raises(ValueError, match="TrainConfig: byzantine must be <= 11, got 12"):
        TrainConfig(byzantine=12)
    with pytest.raises(ValueError, match="TrainConfig: knowledge must be partial:K with 0 < K < n - f = 10"):
        TrainConfig(knowledge="partial:10")
    with pytest.raises(TypeError, match="TrainConfig: steps must be an integer"):
        TrainConfig(steps=1.5)
    with pytest.raises(ValueError, match="probs must be None unless aggregator='mixtailor'"):
        TrainConfig(aggregator="krum", probs="0.5,0.5")


def test_attack_and_aggregator_specs_are_split_into_name_and_params(tmp_path):
    """``attack="ipm[eps=0.5]"``, ``aggregator="nnm[base=geomed[p=3]]"`` (names as the game
    prints them) are the plain config: the same run directory resumes either way."""
    spec = TrainConfig(aggregator="nnm[base=geomed[p=3]]", attack="ipm[eps=0.5]", steps=4, eval_every=4)
    plain = TrainConfig(aggregator="nnm", rule_params={"base": "geomed[p=3]"}, attack="ipm",
                        attack_params={"eps": 0.5}, steps=4, eval_every=4)
    assert spec == plain
    assert TrainConfig(aggregator="krum[p=3]", rule_params={"p": 3}).rule_params == {"p": 3}  # agreeing: fine
    with pytest.raises(ValueError, match=r"TrainConfig: aggregator must be a spec whose parameters agree with "
                       r"rule_params \(\['p'\] differ\), got 'krum\[p=3\]'"):
        TrainConfig(aggregator="krum[p=3]", rule_params={"p": 4})
    with pytest.raises(ValueError, match=r"TrainConfig: attack must be a name or a spec"):
        TrainConfig(attack="ipm[eps=0.5")
    train(spec, out=tmp_path / "run", progress=False)
    summary = train(plain, out=tmp_path / "run", progress=False)  # finished: the same run, not refused
    assert summary["attack_params"] == {"eps": 0.5} and summary["aggregator_name"] == "nnm[base=geomed[p=3]]"


def test_run_directory_of_another_run_is_refused(tmp_path):
    train(cfg(aggregator="krum", attack="ipm", steps=3), tmp_path)
    with pytest.raises(ValueError, match=r"holds a different run \(aggregator: 'krum' in its config.json, 'comed' now\)"):
        Trainer(cfg(aggregator="comed", attack="ipm", steps=3), tmp_path)


@pytest.mark.parametrize("finished", [False, True])
@pytest.mark.parametrize("config_json", ["missing", "garbage"])
def test_checkpoint_of_another_run_is_refused_without_its_config_json(tmp_path, config_json, finished):
    """Also once the run has finished: its summary was handed back to a different run."""
    Trainer(cfg(aggregator="krum", attack="ipm", steps=6), tmp_path).run(max_steps=6 if finished else 3)
    if config_json == "missing":
        (tmp_path / "config.json").unlink()
    else:
        (tmp_path / "config.json").write_text("garbage")
    with pytest.raises(ValueError, match=r"holds a different run \(aggregator: 'krum' in its checkpoint, 'comed' now\)"):
        Trainer(cfg(aggregator="comed", attack="ipm", steps=6), tmp_path).run()
    assert Trainer(cfg(aggregator="krum", attack="ipm", steps=6), tmp_path).run()["steps"] == 6


def test_tuple_probs_resume(tmp_path):
    # config.json holds a list: compared as JSON, the same run
    c = cfg(aggregator="mixtailor", pool="krum,comed", probs=(0.5, 0.5), attack="ipm", steps=4)
    Trainer(c, tmp_path).run(max_steps=2)
    assert Trainer(c, tmp_path).run()["steps"] == 4


def test_standalone_trimmed_mean_trims_f_per_side():
    from mixtailor_game.train.trainer import build_server

    assert build_server(cfg(aggregator="trimmed_mean", byzantine=2)).name == "trimmed_mean[b=2]"
    assert build_server(cfg(aggregator="trimmed_mean", byzantine=2, rule_params={"b": 1})).name == "trimmed_mean[b=1]"


def test_ctrl_c_keeps_the_step_in_progress(tmp_path):
    import os
    import signal

    def interrupt(step, row):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives within the step: it finishes first

    c = cfg(aggregator="comed", attack="ipm", steps=8, checkpoint_every=100, eval_every=100)
    with pytest.raises(KeyboardInterrupt):
        Trainer(c, tmp_path, callback=interrupt).run()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    assert len(read_metrics(tmp_path)) == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ref = tmp_path / "ref"
    assert Trainer(c, tmp_path).run()["steps"] == 8
    train(c, ref)
    assert read_metrics(tmp_path) == read_metrics(ref)


def test_regression_data_trains_iid_only():
    t = Trainer(cfg(dataset="synthetic-quadratic", aggregator="comed", attack="ipm", steps=2))
    assert t.run()["steps"] == 2
    with pytest.raises(ValueError, match="TrainConfig: partition must be 'iid' for a regression data set"):
        Trainer(cfg(dataset="synthetic-quadratic", aggregator="comed", partition="label", steps=2))


def test_bucketing_wraps_any_rule_and_resumes_reproducibly(tmp_path):
    c = cfg(aggregator="krum", bucketing=2, attack="ipm", steps=12, deterministic_draw=True, checkpoint_every=4,
            workers=16, byzantine=2)
    t = Trainer(c)
    assert t.server.rule.name.startswith("bucketing[") and t.server.defense is t.server.rule
    ref = train(c, tmp_path / "ref")
    Trainer(c, tmp_path / "b").run(max_steps=5)
    resumed = Trainer(c, tmp_path / "b").run()
    assert resumed["test_accuracy"] == ref["test_accuracy"]
    assert read_metrics(tmp_path / "b") == read_metrics(tmp_path / "ref")
    m = Trainer(cfg(aggregator="mixtailor", pool="krum,comed", bucketing=2, workers=16, byzantine=2))
    assert m.server.defense is m.server.mixtailor.public  # the pool and its probabilities, never the draw
    assert m.train_step()["rule"] in ("krum[p=2]", "comed")
    with pytest.raises(ValueError, match="bucketing"):
        Trainer(cfg(aggregator="krum", bucketing=3))  # ceil(12/3) = 4 buckets: Krum needs > 2f + 2


def test_resampling_mode_builds_the_pool_for_s_times_f(tmp_path):
    # Paper Fig. 3: s-resampling at n = 12, f = 2, s = 2 -> the base rules see
    # n = 12 rows of which up to 4 are contaminated.
    c = cfg(aggregator="mixtailor", pool="krum,comed,geomed", bucketing=2, bucketing_mode="resample",
            workers=12, byzantine=2, attack="ipm", steps=2, deterministic_draw=True)
    t = Trainer(c)
    assert t.server.name == "bucketing[s=2,mode=resample](" + t.server.mixtailor.name + ")"
    assert {r.f for r in t.server.mixtailor.pool} == {4}
    assert t.server.rule.mode == "resample" and t.server.rule.f == 2
    assert train(c, tmp_path)["steps"] == 2
    k = Trainer(cfg(aggregator="comed", bucketing=2, bucketing_mode="resample", workers=12, byzantine=2))
    assert k.server.rule.base.f == 4
    with pytest.raises(ValueError, match=r"^TrainConfig: bucketing_mode must be 'buckets' unless bucketing \(s\) is set"):
        cfg(aggregator="krum", bucketing_mode="resample")
    with pytest.raises(ValueError, match="bucketing_mode"):
        cfg(aggregator="krum", bucketing=2, bucketing_mode="shuffle")
    with pytest.raises(ValueError, match="krum"):  # Krum at f' = 4 needs n > 10: not with 10 workers
        Trainer(cfg(aggregator="krum", bucketing=2, bucketing_mode="resample", workers=10, byzantine=2))


def test_a_first_step_that_fails_leaves_no_run_behind(tmp_path):
    """Settings only a step can check (alie with one visible row) failed at step 1 and
    left config.json behind: the corrected command was refused as a different run."""
    bad = cfg(attack="alie", knowledge="partial:1", steps=3)
    with pytest.raises(ValueError, match="alie: visible rows must be >= 2"):
        Trainer(bad, tmp_path).run()
    assert not any(tmp_path.iterdir())
    assert Trainer(cfg(attack="alie", knowledge="partial:2", steps=3), tmp_path).run()["steps"] == 3


def test_label_partition_gives_every_digit_to_an_honest_worker():
    """Paper Fig. 3: the good workers each hold one label and together all of them. With
    the Byzantine workers fixed as the last f, MNIST's split at n = 12 left digits 8 and 9
    to the two Byzantine workers alone (the honest model never trained on them)."""
    cfg = TrainConfig(dataset="digits", workers=12, byzantine=2, partition="label", steps=1, seed=0)
    trainer = Trainer(cfg, None)
    y = trainer.train_y
    honest = [s for i, s in enumerate(trainer.shards) if i not in set(trainer._byzantine().tolist())]
    assert len(honest) == 10 and all(len(torch.unique(y[s])) == 1 for s in honest)
    assert {int(y[s][0]) for s in honest} == set(range(10))


def test_a_probs_file_rewritten_before_a_resume_is_refused(tmp_path):
    """config.json keeps a --probs file's path: a file rewritten between a run and its resume
    changed the mix of the remaining steps silently; the checkpoint now keeps the weights."""
    probs_file = tmp_path / "eq.json"
    probs_file.write_text(json.dumps({"probs": [0.0, 1.0, 0.0]}))
    c = cfg(aggregator="mixtailor", pool="krum,comed,geomed", probs=str(probs_file), steps=4)
    Trainer(c, tmp_path / "run").run(max_steps=2)
    probs_file.write_text(json.dumps({"probs": [1.0, 0.0, 0.0]}))
    with pytest.raises(ValueError, match=r"was trained with MixTailor weights \[0.0, 1.0, 0.0\], .* now gives "
                                         r"\[1.0, 0.0, 0.0\]; restore them or use another --out"):
        Trainer(c, tmp_path / "run").run()
    probs_file.write_text(json.dumps({"probs": [0.0, 2.0, 0.0]}))  # the same weights once normalized
    assert Trainer(c, tmp_path / "run").run()["steps"] == 4


@pytest.mark.parametrize("agg", ["omniscient", "mixtailor"])
def test_rule_params_refused_where_no_rule_takes_them(agg):
    from mixtailor_game.train.trainer import build_server

    # were ignored silently: a pool's rules take parameters in --pool entries
    with pytest.raises(ValueError, match=f"TrainConfig: rule_params must be empty for {agg}"):
        build_server(cfg(aggregator=agg, pool="krum,comed", rule_params={"p": 3}))
