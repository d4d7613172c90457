"""Method "miqcp" on Bulyan(select=krum) (solvers/bulyan_exact.py) against brute force.

n = 7, f = 1 (Bulyan needs n >= 4f + 3). The brute force calls the real rules
(``make_rule("bulyan", ...)`` and the rest of the pool, through
``solvers.evaluate``) on every point of a grid of Byzantine rows over the
solver's box: the proven optimum must never be beaten by the grid, the grid's
best must come close to it, and the returned rows must give the reported value.
"""

import itertools
import math

import numpy as np
import pytest
import torch

pytest.importorskip("pyscipopt")

import solvers  # noqa: E402
from solvers import bulyan_exact  # noqa: E402
from mixtailor_game.rules import Comed, Krum, make_rule  # noqa: E402

INF = math.inf


def honest(d, seed, k=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + 0.7


def bulyan(aggregate, p=2.0, f=1):
    return make_rule("bulyan", f=f, select="krum", aggregate=aggregate, p=p)


def grid_values(inst, lo, hi, m):
    axes = [np.linspace(lo[j], hi[j], m) for j in range(inst.d)]
    pts = np.array(list(itertools.product(*axes)))
    vals = np.array([solvers.evaluate(inst, torch.tensor(x)[None])["value"] for x in pts])
    return pts, vals


def check(problem, sol, m):
    """The exact optimum against a grid of the real rules (and the line search)."""
    inst = problem.compile()
    assert sol.method == "miqcp" and sol.status == "optimal"
    assert sol.bound <= sol.value + 1e-9 and sol.gap <= 1e-4
    assert sol.value == pytest.approx(solvers.evaluate(inst, sol.byzantine)["value"], abs=1e-12)
    lo, hi = np.array(sol.info["box"]["lo"]), np.array(sol.info["box"]["hi"])
    pts, vals = grid_values(inst, lo, hi, m)
    tol = 1e-6 * (1 + abs(sol.value))
    assert sol.value <= vals.min() + tol          # the grid never beats the exact optimum
    assert vals.min() >= sol.bound - tol          # nor the proven bound
    line = solvers.solve(problem, method="line")
    assert line.value >= sol.bound - tol          # the line search never reports better
    return vals.min()


@pytest.mark.parametrize("aggregate,p,seed", [("trimmed", 1.0, 3), ("average", INF, 1)])
def test_tailored_bulyan_d1_matches_brute_force(aggregate, p, seed):
    prob = solvers.TailoredAttack(honest(1, seed), 1, bulyan(aggregate, p), objective="inner")
    sol = solvers.solve(prob, method="miqcp")
    best = check(prob, sol, 401)
    assert sol.info["box_lossless"] is False  # Bulyan's tie key sees B: an optimum on the box only
    assert best <= sol.value + 0.05 * abs(float(prob.compile().u[0]))  # the grid comes close (step ~ 3e-2)


@pytest.mark.parametrize("aggregate,p,seed", [("trimmed", 2.0, 0), ("average", 1.0, 2)])
def test_tailored_bulyan_d2_matches_brute_force(aggregate, p, seed):
    prob = solvers.TailoredAttack(honest(2, seed), 1, bulyan(aggregate, p), objective="inner")
    sol = solvers.solve(prob, method="miqcp")
    check(prob, sol, 21)


def test_pool_bulyan_krum_comed_matches_brute_force_d1():
    V = honest(1, 4)
    prob = solvers.P1(V, 1, [bulyan("trimmed"), Krum(f=1, p=2.0), Comed(f=1)])
    sol = solvers.solve(prob, method="miqcp")
    check(prob, sol, 401)
    assert not sol.info["box_lossless"]  # comed is in the pool


def test_segments_are_the_real_aggregation():
    """Pieces of the 1-D aggregation agree with the real rule inside and at every end."""
    rule = bulyan("trimmed")
    agg = bulyan_exact.aggregate_fn(rule)
    H = np.array([-0.7, -0.38, 0.41, 1.27])
    pieces = bulyan_exact.segments(agg, H, -3.0, 3.0)
    xs = np.linspace(-3.0, 3.0, 2001)
    real = agg(torch.tensor(np.vstack([xs[None], np.repeat(H[:, None], len(xs), 1)]))).numpy()
    for x, v in zip(xs, real):
        hits = [s * x + c for a, b, s, c, _, _ in pieces if a <= x <= b]
        assert any(abs(h - v) <= 1e-9 for h in hits)          # the closure holds the real value
    assert any(ja or jb for *_, ja, jb in pieces)             # the trimmed window jumps


def test_not_applicable_inputs_raise_with_the_reason():
    V = honest(2, 0)
    cases = [
        (make_rule("bulyan", f=1, select="average", aggregate="trimmed"), "selection 'average'"),
        (make_rule("bulyan", f=1, select="krum", aggregate="geomed"), "aggregate 'geomed'"),
        (bulyan("trimmed", 3.0), r"p = 3 not in \(1, 2, inf\)"),
    ]
    for rule, msg in cases:
        with pytest.raises(ValueError, match="solvers.miqcp: not applicable: rule bulyan.*" + msg):
            solvers.solve(solvers.TailoredAttack(V, 1, rule, objective="inner"), method="miqcp")
    big = solvers.TailoredAttack(honest(1, 0, k=9), 2, bulyan("trimmed", f=2), objective="inner")
    with pytest.raises(ValueError, match="f = 2 Byzantine rows"):
        solvers.solve(big, method="miqcp")
    assert solvers.choose_method(big.compile()) != "miqcp"


def test_auto_choice_and_time_limit():
    prob = solvers.TailoredAttack(honest(1, 0), 1, bulyan("average"), objective="inner")
    assert solvers.choose_method(prob.compile()) == "miqcp"
    three = solvers.TailoredAttack(honest(3, 0), 1, bulyan("average"), objective="inner")
    assert solvers.choose_method(three.compile()) != "miqcp"   # d = 3: not picked automatically
    sol = solvers.solve(solvers.TailoredAttack(honest(2, 5), 1, bulyan("trimmed", INF), objective="inner"),
                        method="miqcp", time_limit=0.5)
    assert sol.status in ("budget", "optimal") and sol.byzantine.shape == (1, 2)
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        solvers.solve(prob, method="miqcp", time_limit=0)
