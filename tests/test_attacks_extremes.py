"""Attacks on extreme but finite honest rows, low-precision dtypes and the random-eps draw."""

import pytest
import torch

from mixtailor_game.attacks import FangTrim, RandomEps, alie_z, make_attack, make_view


def gaussian_honest(seed, k=10, d=40, mean=0.1):
    g = torch.Generator().manual_seed(seed)
    return mean + torch.randn(k, d, generator=g, dtype=torch.float64)


# every attack whose rows scale with the honest rows: attack(c H) = c attack(H)
EQUIVARIANT = [
    ("ipm", {}), ("ipm", dict(eps=10.0)), ("random_eps", {}), ("alie", {}), ("sign_flip", {}), ("mimic", {}),
    ("fang_trim", {}), ("fang_trim", dict(variant="partial")), ("fang_krum", {}),
    ("min_max", dict(perturbation="unit")), ("min_max", dict(perturbation="sign")),
    ("min_max", dict(perturbation="std")), ("min_sum", dict(perturbation="unit")),
    ("min_sum", dict(perturbation="std")), ("min_max", dict(perturbation="std", search="paper")),
]


@pytest.mark.parametrize("name, params", EQUIVARIANT)
def test_attacks_scale_with_huge_finite_rows(name, params):
    # squares past ~1e154 overflowed float64: ALIE sent -inf rows, Fang-trim (partial) NaN
    # rows, min-max / min-sum searched on infinite distances (gamma = 0 or -inf rows)
    c = 2.0 ** 600  # a power of two: c * H is exact
    H = gaussian_honest(1)
    run = lambda X: make_attack(name, **params)(make_view(X, n=12, f=2, rng=torch.Generator().manual_seed(4)))
    small, big = run(H), run(c * H)
    assert bool(torch.isfinite(big).all())
    # min-max / min-sum bisect from an absolute gamma_init: equal up to the search tolerance
    torch.testing.assert_close(big / c, small, rtol=1e-5, atol=1e-12)


def test_float32_rows_near_the_top_of_the_range_give_the_mean_not_inf():
    # the float32 sum of 10 rows near 2^126 overflowed: IPM, ALIE and sign flip sent -inf
    g = torch.Generator().manual_seed(0)
    H = (2.0 ** 126 * (1.0 + 0.1 * torch.randn(10, 8, generator=g, dtype=torch.float64))).float()
    mu = H.double().mean(0)
    v = make_view(H, n=12, f=2)
    torch.testing.assert_close(make_attack("ipm", eps=0.1)(v)[0].double(), -0.1 * mu, rtol=1e-6, atol=0)
    torch.testing.assert_close(make_attack("sign_flip", scale=0.5)(v)[0].double(), -0.5 * mu, rtol=1e-6, atol=0)
    sd = H.double().std(0)
    torch.testing.assert_close(make_attack("alie")(v)[0].double(), mu - alie_z(12, 2) * sd, rtol=1e-5, atol=0)


def test_crafted_values_past_the_dtype_range_saturate():
    # -eps * mu and b * max_j past float16's range were inf: the rules drop such a row, so
    # the attack vanished instead of pushing as far as the dtype allows
    big = torch.finfo(torch.float16).max
    H = (3e4 + 100.0 * gaussian_honest(2, d=6, mean=0.0)).half()
    B = make_attack("ipm", eps=10.0)(make_view(H, n=12, f=2))
    assert bool((B == -big).all())
    Hm = (-5e3 + 1.5e4 * gaussian_honest(3, d=50, mean=0.0)).half()
    B = FangTrim()(make_view(Hm, n=12, f=2, rng=torch.Generator().manual_seed(0)))
    assert bool(torch.isfinite(B).all())
    mx = Hm.max(0).values
    up = (Hm.double().mean(0) <= 0) & (mx > 0)  # pushed above max_j, towards b * max_j
    assert bool(up.any()) and bool((B[:, up] >= mx[up]).all())


def test_random_eps_draw_does_not_depend_on_the_rows_dtype():
    # u was rounded to the rows' dtype: in bfloat16 every u >= 1 - 2^-9 became 1.0 and drew
    # the last eps, about twice its probability (0.0026 measured for probs[-1] = 0.001)
    att = RandomEps(eps_set=(0.1, 10.0), probs=(0.999, 0.001))
    seeds = [s for s in range(4000)
             if 0.998 <= float(torch.rand((), generator=torch.Generator().manual_seed(s), dtype=torch.float64)) < 0.999]
    assert seeds
    for s in seeds:
        for dtype in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            v = make_view(torch.ones(10, 3, dtype=dtype), n=12, f=2, rng=torch.Generator().manual_seed(s))
            assert att.draw(v) == 0.1
