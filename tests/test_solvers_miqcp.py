"""Method "miqcp" (SCIP, exact for Krum) against brute force on tiny instances.

The brute force is a slow, obviously-correct reference written here in numpy:
Krum of eq. (3) (squared l_p distances, the n - f - 2 nearest other rows, the
lowest score, ties to the lowest index), mean, coordinate-wise median and
trimmed mean, evaluated on every point of a grid of Byzantine rows over the
solver's box (a few points are checked against the real rules). The exact
optimum must be (a) never beaten by the grid beyond tolerance and (b) reached by
the grid up to its step (a fine local grid around the returned rows).
"""

import itertools
import math
import sys

import numpy as np
import pytest
import torch

import solvers
from solvers.miqcp import scip_available
from mixtailor_game.rules import Comed, Geomed, Krum, Mean, TrimmedMean

needs_scip = pytest.mark.skipif(not scip_available(), reason="pyscipopt not installed")
INF = math.inf


def honest(k, d, seed, mu=0.7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + mu


# --- numpy reference rules ([T, n, d] -> [T, d]) ---------------------------------------------
def ref_krum(X, f, p):
    n = X.shape[1]
    A = np.abs(X[:, :, None, :] - X[:, None, :, :])
    if p == 1:
        D = A.sum(-1) ** 2
    elif p == 2:
        D = (A ** 2).sum(-1)
    else:
        D = A.max(-1) ** 2
    D[:, np.arange(n), np.arange(n)] = np.inf
    S = np.sort(D, 2)[:, :, : n - f - 2].sum(2)
    return X[np.arange(len(X)), np.argmin(S, 1)]  # argmin: first minimum = lowest index


def ref_rule(rule, X):
    if isinstance(rule, Krum):
        return ref_krum(X, rule.f, rule.p)
    if isinstance(rule, Mean):
        return X.mean(1)
    if isinstance(rule, Comed):
        return np.median(X, 1)
    b = rule.b
    return np.sort(X, 1)[:, b : X.shape[1] - b].mean(1)


def objective(inst, Bs):
    """Objective of the problem at each candidate ``Bs`` ([T, f, d]) by the references."""
    R = inst.R.numpy()
    X = np.concatenate([Bs, np.broadcast_to(R, (len(Bs),) + R.shape)], 1)
    u, o = inst.u.numpy(), inst.offset.numpy()
    vals = np.stack([(ref_rule(r, X) - o) @ u for r in inst.rules], 1)
    for i in (0, len(Bs) // 2, len(Bs) - 1):  # the references agree with the real rules
        G = torch.tensor(X[i])
        real = [float((r(G) - inst.offset) @ inst.u) for r in inst.rules]
        np.testing.assert_allclose(real, vals[i], rtol=1e-10, atol=1e-10)
    if inst.kind == "max":
        return vals.max(1)
    if inst.kind == "expected":
        return vals @ np.asarray(inst.weights)
    return vals[:, 0]


def grid(lo, hi, m, f, identical=False):
    """All ``[f, d]`` row sets with every free coordinate on an m-point grid of [lo, hi]."""
    d = len(lo)
    axes = [np.linspace(lo[j], hi[j], m) for j in range(d)]
    rows = np.array(list(itertools.product(*axes)))             # [m^d, d]
    if identical or f == 1:
        return np.repeat(rows[:, None, :], f, 1)
    idx = np.array(list(itertools.product(range(len(rows)), repeat=f)))
    return rows[idx]                                              # [m^(d f), f, d]


def check_against_brute_force(p, sol, m_coarse, m_fine, identical=False, unbounded=False, box_only=False):
    inst = p.compile()
    lo, hi = np.array(sol.info["box"]["lo"]), np.array(sol.info["box"]["hi"])
    coarse = objective(inst, grid(lo, hi, m_coarse, inst.f, identical))
    step = (hi - lo) / (m_coarse - 1)
    B = sol.byzantine.numpy()
    c = B[0] if (identical or inst.f == 1) else None
    if c is not None:
        fine_pts = grid(np.maximum(c - 2 * step, lo), np.minimum(c + 2 * step, hi), m_fine, inst.f, identical)
        fstep = 4 * step.max() / (m_fine - 1)
    else:  # f free rows: refine every row around its returned position
        fine_pts = grid(np.maximum(B.min(0) - 2 * step, lo), np.minimum(B.max(0) + 2 * step, hi), m_fine,
                        inst.f)
        fstep = float(((np.minimum(B.max(0) + 2 * step, hi) - np.maximum(B.min(0) - 2 * step, lo))
                       / (m_fine - 1)).max())
    fine = objective(inst, fine_pts)
    sigma = float((inst.R - inst.offset).abs().max())
    tol = 3e-4 * sigma * float(inst.u.abs().max())
    best = min(coarse.min(), fine.min())
    assert sol.method == "miqcp"
    assert best <= sol.value + float(inst.u.abs().sum()) * fstep + tol  # the box's optimum is reached
    if unbounded:  # no finite optimum: the box's best is a feasible point, with no bound
        assert sol.status == "feasible" and sol.info["unbounded"] and sol.bound is None
        assert sol.value <= best + tol
        return inst
    if box_only:  # a finite optimum that may lie beyond the box (P1 with a mean): no proof, no bound
        assert sol.status == "feasible" and not sol.info.get("unbounded") and sol.bound is None
        assert sol.value <= best + tol
        return inst
    assert sol.status == "optimal" and not sol.info.get("unbounded")
    assert sol.bound <= sol.value + 1e-9 and sol.gap <= tol
    assert best >= sol.bound - tol                                   # the grid never beats the proof
    return inst


@needs_scip
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pn", [1.0, 2.0, INF])
@pytest.mark.parametrize("d", [1, 2])
def test_tailored_krum_matches_brute_force(d, pn, seed):
    V = honest(4, d, seed)
    p = solvers.TailoredAttack(V, 1, Krum(f=1, p=pn), objective="inner")
    sol = solvers.solve(p, method="miqcp")
    check_against_brute_force(p, sol, 4001 if d == 1 else 161, 801 if d == 1 else 41)
    assert sol.info["box_lossless"]
    for method in ("line", "scp"):  # the scalable methods never report a better value
        other = solvers.solve(p, method=method)
        assert other.value >= sol.bound - 1e-7, method


POOLS = {
    "krum+comed": [Krum(f=1), Comed(f=1)],
    "krum1+trimmed": [Krum(f=1, p=1.0), TrimmedMean(b=1)],
    "kruminf+mean": [Krum(f=1, p=INF), Mean()],
}


@needs_scip
@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("kind", ["P1", "expected"])
def test_pools_with_krum_match_brute_force_d1(pool, kind):
    V = honest(4, 1, 3)
    p = (solvers.P1(V, 1, POOLS[pool]) if kind == "P1"
         else solvers.ExpectedValue(V, 1, POOLS[pool], probs=[0.4, 0.6], structure="optimal"))
    sol = solvers.solve(p, method="miqcp")
    unbounded = kind == "expected" and "mean" in pool  # the mean, with weight 0.6, is unbounded below
    # P1 with the mean: a finite optimum, but the mean keeps falling beyond the box, where
    # rows can beat the box's optimum (audit finding 10): no bound is claimed
    box_only = kind == "P1" and "mean" in pool
    check_against_brute_force(p, sol, 4001, 801, unbounded=unbounded, box_only=box_only)
    assert not sol.info["box_lossless"]
    if unbounded or box_only:
        return
    other = solvers.solve(p, method="scp")
    assert other.value >= sol.bound - 1e-7


@needs_scip
def test_pool_with_krum_matches_brute_force_d2():
    V = honest(4, 2, 4)
    p = solvers.P1(V, 1, [Krum(f=1, p=2.0), Comed(f=1)])
    sol = solvers.solve(p, method="miqcp")
    check_against_brute_force(p, sol, 121, 41)
    assert solvers.solve(p, method="line").value >= sol.bound - 1e-7


@needs_scip
@pytest.mark.parametrize("structure", ["optimal", "suboptimal"])
def test_two_byzantine_rows_match_brute_force(structure):
    V = honest(5, 1, 5)  # n = 7, f = 2 (Krum needs n > 2f + 2)
    p = solvers.TailoredAttack(V, 2, Krum(f=2), structure=structure, objective="inner")
    sol = solvers.solve(p, method="miqcp")
    check_against_brute_force(p, sol, 241 if structure == "optimal" else 4001, 61 if structure == "optimal" else 801,
                              identical=structure == "suboptimal")
    if structure == "suboptimal":
        assert torch.equal(sol.byzantine[0], sol.byzantine[1])


@needs_scip
def test_lambda_objective():
    V = honest(4, 1, 6)
    inner = solvers.solve(solvers.TailoredAttack(V, 1, Krum(f=1), objective="inner"), method="miqcp")
    lam = solvers.solve(solvers.TailoredAttack(V, 1, Krum(f=1), objective="lambda"), method="miqcp")
    g = float(solvers.TailoredAttack(V, 1, Krum(f=1)).compile().u[0])
    assert lam.status == "optimal" and lam.residual <= 1e-6
    assert lam.value == pytest.approx(-inner.value / g ** 2, abs=1e-4)  # d = 1: lambda = -<a, g> / g^2
    V2 = honest(4, 2, 6)
    p2 = solvers.TailoredAttack(V2, 1, Krum(f=1, p=INF), objective="lambda")
    s2 = solvers.solve(p2, method="miqcp")
    assert s2.status == "optimal" and s2.residual <= 1e-6 * max(1.0, abs(s2.value))
    assert solvers.solve(p2, method="line").value <= s2.bound + 1e-7  # max: never above the bound


@needs_scip
def test_infeasible_filters_are_a_status():
    V = honest(5, 1, 7)
    # an eps wider than the honest range is feasible (SCIP may fail numerically on it: then
    # the always-feasible fallback rows, never a false "infeasible")
    sol = solvers.solve(solvers.P2(V, 2, [Krum(f=2)], eps=1e6), method="miqcp")
    assert sol.status in ("optimal", "feasible") and sol.filter_ok
    sol = solvers.solve(solvers.P2(V, 2, [Krum(f=2)], eps=0.1, structure="suboptimal"), method="miqcp")
    assert sol.status == "infeasible" and sol.byzantine.shape == (2, 1)
    assert sol.certificate is False and sol.gap is None
    free = solvers.solve(solvers.P2(V, 2, [Krum(f=2)], structure="suboptimal"), method="miqcp")
    assert torch.equal(sol.byzantine, free.byzantine) and sol.value == free.value  # zero rows before


@needs_scip
def test_filter_l2_keeps_rows_apart():
    V = honest(5, 2, 8, mu=0.05)
    eps = 0.3
    sol = solvers.solve(solvers.P2(V, 2, [Krum(f=2)], eps=eps), method="miqcp", time_limit=30)
    assert sol.status in ("optimal", "budget") and sol.filter_ok
    assert float((sol.byzantine[0] - sol.byzantine[1]).norm()) >= eps * (1 - 1e-9)
    scp = solvers.solve(solvers.P2(V, 2, [Krum(f=2)], eps=eps), method="scp")
    assert sol.bound is not None and scp.value >= sol.bound - 1e-7


@needs_scip
def test_bad_input_and_options_raise():
    V = honest(4, 2, 0)
    with pytest.raises(ValueError, match="solvers.miqcp: not applicable: rule geomed"):
        solvers.solve(solvers.P1(V, 1, [Krum(f=1), Geomed(f=1)]), method="miqcp")
    with pytest.raises(ValueError, match="structure 'line'"):
        solvers.solve(solvers.P3(V, 1, [Krum(f=1)]), method="miqcp")
    with pytest.raises(ValueError, match=r"p = 3 not in \(1, 2, inf\)"):
        solvers.solve(solvers.TailoredAttack(V, 1, Krum(f=1, p=3.0), objective="inner"), method="miqcp")
    p = solvers.TailoredAttack(V, 1, Krum(f=1), objective="inner")
    with pytest.raises(ValueError, match=r"unknown \['grid'\]"):
        solvers.solve(p, method="miqcp", grid=3)
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        solvers.solve(p, method="miqcp", time_limit=-1)


@needs_scip
def test_time_limit_gives_budget_with_recomputed_value():
    V = honest(5, 3, 9)
    p = solvers.TailoredAttack(V, 2, Krum(f=2, p=2.0), objective="inner")
    sol = solvers.solve(p, method="miqcp", time_limit=0.3)
    assert sol.status == "budget" and sol.byzantine.shape == (2, 3)
    assert sol.value == pytest.approx(solvers.evaluate(p.compile(), sol.byzantine)["value"], abs=1e-12)


@needs_scip
def test_auto_picks_miqcp_for_small_krum_only():
    small = solvers.TailoredAttack(honest(4, 2, 1), 1, Krum(f=1), objective="inner")
    assert solvers.choose_method(small.compile()) == "miqcp"
    big = solvers.TailoredAttack(honest(10, 2, 1), 2, Krum(f=2), objective="inner")
    assert solvers.choose_method(big.compile()) == "scp"
    filt = solvers.P2(honest(5, 2, 1), 2, [Krum(f=2)], eps=0.1)
    assert solvers.choose_method(filt.compile()) == "scp"
    assert solvers.choose_method(solvers.P1(honest(4, 2, 1), 1, [Comed(f=1)]).compile()) == "coordinatewise"
    assert solvers.choose_method(solvers.P1(honest(4, 2, 1), 1, [Comed(f=1), Mean()]).compile()) == "milp"
    sol = solvers.solve(small)
    assert sol.method == "miqcp" and sol.status == "optimal"


def test_without_pyscipopt_a_clear_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyscipopt", None)  # import pyscipopt -> ImportError
    p = solvers.TailoredAttack(honest(4, 2, 1), 1, Krum(f=1), objective="inner")
    with pytest.raises(ImportError, match=r"needs pyscipopt .*pip install"):
        solvers.solve(p, method="miqcp")
    assert solvers.choose_method(p.compile()) == "scp"


@needs_scip
def test_two_krums_may_pick_two_different_byzantine_rows():
    """Two Krums (l_1, l_inf) and two free Byzantine rows: the rows below make Krum[p=1]
    pick row 0 and Krum[p=inf] row 1, xi = -0.6075. The model let only row 0 be any
    Krum's Byzantine pick (a symmetry that holds for one Krum only) and proved a wrong
    optimum, xi = bound = -0.5940."""
    V = torch.tensor(np.random.default_rng(44).normal(size=(4, 2)) + 0.5)
    pool = [Krum(f=1, p=1.0), Krum(f=1, p=INF)]
    p = solvers.P1(V, 2, pool)
    B = torch.tensor([[-0.47, -0.16], [-0.57, -0.02]], dtype=torch.float64)
    G = torch.cat([B, V])
    assert torch.equal(pool[0](G), B[0]) and torch.equal(pool[1](G), B[1])
    known = solvers.evaluate(p.compile(), B)["value"]
    assert known < -0.6
    sol = solvers.solve(p, method="miqcp")
    assert sol.status == "optimal" and sol.bound <= known + 1e-6
    assert sol.value == pytest.approx(solvers.evaluate(p.compile(), sol.byzantine)["value"], abs=1e-12)


@needs_scip
def test_time_limit_covers_the_tie_repair(monkeypatch):
    """Past the time limit the tie repair runs no line search (it has no limit of its own:
    1.6-2.3 s after a 0.3 s limit, status "budget")."""
    from solvers import miqcp as miqcp_module
    calls = []
    real = miqcp_module.solve_line
    monkeypatch.setattr(miqcp_module, "solve_line", lambda *a, **k: calls.append(1) or real(*a, **k))
    V = torch.tensor(np.random.default_rng(1).normal(size=(6, 2)) + 0.5)
    p = solvers.TailoredAttack(V, 1, Krum(f=1, p=1.0), objective="inner")
    sol = solvers.solve(p, method="miqcp", time_limit=0.3)  # SCIP needs seconds here
    assert sol.status == "budget" and "real_value" in sol.info["runs"][0] and not calls
    assert sol.value == pytest.approx(solvers.evaluate(p.compile(), sol.byzantine)["value"], abs=1e-12)
