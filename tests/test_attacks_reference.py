"""Slow references (plain loops, numpy float64) for the attacks with nontrivial math."""

import math
from statistics import NormalDist

import numpy as np
import pytest
import torch

from mixtailor_game.attacks import (
    AdversaryView, FangKrum, MinMax, MinSum, alie_z, fang_lambda_max, fang_trim_bounds, make_view, mimic_target,
)


def sample(seed, k, d, mean):
    rng = np.random.default_rng(seed)
    return mean + rng.standard_normal((k, d))


def dist(a, b, p=2.0):
    return float(np.sum(np.abs(a - b) ** p) ** (1.0 / p))


def ref_krum_index(S, q, p):
    scores = []
    for i in range(len(S)):
        ds = sorted(dist(S[i], S[j], p) ** 2 for j in range(len(S)) if j != i)
        scores.append(sum(ds[:q]))
    best = 0
    for i in range(len(S)):
        if scores[i] < scores[best]:
            best = i
    return best


def ref_fang_krum(V, n, f, p=2.0, lam_min=1e-5):
    k, d = V.shape
    s = np.array([1.0 if x > 0 else (-1.0 if x < 0 else 0.0) for x in V.mean(0)])
    q = min(n - f - 2, k - 1)
    sums = []
    for i in range(k):
        ds = sorted(dist(V[i], V[j], p) for j in range(k) if j != i)
        sums.append(sum(ds[:q]))
    s_norm = dist(s, np.zeros(d), p)
    lam_max = min(sums) / ((n - 2 * f - 1) * s_norm) + max(dist(v, np.zeros(d), p) for v in V) / s_norm
    lam = lam_max
    qs = min(n - f - 2, f + k - 1)
    while True:
        S = [-lam * s] * f + list(V)
        if ref_krum_index(S, qs, p) < f or lam / 2 < lam_min:
            return lam_max, lam, ref_krum_index(S, qs, p) < f
        lam /= 2


@pytest.mark.parametrize("seed, k, p, mean", [(0, 10, 2.0, 0.01), (1, 10, 3.0, 0.05), (2, 6, 2.0, 0.0), (3, 10, 1.0, 0.5)])
def test_fang_krum_matches_loops(seed, k, p, mean):
    V = sample(seed, k, 60, mean)
    n, f = 12, 2
    lam_max, lam, sel = ref_fang_krum(V, n, f, p)
    view = AdversaryView(torch.tensor(V), n=n, f=f)  # k visible rows: full when k = n - f
    res = FangKrum(p=p).solve(view)
    assert res.lam_max == pytest.approx(lam_max, rel=1e-10)
    assert res.lam == pytest.approx(lam, rel=1e-10) and res.selected == sel
    s = torch.sign(torch.tensor(V).mean(0))
    assert fang_lambda_max(torch.tensor(V), s, n, f, p) == pytest.approx(lam_max, rel=1e-10)


def test_fang_lambda_max_is_fangs_formula_for_p2():
    """For p = 2 and s in {-1, 1}^d: min-sum / ((n - 2f - 1) sqrt(d)) + max ||V_i|| / sqrt(d)."""
    V = sample(4, 10, 25, 0.3)
    n, f, d = 12, 2, 25
    nearest = [sum(sorted(np.linalg.norm(V[i] - V[j]) for j in range(10) if j != i)[: n - f - 2]) for i in range(10)]
    expected = min(nearest) / ((n - 2 * f - 1) * math.sqrt(d)) + max(np.linalg.norm(v) for v in V) / math.sqrt(d)
    s = torch.sign(torch.tensor(V).mean(0))
    assert bool((s != 0).all())
    assert fang_lambda_max(torch.tensor(V), s, n, f, 2.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("variant", ["full", "partial"])
def test_fang_trim_bounds_match_loops(variant):
    V = sample(5, 10, 40, 0.1)
    V[:, :5] = np.abs(V[:, :5]) + 0.1  # all-positive coordinates exercise the "/ b" branches
    V[:, 5:10] = -np.abs(V[:, 5:10]) - 0.1
    b = 2.5
    lo, hi = fang_trim_bounds(torch.tensor(V), b, variant)
    for j in range(V.shape[1]):
        col = V[:, j]
        up = col.mean() <= 0
        if variant == "full":
            mx, mn = col.max(), col.min()
            if up:
                want = (mx, mx * b) if mx > 0 else (mx, mx / b)
            else:
                want = (mn / b, mn) if mn > 0 else (mn * b, mn)
        else:
            mu, sd = col.mean(), col.std(ddof=1)
            want = (mu + 3 * sd, mu + 4 * sd) if up else (mu - 4 * sd, mu - 3 * sd)
        assert want[0] <= want[1]
        assert float(lo[j]) == pytest.approx(want[0], rel=1e-12)
        assert float(hi[j]) == pytest.approx(want[1], rel=1e-12)


def ref_gamma(V, kind, objective):
    """Closed form: the largest root of the quadratic(s) in gamma."""
    k, d = V.shape
    mu = V.mean(0)
    if kind == "unit":
        pert = -mu / np.linalg.norm(mu)
    elif kind == "sign":
        pert = -np.sign(mu)
    else:
        pert = -V.std(0, ddof=1)
    a = float(pert @ pert)
    if objective == "min_max":
        R2 = max(float(np.sum((V[i] - V[j]) ** 2)) for i in range(k) for j in range(k))
        roots = []
        for i in range(k):
            e = mu - V[i]
            bb, c = float(e @ pert), float(e @ e)
            roots.append((-bb + math.sqrt(bb * bb - a * (c - R2))) / a)
        return min(roots)
    S = max(sum(float(np.sum((V[i] - V[j]) ** 2)) for j in range(k)) for i in range(k))
    A = k * a
    B = sum(float((mu - V[i]) @ pert) for i in range(k))
    C = sum(float((mu - V[i]) @ (mu - V[i])) for i in range(k))
    return (-B + math.sqrt(B * B - A * (C - S))) / A


@pytest.mark.parametrize("cls", [MinMax, MinSum])
@pytest.mark.parametrize("kind", ["unit", "sign", "std"])
@pytest.mark.parametrize("seed", [0, 1])
def test_min_max_min_sum_gamma_matches_closed_form(cls, kind, seed):
    V = sample(seed, 10, 50, 0.4)
    view = make_view(torch.tensor(V), n=12, f=2)
    got = cls(perturbation=kind).solve(view).gamma
    assert got == pytest.approx(ref_gamma(V, kind, cls.family), rel=3e-6)


def test_alie_z_matches_the_formula():
    for n in range(3, 60):
        for f in range(1, n // 2 + 1):
            s = math.floor(n / 2 + 1) - f
            assert alie_z(n, f) == pytest.approx(NormalDist().inv_cdf((n - s) / n), abs=1e-9)


def test_mimic_target_matches_eigenvector_loop():
    for seed in range(4):
        V = sample(seed, 8, 12, 0.0)
        C = V - V.mean(0)
        w, vecs = np.linalg.eigh(C.T @ C)
        z = vecs[:, -1]
        proj = [abs(sum(C[i, j] * z[j] for j in range(12))) for i in range(8)]
        assert mimic_target(torch.tensor(V)) == int(np.argmax(proj))
