"""Fast rules vs slow references written with plain loops over numpy float64.

Covers comed, trimmed mean, (Multi-)Krum, pairwise distances, Bulyan (every
select x aggregate pair, the reference recomputing everything each round) and
the geometric median (against ``scipy.optimize``), on random and integer-valued
(tied) inputs over several (n, f, d, p), plus NaN / Inf / 1e30 rows.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import torch

from mixtailor_game.rules import (
    Bulyan, Comed, Krum, Mean, MixTailor, MultiKrum, TrimmedMean, bulyan, bulyan_select, comed, geomed, geomed_solve,
    krum, krum_scores, make_rule, multi_krum, pairwise_distances, trimmed_mean,
)
from mixtailor_game.rules import _network
from mixtailor_game.rules._distances import lp_norm_rows, squared_distances, squared_distances_from

# ----------------------------------------------------------------- references


def ref_sorted_column(G, j):
    """Column j sorted ascending with NaN last (numpy's order, as torch's)."""
    return np.sort(np.asarray([G[i][j] for i in range(len(G))], dtype=np.float64))


def ref_median_list(vals):
    vals = sorted(vals, key=lambda v: (math.isnan(v), v))
    n = len(vals)
    if n % 2:
        return vals[n // 2]
    return 0.5 * vals[n // 2 - 1] + 0.5 * vals[n // 2]


def ref_comed(G):
    n, d = G.shape
    return np.array([ref_median_list(list(G[:, j])) for j in range(d)])


def ref_trimmed(G, b):
    n, d = G.shape
    out = np.empty(d)
    for j in range(d):
        col = ref_sorted_column(G, j)
        kept = col[b : n - b]
        out[j] = sum(kept) / len(kept)
    return out


def ref_lp(diff, p):
    """l_p norm of a float64 vector by a scaled loop (no overflow, no underflow)."""
    m = max(abs(x) for x in diff)
    if m == 0:
        return 0.0
    if math.isinf(p):
        return m
    return m * sum((abs(x) / m) ** p for x in diff) ** (1.0 / p)


def ref_sq(diff, p):
    """||diff||_p^2, exactly for integer-valued input when p is 1, 2 or inf."""
    if p == 2:
        s = sum(x * x for x in diff)
        if math.isfinite(s) and (s == 0 or s > 1e-280):
            return s
    if p == 1:
        return sum(abs(x) for x in diff) ** 2
    return ref_lp(diff, p) ** 2


def ref_distances(G, p, squared=False):
    n = G.shape[0]
    finite = [all(math.isfinite(x) for x in G[i]) for i in range(n)]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if not (finite[i] and finite[j]):
                D[i, j] = math.inf
            else:
                diff = [G[i][k] - G[j][k] for k in range(G.shape[1])]
                D[i, j] = ref_sq(diff, p) if squared else ref_lp(diff, p)
    return D


def ref_krum_scores(G, f, p, neighbours=None):
    n = G.shape[0]
    D2 = ref_distances(G, p, squared=True)
    k = n - f - 2 if neighbours is None else neighbours
    scores = []
    for i in range(n):
        others = sorted(D2[i, j] for j in range(n) if j != i)
        scores.append(sum(others[:k]))
    return np.array(scores)


def ref_krum_index(G, f, p):
    scores = ref_krum_scores(G, f, p)
    return min(range(len(scores)), key=lambda i: (scores[i], i))


def ref_geomed_objective(z, X, p):
    return sum(ref_lp(list(z - x), p) for x in X)


def ref_geomed(X, p):
    """argmin_z sum_i ||z - x_i||_p by scipy (Nelder-Mead then Powell, best of several starts)."""
    X = np.asarray(X, dtype=np.float64)
    X = X[np.all(np.isfinite(X), axis=1)]

    def obj(z):
        return float(np.sum(np.linalg.norm(z[None, :] - X, ord=p, axis=1)))

    best = None
    for start in (np.median(X, axis=0), X.mean(axis=0)):
        res = scipy.optimize.minimize(obj, start, method="Nelder-Mead",
                                      options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000, "maxfev": 40000})
        res = scipy.optimize.minimize(obj, res.x, method="Powell", options={"xtol": 1e-12, "ftol": 1e-15})
        if best is None or res.fun < best.fun:
            best = res
    return best.x, best.fun


def ref_closest_to_median_mean(S, beta):
    """Per coordinate the mean of the beta values closest to the median, ties to the smaller value."""
    theta, d = S.shape
    out = np.empty(d)
    for j in range(d):
        col = [S[i][j] for i in range(theta)]
        med = ref_median_list(col)
        key = [(abs(v - med) if not math.isnan(v) else math.inf, v) for v in col]
        order = sorted(range(theta), key=lambda i: key[i])
        out[j] = sum(col[i] for i in order[:beta]) / beta
    return out


def ref_bulyan(G, f, select, aggregate, p):
    n = G.shape[0]
    finite = [bool(np.all(np.isfinite(G[i]))) for i in range(n)]
    remaining = list(range(n))
    chosen = []
    for _ in range(n - 2 * f):
        sub = G[remaining]
        if select == "krum":
            k = max(len(remaining) - f - 2, f, 1)
            scores = ref_krum_scores(sub, f, p, neighbours=k)
            D2 = ref_distances(sub, p, squared=True)
            second = [sum(D2[i, j] for j in range(len(remaining)) if j != i) for i in range(len(remaining))]
            pick = min(range(len(remaining)), key=lambda i: (scores[i], second[i], i))
        else:
            pool = np.array([G[i] for i in remaining if finite[i]])
            if select == "average":
                target = pool.mean(axis=0)
            elif select == "comed":
                target = ref_comed(pool)
            else:
                target, _ = ref_geomed(pool, p)
            dist = [ref_lp(list(G[i] - target), p) if finite[i] else math.inf for i in remaining]
            pick = min(range(len(remaining)), key=lambda i: (dist[i], i))
        chosen.append(remaining.pop(pick))
    S = G[chosen]
    if aggregate == "trimmed":
        return ref_closest_to_median_mean(S, S.shape[0] - 2 * f)
    if aggregate == "krum":
        return S[ref_krum_index(S, f, p)]
    if aggregate == "average":
        return S.mean(axis=0)
    if aggregate == "comed":
        return ref_comed(S)
    return ref_geomed(S, p)[0]


# ----------------------------------------------------------------- inputs


def make_input(n, d, seed, *, ties=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    if ties:
        G = torch.randint(-3, 4, (n, d), generator=g).to(dtype)
    else:
        G = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    return G


def with_bad_rows(G, k, kind):
    G = G.clone()
    for r in range(k):
        if kind == "nan":
            G[r] = float("nan")
        elif kind == "inf":
            G[r] = float("inf") if r % 2 == 0 else -float("inf")
        elif kind == "mixed":
            G[r, ::2] = float("nan")
            G[r, 1::2] = -float("inf")
        elif kind == "big":
            G[r] = 1e30 * (-1) ** r
        elif kind == "huge":  # finite, but its squares overflow even in float64 (float64 rows)
            G[r] = torch.finfo(G.dtype).max ** 0.6 * (-1) ** r
    return G


NUMERIC = [(n, d, seed, ties) for n, d, seed in [(1, 3, 0), (2, 4, 1), (5, 7, 2), (8, 5, 3), (12, 33, 4), (13, 9, 5)]
           for ties in (False, True)]

# ----------------------------------------------------------------- comed / trimmed


@pytest.mark.parametrize("n,d,seed,ties", NUMERIC)
def test_comed_matches_reference(n, d, seed, ties):
    G = make_input(n, d, seed, ties=ties)
    np.testing.assert_allclose(comed(G).numpy(), ref_comed(G.numpy()), rtol=1e-12, atol=0)
    G32 = G.float()
    np.testing.assert_allclose(comed(G32).double().numpy(), ref_comed(G32.double().numpy()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n,d,seed,ties", NUMERIC)
def test_trimmed_matches_reference(n, d, seed, ties):
    G = make_input(n, d, seed, ties=ties)
    for b in range(0, (n + 1) // 2):
        np.testing.assert_allclose(trimmed_mean(G, b).numpy(), ref_trimmed(G.numpy(), b), rtol=1e-12, atol=1e-12)


def test_network_over_many_chunks_and_batches(monkeypatch):
    """Small chunks force the chunk loop, the thread split and the last partial chunk."""
    monkeypatch.setattr(_network, "CHUNK", 5)
    g = torch.Generator().manual_seed(7)
    Gb = torch.randint(-4, 5, (3, 10, 23), generator=g).double()
    Gb[1, 2, 3:9] = float("nan")
    Gb[2, 0, :] = float("inf")
    med = _network.median_rows(Gb)
    trim = _network.trimmed_rows(Gb, 3)
    for k in range(3):
        np.testing.assert_allclose(med[k].numpy(), ref_comed(Gb[k].numpy()), rtol=1e-12)
        np.testing.assert_allclose(trim[k].numpy(), ref_trimmed(Gb[k].numpy(), 3), rtol=1e-12)


def test_network_programs_sort_every_binary_input():
    """0-1 principle (Knuth 5.3.4): a comparator network sorts every input iff it sorts
    every 0-1 input; the pruned programs must put the right multiset on the kept wires."""
    for n in range(1, 11):
        net = _network.batcher_network(n)
        for bits in itertools.product((0, 1), repeat=n):
            w = list(bits)
            for a, b in net:
                w[a], w[b] = min(w[a], w[b]), max(w[a], w[b])
            assert w == sorted(bits)
        for lo, hi in [((n - 1) // 2, n // 2 + 1), (min(1, n // 2), n - min(1, n // 2))]:
            prog = _network.program_for(n, lo, hi)
            for bits in itertools.product((0, 1), repeat=n):
                w = list(bits)
                for a, b, need_min, need_max in prog:
                    lo_v, hi_v = min(w[a], w[b]), max(w[a], w[b])
                    if need_min:
                        w[a] = lo_v
                    if need_max:
                        w[b] = hi_v
                assert sorted(w[lo:hi]) == sorted(bits)[lo:hi], (n, lo, hi, bits)


def test_network_is_pruned():
    """For the paper's n = 12 the median costs fewer min / max ops than a full sort."""
    full = 2 * len(_network.batcher_network(12))
    assert _network.op_count(_network.program_for(12, 5, 7)) < full


# ----------------------------------------------------------------- distances / Krum

KRUM_CASES = [(n, f, d, p, seed) for (n, f, d, seed) in [(5, 1, 4, 0), (7, 2, 6, 1), (9, 3, 3, 2), (12, 2, 17, 3)]
              for p in (1.0, 1.5, 2.0, 3.0, 16.0, math.inf)]


@pytest.mark.parametrize("n,f,d,p,seed", KRUM_CASES)
def test_pairwise_distances_match_reference(n, f, d, p, seed):
    G = make_input(n, d, seed)
    np.testing.assert_allclose(pairwise_distances(G, p).numpy(), ref_distances(G.numpy(), p), rtol=1e-10, atol=0)
    G32 = G.float() * 300.0  # |x|^16 overflows float32: the scaling must hold
    np.testing.assert_allclose(pairwise_distances(G32, p).double().numpy(),
                               ref_distances(G32.double().numpy(), p), rtol=2e-6, atol=0)


@pytest.mark.parametrize("n,f,d,p,seed", KRUM_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_krum_matches_reference(n, f, d, p, seed, ties):
    G = make_input(n, d, seed, ties=ties)
    ref_scores = ref_krum_scores(G.numpy(), f, p)
    np.testing.assert_allclose(krum_scores(G, f, p).numpy(), ref_scores, rtol=1e-10)
    i = ref_krum_index(G.numpy(), f, p)
    assert torch.equal(krum(G, f, p), G[i])
    for m in (1, 2, n - f):
        order = sorted(range(n), key=lambda k: (ref_scores[k], k))[:m]
        np.testing.assert_allclose(multi_krum(G, f, m, p).numpy(), G.numpy()[order].mean(axis=0), rtol=1e-12)
    # the default m is n - f (the n - f best rows), from the function, the config and make_rule
    order = sorted(range(n), key=lambda k: (ref_scores[k], k))[:n - f]
    want = G.numpy()[order].mean(axis=0)
    for out in (multi_krum(G, f, p=p), MultiKrum(f=f, p=p)(G), make_rule("multi_krum", f=f, p=p)(G)):
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("n,f,d,p,seed", KRUM_CASES)
def test_one_row_of_squared_distances_matches_the_matrix(n, f, d, p, seed):
    """squared_distances_from(G, k, p) is row k of squared_distances(G, p): duplicates at
    exactly 0, non-finite rows at inf (from either end), k itself at 0."""
    G = make_input(n, d, seed)
    G[1] = G[0]
    D2 = squared_distances(G, p)
    for k in (0, n // 2, n - 1):
        np.testing.assert_allclose(squared_distances_from(G, k, p).numpy(), D2[k].numpy(), rtol=1e-12, atol=0)
    assert float(squared_distances_from(G, 1, p)[0]) == 0.0
    G[2, 0], G[3, -1] = math.nan, -math.inf
    D2 = squared_distances(G, p)
    for k in (0, 2, 3):
        got = squared_distances_from(G, k, p)
        np.testing.assert_allclose(got.numpy(), D2[k].numpy(), rtol=1e-12, atol=0)
        assert float(got[k]) == 0.0
    assert torch.isinf(squared_distances_from(G, 2, p)[torch.arange(n) != 2]).all()


def test_krum_pins_eq3_not_other_variants():
    """Eq. (3): squared distances, n - f - 2 neighbours. With n = 7, f = 1 (4 neighbours)
    row 0 wins; unsquared distances or n - f - 1 = 5 neighbours would pick row 1."""
    G = torch.tensor([[0.0], [0.9], [1.1], [2.0], [2.1], [-3.5], [10.0]], dtype=torch.float64)
    D = ref_distances(G.numpy(), 2.0)
    def pick(power, k):
        s = [sum(sorted(D[i, j] ** power for j in range(7) if j != i)[:k]) for i in range(7)]
        return min(range(7), key=lambda i: (s[i], i))
    ours = int(torch.nonzero((G == krum(G, f=1)).all(1))[0])
    assert ours == pick(2, 4)
    assert {pick(1, 4), pick(2, 5)} != {ours}


@pytest.mark.parametrize("p", [1.5, 3.0, 8.0, 16.0])
def test_distances_across_column_chunks_and_overflow(p):
    """d larger than the power-sum chunk (8192 columns); a 1e30 row overflows
    |x - y|^16 even in float64 and must be recomputed with the scaled norm."""
    G = torch.randn(6, 20_000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    G[5] = 1e30
    got = pairwise_distances(G, p).numpy()
    np.testing.assert_allclose(got, ref_distances(G.numpy(), p), rtol=1e-10, atol=0)


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e19), (torch.float64, 1e160)])
def test_l2_norms_of_finite_rows_whose_squares_overflow_stay_finite(dtype, scale):
    X = torch.randn(4, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    X[0] = float("inf")
    got = lp_norm_rows((scale * X).to(dtype), 2.0)
    assert math.isinf(float(got[0]))
    np.testing.assert_allclose(got[1:].double().numpy() / scale, X[1:].norm(dim=1).numpy(), rtol=1e-6)


def test_distances_float32_huge_rows_stay_finite():
    """1e30 rows are finite in float32; their squared l_2 distance is not: it must not overflow."""
    G = torch.randn(7, 50, generator=torch.Generator().manual_seed(3))
    G[0] = 1e30
    G[1] = -1e30
    D = pairwise_distances(G, 2.0)
    ref = ref_distances(G.double().numpy(), 2.0)
    np.testing.assert_allclose(D.double().numpy(), ref, rtol=1e-6)
    assert torch.isfinite(krum_scores(G, 2, 2.0)).sum() >= 5


# ----------------------------------------------------------------- Bulyan

BULYAN_CASES = [(7, 1, 4, 2.0, 0), (11, 2, 3, 2.0, 1), (9, 1, 5, 3.0, 2)]


@pytest.mark.parametrize("select", ["krum", "average", "geomed", "comed"])
@pytest.mark.parametrize("aggregate", ["trimmed", "krum", "average", "geomed", "comed"])
@pytest.mark.parametrize("n,f,d,p,seed", BULYAN_CASES)
def test_bulyan_matches_reference(select, aggregate, n, f, d, p, seed):
    G = make_input(n, d, seed)
    got = bulyan(G, f, select, aggregate, p).numpy()
    want = ref_bulyan(G.numpy(), f, select, aggregate, p)
    tol = 1e-5 if "geomed" in (select, aggregate) else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("select", ["krum", "average", "comed"])
@pytest.mark.parametrize("aggregate", ["trimmed", "krum", "average", "comed"])
def test_bulyan_matches_reference_with_ties(select, aggregate):
    G = make_input(11, 6, 4, ties=True)
    got = bulyan(G, 2, select, aggregate, 2.0).numpy()
    np.testing.assert_allclose(got, ref_bulyan(G.numpy(), 2, select, aggregate, 2.0), rtol=1e-12)


@pytest.mark.parametrize("select", ["average", "comed", "geomed"])
@pytest.mark.parametrize("p", [2.0, 5.0])
def test_nearest_selection_is_bulyan_select_with_each_rounds_target(select, p):
    """nearest_selection: bulyan_select's rows, bitwise, and in each round the rule's
    output on the rows left (average and comed exactly, the geomed to its tolerance);
    a hint that starts a geomed round from the answer leaves the selection unchanged."""
    from mixtailor_game.rules.bulyan import nearest_selection

    G = make_input(11, 6, 7)
    f = 2
    chosen, targets = nearest_selection(G, f, select, p)
    assert chosen == bulyan_select(G, f, select, p) and len(targets) == 11 - 2 * f
    left = list(range(11))
    for idx, target in zip(chosen, targets):
        S = G[left]
        if select == "average":
            assert torch.equal(target, S.mean(0))
        elif select == "comed":
            assert torch.equal(target, comed(S))
        else:
            _, best = ref_geomed(S.numpy(), p)
            assert ref_geomed_objective(target.numpy(), S.numpy(), p) <= best * (1 + 1e-6)
        dist = [float(np.sum(np.abs(G[i].numpy() - target.numpy()) ** p) ** (1 / p)) for i in left]
        assert idx == left[int(np.argmin(dist))]
        left.remove(idx)
    seen = []

    def hint(k, rows_taken):
        seen.append((k, list(rows_taken)))
        return targets[k], 1

    again, warm = nearest_selection(G, f, select, p, hint)
    assert again == chosen
    if select == "geomed":
        assert seen == [(k, chosen[:k]) for k in range(len(chosen))]
        for a, b in zip(warm, targets):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    else:  # hints apply to the geomed's IRLS only
        assert seen == [] and all(torch.equal(a, b) for a, b in zip(warm, targets))
    bare, none = nearest_selection(G, f, select, p, keep_targets=False)  # the rule's own call
    assert bare == chosen and none == [None] * len(chosen)


@pytest.mark.parametrize("select", ["average", "comed"])
@pytest.mark.parametrize("p", [1.0, 3.0, math.inf])
def test_nearest_selection_memo_looks_up_the_rounds_of_fixed_rows_bitwise(select, p):
    """nearest_selection's memo: with the rows from ``fixed_from`` on the same in every
    call (honest rows; the f Byzantine rows move along a line), the rounds left once only
    fixed rows remain are looked up (targets None) and the selection is bulyan_select's,
    bitwise, at every point."""
    from mixtailor_game.rules.bulyan import nearest_selection

    f = 2
    R = make_input(9, 5, 11)
    memo, looked_up = {}, 0
    for t in np.linspace(-1.5, 1.5, 31):
        B = (float(t) * R.sum(0)).expand(f, -1)
        G = torch.cat([B, R])
        chosen, targets = nearest_selection(G, f, select, p, memo=memo, fixed_from=f)
        assert chosen == bulyan_select(G, f, select, p)
        assert chosen == bulyan_select(G, f, select, p, memo=memo, fixed_from=f)
        nones = sum(x is None for x in targets)
        assert all(x is None for x in targets[len(targets) - nones:])  # a suffix of the rounds
        looked_up += nones
    assert memo and looked_up > 0
    # without the promise (fixed_from) the memo is not touched
    before = dict(memo)
    nearest_selection(torch.cat([R[:f], R]), f, select, p, memo=memo)
    assert memo == before


def test_nearest_selection_memo_is_for_warm_geomed_callers_only():
    """A geomed selection uses the memo only with start_for (its rounds' IRLS start from
    another call's targets: the rule's up to its tolerance, for warm callers)."""
    from mixtailor_game.rules.bulyan import nearest_selection

    f = 2
    R = make_input(9, 5, 12)
    G = torch.cat([R.mean(0).expand(f, -1), R])  # the Byzantine rows central: chosen first
    memo = {}
    cold = nearest_selection(G, f, "geomed", 3.0, memo=memo, fixed_from=f)
    assert memo == {} and None not in cold[1]
    first = nearest_selection(G, f, "geomed", 3.0, lambda k, taken: None, memo=memo, fixed_from=f)
    assert memo and first[0] == cold[0] and None not in first[1]  # the first call runs them
    again = nearest_selection(G, f, "geomed", 3.0, lambda k, taken: None, memo=memo, fixed_from=f)
    assert again[0] == cold[0] and None in again[1]  # looked up


def test_bulyan_trimmed_ties_go_to_smaller_value():
    """Column [0, 1, 2, 3, 4, 5, 6] of 7 rows, f = 1 after selecting 5: the hand-made
    check of the pinned tie-break on a single column."""
    S = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    # median 3, beta = 3: distances 2, 1, 0, 1, 2 -> {2, 3, 4}
    assert ref_closest_to_median_mean(S, 3)[0] == 3.0
    S = np.array([[1.0], [2.0], [4.0], [5.0]])
    # median 3, beta = 1: 2 and 4 tie at distance 1 -> the smaller, 2
    assert ref_closest_to_median_mean(S, 1)[0] == 2.0
    from mixtailor_game.rules.bulyan import closest_to_median_mean
    assert float(closest_to_median_mean(torch.tensor(S), 1)[0]) == 2.0


# ----------------------------------------------------------------- geomed


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_geomed_objective_matches_scipy(p, seed):
    X = make_input(7, 4, 10 + seed)
    res = geomed_solve(X, p)
    assert res.converged
    ours = ref_geomed_objective(res.z.numpy(), X.numpy(), p)
    _, best = ref_geomed(X.numpy(), p)
    assert ours <= best * (1 + 1e-6), (ours, best)
    assert ours >= best * (1 - 1e-4)  # scipy found (nearly) the minimum too
    assert abs(res.objective - ours) <= 1e-9 * ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_geomed_float32_objective_close_to_scipy(dtype):
    X = make_input(9, 6, 21, dtype=dtype)
    res = geomed_solve(X, 2.0)
    ours = ref_geomed_objective(res.z.double().numpy(), X.double().numpy(), 2.0)
    _, best = ref_geomed(X.double().numpy(), 2.0)
    assert res.converged and ours <= best * (1 + 1e-6)


def test_geomed_norm_changes_result():
    X = make_input(7, 5, 3)
    outs = {p: geomed(X, p) for p in (1.0, 1.5, 2.0, 3.0, 16.0)}
    for p, q in itertools.combinations(outs, 2):
        assert float((outs[p] - outs[q]).abs().max()) > 1e-3, (p, q)
    for p in (1.5, 3.0):  # and each is the minimizer of its own objective, not of the others'
        own = ref_geomed_objective(outs[p].numpy(), X.numpy(), p)
        other = ref_geomed_objective(outs[2.0].numpy(), X.numpy(), p)
        assert own < other


@pytest.mark.parametrize("compile_mode", ["auto", "off"])
def test_geomed_float32_high_dimension_finds_the_float64_minimizer(compile_mode, monkeypatch):
    """Float32 rows, d = 50,000, two Byzantine copies at -0.14 * sum(V) (a P3 point):
    the objective near the minimizer changes by less than float32-summed
    distances resolve (1e-6 relative). Summed that way the solver stopped with
    z 0.5% off (the inner product with the mean 1% off); summed in float64 it
    reaches the float64 minimizer."""
    monkeypatch.setenv("MIXTAILOR_COMPILE", compile_mode)
    g = torch.Generator().manual_seed(0)
    V = 0.01 * torch.randn(10, 50_000, generator=g, dtype=torch.float64) + 0.002
    G = torch.cat([(-0.14 * V.sum(0)).expand(2, -1), V])
    ref = geomed_solve(G, 2.0, tol=1e-12, max_iter=3000).z
    res = geomed_solve(G.float(), 2.0)
    assert res.converged
    assert float((res.z.double() - ref).norm() / ref.norm()) < 1e-5


@pytest.mark.parametrize("p", [8.0, 16.0])
def test_geomed_large_p_matches_scipy(p):
    # p > 2: damped IRLS with Anderson acceleration (not majorize-minimize).
    X = make_input(7, 3, 30 + int(p))
    res = geomed_solve(X, p)
    assert res.converged and res.iterations < 100
    ours = ref_geomed_objective(res.z.numpy(), X.numpy(), p)
    _, best = ref_geomed(X.numpy(), p)
    assert ours <= best * (1 + 1e-6), (ours, best)


@pytest.mark.parametrize("p", [1.5, 2.0, 3.0, 12.0])
def test_geomed_acceleration_and_warm_start_reach_the_same_minimum(p):
    X = make_input(9, 40, 5)
    exact = geomed_solve(X, p, memory=0, max_iter=2000, tol=1e-10)
    fast = geomed_solve(X, p)
    warm = geomed_solve(X, p, start=X[0] + 0.5)
    for res in (fast, warm):
        assert res.converged
        assert res.objective <= exact.objective * (1 + 1e-9), (p, res.objective, exact.objective)
    # the acceleration must pay: fewer iterations than the same solver without it
    assert fast.iterations < geomed_solve(X, p, memory=0).iterations


def test_geomed_patience_ends_a_start_at_the_float_floor_after_one_step():
    """float32 rows: from its own output the IRLS only stalls (the objective cannot
    resolve the steps); ``patience`` is how many stalls end it, and the value stays
    at the floor (3 by default, 1 for the line search's interpolated starts)."""
    g = torch.Generator().manual_seed(3)
    X = 0.01 * torch.randn(12, 6000, generator=g) + 0.002  # above UPCAST_ELEMENTS: solved in float32
    cold = geomed_solve(X, 14.0)
    assert cold.converged and cold.iterations > 5
    for patience in (1, 2, 3):
        res = geomed_solve(X, 14.0, start=cold.z, patience=patience)
        assert res.converged and res.iterations == patience
        assert res.objective == pytest.approx(cold.objective, rel=1e-7)
    with pytest.raises(ValueError, match="patience"):
        geomed_solve(X, 14.0, patience=0)


@pytest.mark.parametrize("memory", [1, 2, 3])
def test_anderson_step_is_the_least_squares_combination(memory):
    """The Gram matrix kept across calls (one new row per step, the oldest dropped)
    gives the same extrapolation as solving the least-squares problem afresh."""
    from mixtailor_game.rules.geomed import _Anderson

    g = torch.Generator().manual_seed(3)
    acc = _Anderson(memory=memory)
    values, residuals = [], []
    z = torch.randn(30, generator=g, dtype=torch.float64)
    for step in range(5):
        value = torch.randn(30, generator=g, dtype=torch.float64)
        out = acc.extrapolate(z, value)
        values.append(value)
        residuals.append(value - z)
        if step == 0:
            assert out is value
        else:
            dV = torch.stack([values[i + 1] - values[i] for i in range(len(values) - 1)][-memory:])
            dR = torch.stack([residuals[i + 1] - residuals[i] for i in range(len(residuals) - 1)][-memory:])
            gamma = np.linalg.lstsq(dR.T.numpy(), residuals[-1].numpy(), rcond=None)[0]
            torch.testing.assert_close(out, value - torch.from_numpy(gamma) @ dV, rtol=1e-8, atol=1e-8)
        z = out


def test_finite_rows_fast_path_agrees_with_isfinite():
    from mixtailor_game.rules.base import finite_rows

    G = torch.randn(6, 10)
    assert finite_rows(G).all()
    G[1] = 3e38  # finite entries whose row sum overflows: still finite rows
    G[2, 3], G[3, 0], G[4, 1], G[4, 2] = math.nan, math.inf, math.inf, -math.inf
    assert finite_rows(G).tolist() == torch.isfinite(G).all(dim=1).tolist() == [True, True, False, False, False, True]


def test_geomed_stopping_norm_survives_float32_overflow():
    from mixtailor_game.rules.geomed import _l2

    v = torch.full((4,), 1e30)
    assert math.isclose(_l2(v), 2e30, rel_tol=1e-6)
    assert math.isclose(_l2(torch.tensor([3.0, 4.0], dtype=torch.bfloat16)), 5.0)


@pytest.mark.parametrize("p", [3.0, 8.0])
def test_geomed_float32_stops_at_the_rounding_floor(p):
    # With tol = 0 the step test never passes: only the rounding-floor rule (three
    # steps without a decrease above float32 rounding) can stop the solver, and
    # without it the solve runs to max_iter. It must stop at the minimum.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(7, 50_000, generator=g) * 0.01
    res = geomed_solve(X, p, tol=0.0, max_iter=300)
    assert res.converged and res.iterations < 60
    ref = geomed_solve(X.double(), p, max_iter=2000)
    assert res.objective <= ref.objective * (1 + 1e-5)


def test_geomed_leaves_a_start_on_a_data_point():
    # Here the coordinate-wise median (the start) is a row once shifted: the
    # smoothed Weiszfeld step raises the true objective at first and must be kept
    # (found by the translation-equivariance property test).
    S = torch.tensor([[0.9139, 0.5025], [1.5036, -0.4049], [0.7675, 0.6273], [1.1716, -1.1833],
                      [0.3407, 0.6919]], dtype=torch.float64)
    c = torch.tensor([0.0, 7.0], dtype=torch.float64)
    base, shifted = geomed_solve(S, 2.0), geomed_solve(S + c, 2.0)
    assert base.converged and shifted.converged
    assert torch.allclose(shifted.z - c, base.z, atol=1e-6)


def test_geomed_bad_start_is_rejected():
    X = make_input(7, 4, 1)
    with pytest.raises(ValueError, match=r"^geomed: start must be a finite tensor of shape \(4,\), got \(3,\)$"):
        geomed_solve(X, 2.0, start=torch.zeros(3, dtype=X.dtype))
    with pytest.raises(ValueError, match=r"^geomed: memory must be"):
        geomed_solve(X, 2.0, memory=-1)


def test_geomed_reports_non_convergence():
    X = make_input(9, 5, 4)
    res = geomed_solve(X, 2.0, max_iter=1, tol=0.0)
    assert not res.converged and res.iterations == 1


# ----------------------------------------------------------------- Byzantine rows


RULES = {
    "comed": lambda G, f: comed(G),
    "trimmed": lambda G, f: trimmed_mean(G, f),
    "krum": lambda G, f: krum(G, f, 2.0),
    "krum_p3": lambda G, f: krum(G, f, 3.0),
    "multi_krum": lambda G, f: multi_krum(G, f, 3, 2.0),
    "geomed": lambda G, f: geomed(G, 2.0),
    "geomed_p3": lambda G, f: geomed(G, 3.0),
}
for _s, _a in itertools.product(["krum", "average", "geomed", "comed"], ["trimmed", "krum", "average", "geomed", "comed"]):
    RULES[f"bulyan_{_s}_{_a}"] = lambda G, f, s=_s, a=_a: bulyan(G, f, s, a, 2.0)


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("kind", ["nan", "inf", "mixed", "big", "huge"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_byzantine_rows_give_finite_output(name, kind, dtype):
    n, f = 11, 2
    G = with_bad_rows(make_input(n, 8, 5, dtype=dtype), f, kind)
    G0 = G.clone()
    out = RULES[name](G, f)
    assert out.dtype == dtype and out.shape == (8,)
    assert torch.isfinite(out).all(), (name, kind, out)
    assert torch.equal(G.nan_to_num(1.0), G0.nan_to_num(1.0))  # not mutated
    if kind not in ("big", "huge"):  # the honest rows' range bounds the coordinate-wise rules
        honest = G[f:]
        if name in ("comed", "trimmed"):
            assert (out >= honest.min(0).values).all() and (out <= honest.max(0).values).all()


@pytest.mark.parametrize("kind", ["nan", "inf", "mixed", "big"])
def test_byzantine_rows_match_reference(kind):
    G = with_bad_rows(make_input(11, 8, 6), 2, kind)
    Gn = G.numpy()
    np.testing.assert_allclose(comed(G).numpy(), ref_comed(Gn), rtol=1e-12)
    np.testing.assert_allclose(trimmed_mean(G, 2).numpy(), ref_trimmed(Gn, 2), rtol=1e-12)
    assert torch.equal(krum(G, 2, 2.0), G[ref_krum_index(Gn, 2, 2.0)])
    assert torch.equal(krum(G, 2, 3.0), G[ref_krum_index(Gn, 2, 3.0)])


def test_too_many_nan_rows_behave_as_sort():
    """More NaN rows than tolerated: the output equals the sort-based order statistics (NaN last)."""
    G = make_input(5, 6, 8)
    G[:3, :3] = float("nan")
    G[3, 3:] = float("inf")
    S = torch.sort(G, 0).values
    torch.testing.assert_close(comed(G), S[2], equal_nan=True)
    torch.testing.assert_close(trimmed_mean(G, 1), S[1:4].mean(0), equal_nan=True)


@pytest.mark.parametrize("aggregate", ["average", "trimmed", "comed"])
def test_bulyan_last_rounds_do_not_pick_colluding_duplicates(aggregate):
    """n = 15, f = 3 identical 1e30 rows: with n - f - 2 neighbours the last Krum
    round would score them 0 and average one in; Bulyan keeps >= f neighbours."""
    G = make_input(15, 3, 9) * 1e-3
    G[12:] = 1e30
    out = bulyan(G, 3, "krum", aggregate, 2.0)
    H = G[:12]
    assert ((out >= H.min(0).values) & (out <= H.max(0).values)).all()


# ----------------------------------------------------------------- audit regressions


@pytest.mark.parametrize("p", [9.0, 12.0, 16.0])
def test_geomed_steps_off_a_data_row_at_large_p_in_float32(p):
    # the start (comed) is row 6; next to its weight the others' underflowed in float32
    X = torch.tensor([[-1., -1.], [-2., 1.], [1., 0.], [2., 2.], [-1., 1.], [1., -1.], [-1., 0.]])
    ref = scipy.optimize.minimize(lambda z: np.linalg.norm(z - X.double().numpy(), ord=p, axis=1).sum(),
                                  np.zeros(2), method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-12))
    got = geomed_solve(X, p)
    assert got.objective == pytest.approx(ref.fun, rel=1e-6)


def test_geomed_refuses_p_inf():
    with pytest.raises(ValueError, match=r"geomed: p must be finite for a geometric median \(1 <= p < inf\), got inf"):
        geomed(make_input(5, 3, 0), math.inf)
    with pytest.raises(ValueError, match="bulyan: p must be finite for a geometric median"):
        Bulyan(f=1, select="krum", aggregate="geomed", p=math.inf)
    assert Bulyan(f=1, select="krum", p=math.inf).p == math.inf


@pytest.mark.parametrize("p", [2.0, 3.0, 1.5])
def test_squared_distances_are_exactly_symmetric_so_bulyan_ties_follow_the_pinned_rule(p):
    # BLAS Gram products and vectorized pow rounded (i, j) and (j, i) differently
    rev = torch.arange(9, -1, -1)
    for seed in range(60):
        G = torch.randn(10, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        D2 = squared_distances(G, p)
        assert torch.equal(D2, D2.T)
        torch.testing.assert_close(bulyan(G, 1, "krum", "trimmed", p), bulyan(G[rev], 1, "krum", "trimmed", p),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, big", [(torch.float32, 3e38), (torch.float64, -1.7e308)])
def test_bulyan_average_selection_when_the_mean_overflows(dtype, big):
    G = torch.cat([torch.full((2, 4), big, dtype=torch.float64), make_input(9, 4, 0)]).to(dtype)
    assert not set(bulyan_select(G, 2, "average")) & {0, 1}
    out = bulyan(G, 2, "average", "average")
    assert torch.isfinite(out).all() and out.abs().max() < 10


@pytest.mark.parametrize("rule", [Krum(f=1), Comed(f=1), Mean(), TrimmedMean(b=1), MixTailor([Mean()])],
                         ids=lambda r: r.family)
def test_vectorized_batched_checks_its_input(rule):
    with pytest.raises(ValueError, match=f"{rule.family}: Gb must be a 3-D tensor"):
        rule.batched(torch.randn(7, 10))
    with pytest.raises(TypeError, match="must have a floating dtype"):
        rule.batched(torch.ones(2, 7, 3, dtype=torch.long))
    assert rule.batched(torch.randn(2, 7, 3)).shape == (2, 3)


def test_averaging_rules_do_not_overflow_on_finite_float32_rows_near_the_top_of_the_range():
    # the sum of the kept values overflowed before the division
    H = torch.full((7, 2), 1e38)
    H[:, 1] = torch.arange(7.0)
    want = torch.tensor([1e38, 3.0])
    torch.testing.assert_close(trimmed_mean(H, 1), want)
    torch.testing.assert_close(TrimmedMean(b=1).batched(torch.stack([H, H])), torch.stack([want, want]))
    assert torch.isfinite(multi_krum(H, 1, 4)).all() and float(multi_krum(H, 1, 4)[0]) == pytest.approx(1e38)
    G = torch.cat([torch.full((11, 1), 2e38), make_input(11, 2, 3).float()], 1)
    for a in ("average", "trimmed"):
        assert float(bulyan(G, 2, "krum", a)[0]) == pytest.approx(2e38)
    G = make_input(7, 3, 1).float()
    G[0] = G[1] = float("inf")  # more non-finite rows than trimmed: the mean stays inf
    assert torch.isinf(trimmed_mean(G, 1)).all()


def test_small_float32_geomed_at_large_p_reaches_the_float64_answer():
    # float32 objectives could not rank the last damped steps: it stopped up to 0.27 off
    for seed in range(40):
        G = torch.randn(12, 10, generator=torch.Generator().manual_seed(seed))
        ref = geomed_solve(G.double(), 16.0, tol=1e-12, max_iter=3000).z
        got = geomed(G, 16.0)
        assert got.dtype == torch.float32 and float((got.double() - ref).abs().max()) < 1e-4, seed
