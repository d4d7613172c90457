"""The adaptive attack (mixtailor_game.attacks.adaptive) and the SCP linear models."""

import numpy as np
import pytest
import torch

import solvers
from mixtailor_game.attacks import make_attack, make_view
from mixtailor_game.attacks.adaptive import AdaptiveAttack
from mixtailor_game.rules import (
    NNM, Bulyan, CenteredClipping, Comed, Geomed, Krum, Mean, MixTailor, MultiKrum, TrimmedMean, pure,
)
from solvers.linearize import geomed_gradient, model_weights, rule_gradient


def honest(k, d, seed, mu=0.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64) + mu


def test_registry_builds_the_adaptive_attack_and_it_solves_the_problem():
    H = honest(10, 6, 0)
    mt = MixTailor([Krum(f=2), Comed(f=2)], probs=[0.3, 0.7])
    view = make_view(H, n=12, f=2, defense=mt)
    atk = make_attack("adaptive", problem="expected")
    assert isinstance(atk, AdaptiveAttack) and atk.name == "adaptive[problem=expected]"
    B = atk(view)
    assert B.shape == (2, 6) and B.dtype == H.dtype
    ref = solvers.solve(solvers.ExpectedValue(H, 2, [Krum(f=2), Comed(f=2)], probs=[0.3, 0.7]))
    torch.testing.assert_close(B, ref.byzantine)
    assert atk.last_solution.value == pytest.approx(ref.value)
    assert atk.last_solution.objective == "expected"


@pytest.mark.parametrize("problem", ["p3", "p2", "tailored"])
def test_each_problem_runs_from_a_view(problem):
    H = honest(4, 3, 1)
    view = make_view(H, n=5, f=1, defense=Comed(f=1))
    atk = make_attack("adaptive", problem=problem)
    B = atk(view)
    assert B.shape == (1, 3) and bool(torch.isfinite(B).all())
    assert atk.last_solution.problem == {"p3": "P3", "p2": "P2", "tailored": "tailored"}[problem]


def test_partial_and_own_knowledge_views():
    H = honest(10, 4, 2)
    own = honest(2, 4, 3)
    v = make_view(H, n=12, f=2, knowledge="partial:3", defense=Comed(f=2))
    atk = make_attack("adaptive", problem="p3")
    atk(v)
    inst = atk.build_problem(v).compile()
    assert inst.R.shape == (10, 4)
    torch.testing.assert_close(inst.R[3:], H[:3].mean(0).expand(7, -1))
    v = make_view(H, n=12, f=2, knowledge="own", defense=Comed(f=2), own=own)
    inst = atk.build_problem(v).compile()
    torch.testing.assert_close(inst.u, own.mean(0))
    v = make_view(H, n=12, f=2, knowledge="own", defense=Comed(f=2))
    with pytest.raises(ValueError, match="adaptive: needs visible honest rows or view.own"):
        atk(v)


def test_model_space_sends_models():
    H = honest(4, 3, 4)
    w0 = torch.full((3,), 2.0, dtype=torch.float64)
    models = w0 - 0.1 * H
    v = make_view(models, n=5, f=1, defense=Comed(f=1), model=w0)
    B = make_attack("adaptive", problem="p3", space="model")(v)
    ref = make_attack("adaptive", problem="p3")(make_view(w0 - models, n=5, f=1, defense=Comed(f=1)))
    torch.testing.assert_close(B, w0 - ref)


def test_bad_parameters_and_defenses_raise():
    with pytest.raises(ValueError, match="adaptive: problem must be one of"):
        make_attack("adaptive", problem="p4")
    with pytest.raises(ValueError, match="adaptive: eps must be >= 0"):
        make_attack("adaptive", eps=-1.0)
    with pytest.raises(ValueError, match="adaptive: method must be one of"):
        make_attack("adaptive", method="newton")
    H = honest(10, 2, 5)
    v = make_view(H, n=12, f=2, defense=MixTailor([Krum(f=2), Comed(f=2)]))
    with pytest.raises(ValueError, match="adaptive: view.defense must be a single rule"):
        make_attack("adaptive", problem="tailored")(v)
    with pytest.raises(ValueError, match="adaptive: view.defense must be a rule or a RulePool"):
        make_attack("adaptive")(make_view(H, n=12, f=2))


RULES = [Mean(), Comed(f=2), TrimmedMean(b=2), Krum(f=2), Krum(f=2, p=1.0), MultiKrum(f=2, m=3), MultiKrum(f=2),
         Geomed(f=2), Geomed(f=2, p=3.0), Bulyan(f=1), Bulyan(f=1, select="comed", aggregate="comed"),
         Bulyan(f=1, select="average", aggregate="average", p=3.0),
         # wrappers around comed / trimmed mean: autograd through the sorting network
         # raised and the fallback read a zero gradient (SCP then stalled on them)
         NNM(base="comed", f=2), NNM(base={"name": "trimmed_mean", "b": 2}, f=2),
         pure(CenteredClipping(base="comed", tau=0.5, f=2))]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_linear_models_match_finite_differences_of_the_real_rules(rule):
    """Where the rule's choices do not change (a tiny step), <AGG, u> moves as the model's
    gradient predicts (row weights W, or the geometric median's implicit derivative)."""
    G = honest(9, 5, 6)
    G[0] = G[1:].mean(0) + 0.01 * honest(1, 5, 7)[0]  # a Byzantine row that gets selected / averaged
    u = honest(1, 5, 9, mu=0.0)[0]
    grad = rule_gradient(rule, G, u, 2)
    W = model_weights(rule, G)
    if W is not None:
        torch.testing.assert_close(grad, W[:2] * u)
    h = 1e-7
    D = honest(2, 5, 8) - 0.5  # move the two "Byzantine" rows only
    pred = float((grad * D).sum()) * h
    diff = float((rule(torch.cat([G[:2] + h * D, G[2:]])) - rule(G)) @ u)
    # the rule's geometric median stops at its tolerance (1e-7 of a step): so much noise
    tol = 1e-3 if rule.family == "geomed" or "geomed" in rule.name else 1e-9
    assert diff == pytest.approx(pred, rel=tol, abs=tol * h * 10 + 1e-15)


def _grad_sum(z, X, p):
    V = z - X
    r = np.linalg.norm(V, ord=p, axis=1)
    return (np.sign(V) * np.abs(V) ** (p - 1) / r[:, None] ** (p - 1)).sum(0)


def _geomed_reference(X, p, start):
    """The l_p geometric median to ~1e-15: the root of its optimality condition (scipy),
    polished from the rule's own answer (the rule stops at ~1e-8)."""
    import scipy.optimize

    sol = scipy.optimize.root(_grad_sum, start, args=(X, p), method="hybr", tol=1e-15)
    assert np.abs(_grad_sum(sol.x, X, p)).max() < 1e-12
    return sol.x


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0, 7.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geomed_gradient_is_the_implicit_derivative_of_the_median(p, seed):
    """d<z, u>/dx_i at random points (the median off every row) against central differences
    of a reference median solved to ~1e-15; the rows' gradients sum to u (moving every row
    moves the median with them). The fixed IRLS weights, the model before, were off by
    20-70% of the gradient here."""
    from mixtailor_game.rules.geomed import geomed_solve

    rng = np.random.default_rng(seed)
    X, u = rng.standard_normal((7, 3)), rng.standard_normal(3)
    z = _geomed_reference(X, p, geomed_solve(torch.tensor(X), p, tol=1e-15, max_iter=10_000).z.numpy())
    got = geomed_gradient(torch.tensor(X), p, 1e-6, torch.tensor(z), torch.tensor(u)).numpy()
    h, fd = 1e-5, np.zeros_like(X)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Xp, Xm = X.copy(), X.copy()
            Xp[i, j] += h
            Xm[i, j] -= h
            fd[i, j] = (_geomed_reference(Xp, p, z) - _geomed_reference(Xm, p, z)) @ u / (2 * h)
    np.testing.assert_allclose(got, fd, atol=1e-6 * np.abs(fd).max())
    np.testing.assert_allclose(got.sum(0), u, atol=1e-9)


@pytest.mark.parametrize("n", [6, 7])
@pytest.mark.parametrize("p", [2.0, 3.0])
def test_geomed_model_in_one_coordinate_is_the_medians(n, p):
    """At d = 1 the rule returns the coordinate-wise median (every point between the two
    middle values minimizes with even n): its model moves with the middle row(s) only,
    as forward differences of the real rule do (1 / |z - x_i| weights moved every row)."""
    G = honest(n, 1, n)
    u = torch.tensor([0.7], dtype=torch.float64)
    rule = Geomed(f=2, p=p)
    got = rule_gradient(rule, G, u, n)[:, 0]
    h, base = 1e-7, float(rule(G) @ u)
    fd = torch.tensor([(float(rule(G + h * (torch.arange(n) == i).double()[:, None]) @ u) - base) / h
                       for i in range(n)], dtype=torch.float64)
    torch.testing.assert_close(got, fd, atol=1e-6, rtol=0)
    assert int((got != 0).sum()) == (2 if n % 2 == 0 else 1)


def test_geomed_gradient_on_a_row_follows_that_row():
    """A median on a data row (a kink) moves with that row only: the IRLS weights' model."""
    X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    u = torch.tensor([0.3, -0.7], dtype=torch.float64)
    g = geomed_gradient(X, 2.0, 1e-6, torch.zeros(2, dtype=torch.float64), u)
    torch.testing.assert_close(g[0], u, atol=1e-5, rtol=0)
    assert float(g[1:].abs().max()) < 1e-5


def test_adaptive_problem_uses_the_views_own_rows():
    # the paper's g_1..g_f (A.1.2): in the no-attack reference and in the partial fill
    g = torch.Generator().manual_seed(1)
    H, own = torch.randn(10, 3, generator=g), torch.randn(2, 3, generator=g)
    view = make_view(H, n=12, f=2, knowledge="partial:3", own=own, defense=Comed(f=2))
    prob = AdaptiveAttack(problem="p3").build_problem(view)
    assert torch.equal(prob.own, own)
    assert AdaptiveAttack(problem="p3").build_problem(make_view(H, n=12, f=2, defense=Comed(f=2))).own is None


def test_the_method_lists_follow_the_solvers():
    """The adaptive attack and the game CLI accept every method of solvers.METHODS."""
    from mixtailor_game.attacks.adaptive import METHODS as ADAPTIVE
    from mixtailor_game.game.cli import DO_METHODS
    assert set(ADAPTIVE) - {None} == set(solvers.METHODS) == set(DO_METHODS) - {"auto"}
    H = honest(10, 6, 2)
    view = make_view(H, n=12, f=2, defense=MixTailor([Comed(f=2), TrimmedMean(b=2)]))
    atk = make_attack("adaptive", problem="p2", method="coordinatewise")
    B = atk(view)
    assert B.shape == (2, 6) and atk.last_solution.method == "coordinatewise"
    assert atk.last_solution.status == "optimal"


def test_adaptive_leaves_a_non_finite_honest_row_out_as_unseen():
    """A NaN row in the view made the problem refuse it (the step crashed); the other
    attacks leave such rows out (view.visible): here it counts as unseen (A.1.2)."""
    from mixtailor_game.attacks import make_attack, make_view
    from mixtailor_game.rules import Comed

    H = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    H[4, 1] = float("nan")
    attack = make_attack("adaptive", problem="p3")
    prob = attack.build_problem(make_view(H, n=12, f=2, defense=Comed(f=2)))
    assert prob.knowledge == ("partial", 9)
    B = attack(make_view(H, n=12, f=2, defense=Comed(f=2)))
    assert B.shape == (2, 3) and bool(torch.isfinite(B).all())
    clean = torch.cat([H[:4], H[5:]])
    want = solvers.solve(solvers.P3(clean, 2, [Comed(f=2)], knowledge=("partial", 9), n=12)).byzantine
    assert torch.equal(B, want.to(B))
