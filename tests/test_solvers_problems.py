"""Problem dataclasses of solvers/: validation, knowledge completion, spaces, pools."""

import math

import pytest
import torch

import solvers
from mixtailor_game.rules import Comed, Krum, MixTailor, RulePool, TrimmedMean


def V(k=4, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + 1.0


@pytest.mark.parametrize("make, match", [
    (lambda: solvers.P1(V(2), f=2, pool=[Comed(f=2)]), r"P1: needs n > 2f, got n=4, f=2"),
    (lambda: solvers.P3(V(3), f=3, pool=[Comed(f=1)]), r"P3: needs n > 2f, got n=6, f=3"),
    (lambda: solvers.P1(V(), f=1, pool=[Comed(f=1)], eps=-0.1), r"P1: eps must be >= 0, got -0.1"),
    (lambda: solvers.P2(V(), f=1, pool=[], eps=0.0), r"P2: pool must be a non-empty sequence of rules"),
    (lambda: solvers.ExpectedValue(V(), f=1, pool=[Comed(f=1)], probs=[0.5, 0.5]),
     r"ExpectedValue: probs must be a sequence of 1 numbers"),
    (lambda: solvers.ExpectedValue(V(), f=1, pool=[Comed(f=1)] * 2, probs=[0.9, 0.3]),
     r"ExpectedValue: probs must be summing to 1"),
    (lambda: solvers.P3(torch.ones(3, dtype=torch.float64), f=1, pool=[Comed(f=1)]),
     r"P3: honest must be 2-D of shape \(k, d\), got \(3,\)"),
    (lambda: solvers.P3(V(), f=1, pool=[Comed(f=1)], space="model", model=torch.zeros(3)),
     r"P3: model must be a Tensor of shape \(2,\)"),
    (lambda: solvers.P3(V(), f=1, pool=[Comed(f=1)], own=torch.zeros(2, 2)),
     r"P3: own must be None or a Tensor of shape \(1, 2\)"),
    (lambda: solvers.P3(V(), f=1, pool=[Comed(f=1)], knowledge=("partial", 9)),
     r"P3: knowledge k must be <= 4, got 9"),
    (lambda: solvers.P3(V(), f=1, pool=[Comed(f=1)], knowledge="some"), r"P3: knowledge must be"),
    (lambda: solvers.P3(V(3), f=1, pool=[Comed(f=1)], n=6), r"P3: honest must be n - f = 5 rows"),
    (lambda: solvers.P1(V(), f=1, pool=[Comed(f=1)], structure="best"), r"P1: structure must be one of"),
    (lambda: solvers.TailoredAttack(V(), 1, Comed(f=1), objective="cos"), r"TailoredAttack: objective must be one of"),
    (lambda: solvers.TailoredAttack(V(), 1, Comed(f=1), structure="line"), r"TailoredAttack: structure must be one of"),
    (lambda: solvers.P3(V(3), f=1, pool=[Krum(f=1)]), r"krum: needs n > 2f \+ 2, got n=4, f=1"),
])
def test_bad_input_raises_one_line_value_error(make, match):
    with pytest.raises(ValueError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="P3: honest must be a torch.Tensor"):
        solvers.P3([[1.0]], f=1, pool=[Comed(f=1)])
    with pytest.raises(TypeError, match="solvers.solve: problem must be one of"):
        solvers.solve("P3")
    with pytest.raises(TypeError, match="pool entries must be callable"):
        solvers.P3(V(), f=1, pool=[1, 2])


def test_pool_entries_by_name_spec_or_dict_are_the_rules_as_rule_builds():
    """Rule names and specs (as rules' names read and the game writes them) build the
    rules ``as_rule(entry, f)`` builds: the same problem, the same answer."""
    from mixtailor_game.rules import Geomed, as_rule

    X = V(8, 3, seed=1)
    by_object = solvers.P3(X, 2, [Krum(f=2, p=3.0), Geomed(f=2, p=3.0), TrimmedMean(b=2)])
    for pool in (["krum[p=3]", "geomed[p=3]", "trimmed_mean"],
                 [{"name": "krum", "p": 3}, "geomed[p=3.0]", as_rule("trimmed_mean", 2)]):
        by_name = solvers.P3(X, 2, pool)
        assert [r.name for r in by_name.compile().rules] == [r.name for r in by_object.compile().rules]
        assert solvers.solve(by_name).value == solvers.solve(by_object).value
    ev = solvers.ExpectedValue(X, 2, ["comed", "krum"], probs=[0.25, 0.75]).compile()
    assert [r.name for r in ev.rules] == ["comed", "krum[p=2]"] and ev.weights == (0.25, 0.75)
    assert [r.name for r in solvers.P3(X, 2, "comed").compile().rules] == ["comed"]  # one name: a pool of one
    tailored = solvers.TailoredAttack(X, 2, "krum[p=3]", objective="inner").compile()
    assert tailored.rules[0].name == "krum[p=3]"


@pytest.mark.parametrize("make, match", [
    (lambda: solvers.P3(V(8, 3), 2, ["krum", "bogus"]), r"P3: pool entry 'bogus': .*bogus"),
    (lambda: solvers.P3(V(8, 3), 2, ["krum[p=0.5]"]), r"P3: pool entry 'krum\[p=0.5\]': .*p must be"),
    (lambda: solvers.P2(V(8, 3), 0, ["krum"]), r"P2: f must be >= 1, got 0"),
    (lambda: solvers.TailoredAttack(V(8, 3), 2, "nope"), r"TailoredAttack: pool entry 'nope'"),
])
def test_bad_rule_names_in_a_pool_raise_one_line_errors(make, match):
    with pytest.raises(ValueError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


def test_partial_knowledge_reads_the_attacks_spelling():
    """``knowledge="partial:K"`` (``make_view``'s spelling) is ``("partial", K)``."""
    X = V(8, 3, seed=2)
    a = solvers.P3(X, 2, [Comed(f=2)], knowledge="partial:3").compile()
    b = solvers.P3(X, 2, [Comed(f=2)], knowledge=("partial", 3)).compile()
    assert torch.equal(a.R, b.R) and a.unseen == b.unseen == 5
    with pytest.raises(ValueError, match=r"P3: knowledge k must be <= 8, got 9"):
        solvers.P3(X, 2, [Comed(f=2)], knowledge="partial:9")
    with pytest.raises(ValueError, match=r"P3: knowledge must be 'full', \('partial', k\) or 'partial:k'"):
        solvers.P3(X, 2, [Comed(f=2)], knowledge="partial:x")


def test_nonfinite_honest_rows_are_rejected():
    X = V()
    X[0, 0] = float("nan")
    with pytest.raises(ValueError, match="P3: honest must be finite"):
        solvers.P3(X, f=1, pool=[Comed(f=1)])


def test_automatic_method_names_itself_when_an_option_is_not_its_own():
    """``time_limit`` (milp / miqcp) with the choice falling on another method: the error
    says which method was chosen and which ones take the option (was scp's bare list)."""
    p = solvers.P3(V(), f=1, pool=[Comed(f=1)])
    with pytest.raises(ValueError, match=r"solvers.solve: options \['time_limit'\] do not apply to method 'line', "
                       r"chosen automatically .* they belong to \{'milp': \['time_limit'\], 'miqcp'"):
        solvers.solve(p, time_limit=5)
    with pytest.raises(ValueError, match=r"options \['bogus'\] do not apply .* no method takes them"):
        solvers.solve(p, bogus=1)
    assert solvers.solve(p, t_max=10.0).method == "line"  # its own options still pass


def test_choose_method_takes_a_problem_or_its_instance():
    p = solvers.P3(V(), f=1, pool=[Comed(f=1)])
    assert solvers.choose_method(p) == solvers.choose_method(p.compile()) == "line"  # a problem raised AttributeError
    with pytest.raises(TypeError, match="solvers.choose_method: problem must be one of .* or an Instance, got str"):
        solvers.choose_method("P3")


def test_bad_method_and_options_raise():
    p = solvers.P3(V(), f=1, pool=[Comed(f=1)])
    with pytest.raises(ValueError, match="solvers.solve: method must be one of"):
        solvers.solve(p, method="newton")
    with pytest.raises(ValueError, match=r"solvers.line: options must be among .* unknown \['grid'\]"):
        solvers.solve(p, method="line", grid=3)
    with pytest.raises(ValueError, match="solvers.scp: structure must be 'optimal' or 'suboptimal'"):
        solvers.solve(p, method="scp")
    t = solvers.TailoredAttack(V(), 1, Comed(f=1), objective="lambda")
    with pytest.raises(ValueError, match="solvers.scp: objective must be 'inner'"):
        solvers.solve(t, method="scp")
    k = solvers.P1(V(4, 1), f=1, pool=[Krum(f=1)])
    with pytest.raises(ValueError, match="solvers.milp: not applicable: rule krum"):
        solvers.solve(k, method="milp")


def test_partial_knowledge_fills_unseen_rows_with_the_seen_mean():
    X = V(6, 3)
    inst = solvers.P3(X, f=2, pool=[Comed(f=2)], knowledge=("partial", 2)).compile()
    assert inst.n == 8 and inst.R.shape == (6, 3)
    torch.testing.assert_close(inst.R[:2], X[:2])
    torch.testing.assert_close(inst.R[2:], X[:2].mean(0).expand(4, -1))
    torch.testing.assert_close(inst.u, X[:2].mean(0))
    # only the seen rows given, n explicit (the adversary view's form)
    inst2 = solvers.P3(X[:2], f=2, pool=[Comed(f=2)], knowledge=("partial", 2), n=8).compile()
    torch.testing.assert_close(inst2.R, inst.R)


def test_model_space_direction_and_line():
    X = V(4, 2)
    w0 = torch.tensor([0.5, -0.5], dtype=torch.float64)
    inst = solvers.P3(X, f=1, pool=[Comed(f=1)], space="model", model=w0).compile()
    torch.testing.assert_close(inst.u, X.mean(0) - w0)
    torch.testing.assert_close(inst.line, -5 * (X.mean(0) - w0))
    torch.testing.assert_close(inst.offset, w0)


def test_tailored_direction_is_the_no_attack_aggregate():
    X = V(4, 2)
    inst = solvers.TailoredAttack(X, 1, Comed(f=1)).compile()
    ref = torch.cat([X.mean(0, keepdim=True), X])
    torch.testing.assert_close(inst.u, Comed(f=1)(ref))
    own = torch.zeros(1, 2, dtype=torch.float64)
    inst = solvers.TailoredAttack(X, 1, Comed(f=1), own=own).compile()
    torch.testing.assert_close(inst.u, Comed(f=1)(torch.cat([own, X])))


def test_pools_from_rulepool_and_mixtailor_keep_probabilities():
    rules = (Comed(f=1), TrimmedMean(b=1))
    inst = solvers.ExpectedValue(V(), f=1, pool=RulePool(rules, (0.25, 0.75))).compile()
    assert inst.weights == (0.25, 0.75)
    inst = solvers.ExpectedValue(V(), f=1, pool=MixTailor(list(rules), probs=[0.4, 0.6])).compile()
    assert inst.weights == pytest.approx((0.4, 0.6))
    inst = solvers.ExpectedValue(V(), f=1, pool=rules, probs=[1.0, 0.0]).compile()
    assert inst.weights == (1.0, 0.0)
    assert solvers.P3(V(), f=1, pool=Comed(f=1)).compile().rules == (Comed(f=1),)


def test_partial_knowledge_fills_unseen_rows_with_the_mean_of_what_the_adversary_has():
    # A.1.2: g_bar = sum_{i <= k} g_i / k over the Byzantines' own rows and the seen ones
    g = torch.Generator().manual_seed(2)
    V, own = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, generator=g, dtype=torch.float64)
    inst = solvers.P3(V, 2, [Comed(f=2)], knowledge=("partial", 3), own=own).compile()
    gbar = torch.cat([own, V[:3]]).mean(0)
    assert torch.allclose(inst.R[:3], V[:3]) and torch.allclose(inst.R[3:], gbar.expand(7, -1))
    plain = solvers.P3(V, 2, [Comed(f=2)], knowledge=("partial", 3)).compile()
    assert torch.allclose(plain.R[3:], V[:3].mean(0).expand(7, -1))


def test_solutions_with_non_finite_rows_are_never_feasible():
    """make_solution runs the real rules; rows with NaN/Inf (the rules' sanitizing aside)
    are no attack: status infeasible with a reason, whatever the method claimed."""
    from solvers.solution import make_solution
    H = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    inst = solvers.P1(H, 1, [Comed(f=1)]).compile()
    for bad in (math.nan, math.inf):
        sol = make_solution(inst, torch.tensor([[bad, 0.0]]), method="line", status="optimal", t0=0.0)
        assert sol.status == "infeasible" and "not finite" in sol.info["reason"] and sol.certificate is False
    ok = make_solution(inst, torch.tensor([[0.0, 0.0]]), method="line", status="feasible", t0=0.0)
    assert ok.status == "feasible" and "reason" not in ok.info
