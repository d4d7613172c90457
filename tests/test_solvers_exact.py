"""Exact methods of solvers/ against brute force on tiny instances (n = 5..8, f = 1..3, d = 1..3).

The brute force is a slow, obviously-correct reference: every point of a fine
grid of Byzantine rows is evaluated with the real rules (numpy float64 inner
products), and the best is taken. The MILP's speed-ups (the dominance reduction
``reduce``, the symmetry breaks, pruned terms and tighter big-M of ``tighten``,
see solvers.milp) are checked here: with them on, the MILP's value must never be
worse than the grid's best and its bound never above it, and they must give the
same optimum as the formulation without them.
"""

import itertools
import math

import numpy as np
import pytest
import torch

import solvers
from solvers.line import LineObjective, _BlackBox, _BulyanKrum, make_evaluator
from mixtailor_game.rules import Bulyan, Comed, Krum, Mean, TrimmedMean


def honest(k, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + 0.7


def box(inst, width=1.0):
    """The MILP's default box per coordinate (see solvers.milp)."""
    R = inst.R.numpy()
    o = inst.offset.numpy()
    lo, hi = np.minimum(R.min(0), o), np.maximum(R.max(0), o)
    w = width * np.maximum(hi - lo, 1e-3 * (1 + abs(hi) + abs(lo)))
    return lo - w, hi + w


def brute(inst, points):
    """Best objective over candidate Byzantine row sets ``points`` (list of Tensor[f, d]).

    Every rule runs on every point through ``rule.batched``; a few points are
    re-run one by one through ``rule(G)`` as a check of the batched path.
    """
    Bb = torch.stack(points)
    Gb = torch.cat([Bb, inst.R.unsqueeze(0).expand(len(points), -1, -1)], 1)
    vals = np.stack([((r.batched(Gb) - inst.offset) @ inst.u).numpy() for r in inst.rules], 1)
    for i in (0, len(points) // 2, len(points) - 1):
        one = [float((r(Gb[i]) - inst.offset) @ inst.u) for r in inst.rules]
        np.testing.assert_allclose(one, vals[i], rtol=1e-12, atol=1e-12)
    if inst.kind == "max":
        v = vals.max(1)
    elif inst.kind == "expected":
        v = vals @ np.asarray(inst.weights)
    else:
        v = vals[:, 0]
    return float(v.min())


def grid_rows(inst, m):
    lo, hi = box(inst)
    axes = [np.linspace(lo[j], hi[j], m) for j in range(inst.d)]
    pts = np.array(list(itertools.product(*axes)))
    return [torch.tensor(p, dtype=torch.float64).reshape(1, -1) for p in pts]


POOLS = {
    "comed": [Comed(f=1)],
    "trimmed": [TrimmedMean(b=1)],
    "comed+trimmed": [Comed(f=1), TrimmedMean(b=1)],
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("kind", ["P1", "expected"])
def test_milp_matches_brute_force_d1(seed, pool, kind):
    V = honest(4, 1, seed)
    p = (solvers.P1(V, 1, POOLS[pool]) if kind == "P1"
         else solvers.ExpectedValue(V, 1, POOLS[pool], structure="optimal"))
    sol = solvers.solve(p, method="milp")
    assert sol.status == "optimal" and sol.method == "milp"
    inst = p.compile()
    ref = brute(inst, grid_rows(inst, 2001))
    lip = float(inst.u.abs().sum())
    step = float((box(inst)[1] - box(inst)[0]).max()) / 2000
    assert sol.value <= ref + 1e-9                       # exact: never worse than the grid
    assert sol.value >= ref - lip * step - 1e-9          # and the grid is that close to it
    assert sol.bound <= sol.value + 1e-7 and sol.gap <= 1e-6


@pytest.mark.parametrize("seed", [2, 3])
def test_milp_matches_brute_force_d2(seed):
    V = honest(4, 2, seed)
    p = solvers.P1(V, 1, [Comed(f=1), TrimmedMean(b=1)])
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    ref = brute(inst, grid_rows(inst, 81))
    step = float((box(inst)[1] - box(inst)[0]).max()) / 80
    assert sol.status == "optimal"
    assert sol.value <= ref + 1e-9
    assert sol.value >= ref - float(inst.u.abs().sum()) * step - 1e-9


def test_milp_mean_optimum_is_at_the_box_corner():
    V = honest(4, 2, 5)
    p = solvers.TailoredAttack(V, 1, Mean(), objective="inner")
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    lo, hi = box(inst)
    corner = np.where(inst.u.numpy() > 0, lo, hi)
    # the mean is unbounded below: the box's optimum is a feasible point, not the problem's optimum
    assert sol.status == "feasible" and sol.info["unbounded"] and sol.bound is None
    np.testing.assert_allclose(sol.byzantine[0].numpy(), corner, atol=1e-7)


def test_milp_with_similarity_filter_f2_matches_brute_force():
    V = honest(3, 1, 7)  # n = 5, f = 2 (comed needs n > 2f)
    eps = 0.8
    p = solvers.P2(V, 2, [Comed(f=2)], eps=eps)
    sol = solvers.solve(p, method="milp")
    inst = p.compile()
    lo, hi = box(inst)
    axis = np.linspace(lo[0], hi[0], 301)
    pts = [torch.tensor([[a], [b]], dtype=torch.float64) for a in axis for b in axis if abs(a - b) >= eps]
    ref = brute(inst, pts)
    assert sol.status == "optimal" and sol.filter_ok
    assert abs(float(sol.byzantine[0, 0] - sol.byzantine[1, 0])) >= eps - 1e-9
    assert ref - float(inst.u.abs().sum()) * (axis[1] - axis[0]) - 1e-9 <= sol.value <= ref + 1e-9


def test_milp_infeasible_filter_is_a_status_not_an_exception():
    V = honest(3, 1, 7)
    # identical rows cannot be eps apart: infeasible, reported as a status
    p = solvers.P2(V, 2, [Comed(f=2)], eps=0.5, structure="suboptimal")
    sol = solvers.solve(p, method="milp")
    assert sol.status == "infeasible" and sol.certificate is False and sol.gap is None
    # an eps wider than the honest range is feasible: the box makes room for eps-apart rows
    sol = solvers.solve(solvers.P2(V, 2, [Comed(f=2)], eps=1e6), method="milp")
    assert sol.status == "optimal" and sol.filter_ok


@pytest.mark.parametrize("method", ["milp", "coordinatewise"])  # the model, and the closed form
def test_milp_lambda_objective_matches_brute_force_d1(method):
    V = honest(4, 1, 11)
    p = solvers.TailoredAttack(V, 1, TrimmedMean(b=1), structure="optimal", objective="lambda")
    sol = solvers.solve(p, method=method)
    inst = p.compile()
    g = float(inst.u[0])
    best = max(-float(TrimmedMean(b=1)(torch.cat([B, inst.R]))[0]) / g for B in grid_rows(inst, 2001))
    assert sol.status == "optimal" and sol.objective == "lambda"
    assert sol.residual <= 1e-6
    assert best - 1e-9 <= sol.value <= best + 1e-2


@pytest.mark.parametrize("method", ["milp", "coordinatewise"])
def test_milp_lambda_d2_solution_is_exactly_anti_aligned(method):
    V = honest(4, 2, 13)
    sol = solvers.solve(solvers.TailoredAttack(V, 1, Comed(f=1), objective="lambda"), method=method)
    assert sol.status == "optimal"
    assert sol.residual <= 1e-6 * max(1, abs(sol.value))  # the documented tolerance


@pytest.mark.parametrize("rule", [Mean(), Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3),
                                  Krum(f=2, p=1.0), Krum(f=2, p=2.0), Krum(f=1, p=3.0), Krum(f=2, p=math.inf)])
@pytest.mark.parametrize("n", [7, 8])
def test_line_closed_forms_agree_with_the_real_rules(rule, n):
    V = honest(n - 2, 5, n)
    inst = solvers.P3(V, 2, [rule]).compile()
    fast = make_evaluator(inst, rule, 2 ** 20)
    assert not isinstance(fast, _BlackBox)
    slow = _BlackBox(inst, rule, 2 ** 20)
    t = np.concatenate([np.linspace(-3, 3, 61), [0.0, 1e-3, -1e-3, 50.0, -50.0]])
    np.testing.assert_allclose(fast(t), slow(t), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("select,aggregate", [("krum", a) for a in ("trimmed", "krum", "average", "geomed", "comed")]
                         + [("average", "krum"), ("comed", "krum")])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_line_bulyan_krum_from_shared_distances_agrees_with_the_rule(select, aggregate, p):
    """Bulyan with a Krum selection or aggregation along the line: Krum's part from the
    distances shared with the pool's Krum (honest block once, x(t) to the honest rows
    per t) gives the rule's value at every t, where the Byzantine rows are chosen and
    where not. After a geomed selection the rule stays a black box (its memo)."""
    V = honest(9, 4, 17)  # n = 11, f = 2: Bulyan's regime n >= 4f + 3
    if math.isinf(p) and aggregate == "geomed":
        with pytest.raises(ValueError, match="bulyan: p must be finite for a geometric median"):
            Bulyan(f=2, select=select, aggregate=aggregate, p=p)
        return
    rule = Bulyan(f=2, select=select, aggregate=aggregate, p=p)
    pool = [rule, Krum(f=2, p=p), Bulyan(f=2, select=select, aggregate="average", p=p),
            Bulyan(f=2, select="geomed", aggregate="krum", p=p if math.isfinite(p) else 16.0)]
    inst = solvers.P3(V, 2, pool).compile()
    obj = LineObjective(inst, 2 ** 20, True, 1e-6)
    fast = obj.evals[obj.uniq.index(rule)]
    assert isinstance(fast, _BulyanKrum) and fast.distances is obj.evals[obj.uniq.index(Krum(f=2, p=p))].distances
    assert isinstance(obj.evals[obj.uniq.index(pool[3])], _BlackBox)
    slow = _BlackBox(inst, rule, 2 ** 20)
    t = np.concatenate([np.linspace(-2, 2, 41), [0.0, 1e-3, -1e-3, 0.1, 40.0, -40.0]])
    np.testing.assert_allclose(fast(t), slow(t), rtol=1e-9, atol=1e-9)
    key = "krum-cached" if select == "krum" else select
    chosen = {tuple(fast.selections[(key, 2, p, float(x))]) for x in t}
    assert any(0 in c for c in chosen) and any(0 not in c for c in chosen)  # both regimes seen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_line_is_exact_for_piecewise_linear_p3(seed):
    V = honest(6, 3, seed)
    pool = [Comed(f=2), TrimmedMean(b=2)]
    p = solvers.ExpectedValue(V, 2, pool, probs=[0.3, 0.7])
    sol = solvers.solve(p)
    ref = solvers.solve(p, method="milp")
    assert sol.method == "line" and sol.status == "optimal"
    assert ref.status == "optimal"
    assert sol.value == pytest.approx(ref.value, abs=1e-9)


# --- the MILP's exact speed-ups (solvers.milp: reduce, tighten) -------------------------

FORMULATIONS = (dict(), dict(reduce=False), dict(reduce=False, tighten=False))


def pair_grid(inst, m, eps, p):
    """All pairs of Byzantine rows (f = 2) on a grid of the box that pass the filter.

    Each axis holds ``m`` evenly spaced values plus the points ``eps`` inside each
    end of the box (where the dominance argument of solvers.milp puts the optimum,
    so that a reduction that cut it off would lose to the grid).
    """
    lo, hi = box(inst)
    axes = [np.unique(np.concatenate([np.linspace(lo[j], hi[j], m),
                                      [x for x in (lo[j] + eps, hi[j] - eps) if lo[j] <= x <= hi[j]]]))
            for j in range(inst.d)]
    rows = np.array(list(itertools.product(*axes)))                      # (r, d)
    a, b = np.meshgrid(np.arange(len(rows)), np.arange(len(rows)), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if eps > 0:
        dist = np.linalg.norm(rows[a] - rows[b], ord=p, axis=1)
        keep = dist >= eps * (1 - 1e-12)
        a, b = a[keep], b[keep]
    B = torch.tensor(np.stack([rows[a], rows[b]], 1), dtype=torch.float64)  # (points, 2, d)
    return list(B.unbind(0))


def solve_all(p, **kw):
    return [solvers.solve(p, method="milp", **kw, **o) for o in FORMULATIONS]


def check_exact(sols, ref, tol=1e-9, unbounded=False):
    """Every formulation: optimal, never worse than the grid's best ``ref``, a bound
    that is a valid lower bound (never above ``ref``), and one common optimum. An
    ``unbounded`` problem (no finite optimum) gives the box's optimum as a feasible
    point, flagged, with no bound."""
    for s in sols:
        assert s.filter_ok and s.value <= ref + tol * (1 + abs(ref))
        if unbounded:
            assert s.status == "feasible" and s.info["unbounded"] and s.bound is None, (s.status, s.info)
            continue
        assert s.status == "optimal" and not s.info.get("unbounded"), (s.status, s.info)
        assert s.bound is not None and s.bound <= s.value + 1e-7 and s.bound <= ref + tol * (1 + abs(ref))
    vals = [s.value for s in sols]
    assert max(vals) - min(vals) <= 1e-7 * (1 + abs(vals[0]))


FILTER_CASES = [  # (n, d, filter norm, eps, pool, seed)
    (5, 1, math.inf, 0.8, "comed", 0),
    (6, 1, math.inf, 2.5, "comed+trimmed", 1),
    (7, 2, math.inf, 0.9, "comed+trimmed", 2),
    (7, 2, 1.0, 3.0, "comed+trimmed", 3),
    (6, 2, 1.0, 9.0, "trimmed+mean", 4),
    (7, 3, math.inf, 1.5, "comed+trimmed", 5),
    (6, 3, 1.0, 4.0, "comed", 6),
]
F2_POOLS = {"comed": [Comed(f=2)], "comed+trimmed": [Comed(f=2), TrimmedMean(b=2)],
            "trimmed+mean": [TrimmedMean(b=1), Mean()]}


@pytest.mark.parametrize("n,d,p,eps,pool,seed", FILTER_CASES)
def test_milp_speedups_keep_the_optimum_with_filter_f2(n, d, p, eps, pool, seed):
    V = honest(n - 2, d, 100 + seed)
    prob = solvers.P2(V, 2, F2_POOLS[pool], eps=eps, eps_p=p)
    inst = prob.compile()
    sols = solve_all(prob)
    m = {1: 301, 2: 15, 3: 6}[d]
    ref = brute(inst, pair_grid(inst, m, eps, p))
    check_exact(sols, ref, unbounded=pool == "trimmed+mean")  # both rules keep a Byzantine row
    assert sols[0].info["reduced"] and not sols[1].info["reduced"]


@pytest.mark.parametrize("kind", ["P1", "expected", "inner", "suboptimal", "model"])
@pytest.mark.parametrize("d", [1, 3])
def test_milp_speedups_keep_the_optimum_without_filter_f2(kind, d):
    V = honest(5, d, 30 + d)  # n = 7
    pool = [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=1)]
    if kind == "P1":
        prob = solvers.P1(V, 2, pool)
    elif kind == "expected":
        prob = solvers.ExpectedValue(V, 2, pool, probs=[0.2, 0.5, 0.3], structure="optimal")
    elif kind == "inner":
        prob = solvers.TailoredAttack(V, 2, TrimmedMean(b=1), objective="inner")
    elif kind == "suboptimal":
        prob = solvers.P1(V, 2, pool, structure="suboptimal")
    else:
        prob = solvers.P1(V, 2, pool, space="model", model=torch.full((d,), 0.3, dtype=torch.float64))
    inst = prob.compile()
    sols = solve_all(prob)
    if kind == "suboptimal":
        ref = brute(inst, [B.expand(2, -1) for B in grid_rows(inst, {1: 2001, 3: 41}[d])])
    else:
        ref = brute(inst, pair_grid(inst, {1: 301, 3: 6}[d], 0.0, 2.0))
    # TrimmedMean(b=1) keeps one of the f = 2 Byzantine rows: unbounded alone or with weight 0.3
    check_exact(sols, ref, unbounded=kind in ("expected", "inner"))


@pytest.mark.parametrize("p,eps,seed,sign", [(math.inf, 0.7, 0, 1), (1.0, 1.2, 1, -1), (math.inf, 2.0, 2, -1)])
def test_milp_speedups_keep_the_optimum_with_filter_f3(p, eps, seed, sign):
    V = sign * honest(5, 1, 60 + seed)  # n = 8, f = 3, d = 1: every triple of a grid
    prob = solvers.P2(V, 3, [Comed(f=3), TrimmedMean(b=3), TrimmedMean(b=2)], eps=eps, eps_p=p)
    inst = prob.compile()
    sols = solve_all(prob)
    lo, hi = box(inst)
    ax = np.unique(np.concatenate([np.linspace(lo[0], hi[0], 41), lo[0] + eps * np.arange(1, 3),
                                   hi[0] - eps * np.arange(1, 3)]))
    pts = [torch.tensor([[a], [b], [c]], dtype=torch.float64) for a, b, c in itertools.combinations(ax, 3)
           if b - a >= eps * (1 - 1e-12) and c - b >= eps * (1 - 1e-12)]
    check_exact(sols, brute(inst, pts))


@pytest.mark.parametrize("p", [1.0, math.inf])
def test_milp_speedups_agree_with_filter_f3_d2(p):
    V = honest(4, 2, 70)  # n = 7, f = 3
    prob = solvers.P2(V, 3, [Comed(f=3), TrimmedMean(b=2)], eps=1.0, eps_p=p)
    sols = solve_all(prob)
    for s in sols:
        assert s.status == "optimal" and s.filter_ok and s.bound <= s.value + 1e-7
    vals = [s.value for s in sols]
    assert max(vals) - min(vals) <= 1e-7 * (1 + abs(vals[0]))


@pytest.mark.parametrize("rule", [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=1)])
def test_milp_tighten_keeps_the_lambda_optimum(rule):
    V = honest(5, 2, 80)  # n = 7: lambda is not monotone, so only tighten applies
    prob = solvers.TailoredAttack(V, 2, rule, objective="lambda")
    new, old = (solvers.solve(prob, method="milp", tighten=t) for t in (True, False))
    assert not new.info["reduced"]
    assert new.value == pytest.approx(old.value, rel=1e-6, abs=1e-9)
    assert new.residual <= 1e-6 * max(1, abs(new.value))
    if getattr(rule, "b", 2) < 2:  # a Byzantine row survives the trim: any lambda, the box's best is only feasible
        assert new.status == old.status == "feasible" and new.info["unbounded"] and new.bound is None
        return
    assert new.status == old.status == "optimal"
    assert new.bound >= new.value - 1e-7


def test_milp_reduction_replaces_the_filter_disjunction():
    """l_inf, f = 2: d binaries choose the separating coordinate (2d before, plus the
    order-statistic binaries), and without a filter no binary is left."""
    V = honest(5, 3, 90)
    pool = [Comed(f=2), TrimmedMean(b=2)]
    red, full = (solvers.solve(solvers.P2(V, 2, pool, eps=0.5, eps_p=math.inf), method="milp", reduce=r)
                 for r in (True, False))
    assert red.info["binaries"] <= 3 < full.info["binaries"] and red.value == pytest.approx(full.value, abs=1e-9)
    assert solvers.solve(solvers.P1(V, 2, pool), method="milp").info["binaries"] == 0


@pytest.mark.parametrize("rule", [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)])
@pytest.mark.parametrize("n", [7, 8])
def test_order_statistic_running_sums_match_the_clamps_everywhere(rule, n):
    # The running-sum evaluator against the clamp formula computed directly, on a
    # line with zero, positive and negative coordinates and an offset w_0, at every
    # breakpoint (where hinges switch on), between them and far out.
    import dataclasses
    V = honest(n - 2, 9, 100 + n).double()
    inst = solvers.P3(V, 2, [rule]).compile()
    g = torch.Generator().manual_seed(n)
    line = torch.randn(9, generator=g, dtype=torch.float64)
    line[[2, 5]] = 0.0
    inst = dataclasses.replace(inst, line=line, offset=0.1 * torch.randn(9, generator=g, dtype=torch.float64))
    fast = make_evaluator(inst, rule, 2 ** 20)
    assert not isinstance(fast, _BlackBox)
    bp = np.sort(fast.breakpoints())
    t = np.concatenate([bp, (bp[1:] + bp[:-1]) / 2, [0.0, 1e4, -1e4, bp[0] - 1, bp[-1] + 1]])
    H = torch.sort(inst.R, 0).values
    m, f = H.shape[0], inst.f
    ks = [n // 2] if type(rule) is Comed and n % 2 else (
        [n // 2 - 1, n // 2] if type(rule) is Comed else list(range(rule.b, n - rule.b)))
    inf = torch.full((9,), math.inf, dtype=torch.float64)
    x = inst.offset + torch.as_tensor(t)[:, None] * line
    v = torch.stack([torch.minimum(torch.maximum(x, H[k - f] if k >= f else -inf), H[k] if k < m else inf)
                     for k in ks]).mean(0)
    direct = ((v - inst.offset) @ inst.u).numpy()
    np.testing.assert_allclose(fast(t), direct, rtol=1e-10, atol=1e-10 * float(np.abs(t).max() + 1))
    slow = _BlackBox(inst, rule, 2 ** 20)  # and against the rule itself
    np.testing.assert_allclose(fast(t[:40]), slow(t[:40]), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["P3", "ExpectedValue"])
def test_piecewise_linear_problems_are_optimal_beyond_the_zoom_breakpoint_cap(kind):
    # 12 rows at d = 6000 have 24,000 (comed) to 80,000 breakpoints (above the zoom path's 20,000):
    # the vectorized path scores all of them and must be optimal, never above the
    # real rules at any sampled t, and equal to the best breakpoint by direct clamps.
    V = honest(10, 6000, 7).double()
    pool = [Comed(f=2)] if kind == "P3" else [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)]
    prob = solvers.P3(V, 2, pool) if kind == "P3" else solvers.ExpectedValue(V, 2, pool, probs=[0.5, 0.3, 0.2])
    sol = solvers.solve(prob)
    assert sol.method == "line" and sol.status == "optimal"
    assert sol.iterations > 20000
    inst = prob.compile()
    boxes = [_BlackBox(inst, r, 2 ** 22) for r in pool]
    w = np.asarray(inst.weights, dtype=np.float64)
    lo, hi = sol.info["domain"]
    t = np.random.default_rng(0).uniform(-3, 3, 300) * sol.info["t"]
    t = np.concatenate([t[(t >= lo) & (t <= hi)], [lo, hi]])
    sampled = sum(wk * b(t) for wk, b in zip(w, boxes)) if kind == "ExpectedValue" else boxes[0](t)
    tol = 1e-9 * abs(sol.value)  # the rules' own rounding, far out on the line where the value is flat
    assert sol.value <= sampled.min() + tol
    bp = np.unique(np.concatenate([make_evaluator(inst, r, 2 ** 22).breakpoints() for r in pool]))
    bp = np.concatenate([bp[(bp >= lo) & (bp <= hi)], [lo, hi]])
    near = bp[np.argsort(np.abs(bp - sol.info["t"]))[:50]]  # the breakpoints around the answer, by the rules
    at_bp = sum(wk * b(near) for wk, b in zip(w, boxes)) if kind == "ExpectedValue" else boxes[0](near)
    assert sol.value == pytest.approx(at_bp.min(), abs=tol)
