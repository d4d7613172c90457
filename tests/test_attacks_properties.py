"""Each attack's defining property (issue 3), knowledge levels and model space."""

import math
import re

import pytest
import torch

from mixtailor_game.attacks import (
    ALIE, FangKrum, FangTrim, IPM, MinMax, MinSum, RandomEps, alie_z, attack_names, fang_trim_bounds,
    make_attack, make_view,
)
from mixtailor_game.attacks.fang_krum import fang_krum
from mixtailor_game.rules import comed, krum, trimmed_mean


def gaussian_honest(seed, k=10, d=1000, mean=0.05, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return mean + torch.randn(k, d, generator=g, dtype=dtype)


@pytest.mark.parametrize("eps", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("knowledge", ["full", "partial:3"])
def test_ipm_inner_product_is_minus_eps_norm_squared(eps, knowledge):
    H = gaussian_honest(0, d=50, mean=0.3)
    v = make_view(H, n=12, f=2, knowledge=knowledge)
    B = make_attack("ipm", eps=eps)(v)
    mu = v.honest.mean(0)
    assert B.shape == (2, 50)
    torch.testing.assert_close(B @ mu, torch.full((2,), -eps * float(mu @ mu), dtype=B.dtype))


def test_random_eps_draws_from_the_set_with_the_given_probabilities():
    H = gaussian_honest(1, d=20, mean=1.0)
    att = RandomEps(eps_set=(0.1, 10.0), probs=(0.25, 0.75))
    rng = torch.Generator().manual_seed(3)
    mu = H.mean(0)
    drawn = []
    for step in range(400):
        B = att(make_view(H, n=12, f=2, step=step, rng=rng))
        eps = -float(B[0] @ mu) / float(mu @ mu)
        assert min(abs(eps - 0.1), abs(eps - 10.0)) < 1e-9
        drawn.append(eps)
    frac = sum(e == pytest.approx(10.0) for e in drawn) / len(drawn)
    assert abs(frac - 0.75) < 0.08
    # without rng: deterministic per step
    a = att(make_view(H, n=12, f=2, step=5))
    b = att(make_view(H, n=12, f=2, step=5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("n, f", [(12, 2), (50, 12), (20, 4)])
def test_alie_stays_within_z_std_of_the_mean(n, f):
    H = gaussian_honest(2, k=n - f, d=200)
    v = make_view(H, n=n, f=f)
    B = ALIE()(v)
    mu, sd = H.mean(0), H.std(0)
    z = alie_z(n, f)
    assert torch.all((B - mu).abs() <= abs(z) * sd * (1 + 1e-9) + 1e-12)
    torch.testing.assert_close(B, (mu - z * sd).expand(f, -1))
    # a fixed z is honoured
    torch.testing.assert_close(ALIE(z=1.0)(v)[0], mu - sd)


def test_alie_needs_two_rows_and_f_at_most_half():
    v = make_view(gaussian_honest(0, k=10, d=5), n=12, f=2, knowledge="partial:1")
    with pytest.raises(ValueError, match=re.escape("alie: visible rows must be >= 2 to estimate a standard deviation, got 1")):
        ALIE()(v)
    with pytest.raises(ValueError, match=re.escape("alie: needs s = floor(n/2 + 1) - f >= 1, i.e. f <= n/2, got n=12, f=7")):
        alie_z(12, 7)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("direction", ["mean", "aggregate"])
def test_fang_krum_makes_krum_select_a_byzantine_row(seed, direction):
    H = gaussian_honest(seed, k=10, d=1000, mean=0.01, dtype=torch.float32)
    v = make_view(H, n=12, f=2)
    res = FangKrum(direction=direction).solve(v)
    assert res.selected and 0 < res.lam <= res.lam_max
    G = torch.cat([res.byzantine, H])
    out = krum(G, f=2)
    assert any(torch.equal(out, b) for b in res.byzantine)
    # the crafted row points against the honest mean
    assert float(out @ H.mean(0)) < 0
    # and lam is the largest of lam_max / 2^t that works: twice it fails
    if res.halvings > 0:
        B2 = -(2 * res.lam) * torch.sign(H.mean(0) if direction == "mean" else krum(H, f=2))
        out2 = krum(torch.cat([B2.expand(2, -1), H]), f=2)
        assert not torch.equal(out2, B2)


def test_fang_krum_supporters_and_partial_knowledge():
    H = gaussian_honest(7, k=10, d=1000, mean=0.01)
    res = FangKrum(support_radius=0.5).solve(make_view(H, n=12, f=2, rng=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(torch.linalg.vector_norm(res.byzantine[1] - res.byzantine[0]), torch.tensor(0.5, dtype=H.dtype))
    assert res.selected
    own = gaussian_honest(8, k=2, d=1000, mean=0.01)
    for knowledge in ["partial:5", "own"]:
        r = FangKrum().solve(make_view(H, n=12, f=2, knowledge=knowledge, own=own))
        assert r.selected and r.lam > 0
    with pytest.raises(ValueError, match=re.escape("fang_krum: needs n > 2f + 2, got n=6, f=2")):
        FangKrum()(make_view(H[:4], n=6, f=2))


@pytest.mark.parametrize("variant, knowledge", [("full", "full"), ("partial", "partial:5"), ("auto", "own")])
def test_fang_trim_crafts_beyond_the_honest_values_and_moves_median_and_trimmed_mean(variant, knowledge):
    H = gaussian_honest(4, k=10, d=300, mean=0.2)
    own = gaussian_honest(5, k=2, d=300, mean=0.2)
    v = make_view(H, n=12, f=2, knowledge=knowledge, own=own, rng=torch.Generator().manual_seed(0))
    B = FangTrim(variant=variant)(v)
    V = v.visible("t")
    lo, hi = fang_trim_bounds(V, 2.0, "full" if variant == "full" else "partial")
    assert torch.all((B >= lo) & (B <= hi))
    push = torch.where(V.mean(0) > 0, -1.0, 1.0).double()
    if variant == "full":
        assert torch.all(B * push >= V.max(0).values * (push > 0) - V.min(0).values * (push < 0))
    G = torch.cat([B, H])
    for rule in (comed, lambda X: trimmed_mean(X, 2)):
        if variant == "full":  # beyond every honest value: each coordinate moves the pushed way
            shift = (rule(G) - rule(torch.cat([H[:2], H]))) * push
            assert torch.all(shift >= -1e-12)
        assert float(rule(G) @ H.mean(0)) < float(rule(H) @ H.mean(0))


def test_fang_trim_full_variant_needs_full_knowledge():
    v = make_view(gaussian_honest(0, d=5), n=12, f=2, knowledge="partial:3")
    with pytest.raises(ValueError, match="fang_trim: variant must be 'partial' or 'auto' unless the view is omniscient"):
        FangTrim(variant="full")(v)


@pytest.mark.parametrize("cls", [MinMax, MinSum])
@pytest.mark.parametrize("perturbation", ["unit", "sign", "std"])
def test_min_max_min_sum_condition_holds_at_gamma_and_fails_at_105_gamma(cls, perturbation):
    H = gaussian_honest(6, k=10, d=100, mean=0.5)
    v = make_view(H, n=12, f=2)
    att = cls(perturbation=perturbation)
    res = att.solve(v)
    assert res.gamma > 0
    assert res.ok(res.gamma) and not res.ok(1.05 * res.gamma)
    B = att(v)
    D = torch.cdist(H, H)
    dist = torch.linalg.vector_norm(B[0] - H, dim=1)
    if cls is MinMax:
        assert float(dist.max()) <= float(D.max()) * (1 + 1e-12)
        B105 = H.mean(0) + 1.05 * res.gamma * res.perturbation
        assert float(torch.linalg.vector_norm(B105 - H, dim=1).max()) > float(D.max())
    else:
        assert float(dist.square().sum()) <= float(D.square().sum(1).max()) * (1 + 1e-12)


def test_min_max_paper_search_is_below_the_binary_answer_and_capped_by_gamma_init():
    H = gaussian_honest(6, k=10, d=100, mean=0.5)
    v = make_view(H, n=12, f=2)
    exact = MinMax().solve(v).gamma
    paper = MinMax(search="paper", gamma_init=exact, tol=1e-7).solve(v)
    assert paper.ok(paper.gamma) and exact - paper.gamma < 1e-5
    capped = MinMax(search="paper", gamma_init=exact / 4, tol=1e-7).solve(v).gamma
    assert capped < exact / 2 + 1e-9


def test_mimic_copies_a_visible_row():
    H = gaussian_honest(9, k=10, d=30)
    H[6] += 5.0 * torch.linspace(-1, 1, 30, dtype=H.dtype)  # the outlier along the top direction
    B = make_attack("mimic")(make_view(H, n=12, f=2))
    assert torch.equal(B[0], H[6]) and torch.equal(B[1], H[6])
    assert torch.equal(make_attack("mimic", target=2)(make_view(H, n=12, f=2))[0], H[2])
    with pytest.raises(ValueError, match="mimic: target must be <= 3, got 5"):
        make_attack("mimic", target=5)(make_view(H, n=12, f=2, knowledge="partial:4"))


def test_gaussian_noise_uses_the_generator():
    H = gaussian_honest(0, k=10, d=4000)
    mk = lambda seed: make_view(H, n=12, f=2, rng=torch.Generator().manual_seed(seed))
    att = make_attack("gaussian", sigma=3.0)
    a, b, c = att(mk(1)), att(mk(1)), att(mk(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.std()) - 3.0) < 0.1 and abs(float(a.mean())) < 0.1
    h = make_attack("gaussian", sigma=0.0, center="honest")(mk(1))
    torch.testing.assert_close(h[0], H.mean(0))


def test_sign_flip_and_label_flip():
    H = gaussian_honest(0, k=10, d=8)
    own = gaussian_honest(1, k=2, d=8)
    v = make_view(H, n=12, f=2, own=own)
    torch.testing.assert_close(make_attack("sign_flip", scale=2.0)(v), -2.0 * own)
    torch.testing.assert_close(make_attack("sign_flip")(make_view(H, n=12, f=2))[0], -H.mean(0))
    lf = make_attack("label_flip")
    assert make_attack("ipm").data_hook is None and callable(lf.data_hook)
    x = torch.randn(4, 3)
    x2, y2 = lf.data_hook(x, torch.tensor([0, 1, 9, 4]), 10, None)
    assert x2 is x and y2.tolist() == [9, 8, 0, 5]
    assert torch.equal(lf(v), own)
    with pytest.raises(ValueError, match=re.escape("label_flip: y must be in [0, 10), got (0, 10)")):
        lf.data_hook(x, torch.tensor([0, 10]), 10, None)
    with pytest.raises(ValueError, match="label_flip: view.own must be the Byzantines' gradients on flipped labels, got None"):
        lf(make_view(H, n=12, f=2))


NAMES = [nm for nm in attack_names() if nm not in ("adaptive", "label_flip")]


@pytest.mark.parametrize("name", NAMES)
def test_partial_knowledge_is_really_partial(name):
    """Changing honest rows the view does not contain leaves the attack unchanged."""
    H = gaussian_honest(11, k=10, d=60, mean=0.2)
    H2 = H.clone()
    H2[5:] = 100.0 * torch.randn(5, 60, dtype=H.dtype, generator=torch.Generator().manual_seed(0))
    att = make_attack(name)
    run = lambda X, kn, own=None: att(make_view(X, n=12, f=2, knowledge=kn, own=own,
                                               rng=torch.Generator().manual_seed(5)))
    a, b = run(H, "partial:5"), run(H2, "partial:5")
    assert torch.equal(a, b)
    if name != "gaussian":  # the zero-centred noise ignores the honest rows altogether
        assert not torch.equal(a, run(H2, "full"))
    own = gaussian_honest(12, k=2, d=60, mean=0.2)
    assert torch.equal(run(H, "own", own), run(H2, "own", own))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_are_finite_keep_dtype_and_do_not_mutate_input(name, dtype):
    H = gaussian_honest(13, k=10, d=40, dtype=dtype)
    H0 = H.clone()
    B = make_attack(name)(make_view(H, n=12, f=2))
    assert B.shape == (2, 40) and B.dtype == dtype and torch.isfinite(B).all()
    assert torch.equal(H, H0)


@pytest.mark.parametrize("name", NAMES)
def test_model_space_is_the_gradient_attack_on_w0_minus_models(name):
    """Byzantines send ``w_0 - B(u)`` where ``u_i = w_0 - w_i`` (paper A.1.3-A.1.5)."""
    U = gaussian_honest(14, k=10, d=30, mean=0.3)
    w0 = torch.linspace(-2, 2, 30, dtype=U.dtype)
    W = w0 - U
    mk = lambda X, model: make_view(X, n=12, f=2, model=model, rng=torch.Generator().manual_seed(2))
    Bm = make_attack(name, space="model")(mk(W, w0))
    Bg = make_attack(name)(mk(U, None))
    torch.testing.assert_close(Bm, w0 - Bg)
    with pytest.raises(ValueError, match=re.escape(f"{name}: view.model must be the previous global model w_0 when space='model', got None")):
        make_attack(name, space="model")(mk(W, None))


def test_model_space_ipm_and_fang_krum_match_the_paper_form():
    U = gaussian_honest(15, k=10, d=1000, mean=0.01)
    w0 = torch.full((1000,), 3.0, dtype=U.dtype)
    W = w0 - 0.1 * U
    v = make_view(W, n=12, f=2, model=w0)
    s = W.mean(0) - w0
    torch.testing.assert_close(IPM(eps=10.0, space="model")(v)[0], w0 - 10.0 * s)
    B = FangKrum(space="model")(v)
    lam = float((w0 - B[0]).abs().mean())
    torch.testing.assert_close(B[0], w0 - lam * torch.sign(s))
    assert any(torch.equal(krum(torch.cat([B, W]), f=2), b) for b in B)
    assert math.isfinite(lam) and lam > 0


@pytest.mark.parametrize("name, params", [("random_eps", {}), ("gaussian", {}), ("fang_trim", {}),
                                          ("fang_krum", dict(support_radius=0.1)), ("mimic", {})])
def test_attacks_never_touch_global_rng(name, params):
    H = gaussian_honest(16, k=10, d=50)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = make_attack(name, **params)(make_view(H, n=12, f=2, step=4))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global seed changes nothing: the default generator is per step
    assert torch.equal(make_attack(name, **params)(make_view(H, n=12, f=2, step=4)), a)


from hypothesis import given, strategies as st  # noqa: E402


@given(seed=st.integers(0, 10_000), k=st.integers(3, 12), d=st.integers(1, 40),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), kind=st.sampled_from(["unit", "sign", "std"]),
       cls=st.sampled_from([MinMax, MinSum]))
def test_gamma_search_is_tight_on_random_inputs(seed, k, d, scale, kind, cls):
    H = scale * gaussian_honest(seed, k=k, d=d, mean=0.3)
    res = cls(perturbation=kind).solve(make_view(H, n=k + 2, f=2))
    if bool((res.perturbation != 0).any()):
        assert res.ok(res.gamma) and not res.ok(1.05 * res.gamma)


@given(seed=st.integers(0, 10_000), f=st.integers(1, 3), d=st.integers(2, 60), mean=st.sampled_from([0.0, 0.05, 1.0]))
def test_fang_krum_simulation_is_the_servers_krum_under_full_knowledge(seed, f, d, mean):
    n = 2 * f + 3 + seed % 4
    H = gaussian_honest(seed, k=n - f, d=d, mean=mean)
    res = FangKrum().solve(make_view(H, n=n, f=f))
    assert 0 <= res.lam <= res.lam_max
    picked_byzantine = any(torch.equal(krum(torch.cat([res.byzantine, H]), f=f), b) for b in res.byzantine)
    assert picked_byzantine == res.selected


@pytest.mark.parametrize("bad", ["inf", "nan", "row_nan"])
def test_fang_krum_drops_non_finite_visible_rows(bad):
    # an infinite bound on lambda never halved below lam_min: the attack looped forever
    H = gaussian_honest(3, k=10, d=5)
    Hb = H.clone()
    if bad == "row_nan":
        Hb[3] = float("nan")
    else:
        Hb[3, 0] = float(bad)
    got = FangKrum().solve(make_view(Hb, n=12, f=2))
    ref = fang_krum(torch.cat([H[:3], H[4:]]), 12, 2)  # the finite rows only
    assert torch.isfinite(got.byzantine).all()
    assert (got.lam, got.lam_max, got.halvings) == (ref.lam, ref.lam_max, ref.halvings)
    with pytest.raises(ValueError, match="fang_krum: needs at least one finite visible row, got none"):
        FangKrum().solve(make_view(torch.full((10, 5), float("nan")), n=12, f=2))


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e19), (torch.float64, 1e160)])
def test_fang_krum_on_huge_finite_rows_sends_finite_rows(dtype, scale):
    H = (scale * gaussian_honest(4, k=10, d=5)).to(dtype)
    got = FangKrum().solve(make_view(H, n=12, f=2))
    assert torch.isfinite(got.byzantine).all() and math.isfinite(got.lam) and math.isfinite(got.lam_max)


def test_mimic_never_copies_a_non_finite_row():
    H = gaussian_honest(9, k=10, d=30)
    H[6] += 5.0 * torch.linspace(-1, 1, 30, dtype=H.dtype)  # the outlier along the top direction
    for bad in (0, 3):
        Hb = H.clone()
        Hb[bad, 1] = float("nan")
        B = make_attack("mimic")(make_view(Hb, n=12, f=2))
        assert torch.equal(B[0], H[6])
    with pytest.raises(ValueError, match="mimic: needs at least one finite visible row, got none"):
        make_attack("mimic")(make_view(torch.full((10, 3), float("inf")), n=12, f=2))


@pytest.mark.parametrize("cls", [MinMax, MinSum])
def test_gamma_search_is_exact_for_many_rows_sharing_a_large_mean(cls):
    # past 25 rows torch.cdist's default multiplies matrices, which cancels here
    H = gaussian_honest(11, k=30, d=50, mean=0.0)
    shifted = H + 1e7
    a = cls(perturbation="std").solve(make_view(H, n=32, f=2)).gamma  # std: shift-invariant
    b = cls(perturbation="std").solve(make_view(shifted, n=32, f=2)).gamma
    assert b == pytest.approx(a, rel=1e-5)


@pytest.mark.parametrize("name, params", [
    *[(nm, {}) for nm in attack_names()],
    ("ipm", {"eps": 10.0}), ("fang_krum", {"p": 3.5, "direction": "aggregate"}), ("fang_trim", {"b": 3}),
    ("random_eps", {"eps_set": (0.2, 5.0, 50.0), "probs": (0.25, 0.25, 0.5)}), ("gaussian", {"sigma": 0.5}),
    ("min_max", {"perturbation": "sign", "gamma_init": 5.0}), ("adaptive", {"problem": "p3", "method": "line"}),
])
def test_an_attack_name_builds_the_same_attack(name, params):
    """Attacks' names are specs (the game's --attacks reads them): make_attack(a.name) == a,
    tuples included (random_eps's sets)."""
    from mixtailor_game.attacks import make_attack

    a = make_attack(name, **params)
    assert make_attack(a.name) == a
    if "[" in a.name:  # a keyword that repeats the spec's value is fine; another value is not
        key = next(iter(params), None)
        if key is not None:
            assert make_attack(a.name, **{key: params[key]}) == a
            with pytest.raises(ValueError, match=rf"make_attack: \['{key}'\] given in the spec"):
                make_attack(a.name, **{key: "other"})
