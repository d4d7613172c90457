"""Scalable methods (line, scp, relax): never better than the exact optimum, equal to it
where the paper's attacks are known to succeed, statuses and certificates."""

import math

import numpy as np
import pytest
import torch

import solvers
from solvers.line import line_rows
from mixtailor_game.rules import Comed, Geomed, Krum, TrimmedMean


def honest(k, d, seed, mu=0.7, sigma=1.0):
    g = torch.Generator().manual_seed(seed)
    return sigma * torch.randn(k, d, generator=g, dtype=torch.float64) + mu


def krum_reference_d1(b: np.ndarray, R: np.ndarray, f: int) -> np.ndarray:
    """Slow, obviously-correct Krum (eq. (3)) for d = 1: index of the chosen row of
    ``[b_k; R]`` for every grid value ``b_k`` (plain numpy float64, ties to the lowest index)."""
    X = np.concatenate([b[:, None], np.broadcast_to(R, (len(b), len(R)))], 1)  # [m, n]
    n = X.shape[1]
    D = (X[:, :, None] - X[:, None, :]) ** 2
    S = np.sort(D, 2)[:, :, 1:n - f - 1].sum(2)  # drop the zero self-distance, keep n - f - 2
    return X[np.arange(len(b)), np.argmin(S, 1)]


def krum_brute_d1(inst, lo, hi, m=20001):
    """min over b in [lo, hi] (grid) of <Krum([b; R]), u>, by the reference above."""
    b = np.linspace(lo, hi, m)
    chosen = krum_reference_d1(b, inst.R.numpy()[:, 0], inst.rules[0].f)
    vals = chosen * float(inst.u[0])
    i = int(np.argmin(vals))
    G = torch.cat([torch.tensor([[b[i]]], dtype=torch.float64), inst.R])
    assert float(inst.rules[0](G) @ inst.u) == pytest.approx(vals[i])  # the real rule agrees
    return float(vals[i]), (hi - lo) / (m - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_eps_vs_krum_line_and_scp_reach_the_brute_force_optimum(seed):
    V = honest(4, 1, seed, mu=0.3)
    p = solvers.TailoredAttack(V, 1, Krum(f=1), structure="optimal", objective="inner")
    inst = p.compile()
    R = inst.R.numpy()[:, 0]
    ref, step = krum_brute_d1(inst, R.min() - 3, R.max() + 3)
    slack = abs(float(inst.u[0])) * step
    for method in ("line", "scp"):
        sol = solvers.solve(p, method=method)
        assert sol.value >= ref - slack - 1e-12, method   # never better than the optimum
        assert sol.value <= ref + slack + 1e-12, method   # and reaches it (d = 1: the line is everything)
    # the paper's IPM with a small eps defeats Krum when the noise dominates the mean
    V = honest(6, 20, seed, mu=0.05, sigma=1.0)
    s3 = solvers.solve(solvers.P3(V, 2, [Krum(f=2)]))
    assert s3.value < 0 and s3.certificate is True and s3.per_rule_inner[0] < 0


@pytest.mark.parametrize("seed", [0, 1])
def test_large_eps_vs_comed_line_reaches_the_milp_optimum(seed):
    V = honest(4, 3, seed)
    for p in (solvers.TailoredAttack(V, 1, Comed(f=1), objective="inner"),
              solvers.ExpectedValue(V, 1, [Comed(f=1)], structure="optimal")):
        exact = solvers.solve(p, method="milp")
        line = solvers.solve(p, method="line")
        scp = solvers.solve(p, method="scp")
        assert exact.status == "optimal"
        assert line.value == pytest.approx(exact.value, abs=1e-9)
        assert scp.value == pytest.approx(exact.value, abs=1e-9)
        # the paper's IPM with a large eps (rows -t * sum V, t large) is optimal against comed
        inst = p.compile()
        ipm = solvers.evaluate(inst, line_rows(inst, [100.0])[0])
        assert ipm["value"] == pytest.approx(exact.value, abs=1e-9)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_scalable_methods_never_beat_the_exact_optimum(seed):
    V = honest(5, 2, seed)
    pool = [Comed(f=2), TrimmedMean(b=2)]
    for p in (solvers.P1(V, 2, pool), solvers.ExpectedValue(V, 2, pool, probs=[0.2, 0.8], structure="optimal")):
        exact = solvers.solve(p, method="milp")
        assert exact.status == "optimal"
        for method in ("line", "scp"):
            sol = solvers.solve(p, method=method)
            assert sol.value >= exact.value - 1e-9, method
    p3 = solvers.P3(V, 2, pool)
    exact = solvers.solve(p3, method="milp")
    relax = solvers.solve(p3, method="relax")
    line = solvers.solve(p3, method="line")
    assert relax.value >= exact.value - 1e-9 and line.value >= exact.value - 1e-9
    assert relax.info["bound_valid"] and relax.bound <= exact.value + 1e-9
    assert relax.info["gap_to_line"] == pytest.approx(relax.value - line.value)
    assert relax.gap == pytest.approx(abs(relax.value - relax.bound), abs=1e-12)


def test_scp_improves_on_the_line_start_at_moderate_scale():
    V = honest(10, 20, 7, mu=0.1)
    p = solvers.P1(V, 2, [Comed(f=2), Krum(f=2)])
    line = solvers.solve(p, method="line")
    scp = solvers.solve(p, method="scp", max_iter=30)
    assert scp.method == "scp" and scp.status in ("feasible", "budget")
    assert scp.value <= line.value + 1e-12
    assert scp.iterations >= 1


def test_p2_with_filter_keeps_rows_apart_and_certifies():
    V = honest(5, 2, 8, mu=0.05)
    eps = 0.05
    p = solvers.P2(V, 2, [Krum(f=2)], eps=eps)
    sol = solvers.solve(p)
    assert sol.method == "scp" and sol.filter_ok
    assert float((sol.byzantine[0] - sol.byzantine[1]).norm()) >= eps * (1 - 1e-9)
    assert sol.certificate == (sol.value < 0)
    assert sol.value < 0  # small eps defeats Krum here


@pytest.mark.parametrize("method", ["line", "scp", "milp", None])
def test_identical_rows_with_a_filter_are_infeasible(method):
    V = honest(5, 2, 9)
    p = solvers.P2(V, 2, [Comed(f=2)], eps=0.1, structure="suboptimal")
    sol = solvers.solve(p, method=method)
    assert sol.status == "infeasible" and sol.certificate is False
    assert sol.byzantine.shape == (2, 2)
    # the rows are the best the method finds with the filter ignored (zero rows before)
    free = solvers.solve(solvers.P2(V, 2, [Comed(f=2)], eps=0.0, structure="suboptimal"), method=sol.method)
    assert free.status != "infeasible" and "filter ignored" in sol.info["reason"]
    assert torch.equal(sol.byzantine, free.byzantine) and sol.value == free.value


def test_a_zero_honest_mean_scores_zero_everywhere_and_is_optimal():
    """Honest rows summing to zero make mu = 0: every Byzantine row scores 0, and the line
    is one point; it came back `infeasible`, "not finite anywhere on the line" (NaN from
    the closed forms' breakpoints)."""
    V0 = torch.tensor([[1.0, 2], [-1, -2], [3, 1], [-3, -1]], dtype=torch.float64)
    for prob in (solvers.P3(V0, 1, [Comed(f=1)]), solvers.P3(torch.zeros(4, 2), 1, [Comed(f=1), Krum(f=1)]),
                 solvers.ExpectedValue(V0, 1, [Comed(f=1), Geomed(f=1)])):
        sol = solvers.solve(prob)
        assert (sol.method, sol.status, sol.value) == ("line", "optimal", 0.0)
        assert "honest mean is zero" in sol.info["reason"]
    sol = solvers.solve(solvers.P1(V0, 1, [Krum(f=1), Geomed(f=1)]), method="scp")  # said "feasible"
    assert (sol.status, sol.value) == ("optimal", 0.0) and "honest mean is zero" in sol.info["reason"]


def test_values_are_recomputed_by_the_real_rules():
    V = honest(6, 4, 10)
    pool = [Comed(f=2), Krum(f=1, p=1.0), Geomed(f=2)]
    sol = solvers.solve(solvers.P3(V, 2, pool))
    G = torch.cat([sol.byzantine, V])
    mu = V.mean(0)
    inner = [float(r(G) @ mu) for r in pool]
    assert sol.per_rule_inner == pytest.approx(inner, rel=1e-9, abs=1e-12)
    assert sol.value == pytest.approx(max(inner))
    cos = [float(r(G) @ mu / (r(G).norm() * mu.norm())) for r in pool]
    assert sol.per_rule_cosine == pytest.approx(cos, rel=1e-9, abs=1e-12)
    assert sol.rule_names == tuple(r.name for r in pool)
    assert sol.wall_time > 0 and sol.method == "line"


def test_line_search_pruning_gives_the_same_answer_as_full_evaluation():
    V = honest(8, 6, 11, mu=0.2)
    pool = [Comed(f=2), Krum(f=2), Geomed(f=2, p=2.0)]
    a = solvers.solve(solvers.P3(V, 2, pool))
    b = solvers.solve(solvers.P3(V, 2, pool), fast=False)
    assert a.value == pytest.approx(b.value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_solution_reuses_the_rules_the_search_ran_at_its_point(seed, monkeypatch):
    """The costly rules were run on exactly the returned rows by the search: the
    solution reuses those values (equal to fresh calls of the real rules) and runs
    only the closed-form ones again."""
    from mixtailor_game.rules import Bulyan
    from solvers import solution

    V = honest(10, 6, 20 + seed, mu=0.3)
    pool = [Comed(f=2), Krum(f=2, p=3.0), Geomed(f=2, p=2.0), Geomed(f=2, p=5.0),
            Bulyan(f=2, select="geomed", aggregate="average", p=3.0), TrimmedMean(b=2)]
    runs = []
    real = solution.rule_output
    monkeypatch.setattr(solution, "rule_output", lambda r, G: runs.append(r) or real(r, G))
    sol = solvers.solve(solvers.P3(V, 2, pool))
    G = torch.cat([sol.byzantine, V])
    inner = [float(r(G) @ V.mean(0)) for r in pool]
    assert sol.per_rule_inner == pytest.approx(inner, rel=1e-9, abs=1e-12)
    cos = [float(r(G) @ V.mean(0) / (r(G).norm() * V.mean(0).norm())) for r in pool]
    assert sol.per_rule_cosine == pytest.approx(cos, rel=1e-9, abs=1e-12)
    assert sol.value == pytest.approx(max(inner))
    assert set(runs) == {Comed(f=2), Krum(f=2, p=3.0), TrimmedMean(b=2)}


def test_certification_runs_the_cheapest_rule_first_when_no_cut_is_predicted():
    """Completing a candidate (certify) where every rule left is predicted below the next
    bound: all of them run unless a prediction is wrong, so the cheapest goes first
    (a rule that jumps where its neighbours did not then cuts before the costly ones
    run). During the zoom (settle) the rule predicted highest goes first, and none
    when all are predicted below the candidate's own bound."""
    from solvers.line import LineObjective

    inst = solvers.P3(honest(5, 2, 3), 1, [Comed(f=1), Krum(f=1, p=1.0), Krum(f=1, p=3.0)]).compile()
    obj = LineObjective(inst, 2 ** 20, True, 1e-6)
    c = 0.5
    obj.parts[c] = np.array([1.0, -np.inf, -np.inf])
    obj.ran[c] = np.array([True, False, False])
    obj.warm_ran[c] = np.zeros(3, dtype=bool)
    obj._refresh(c)
    for k, v in ((1, 0.5), (2, 0.3)):  # predictions: rule 1 at 0.5, rule 2 at 0.3, both below c's bound 1
        obj.known[k], obj.known_t[k] = {0.0: v, 1.0: v}, [0.0, 1.0]
    costs = [0.01, 1.0, 0.001]  # rule 1 costly, rule 2 cheap
    obj._cost = lambda c, k: costs[k]
    assert obj._next_rule(c, 2.0, settle=False) == 2
    costs[1:] = [0.001, 1.0]
    assert obj._next_rule(c, 2.0, settle=False) == 1
    assert obj._next_rule(c, 2.0, settle=True) is None
    obj.known[2] = {0.0: 1.5, 1.0: 1.5}  # above c's bound, below the threshold: the zoom runs it
    assert obj._next_rule(c, 2.0, settle=True) == 2
    obj.known[1] = {0.0: 2.5, 1.0: 2.5}  # predicted to cut: first either way
    assert obj._next_rule(c, 2.0, settle=False) == 1 and obj._next_rule(c, 2.0, settle=True) == 1


def test_the_p3_search_does_not_depend_on_the_clock(monkeypatch):
    """The search orders its rule runs by estimated costs, never by measured times:
    under two very different clocks it runs the same rules at the same candidates
    (steered by measured times, the seed-1 paper-pool P3 came back at a different
    answer when the clock was jittered)."""
    import random
    import time

    from mixtailor_game.rules import Bulyan
    from solvers.line import LineObjective

    pool = [Comed(f=2), Krum(f=2, p=1.0), Krum(f=2, p=3.0), Geomed(f=2, p=2.0), Geomed(f=2, p=4.0),
            Bulyan(f=2, select="average", aggregate="krum", p=2.0), Bulyan(f=2, select="geomed", p=3.0),
            Bulyan(f=2, select="comed", aggregate="average", p=2.0)]
    prob = solvers.P3(honest(9, 40, 5, mu=0.3), 2, pool)
    real_run = LineObjective._run
    runs = []

    def logged(self, c, k, warm):
        runs[-1].append((c, k))
        return real_run(self, c, k, warm)

    monkeypatch.setattr(LineObjective, "_run", logged)
    answers = []
    for seed in (0, 1):
        rng, now = random.Random(seed), [0.0]

        def clock():  # every call a random 0-1 s later: some rules look 100x costlier than others
            now[0] += rng.random()
            return now[0]

        monkeypatch.setattr(time, "perf_counter", clock)
        runs.append([])
        sol = solvers.solve(prob, method="line")
        answers.append((sol.info["t"], sol.value))
    monkeypatch.undo()
    assert len(runs[0]) > len(pool)  # the search had choices to make
    assert runs[0] == runs[1]
    assert answers[0] == answers[1]


def _zoom_pool():
    from mixtailor_game.rules import Bulyan

    return [Comed(f=2), Krum(f=2, p=1.0), Krum(f=2, p=3.0), Geomed(f=2, p=2.0), Geomed(f=2, p=4.0),
            Bulyan(f=2, select="average", aggregate="krum", p=2.0), Bulyan(f=2, select="geomed", p=3.0)]


def _watch_zoom(monkeypatch, check):
    """Call ``check(objective, t, s, opts)`` at every zoom round of the line searches."""
    import solvers.line as line

    objectives = []
    init, zoom = line.LineObjective.__init__, line._zoom_candidates

    def keep(self, *args, **kwargs):
        init(self, *args, **kwargs)
        objectives.append(self)

    def watched(t, s, opts):
        check(objectives[-1], t, s, opts)
        return zoom(t, s, opts)

    monkeypatch.setattr(line.LineObjective, "__init__", keep)
    monkeypatch.setattr(line, "_zoom_candidates", watched)
    return objectives


def test_exact_rounds_centre_the_zoom_on_a_completed_candidate(monkeypatch):
    """``exact_rounds=k``: before each of the first k zoom rounds of a P3 the best
    candidate has every rule run (by default the zoom centres on the lowest bound,
    where rules predicted below it are left); bad values raise one clear error."""
    prob = solvers.P3(honest(9, 40, 0, mu=0.3), 2, _zoom_pool())
    completed = []
    _watch_zoom(monkeypatch, lambda obj, t, s, opts: completed[-1].append(obj.done[float(t[int(np.argmin(s))])]))
    values = []
    for k in (0, 2):
        completed.append([])
        values.append(solvers.solve(prob, method="line", rounds=3, exact_rounds=k).value)
    assert completed[0][0] is False  # the default zooms on a bound here
    assert completed[1][:2] == [True, True]
    assert values[1] <= values[0]
    with pytest.raises(ValueError, match=r"solvers.line: exact_rounds must be >= 0, got -1"):
        solvers.solve(prob, method="line", exact_rounds=-1)


def test_the_zoom_centres_on_candidates_with_their_cheap_rules_run(monkeypatch):
    """Before each zoom round of a P3 the ``keep`` candidates of lowest bound have every
    rule of estimated cost up to ``CHEAP_RULE`` run (Krum jumps where its neighbours
    predicted it low); a geometric median is never among them."""
    import solvers.line as line

    left = []

    def cheap_left(obj, t, s, opts):
        for i in np.argsort(s, kind="stable")[: opts["keep"]]:
            c = float(t[i])
            left.append([k for k in np.flatnonzero(~obj.ran[c]) if obj._cost(c, int(k)) <= line.CHEAP_RULE])

    objectives = _watch_zoom(monkeypatch, cheap_left)
    for seed in (0, 1, 2):
        solvers.solve(solvers.P3(honest(9, 40, seed, mu=0.3), 2, _zoom_pool()), method="line", rounds=3)
    assert len(left) == 18 and all(k == [] for k in left)
    obj = objectives[-1]
    costly = [k for k, e in enumerate(obj.evals) if type(getattr(e, "rule", None)) is Geomed]
    assert all(line.CHEAP_RULE < obj._cost(c, k) for k in costly for c in (0.0, 1e3))


def test_run_costs_count_out_shared_selections_distances_and_warm_starts():
    """A rule's estimated cost drops once another pool entry left its selection or
    l_p distances at that point, and a geometric median's with a start nearby."""
    from mixtailor_game.rules import Bulyan
    from solvers.line import LineObjective

    pool = [Comed(f=2), Krum(f=2, p=3.0), Geomed(f=2, p=3.0), Geomed(f=2, p=7.5),
            Bulyan(f=2, select="average", aggregate="krum", p=3.0),
            Bulyan(f=2, select="average", aggregate="comed", p=3.0), Bulyan(f=2, select="geomed", p=3.0)]
    inst = solvers.P3(honest(9, 30, 2), 2, pool).compile()
    obj = LineObjective(inst, 2 ** 20, True, 1e-6)
    k = {repr(r): i for i, r in enumerate(obj.uniq)}
    krum, geo3, geo75 = k[repr(pool[1])], k[repr(pool[2])], k[repr(pool[3])]
    bk, bb, bg = k[repr(pool[4])], k[repr(pool[5])], k[repr(pool[6])]
    c = 0.3
    cold = {j: obj._cost(c, j) for j in (krum, geo3, geo75, bk, bb, bg)}
    assert cold[krum] < cold[geo3] < cold[geo75] < cold[bg]  # a fractional p costs more
    assert cold[bb] > cold[krum]  # its selection: theta nearest-row rounds
    obj.evals[bb].warm(c)  # leaves the average selection at c for the Bulyan(average, krum)
    assert obj._cost(c, bk) < cold[bk] / 2
    obj.evals[bk](np.array([0.35]))  # and the other way round
    assert obj._cost(0.35, bb) < cold[bb] / 2
    obj.evals[krum](np.array([c]))  # leaves the p = 3 distances from x(c)
    assert obj._cost(c, krum) < cold[krum] / 2
    for x in (0.2, 0.4):
        obj.evals[geo3].warm(x)
        obj.evals[bg].warm(x)
    assert obj._cost(c, geo3) < obj._cost(0.41, geo3) < obj._cost(5.0, geo3) == cold[geo3]
    assert obj._cost(c, bg) < cold[bg] / 4


def test_a_candidate_cut_on_a_tie_never_wins_unverified():
    """Branch and bound: t = 0 is cut by rule A at exactly the best value (found at
    t = 1), with rule B, which is 5 there, never run. Its bound must lose the tie,
    or the search would return t = 0 as if its value were 1."""
    from solvers.line import LineObjective

    inst = solvers.P3(honest(5, 2, 3), 1, [Comed(f=1)]).compile()
    obj = LineObjective(inst, 2 ** 20, True, 1e-6)

    class Fake:
        piecewise_linear = False

        def __init__(self, tier, values):
            self.tier, self.values = tier, values

        def __call__(self, t):
            return np.array([self.values[float(x)] for x in t])

        def lower_bound(self, t):
            return np.full(len(t), -np.inf)

    cheap = Fake(0, {0.0: 0.0, 1.0: -1.0})  # t = 1 has the better bound: completed first
    obj.evals = [cheap, Fake(2, {0.0: 1.0, 1.0: 1.0}), Fake(2, {0.0: 5.0, 1.0: 0.0})]
    obj.order, obj.near = [1, 2], math.inf
    t, s = obj.scores(np.array([0.0, 1.0]))
    assert s[1] == 1.0 and s[0] > 1.0
    assert t[int(np.argmin(s))] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lazy_max_search_returns_the_minimum_over_its_candidates(seed):
    """P3's best-first search runs only the rules predicted to matter during the zoom
    (geometric medians warm-started), then certifies: its answer is the minimum over
    all its candidates of the max over every rule, each run cold (brute force)."""
    from mixtailor_game.rules import Bulyan
    from solvers.line import solve_line

    V = honest(10, 6, 40 + seed, mu=0.3)
    pool = [Comed(f=2), Krum(f=2, p=3.0), Krum(f=2, p=1.0), Geomed(f=2, p=2.0), Geomed(f=2, p=5.0),
            Bulyan(f=2, select="krum", aggregate="krum", p=2.0),
            Bulyan(f=2, select="comed", aggregate="average", p=3.0), TrimmedMean(b=2)]
    if seed == 1:  # predicted by its sibling (same aggregation) until it runs
        pool.append(Bulyan(f=2, select="geomed", aggregate="krum", p=5.0))
    inst = solvers.P3(V, 2, pool).compile()
    t_best, score, info = solve_line(inst)
    obj = info["obj"]
    assert obj.ran[t_best].all() and not obj.warm_ran[t_best].any()  # every rule ran there, cold
    rules = [e.rule if hasattr(e, "rule") else None for e in obj.evals]
    for k, sib in enumerate(obj.siblings):
        expect = ([j for j, r in enumerate(rules) if r == Bulyan(f=2, select="krum", aggregate="krum", p=2.0)]
                  if rules[k] == Bulyan(f=2, select="geomed", aggregate="krum", p=5.0) else [])
        assert sib == expect
    cands = sorted(obj.parts)
    assert len(cands) > 50
    u = inst.u.double()
    full = []
    for c in cands:
        G = torch.cat([line_rows(inst, [c])[0], inst.R])
        full.append(max(float((r(G).double() - inst.offset.double()) @ u) for r in pool))
    assert score == pytest.approx(min(full), rel=1e-9, abs=1e-12)
    assert score == pytest.approx(full[cands.index(t_best)], rel=1e-12, abs=1e-12)
    # and most candidates were settled by far fewer runs than every rule
    runs = sum(int(obj.ran[c].sum()) for c in cands)
    assert runs < 0.5 * len(cands) * len(obj.evals)


def test_warm_geometric_medians_start_from_their_solved_neighbours():
    """The line search's warm geometric median: cold until two points are solved; between
    two solved points the straight line between their outputs (one IRLS step); outside
    them the line through the two nearest, up to four spacings out; cold beyond (P3:
    its answer's warm values run again cold). An expectation's starts far out from
    the nearest output. Warm values are flagged (certify() runs them again cold) and
    stay out of memo."""
    from solvers.line import _BlackBox

    V = honest(10, 6, 33, mu=0.3)
    rule = Geomed(f=2, p=5.0)
    inst = solvers.P3(V, 2, [rule]).compile()
    box = _BlackBox(inst, rule, 2 ** 20)
    assert box.warm(0.5)[1] is False and box.warm(1.0)[1] is False  # nothing / one point solved
    z05, z10 = box.starts.data[0.5], box.starts.data[1.0]
    assert box.starts.ts == [0.5, 1.0] and 0.5 in box.memo and 1.0 in box.memo
    start, between = box.starts.start(0.75)
    assert between and torch.allclose(start, (z05 + z10) / 2, rtol=1e-12, atol=0)
    start, between = box.starts.start(2.5)  # 3 spacings out on the right
    assert not between and torch.allclose(start, 4 * z10 - 3 * z05, rtol=1e-12, atol=1e-12)
    start, between = box.starts.start(0.0)  # one spacing out on the left
    assert not between and torch.allclose(start, 2 * z05 - z10, rtol=1e-12, atol=1e-12)
    assert box.starts.start(3.5) == (None, False)  # 5 spacings out: no start
    G = torch.cat([line_rows(inst, [0.75])[0], inst.R])
    cold = float((rule(G).double() - inst.offset.double()) @ inst.u.double())
    value, warm = box.warm(0.75)
    assert warm and 0.75 not in box.memo and box.starts.ts == [0.5, 0.75, 1.0]
    assert value == pytest.approx(cold, rel=1e-6)
    assert box.warm(3.5)[1] is False and 3.5 in box.memo  # ran cold
    expectation = _BlackBox(solvers.ExpectedValue(V, 2, [rule]).compile(), rule, 2 ** 20)
    assert expectation.warm(0.5)[1] is False  # nothing solved: cold
    G = torch.cat([line_rows(inst, [30.0])[0], inst.R])
    cold = float((rule(G).double() - inst.offset.double()) @ inst.u.double())
    value, warm = expectation.warm(30.0)  # far out: from the nearest output
    assert warm and 30.0 not in expectation.memo and value == pytest.approx(cold, rel=1e-5)
    # the rows buffer: rewritten in place per t, equal to the concatenation
    first = box.rows.at(0.3)
    again = box.rows.at(0.7)
    assert again.data_ptr() == first.data_ptr()
    assert torch.equal(again, torch.cat([line_rows(inst, [0.7])[0], inst.R]))


def test_starts_store_keeps_the_points_nearest_the_newest():
    """The warm-start store holds at most ``cap`` points, dropping the one farthest from
    the point just kept; ``match`` restricts the neighbours to matching values."""
    from solvers.line import _Starts

    store = _Starts(cap=3)
    for t in (0.0, 1.0, 2.0, 3.0):
        store.keep(t, torch.tensor([t]))
    assert store.ts == [1.0, 2.0, 3.0] and set(store.data) == {1.0, 2.0, 3.0}
    store.keep(-1.0, torch.tensor([-1.0]))  # 3.0 is now the farthest
    assert store.ts == [-1.0, 1.0, 2.0]
    start, between = store.start(1.5)
    assert between and float(start) == 1.5
    start, between = store.start(1.5, match=lambda v: float(v) != 2.0)  # neighbours -1 and 1
    assert not between and float(start) == 1.5  # extrapolated through -1 and 1
    assert float(store.start(9.0, match=lambda v: float(v) != 2.0)[0]) == 9.0  # four spacings out: kept
    assert store.start(9.5, match=lambda v: float(v) != 2.0) == (None, False)  # beyond: none
    assert store.start(5.0, match=lambda v: float(v) == 2.0) == (None, False)  # one point: none
    # an expectation's store: one spacing out at most, else the nearest output
    store.outward = True
    assert float(store.start(3.0, match=lambda v: float(v) != 2.0)[0]) == 3.0  # one spacing out
    start, between = store.start(3.5, match=lambda v: float(v) != 2.0)  # farther: the nearest's output
    assert not between and float(start) == 1.0
    assert float(store.start(-9.0)[0]) == -1.0
    assert float(store.start(5.0, match=lambda v: float(v) == 2.0)[0]) == 2.0  # one point: its output
    assert store.start(5.0, match=lambda v: False) == (None, False)  # none solved: none


@pytest.mark.parametrize("search", ["exhaustive", "lazy"])
def test_expected_search_runs_far_candidates_outward_from_their_inner_neighbours(monkeypatch, search):
    """In an expectation the rules run at the candidates within 2 s0 first (every other
    one, then those between; lazy: those between after the far ones, where a costly
    rule may be predicted instead), then the farther ones outward, one side at a time,
    so that each far geometric median starts from its inner neighbour's output (a
    straight line through two far points overshoots: the median saturates)."""
    from solvers import line

    V = honest(10, 6, 41, mu=0.3)
    inst = solvers.ExpectedValue(V, 2, [Comed(f=2), Geomed(f=2, p=4.0)]).compile()
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6, search)
    s0 = obj.near
    near = np.array([-1.5, -0.5, 0.0, 0.5, 1.5]) * s0
    far = np.array([-300.0, -30.0, -3.0, 3.0, 30.0, 300.0]) * s0
    seen, starts = [], []
    box = next(e for e in obj.evals if isinstance(e, line._BlackBox))
    real_warm, real_start = box.warm, box.starts.start

    def warm(t):
        seen.append(t)
        return real_warm(t)

    def start(t, get=None, match=None):
        out = real_start(t, get, match)
        starts.append((t, None if out[0] is None else out[0].clone()))
        return out

    monkeypatch.setattr(box, "warm", warm)
    monkeypatch.setattr(box.starts, "start", start)
    obj.scores(np.concatenate([near, far]))
    between = [near[1], near[3]]
    outward = [*far[:3][::-1], *far[3:]]
    if search == "exhaustive":
        assert seen == pytest.approx([near[0], near[2], near[4]] + between + outward)
    else:  # every other far one too (the outermost run); the rest where the search needs them
        solved = [near[0], near[2], near[4], far[2], far[0], far[3], far[5]]
        assert seen[:7] == pytest.approx(solved)
        assert all(min(abs(x - y) for y in between + [far[1], far[4]]) < 1e-12 * s0 for x in seen[7:])
    solved = box.starts.data  # 11 points: none dropped (cap 32)
    far_starts = [(t, s) for t, s in starts if abs(t) > 2 * s0]
    assert len(far_starts) == (len(far) if search == "exhaustive" else len(far_starts)) >= 4
    if search == "lazy":  # +-3 s0 is one spacing out (_Starts); +-30 s0 between solved ones
        far_starts = [(t, s) for t, s in far_starts if abs(t) > 100 * s0]
    for t, s in far_starts:  # from the inner neighbour solved before it, not a straight line
        before = seen[:min(i for i, x in enumerate(seen) if x == pytest.approx(t))]
        inner = max((x for x in before if abs(x) < abs(t) and x * t > 0), key=abs)
        assert s is not None and torch.equal(s, solved[inner])


def test_expected_candidates_keep_one_of_the_near_row_cluster():
    """The points of the line nearest to the honest rows (and their midpoints) cluster
    in high dimension; an expectation keeps those at least s0 / 64 from a grid point
    and from each other (every candidate costs every rule), a max problem keeps all."""
    from solvers import line

    V = honest(10, 400, 42, mu=0.3)
    pool = [Comed(f=2), Geomed(f=2, p=3.0)]
    opts = dict(t_max=1e3, n_geo=16, n_lin=17, max_breakpoints=0, t_range=None)
    inst = solvers.ExpectedValue(V, 2, pool).compile()
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    t_exp = line.candidates(inst, obj, opts)[0]
    inst3 = solvers.P3(V, 2, pool).compile()
    t_max = line.candidates(inst3, line.LineObjective(inst3, 2 ** 20, True, 1e-6), opts)[0]
    l = inst.line64
    proj = ((inst.R.double() - inst.offset64) @ l / float(l @ l)).numpy()
    assert all(np.isin(proj, t_max))  # the max problem: every nearest point
    extra = np.setdiff1d(t_exp, t_max)
    assert len(extra) == 0 and 1 <= len(np.setdiff1d(t_max, t_exp)) < 19
    s0 = obj.near
    near_rows = np.intersect1d(t_exp, np.concatenate([proj, (np.sort(proj)[1:] + np.sort(proj)[:-1]) / 2]))
    assert len(near_rows) >= 1
    assert np.all(np.diff(np.sort(near_rows)) >= s0 / 64)


def test_zoom_drops_twins_of_candidates_a_few_ulps_apart():
    """Two overlapping brackets give the same zoom point from two ends, a few ulps apart
    (here 0.3 and 0.30000000000000004): one is scored, as are none of the points
    already there (every candidate of an expectation runs every rule)."""
    from solvers.line import _zoom_candidates

    assert np.linspace(0, 0.4, 5)[3] != np.linspace(0.2, 0.6, 5)[1]
    t = np.array([0.0, 0.2, 0.4, 0.6])
    new = _zoom_candidates(t, np.array([5.0, 1.0, 2.0, 9.0]), dict(keep=2, zoom=3))
    assert new.tolist() == pytest.approx([0.1, 0.3, 0.5], abs=1e-15)  # not 0.2, 0.4; one 0.3


def _hint_spy(real, hints):
    """``nearest_selection`` that records, per round, the patience of the start the line
    search hinted (None: no hint)."""

    def spy(G, f, select, p, start_for=None, **memo):
        if start_for is None:
            return real(G, f, select, p, **memo)

        def recorded(k, taken):
            h = start_for(k, taken)
            hints.append(None if h is None else h[1])
            return h

        return real(G, f, select, p, recorded, **memo)

    return spy


def test_warm_bulyan_selection_starts_its_rounds_from_solved_neighbours(monkeypatch):
    """Bulyan(select=geomed) in the line search: cold at the first points (the rule's own
    selection, memoized); between two solved points each round starts from the same
    round's targets there (one IRLS step), the value flagged warm and equal to the
    rule's to its tolerance; the pool's other Bulyan of the same p reuses that warm
    selection; a cold call afterwards is bitwise the rule's."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 35, mu=0.3)
    rules = [Bulyan(f=2, select="geomed", aggregate="average", p=5.0),
             Bulyan(f=2, select="geomed", aggregate="krum", p=5.0)]
    inst = solvers.P3(V, 2, rules).compile()
    selections = {}
    box, sibling = (line._BlackBox(inst, r, 2 ** 20, selections) for r in rules)
    hints = []
    monkeypatch.setattr(line, "nearest_selection", _hint_spy(line.nearest_selection, hints))
    assert box.warm(0.5)[1] is False and 0.5 in box.memo  # nothing solved: cold, the rule's own
    assert hints == [None] * 8  # 8 rounds
    box.outputs(np.array([1.0]))  # cold: the rule's own, kept as a start
    assert 1.0 in box.memo and len(hints) == 8
    hints.clear()
    value, warm = box.warm(0.75)
    assert warm and 0.75 not in box.memo and ("geomed-warm", 2, 5.0, 0.75) in selections
    assert 1 in hints  # rounds whose rows left match both neighbours: one step
    G = torch.cat([line_rows(inst, [0.75])[0], inst.R])
    u = inst.u.double()

    def cold(rule):
        return float((rule(G).double() - inst.offset.double()) @ u)

    assert value == pytest.approx(cold(rules[0]), rel=1e-6)
    hints.clear()
    value, warm = sibling.warm(0.75)
    assert warm and hints == [] and value == pytest.approx(cold(rules[1]), rel=1e-6)  # the shared selection
    out = box.outputs(np.array([0.75]))[0]  # cold: bitwise the rule's
    assert torch.equal(out, rules[0](G).double() - inst.offset.double()) and 0.75 in box.memo


def test_line_bulyans_look_up_the_rounds_of_honest_rows_left_and_match_the_rule():
    """Bulyan with an average / comed selection in the line search: once only honest
    rows are left (the Byzantine rows chosen first, near the honest rows) the rounds
    are looked up from an earlier candidate (per (select, f, p)); the outputs stay
    bitwise the rules' own, also where the Byzantine rows are chosen late or never."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 36, mu=0.3)
    rules = [Bulyan(f=2, select="average", aggregate="average", p=3.0),
             Bulyan(f=2, select="comed", aggregate="comed", p=3.0),
             Bulyan(f=2, select="comed", aggregate="krum", p=3.0)]
    inst = solvers.P3(V, 2, rules).compile()
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    for t in np.linspace(-3.0, 3.0, 25):
        G = torch.cat([line_rows(inst, [t])[0], inst.R])
        for e, r in zip(obj.evals, obj.uniq):
            ref = float((r(G).double() - inst.offset64) @ inst.u64)
            if isinstance(e, line._BlackBox):
                assert torch.equal(e.outputs(np.array([t]))[0], r(G).double() - inst.offset64)
            else:  # Krum's part from the shared distances: to their rounding
                assert float(e(np.array([t]))[0]) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    for select in ("average", "comed"):
        memo = obj.evals[0].selections[("rounds-left", select, 2, 3.0)]
        assert memo and all(min(k) >= inst.f for k in memo)  # keyed by honest rows left only


def test_warm_bulyan_selection_looks_up_rounds_of_honest_rows_left():
    """A warm Bulyan(select=geomed) looks up the rounds left once only honest rows remain
    (from an earlier warm candidate): flagged warm, kept out of the memo of the rule's
    own outputs, equal to the rule's value to its tolerance."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 37, mu=0.3)
    rule = Bulyan(f=2, select="geomed", aggregate="average", p=4.0)
    inst = solvers.P3(V, 2, [rule]).compile()
    box = line._BlackBox(inst, rule, 2 ** 20, {})
    memo = box.selections.setdefault(("rounds-left-warm", "geomed", 2, 4.0), {})
    box.outputs(np.array([-0.1]))  # cold (x(-0.1) is the honest mean), kept as starts
    box.outputs(np.array([-0.09]))
    assert not memo  # cold calls: the rule's own rounds, no memo
    value, warm = box.warm(-0.095)
    assert warm and memo and None not in box.rounds.data[-0.095][1]  # ran its rounds, kept the honest ones
    box.warm(-0.2)  # Byzantine rows chosen late: more honest rows left to keep
    assert box.rounds.reach(0.0) == "cold"  # no start from neighbours at 0 ...
    value, warm = box.warm(0.0)
    kept = box.rounds.data[0.0]
    assert kept[1][-1] is None  # ... but its last round is looked up: warm, not the rule's own
    assert warm and 0.0 not in box.memo
    G = torch.cat([line_rows(inst, [0.0])[0], inst.R])
    assert value == pytest.approx(float((rule(G).double() - inst.offset64) @ inst.u64), rel=1e-6)
    assert kept[0] == line.bulyan_select(G, 2, "geomed", 4.0)


def test_warm_bulyan_rounds_start_only_from_neighbours_with_the_same_rows_left(monkeypatch):
    """A round of a warm Bulyan(select=geomed) selection starts from a neighbour's
    target for that round only when the neighbour had the same rows left: with one
    neighbour's later rounds made to differ, those rounds get no start from it."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 36, mu=0.3)
    rule = Bulyan(f=2, select="geomed", aggregate="average", p=3.0)
    inst = solvers.P3(V, 2, [rule]).compile()
    box = line._BlackBox(inst, rule, 2 ** 20, {})
    real = line.nearest_selection
    for t in (0.0, 1.0):
        chosen, targets = real(torch.cat([line_rows(inst, [t])[0], inst.R]), 2, "geomed", 3.0)
        if t == 1.0:  # from round 1 on, rows left that no search at 0.5 has
            chosen = [chosen[0]] + [12 + i for i in range(len(chosen) - 1)]
        box.rounds.keep(t, (chosen, targets))
    hints = []
    monkeypatch.setattr(line, "nearest_selection", _hint_spy(real, hints))
    value, warm = box.warm(0.5)
    assert warm and hints[0] == 1  # round 0: every row left at both neighbours, one step
    assert all(h is None for h in hints[1:])  # later rounds: only one neighbour matches


def test_warm_geomed_aggregation_starts_only_from_neighbours_with_the_same_rows_chosen():
    """Bulyan's geomed aggregation in the line search: cold (the rule's own, memoized)
    where nothing is solved; between two solved points with the same rows chosen it
    starts from their outputs, flagged warm (certification reruns it cold), equal to
    the rule's to its tolerance; a neighbour that chose other rows gives no start."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 43, mu=0.3)
    rule = Bulyan(f=2, select="average", aggregate="geomed", p=3.0)
    inst = solvers.ExpectedValue(V, 2, [rule]).compile()
    box = line._BlackBox(inst, rule, 2 ** 20, {})
    assert box.warm(0.5) == (box.memo[0.5][0], False)  # nothing solved: cold
    box.outputs(np.array([0.52]))
    G = torch.cat([line_rows(inst, [0.51])[0], inst.R])
    cold = float((rule(G).double() - inst.offset.double()) @ inst.u.double())
    chosen = {t: v[0] for t, v in box.agg.starts.data.items()}
    assert chosen[0.5] == chosen[0.52]  # the same rows chosen at both neighbours
    value, warm = box.warm(0.51)
    assert warm and 0.51 not in box.memo and value == pytest.approx(cold, rel=1e-6)
    for t in (0.5, 0.51, 0.52):  # now every neighbour chose other rows
        box.agg.starts.data[t] = (frozenset({99}), box.agg.starts.data[t][1])
    assert box.warm(0.515)[1] is False and 0.515 in box.memo


def test_certify_expected_reruns_until_the_best_candidate_is_cold():
    """certify_expected: the best candidate's warm values run cold; when that makes
    another warm candidate the best, it runs there too, until the best is cold."""
    from solvers.line import LineObjective

    V = honest(10, 2, 37, mu=0.3)
    inst = solvers.ExpectedValue(V, 2, [Geomed(f=2, p=3.0)]).compile()
    obj = LineObjective(inst, 2 ** 20, True, 1e-6)
    cold = {0.0: 5.0, 1.0: 0.5, 2.0: 2.0}

    class Fake:
        def __call__(self, t):
            return np.array([cold[float(x)] for x in t])

    obj.evals = [Fake()]
    obj.w = np.array([1.0])
    for c, v, warm in ((0.0, 0.0, True), (1.0, 0.1, True), (2.0, 2.0, False)):
        obj.cache[c], obj.parts[c], obj.warm_ran[c] = v, np.array([v]), np.array([warm])
    obj.certify_expected()
    assert obj.cache == {0.0: 5.0, 1.0: 0.5, 2.0: 2.0}
    assert not obj.warm_ran[1.0].any() and not obj.warm_ran[0.0].any()


def test_expected_value_warm_search_answers_with_the_rules_own_values():
    """ExpectedValue with IRLS rules: every rule runs at every candidate, warm-started
    from solved neighbours; the answer's warm values run again cold (certify_expected),
    so its value is the rules' own, and it is the minimum over all candidates of the
    expectation with every rule run cold (to the warm values' tolerance)."""
    from mixtailor_game.rules import Bulyan
    from solvers.line import solve_line

    V = honest(10, 6, 52, mu=0.3)
    pool = [Comed(f=2), Krum(f=2, p=3.0), Geomed(f=2, p=2.0), Geomed(f=2, p=5.0),
            Bulyan(f=2, select="geomed", aggregate="average", p=3.0),
            Bulyan(f=2, select="average", aggregate="geomed", p=3.0)]
    probs = [0.1, 0.2, 0.2, 0.2, 0.2, 0.1]
    inst = solvers.ExpectedValue(V, 2, pool, probs).compile()
    t_best, score, info = solve_line(inst)
    obj = info["obj"]
    assert not obj.warm_ran[t_best].any()
    assert sum(int(w.sum()) for w in obj.warm_ran.values()) > len(obj.cache)  # most ran warm
    u = inst.u.double()

    def expectation(c):
        G = torch.cat([line_rows(inst, [c])[0], inst.R])
        return sum(q * float((r(G).double() - inst.offset.double()) @ u) for q, r in zip(probs, pool))

    assert score == pytest.approx(expectation(t_best), rel=1e-9, abs=1e-12)
    cands = sorted(obj.cache)
    assert len(cands) > 50
    assert score <= min(expectation(c) for c in cands) + 1e-5 * abs(score)
    sol = solvers.solve(solvers.ExpectedValue(V, 2, pool, probs))
    assert sol.value == pytest.approx(score, rel=1e-9)


def test_pool_bulyans_share_one_selection_per_point_and_match_the_rule(monkeypatch):
    """Two Bulyans with the same (select, f, p) select once per candidate in the line
    search (cold, and warm-started where the search ran them warm); the outputs are
    bitwise those of the rules themselves."""
    from mixtailor_game.rules import Bulyan
    from solvers import line

    V = honest(10, 6, 31, mu=0.3)
    pair = [Bulyan(f=2, select="geomed", aggregate="average", p=3.0),
            Bulyan(f=2, select="geomed", aggregate="comed", p=3.0)]
    pool = pair + [Comed(f=2), Krum(f=2, p=3.0), Bulyan(f=2, select="geomed", aggregate="average", p=8.0)]
    calls = []
    real = line.nearest_selection

    def counted(G, f, s, p, start_for=None, **memo):
        calls.append((G.sum().item(), p, start_for is None))
        return real(G, f, s, p, start_for, **memo)

    monkeypatch.setattr(line, "nearest_selection", counted)
    sol = solvers.solve(solvers.P3(V, 2, pool))
    assert calls and len(calls) == len(set(calls))  # one selection per (rows, p): the pair shares
    G = torch.cat([sol.byzantine, V])
    assert sol.per_rule_inner == pytest.approx([float(r(G) @ V.mean(0)) for r in pool], rel=1e-12)
    inst = solvers.P3(V, 2, pool).compile()
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    for t in (0.0, 0.3, -2.0):
        G = torch.cat([line_rows(inst, [t])[0], inst.R])
        for e, r in zip(obj.evals, obj.uniq):
            if isinstance(r, Bulyan):
                assert torch.equal(e.outputs(np.array([t]))[0], r(G).double() - inst.offset.double())


def _monotone_chain(t, v):
    hull = []
    for i in range(len(t)):
        while len(hull) >= 2 and ((v[hull[-1]] - v[hull[-2]]) * (t[i] - t[hull[-2]])
                                  >= (v[i] - v[hull[-2]]) * (t[hull[-1]] - t[hull[-2]])):
            hull.pop()
        hull.append(i)
    return hull


@pytest.mark.parametrize("seed", range(6))
def test_relax_envelope_and_its_minimum_match_the_plain_hull_and_an_lp(seed):
    from scipy.optimize import linprog
    from solvers.relax import hull_indices, minimize_max_of_envelopes
    rng = np.random.default_rng(seed)
    t = np.sort(rng.choice(100000, 3000, replace=False)).astype(float) / 100
    curves = [rng.normal(size=3000).cumsum() * 0.1 + 0.002 * (t - c) ** 2 for c in rng.uniform(0, 1000, 3)]
    envelopes = []
    for v in curves:  # the vectorized pre-pass keeps the envelope of the plain monotone chain
        h, ref = hull_indices(t, v), _monotone_chain(t, v)
        np.testing.assert_allclose(np.interp(t, t[h], v[h]), np.interp(t, t[ref], v[ref]), atol=1e-9)
        assert (np.interp(t, t[h], v[h]) <= v + 1e-9).all()
        envelopes.append((t[h], v[h]))
    lo, hi = float(t[0]), float(t[-1])
    best_t, best = minimize_max_of_envelopes(envelopes, lo, hi)
    A, b = [], []  # the relaxation as the LP it is
    for tv, vv in envelopes:
        a = np.diff(vv) / np.diff(tv)
        A += [[ak, -1.0] for ak in a]
        b += list(-(vv[:-1] - a * tv[:-1]))
    res = linprog([0.0, 1.0], A_ub=np.array(A), b_ub=np.array(b), bounds=[(lo, hi), (None, None)], method="highs")
    assert best == pytest.approx(res.fun, abs=1e-7)
    assert max(np.interp(best_t, tv, vv) for tv, vv in envelopes) == pytest.approx(best, abs=1e-9)


def _expectation_pool():
    from mixtailor_game.rules import Bulyan

    return [Comed(f=2), Geomed(f=2, p=3.0), Krum(f=2, p=2.0),
            Bulyan(f=2, select="geomed", aggregate="average", p=3.0),
            Bulyan(f=2, select="krum", aggregate="geomed", p=2.0),
            Bulyan(f=2, select="average", aggregate="comed", p=4.0)]


@pytest.mark.parametrize("seed", [40, 43, 47])
def test_expected_lazy_search_finds_the_exhaustive_answer_running_fewer_rules(seed):
    """ExpectedValue with black boxes: every rule runs at every other candidate of the
    first grid (and far out); between them and in the zoom (expect_search="lazy", the
    default) the costly rules are predicted between neighbours and run best first where
    the spreads matter. Same answer as running every rule at every candidate
    (``"exhaustive"``), with fewer runs of the costly rules."""
    from solvers import line

    V = honest(10, 8, seed, mu=0.3)
    inst = solvers.ExpectedValue(V, 2, _expectation_pool()).compile()
    t_lazy, s_lazy, info = line.solve_line(inst)
    lazy = info["obj"]
    t_all, s_all, info = line.solve_line(inst, expect_search="exhaustive")
    every = info["obj"]
    assert (t_lazy, s_lazy) == (t_all, pytest.approx(s_all, rel=1e-12, abs=1e-15))
    assert all(len(k) == len(every.parts) for k in every.known[1:])  # every rule at every candidate
    pool = _expectation_pool()
    costly = [k for k, e in enumerate(lazy.evals) if getattr(e, "rule", None) in (pool[1], pool[3], pool[5])]
    assert len(costly) == 3 and all(len(lazy.known[k]) < len(lazy.parts) for k in costly)
    # the answer is complete and cold: the rules' own values
    assert lazy.ran[t_lazy].all() and not lazy.warm_ran[t_lazy].any()
    assert s_lazy == pytest.approx(lazy._combine(lazy.parts[t_lazy]), rel=1e-12)


def test_expected_lazy_search_runs_rules_that_pick_rows_everywhere():
    """Rules that pick rows from Krum's distances (Krum, Bulyan with a Krum selection)
    jump between candidates where the others move smoothly: the lazy search runs them
    at every candidate (a Bulyan(krum, geomed) predicted between two equal neighbours
    missed a dip of the paper pool's expectation, seed 1: -0.6382 against -0.6403)."""
    from solvers import line

    V = honest(10, 8, 41, mu=0.3)
    pool = _expectation_pool()
    inst = solvers.ExpectedValue(V, 2, pool).compile()
    obj = line.solve_line(inst)[2]["obj"]
    for k, e in enumerate(obj.evals):
        if getattr(e, "rule", None) in (pool[2], pool[4]):
            assert len(obj.known[k]) == len(obj.parts)


def test_expected_lazy_search_predictions_and_settling():
    """_interpolate: on the straight line between the nearest runs, their difference as the
    spread, the nearest value and an infinite spread outside them. After a zoom's scores
    the candidate lowest by prediction less spread has spreads within expect_tol."""
    from solvers import line

    V = honest(10, 8, 42, mu=0.3)
    inst = solvers.ExpectedValue(V, 2, _expectation_pool()).compile()
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    obj.known[3] = {0.0: 1.0, 2.0: 3.0}
    obj.known_t[3] = [0.0, 2.0]
    value, spread = obj._interpolate(3, np.array([-1.0, 0.5, 1.5, 3.0]))
    assert value.tolist() == [1.0, 1.5, 2.5, 3.0] and spread.tolist() == [math.inf, 2.0, 2.0, math.inf]
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    t0, _, _ = line.candidates(inst, obj, dict(t_max=1e3, n_geo=16, n_lin=17, t_range=None, max_breakpoints=0))
    t, s = obj.scores(t0)
    near = [float(c) for c in t0 if abs(c) <= 2 * obj.near]
    solved = near[::2]
    for side in ([float(c) for c in t0 if c < -2 * obj.near][::-1], [float(c) for c in t0 if c > 2 * obj.near]):
        solved += side[::-1][::2]  # outward; every other one from the outermost
    assert obj.predicting and all(obj.ran[c].all() for c in solved)  # every rule there
    assert not all(obj.ran[c].all() for c in near[1::2])  # between them: predicted
    order = np.argsort(s)
    zoom = np.linspace(t[order[0]], t[min(order[0] + 1, len(t) - 1)], 6)[1:-1]
    t, s = obj.scores(np.concatenate([t, zoom]))
    mid, unc = obj._expect_table(t)
    assert unc[int(np.argmin(mid - unc))] <= obj.expect_tol
    assert np.array_equal(s, mid)


@pytest.mark.parametrize("option, value, message", [
    ("expect_search", "some", r"expect_search must be 'lazy' or 'exhaustive'"),
    ("expect_tol", -1.0, r"expect_tol"),
])
def test_expected_search_options_are_checked(option, value, message):
    V = honest(10, 4, 44, mu=0.3)
    with pytest.raises(ValueError, match=message):
        solvers.solve(solvers.ExpectedValue(V, 2, _expectation_pool()[:2]), method="line", **{option: value})


def test_expected_lazy_anchors_on_large_rows_are_spaced_by_s0():
    """On large rows (n d >= 2^16) a lazy expectation runs every rule at candidates within
    2 s0 at least ANCHOR_GAP s0 apart, from 0 outward, and the outermost on each side
    (every other one put seven within 0.06 s0 of 0); small rows keep every other one."""
    from solvers import line

    V = honest(10, 6000, 43, mu=0.3)
    inst = solvers.ExpectedValue(V, 2, [Comed(f=2), Geomed(f=2, p=3.0)]).compile()
    assert inst.n * inst.d >= line.SMALL_ELEMENTS
    obj = line.LineObjective(inst, 2 ** 20, True, 1e-6)
    s0 = obj.near
    geo = np.geomspace(1e-4, 1.9, 10)
    t = np.unique(np.concatenate([[0.0], geo, -geo, np.linspace(-2, 2, 17)])) * s0
    near = [i for i in range(len(t)) if abs(t[i]) <= 2 * s0]
    picked = obj._anchors(t, near)
    for side in ([t[i] for i in picked if t[i] >= 0], [t[i] for i in picked if t[i] < 0]):
        side = sorted(side, key=abs)
        assert all(abs(b) - abs(a) >= line.ANCHOR_GAP * s0 * (1 - 1e-12) for a, b in zip(side, side[1:-1]))
    assert {t[i] for i in picked} >= {0.0, t[0], t[-1]}
    assert len(picked) < len(near[::2])
    # no candidate farther than the gap from an anchor (the outermost closes each side)
    assert max(min(abs(x - t[i]) for i in picked) for x in t) < line.ANCHOR_GAP * s0
    small = line.LineObjective(solvers.ExpectedValue(honest(10, 6, 43, mu=0.3), 2, [Comed(f=2)]).compile(),
                               2 ** 20, True, 1e-6)
    assert small._anchors(t, near) == near[::2]


def test_expected_lazy_search_on_large_rows_matches_the_exhaustive_one():
    """The spaced anchors leave more to prediction: the lazy answer is within a few
    expect_tol (1e-5 <u, u>) of the exhaustive one (either may be lower: their zooms
    differ; 1.1e-5 <u, u> here, and 0.95e-5 with every other candidate as anchor)."""
    from solvers import line

    V = honest(10, 7000, 44, mu=0.3).float()
    inst = solvers.ExpectedValue(V, 2, [Comed(f=2), Geomed(f=2, p=3.0), Krum(f=2, p=2.0)]).compile()
    t_lazy, s_lazy, _ = line.solve_line(inst)
    t_all, s_all, _ = line.solve_line(inst, expect_search="exhaustive")
    assert abs(s_lazy - s_all) <= 3e-5 * float(inst.u64 @ inst.u64)
