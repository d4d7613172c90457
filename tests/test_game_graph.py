"""Vulnerability graph and Proposition 1 summaries on constructed and measured payoffs."""

import networkx as nx
import numpy as np
import pytest
import torch

from mixtailor_game.game import attack_summaries, payoff_matrix, synthetic_samples, vulnerability_graph
from mixtailor_game.rules import make_rule
from mixtailor_game.theory import proposition1_condition

INNER = np.array([
    [1.0, -0.5, 2.0, 0.3],    # compromises rule 1
    [-1.0, -2.0, -0.1, -3.0],  # compromises all
    [0.5, 0.7, 0.9, 1.1],     # compromises none
    [-0.05, 0.4, -0.2, 0.6],  # compromises 0 and 2 (only rule 2 with threshold 0.1)
])
NORMS = np.array([
    [1.5, 0.8, 2.5, 1.0],
    [1.0, 2.0, 0.5, 3.0],
    [1.0, 1.0, 1.0, 1.2],
    [0.3, 0.5, 0.4, 0.9],
])
ATTACKS = ["a0", "a1", "a2", "a3"]
RULES = ["comed", "krum", "geomed", "trimmed"]


def test_edges_on_constructed_payoff():
    G = vulnerability_graph(INNER, ATTACKS, RULES)
    assert nx.is_bipartite(G)
    edges = {(u[1], v[1]) if u[0] == "attack" else (v[1], u[1]) for u, v in G.edges}
    assert edges == {("a0", "krum"), ("a1", "comed"), ("a1", "krum"), ("a1", "geomed"), ("a1", "trimmed"),
                     ("a3", "comed"), ("a3", "geomed")}
    assert G.nodes[("attack", "a2")]["bipartite"] == 0 and G.nodes[("rule", "krum")]["bipartite"] == 1
    assert G.edges[("attack", "a0"), ("rule", "krum")]["inner"] == -0.5
    assert G.degree[("attack", "a2")] == 0
    G2 = vulnerability_graph(INNER, ATTACKS, RULES, threshold=0.1)
    assert not G2.has_edge(("attack", "a3"), ("rule", "comed"))
    assert G2.has_edge(("attack", "a3"), ("rule", "geomed"))


def test_duplicate_rule_names_are_distinct_nodes():
    G = vulnerability_graph(np.array([[-1.0, -1.0]]), ["a"], ["comed", "comed"])
    assert G.number_of_edges() == 2 and G.number_of_nodes() == 3


def test_summaries_on_constructed_payoff():
    L = 2.0
    s = attack_summaries(INNER, ATTACKS, RULES, norms=NORMS, L=L)
    a0, a1, a2, a3 = s
    assert (a0.q, a0.M, a0.fraction, a0.compromised) == (1, 4, 0.25, ("krum",))
    assert a0.beta_min == 0.3 and a0.lam == 0.8
    assert a0.condition == proposition1_condition(4, 1, 0.8, L, 0.3)
    assert a0.condition is False  # 4 > 1 + 0.8 * 2 / 0.3 = 6.33 fails
    assert a0.bound == pytest.approx(0.75 * 0.3 - 0.25 * 0.8 * 2)
    assert a1.q == 4 and a1.condition is False and a1.bound == pytest.approx(-3.0 * 2)
    assert a2.q == 0 and a2.condition is True and a2.bound == pytest.approx(0.5)
    assert a3.q == 2 and a3.lam == 0.4 and a3.beta_min == 0.4
    assert a3.condition == proposition1_condition(4, 2, 0.4, L, 0.4)  # 2 > 3 fails
    for x in s:
        assert x.uniform_inner == pytest.approx(INNER[ATTACKS.index(x.attack)].mean())


def test_condition_holds_for_a_diverse_pool():
    inner = np.array([[-0.1] + [1.0] * 9])
    norms = np.array([[0.2] + [1.0] * 9])
    (s,) = attack_summaries(inner, norms=norms, L=1.0)
    assert s.condition is True  # 10 > 1 + 0.2 / 1
    assert s.uniform_inner >= s.bound


def test_bound_holds_on_measured_payoffs():
    # A.3's inequality holds sample-wise, so it must hold on any measured matrix.
    S = synthetic_samples(10, 8, samples=4, noise=3.0, generator=torch.Generator().manual_seed(2))

    class Flip:
        name = "flip"

        def __call__(self, view):
            return (-8.0 * view.honest.mean(0)).repeat(view.f, 1)

    rules = [make_rule("mean"), make_rule("comed", f=2), make_rule("krum", f=2), make_rule("geomed", f=2)]
    pm = payoff_matrix([Flip()], rules, S, f=2)
    (s,) = attack_summaries(pm)
    assert s.q >= 1  # the mean is compromised by a large flipped row
    assert "mean" in s.compromised
    assert s.uniform_inner >= s.bound - 1e-9
    G = vulnerability_graph(pm)
    assert G.degree[("attack", "flip")] == s.q


def test_validation():
    with pytest.raises(ValueError, match="vulnerability_graph: names must be 1 attacks and 2 rules"):
        vulnerability_graph(np.zeros((1, 2)), ["a"], ["r"])
    with pytest.raises(ValueError, match="attack_summaries: norms must be of shape"):
        attack_summaries(np.zeros((1, 2)), norms=np.zeros((2, 2)), L=1.0)
    with pytest.raises(ValueError, match="vulnerability_graph: threshold must be >= 0"):
        vulnerability_graph(np.zeros((1, 1)), threshold=-1.0)


def test_prop1_is_not_claimed_with_no_rule_compromised_but_negative_inner_products():
    # threshold > 0: "not compromised" admits <AGG, mean> < 0, where Prop. 1's conclusion fails
    s = attack_summaries([[-0.1, -0.2]], norms=[[1.0, 1.0]], L=1.0, threshold=0.5)[0]
    assert s.q == 0 and s.condition is None
    assert attack_summaries([[0.1, 0.2]], norms=[[1.0, 1.0]], L=1.0, threshold=0.5)[0].condition is True


def test_out_of_range_or_ragged_inner_is_one_line_error():
    with pytest.raises(ValueError, match="vulnerability_graph: inner must be finite everywhere"):
        vulnerability_graph([[10**400, 1.0]])
    with pytest.raises(TypeError, match="attack_summaries: inner must be a 2-D array of real numbers"):
        attack_summaries([[1.0, 2.0], [3.0]], L=1.0)
