"""Edge cases of the line search and the relaxation found by an audit: exact distance
ties, breakpoints past the default domain, unbounded objectives, the filter's spread
after rounding, degenerate lines, and option / input checks."""

import math

import numpy as np
import pytest
import torch

import solvers
from mixtailor_game.attacks import make_attack, make_view
from mixtailor_game.rules import Bulyan, Comed, Krum, Mean, TrimmedMean
from solvers.line import _BulyanKrum, _Krum, _LineDistances, line_rows

TIES = torch.tensor([[-2.0, -2.0], [1.0, 1.0], [-2.0, -1.0], [1.0, 1.0], [2.0, 0.0], [2.0, -1.0], [2.0, 2.0]])
TIES_OWN = torch.tensor([[-0.5, -0.5], [0.0, 0.5]])


def _rule_value(inst, rule, t):
    G = torch.cat([line_rows(inst, [t])[0], inst.R])
    return float((rule(G).double() - inst.offset64) @ inst.u64)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, math.inf])
def test_krum_closed_forms_break_exact_ties_as_the_rules_do(p):
    """Integer rows with duplicates: scores tie exactly. The closed forms squared norms
    (5.000000000000001 against the rule's 5.0) and Krum picked another row than krum()."""
    prob = solvers.P3(TIES, 2, [Krum(f=0, p=p)], own=TIES_OWN)
    inst = prob.compile()
    dist = _LineDistances(inst)
    krum = Krum(f=0, p=p)
    bulyans = [Bulyan(f=1, select="krum", aggregate=a, p=p) for a in ("trimmed", "average", "comed")]
    ts = np.unique(np.concatenate([np.arange(-2.0, 2.01, 0.25), [-1 / 3, 1 / 3]]))
    ev = _Krum(inst, krum, dist)
    evs = [_BulyanKrum(inst, b, dist, {}, None) for b in bulyans]
    for t in ts:
        assert float(ev(np.array([t]))[0]) == _rule_value(inst, krum, float(t))
        for b, e in zip(bulyans, evs):
            assert float(e(np.array([t]))[0]) == pytest.approx(_rule_value(inst, b, float(t)), abs=1e-12)


def test_domain_covers_breakpoints_past_t_max():
    """A comed breakpoint at ~8e5 (a coordinate with a tiny sum and a wide spread) lay
    outside +-t_max s0: "optimal" 0.9696 was beaten by 0.9491 past the domain."""
    H = torch.tensor([[1.0, -1000.0], [1.1, -500.0], [0.9, 0.0005], [1.05, 500.0], [0.95, 1000.0]])
    prob = solvers.P3(H, 1, [Comed(f=1)])
    sol = solvers.solve(prob, method="line")
    assert sol.status == "optimal"
    inst = prob.compile()
    far = min(solvers.evaluate(inst, line_rows(inst, [t])[0])["value"] for t in (1e6, 1e8, -1e6, -1e8))
    assert sol.value <= far + 1e-9 and sol.value == pytest.approx(0.94908, abs=1e-5)


@pytest.mark.parametrize("make", [
    lambda H: solvers.P3(H, 1, [TrimmedMean(b=0)]),
    lambda H: solvers.ExpectedValue(H, 2, [Comed(f=2), TrimmedMean(b=1)]),
])
def test_unbounded_objectives_are_not_optimal(make):
    """A mean (trimmed mean with b < f) in the objective: it decreases without bound
    along the line, and the domain's end was reported "optimal" (and a finite bound)."""
    H = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    prob = make(H)
    sol = solvers.solve(prob, method="line")
    assert sol.status == "feasible" and sol.info["unbounded"] and "unbounded below" in sol.info["reason"]
    rel = solvers.solve(prob, method="relax")
    assert rel.info["unbounded"] and rel.bound == -math.inf


def test_bounded_piecewise_linear_objective_is_still_optimal():
    H = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    sol = solvers.solve(solvers.ExpectedValue(H, 2, [Comed(f=2), TrimmedMean(b=2)]), method="line")
    assert sol.status == "optimal" and not sol.info.get("unbounded")


@pytest.mark.parametrize("space", ["gradient", "model"])
@pytest.mark.parametrize("eps", [0.2, 0.3, 1e-3])
def test_the_filters_spread_survives_rounding_to_float32(space, eps):
    """Rows exactly eps apart in float64 came out up to 8e-10 short in float32: P2 was
    reported infeasible."""
    g = torch.Generator().manual_seed(3)
    H, w0 = torch.randn(8, 5, generator=g) + 0.3, torch.randn(5, generator=g)
    kw = dict(space="model", model=w0) if space == "model" else {}
    sol = solvers.solve(solvers.P2(H, 2, [Krum(f=2), Comed(f=2)], eps=eps, **kw), method="line")
    assert sol.status != "infeasible" and sol.filter_ok
    assert float((sol.byzantine[0].double() - sol.byzantine[1].double()).norm()) >= eps


def test_adaptive_expected_attack_with_a_filter_spreads_its_rows():
    """eps > 0 with the default structure sent all-zero rows (infeasible) every step."""
    H = torch.randn(10, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    view = make_view(H, n=12, f=2, defense=Comed(f=2))
    atk = make_attack("adaptive", problem="expected", eps=0.5)
    B = atk(view)
    assert atk.last_solution.status != "infeasible" and atk.last_solution.filter_ok
    assert float((B[0] - B[1]).norm()) >= 0.5
    with pytest.raises(ValueError, match="adaptive: structure must be 'optimal' with eps > 0"):
        make_attack("adaptive", problem="expected", eps=0.5, structure="line")(view)
    with pytest.raises(ValueError, match="adaptive: structure must be None for problem='p3'"):
        make_attack("adaptive", problem="p3", structure="optimal")


def test_non_finite_own_or_model_and_overflowing_rows_are_refused():
    H = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="P3: own must be finite"):
        solvers.P3(H, 1, [Comed(f=1)], own=torch.full((1, 2), math.nan)).compile()
    with pytest.raises(ValueError, match="P3: model must be finite"):
        solvers.P3(H, 1, [Comed(f=1)], space="model", model=torch.tensor([math.inf, 0.0])).compile()
    with pytest.raises(ValueError, match="P3: honest must be rows whose mean and sum are finite"):
        solvers.P3(torch.full((5, 2), 3e38), 1, [Comed(f=1)]).compile()


@pytest.mark.parametrize("option, value, message", [
    ("t_max", -1.0, "t_max must be > 0"), ("t_max", math.nan, "t_max must be finite"),
    ("t_range", (1.0, -1.0), "t_range must be \\(lo, hi\\) with lo <= hi"), ("n_geo", 0, "n_geo must be >= 1"),
    ("keep", 0, "keep must be >= 1"), ("rounds", -2, "rounds must be >= 0"), ("tol", "x", "tol must be a real"),
])
def test_line_options_are_checked(option, value, message):
    H = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises((ValueError, TypeError), match="solvers.line: " + message):
        solvers.solve(solvers.P3(H, 1, [Comed(f=1)]), method="line", **{option: value})
    with pytest.raises((ValueError, TypeError), match="solvers.relax: " + message):
        solvers.solve(solvers.P3(H, 1, [Comed(f=1)]), method="relax", line_options={option: value})


def test_relax_on_a_degenerate_line():
    """Honest rows summing to zero: the line is a point (the grid was NaN); rows ~1e-300:
    the line's norm underflowed (a division by zero)."""
    W = torch.tensor([[1.0, -2.0], [-1.0, 2.0], [0.5, 0.5], [-0.5, -0.5]], dtype=torch.float64)
    sol = solvers.solve(solvers.P3(W, 1, [Comed(f=1)]), method="relax")
    assert sol.status == "optimal" and sol.bound == sol.value and torch.isfinite(sol.byzantine).all()
    tiny = torch.tensor([[1.0, 2.0], [2.0, 1.0], [1.5, 1.5], [1.2, 1.8]], dtype=torch.float64) * 1e-300
    with pytest.raises(ValueError, match=r"^P3: honest must be rows \(minus w_0\) of largest magnitude in"):
        solvers.P3(tiny, 1, [Comed(f=1)]).compile()  # squared distances would underflow to 0
    sol = solvers.solve(solvers.P3(tiny * 1e160, 1, [Comed(f=1)]), method="relax")  # ~1e-140: allowed
    assert torch.isfinite(sol.byzantine).all() and math.isfinite(sol.value)


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e160, 1e200])
@pytest.mark.parametrize("method", ["line", "milp", "scp", "relax"])
def test_rows_beyond_float64_room_are_refused_by_every_method(scale, method):
    """Rows whose squares (times 1e8 n d) leave float64: the inner products overflowed to
    -inf (milp reported value -inf "optimal") or the distances underflowed to 0."""
    H = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * scale
    with pytest.raises(ValueError, match=r"honest must be rows \(minus w_0\) of largest magnitude in"):
        solvers.solve(solvers.P3(H, 1, [Comed(f=1)]), method=method)


@pytest.mark.parametrize("seed", [8, 12])
def test_relax_bound_holds_for_float32_rows(seed):
    """The envelope is exact in float64; the real rules round in float32 (a bound 4.5e-7
    relative above the value at seed 8, d = 1, before the rounding slack)."""
    g = torch.Generator().manual_seed(seed)
    H = (torch.randn(9, 1, generator=g) * 10 ** (seed % 5 - 2) + torch.rand(1, generator=g) * 5).float()
    sol = solvers.solve(solvers.ExpectedValue(H, 2, [Comed(f=2), TrimmedMean(b=2)]), method="relax")
    assert sol.info["bound_valid"] and sol.info["rounding_slack"] > 0
    assert sol.bound <= sol.value and sol.gap <= 64 * sol.info["rounding_slack"] + 1e-6 * abs(sol.value)


def test_relax_slack_of_order_statistics_ignores_the_far_byzantine_rows():
    """The answer at the domain's end (|t| ~ 300 times the rows): the slack was 8 ulps of
    the Byzantine rows there (1.6e-5 against a value of 5e-4; 2.2 against 0.83 at
    d = 184,586); a trimmed mean with b = f keeps honest-range values only. The bound
    stays below the real rules' values on a grid reaching past the domain."""
    g = torch.Generator().manual_seed(1)
    H = (torch.randn(10, 200, generator=g) * 0.01 + 0.001 * torch.randn(1, 200, generator=g)).float()
    prob = solvers.P3(H, 2, [TrimmedMean(b=2)])
    sol = solvers.solve(prob, method="relax")
    lo, hi = sol.info["domain"]
    assert abs(sol.info["t"]) > 100 and sol.info["bound_valid"]
    assert 0 < sol.info["rounding_slack"] < 1e-4 * abs(sol.value)
    assert sol.bound <= sol.value <= sol.bound + 2 * sol.info["rounding_slack"]
    inst = prob.compile()
    assert sol.bound <= _line_brute(inst, np.linspace(lo - (hi - lo), hi + (hi - lo), 801))


def test_relax_slack_keeps_the_rows_when_a_rule_can_output_them():
    """A mean (or a trimmed mean with b < f) carries the Byzantine rows into the output:
    their size stays in the slack (P3: the max with a comed keeps the bound finite)."""
    g = torch.Generator().manual_seed(1)
    H = (torch.randn(10, 20, generator=g) * 0.01 + 0.001).float()
    for pool in ([Comed(f=2), Mean()], [Comed(f=2), TrimmedMean(b=1)]):
        sol = solvers.solve(solvers.P3(H, 2, pool), method="relax")
        inst = solvers.P3(H, 2, pool).compile()
        assert sol.info["bound_valid"] and not sol.info["unbounded"]
        rows = line_rows(inst, [sol.info["t"], sol.info["line_t"]]).double().abs().max()
        m = max(float(rows), float(H.double().abs().max()))
        want = 8.0 * float(torch.finfo(torch.float32).eps) * float(inst.u.double().abs().sum()) * m
        assert sol.info["rounding_slack"] == pytest.approx(want, rel=1e-12)


def _line_brute(inst, ts):
    """min over ``ts`` of the objective, by the real rules batched on the line's rows."""
    B = line_rows(inst, list(ts))
    G = torch.cat([B, inst.R.unsqueeze(0).expand(B.shape[0], -1, -1)], 1)
    per = torch.stack([(r.batched(G).double() - inst.offset.double()) @ inst.u.double() for r in inst.rules], 1)
    v = per.max(1).values if inst.kind == "max" else per @ torch.tensor(inst.weights, dtype=torch.float64)
    return float(v.min())


@pytest.mark.parametrize("seed, kind", [(1, "P3"), (2, "expected")])
def test_line_finds_krum_windows_narrower_than_its_linear_grid(seed, kind):
    """Small rows get a dense grid (n_dense): without it a Krum window 0.13 s0 wide fell
    between the 17 grid points (P3 -0.148 against -0.161 at seed 1; ExpectedValue -0.157
    against -0.194 at seed 2)."""
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(7, 3, dtype=torch.float64, generator=g) + 0.3
    pool = ([Krum(f=2, p=2.0), Krum(f=2, p=1.0), Krum(f=2, p=5.0), Comed(f=2)] if seed % 2
            else [Krum(f=2, p=3.0), TrimmedMean(b=2), Krum(f=2, p=math.inf)])
    prob = solvers.P3(V, 2, pool) if kind == "P3" else solvers.ExpectedValue(V, 2, pool)
    inst = prob.compile()
    s0 = float((inst.R.double() - inst.offset64).norm(dim=1).max()) / float(inst.line64.norm())
    brute = _line_brute(inst, np.linspace(-4 * s0, 4 * s0, 4001))
    sol = solvers.solve(prob, method="line")
    assert sol.value <= brute + 1e-6 * abs(brute)
    old = solvers.solve(prob, method="line", n_dense=0)
    if seed == 1:  # a change of a p != 2 Krum's choice between grid points: bisected since
        assert old.value <= brute + 1e-6 * abs(brute)  # the eighteenth session
    else:  # the same choice at both neighbours of the window: only the dense grid finds it
        assert old.value > brute + 0.05 * abs(brute)


def test_expected_value_keeps_the_whole_dense_grid():
    """An expectation thins the points near the rows (in high dimension they cluster); it
    thinned the dense grid with them, opening gaps of ~0.06 s0 beside each projection, and
    a Krum window there was missed (1.06677 against the rules' 1.00796)."""
    from mixtailor_game.rules import Geomed

    V = torch.tensor([[-0.74576, 0.91599], [1.71418, 2.26050], [-2.34511, 1.23019], [-0.17036, 0.71461]],
                     dtype=torch.float64)
    prob = solvers.ExpectedValue(V, 1, [Geomed(f=1, p=2), Krum(f=1, p=math.inf), Comed(f=1)])
    inst = prob.compile()
    s0 = float((inst.R.double() - inst.offset64).norm(dim=1).max()) / float(inst.line64.norm())
    brute = _line_brute(inst, np.linspace(-2 * s0, 2 * s0, 8001))
    sol = solvers.solve(prob, method="line")
    assert sol.value <= brute + 1e-5 * abs(brute)
    assert sol.value == pytest.approx(1.00796, abs=1e-4)


def test_lambda_at_the_domains_end_that_keeps_growing_is_flagged():
    """The mean reaches any lambda along the line: the search's answer is its domain's end
    (481.98 here), which was reported `feasible` with no word that lambda grows past it.
    A bounded case (Krum) carries no such flag."""
    from mixtailor_game.rules import Mean

    g = torch.Generator().manual_seed(0)
    V = 0.01 * torch.randn(10, 50, generator=g) + 0.002
    s = solvers.solve(solvers.TailoredAttack(V, 2, Mean(), structure="suboptimal"), method="line")
    assert s.status == "feasible" and s.info["grows_past_domain"] is True
    assert "may be unbounded" in s.info["reason"] and s.info["t"] in s.info["domain"]
    k = solvers.solve(solvers.TailoredAttack(V, 2, Krum(f=2), structure="suboptimal"), method="line")
    assert not k.info.get("grows_past_domain", False) and k.info["t"] not in k.info["domain"]


def test_a_rounding_step_past_the_breakpoints_is_not_unboundedness():
    """float32 rows at d = 184,586: a trimmed mean with b = f is constant past its
    breakpoints, but the closed form read 4.7e-8 lower at every distance beyond the
    domain (rounding), so the answer was `feasible`, "unbounded", and relax's bound -inf
    (the benchmark's P3 had said `optimal` sessions before). A linear decrease doubles
    from one width to two; a rounding step does not. b < f stays unbounded."""
    g = torch.Generator().manual_seed(0)
    V = (0.01 * torch.randn(10, 184_586, generator=g, dtype=torch.float64) + 0.002).float()
    sol = solvers.solve(solvers.P3(V, 2, [TrimmedMean(b=2)]), method="line")
    assert sol.status == "optimal" and not sol.info.get("unbounded", False)
    rel = solvers.solve(solvers.P3(V, 2, [TrimmedMean(b=2)]), method="relax")
    assert rel.bound is not None and rel.bound > -math.inf
    weak = solvers.solve(solvers.ExpectedValue(V, 2, [TrimmedMean(b=1), Comed(f=2)]), method="line")
    assert weak.info.get("unbounded") is True


def test_max_crossings_finds_the_envelope_vertices_between_candidates():
    """Between two candidates each rule is linear: the max's minimum is at a crossing of
    two rules, searched only where the largest rule changes."""
    from solvers.line import max_crossings

    t = np.array([0.0, 1.0, 2.0])
    vals = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, -0.5], [0.0, 2.0, 3.0]])  # [T, U]
    x = np.sort(max_crossings(t, vals))
    # interval [0, 1] (a on top at 0, b at 1), every pair: b = c at 0.4, a = b at 0.5 (the
    # vertex), a = c at 2/3; [1, 2] (b on top at 1, c at 2): b = c at 1.6
    assert x == pytest.approx([0.4, 0.5, 2 / 3, 1.6])
    assert len(max_crossings(t, np.stack([t, t - 1.0], 1))) == 0  # one rule on top throughout


@pytest.mark.parametrize("seed", range(6))
def test_p3_over_several_closed_forms_is_optimal_and_matches_brute_force(seed):
    """P3 over comed + trimmed means (+ a mean): a max of piecewise-linear functions,
    scored at every breakpoint and crossing (was `feasible` from the grid search)."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    H = torch.randn(int(rng.integers(6, 11)), int(rng.integers(1, 6)), generator=g, dtype=torch.float64) + 0.5
    pool = [Comed(f=2), TrimmedMean(b=2), TrimmedMean(b=3)] + ([Mean()] if seed % 2 else [])
    prob = solvers.P3(H, 2, pool)
    sol = solvers.solve(prob, method="line")
    brute = _line_brute(prob.compile(), np.linspace(-4 * abs(sol.info["t"]) - 4, 4 * abs(sol.info["t"]) + 4, 20001))
    assert sol.status == "optimal"
    assert sol.value <= brute + 1e-12 * (1 + abs(brute))


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_the_rows_cache_returns_the_line_rows_bitwise(eps):
    """_Rows keeps the Byzantine rows of the last few t (and their inner product with u)
    for every Krum-based evaluator: whatever the order of the requests and evictions,
    they are line_rows' rows and the buffer at(t) holds [B(t); R] for the t asked last."""
    from solvers.line import _Rows, spread_vector

    g = torch.Generator().manual_seed(3)
    H = torch.randn(7, 40, generator=g)
    # with eps > 0 (P1's filter, f free rows) line_rows spreads the rows apart
    inst = (solvers.P1(H, 3, [Comed(f=3)], eps=eps) if eps else solvers.P3(H, 3, [Comed(f=3)])).compile()
    assert (spread_vector(inst) is not None) == bool(eps)
    rows = _Rows(inst)
    ts = [0.5, -1.25, 0.5, 3.0, 7.5, -2.0, 11.0, 0.5, -1.25, 0.0, 0.0, 3.0]
    for t in ts:
        want = line_rows(inst, [t])[0]
        assert torch.equal(rows.byzantine(t), want)
        assert rows.value(t) == float((want[0].double() - inst.offset64) @ inst.u64)
        G = rows.at(t)
        assert torch.equal(G, torch.cat([want, inst.R]))
    assert len(rows._byzantine) <= rows.KEEP
