"""Do our rules and attacks give the same outputs as ByzFL's on the same inputs?

For every pair (ours vs ByzFL) where the two definitions coincide, both sides run
on the same rows and the outputs are compared; where the definitions differ
(a convention, not a bug) the parameter mapping that makes them equal is used
and the convention is written next to the row. Pairs without a counterpart are
listed with the reason.

Inputs: seeds x n x d x dtype x variant. n in {7, 10, 15}, d in {1, 10, 1000},
rows ~ N(0, I) (float64, cast to float32 for the float32 cases); variants
``plain``, ``ties`` (rows 1 and 3 are copies of rows 0 and 2) and ``far`` (the
last row shifted by 1e4 in every coordinate). f in {1, floor((n - 1) / 2)}.

Input types. ByzFL accepts numpy arrays and torch tensors, but casts every
torch tensor to float32 (``check_vectors_type``: ``vectors.float()``), so a
float64 tensor is silently computed in float32. The float32 cases therefore
give ByzFL a float32 torch tensor and the float64 cases a float64 numpy array
(ByzFL keeps numpy's dtype; scipy's ``cdist`` works in float64). Ours always
gets a torch tensor of the case's dtype.

Metric. For each case ``abs = max_j |ours_j - byzfl_j|`` and
``rel = abs / max(|ours|_inf, |byzfl|_inf, median_i |G_i|_inf)`` (the median
row scale keeps outputs near 0 from inflating it, and the far row from
deflating it). Tolerance: 1e-12 (float64) / 1e-5 (float32) for closed-form
outputs (rounding and summation order only); iterative solvers to convergence
get 1e-5 for both dtypes. A few checks are not elementwise (``Metric``): the
geometric median where its minimizer is not unique (d = 1, even n: objective
gap), fixed-T Weiszfeld past a step that raised the true objective (one-sided:
ours' objective <= ByzFL's best iterate), and Gaussian noise where the random
streams differ (two-sample KS test). A pair agrees when every comparison is
within tolerance; rows marked "differs by design" are informational.

ByzFL is never a dependency: run with a Python that has it, e.g.

    /tmp/byzfl-venv/bin/python benchmarks/agree_byzfl.py [--quick] [--out PATH]

Without ByzFL importable the script prints one line and exits 0. With it, it
prints the table, writes ``benchmarks/results/agree_byzfl.json`` (date, ByzFL
version, ``git describe``; ``--quick`` writes nothing unless ``--out`` is given)
and exits 1 if a pair that should agree does not.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _provenance import git_describe  # noqa: E402
from bench_rules import byzfl_version, load_byzfl  # noqa: E402

from mixtailor_game.attacks import alie_z, make_attack, make_view  # noqa: E402
from mixtailor_game.rules import (  # noqa: E402
    bucket_means, bucket_permutation, bucketing, centered_clip, clip_rows, comed, geomed, geomed_solve,
    krum, make_rule, mean, multi_krum, nnm_mix, trimmed_mean,
)
from mixtailor_game.rules.bulyan import closest_to_median_mean  # noqa: E402

OUT = HERE / "results" / "agree_byzfl.json"
SEEDS, NS, DS = (0, 1, 2), (7, 10, 15), (1, 10, 1000)
DTYPES = ("float32", "float64")
VARIANTS = ("plain", "ties", "far")
FAR = 1e4
TOL_CLOSED = {"float32": 1e-5, "float64": 1e-12}
TOL_ITERATIVE = 1e-5
GM_T_CONVERGED = 3000  # ByzFL GeometricMedian iterations for "to convergence"
GM_NU_CONVERGED = 1e-6  # ... and its smoothing (ours' default nu)


# --------------------------------------------------------------------------- ByzFL


@dataclass
class Byz:
    """ByzFL's three modules, loaded without its training stack."""
    agg: object
    pre: object
    att: object


def load() -> Byz | None:
    """ByzFL's aggregators (``bench_rules.load_byzfl``), pre-aggregators and attacks, or None."""
    agg = load_byzfl()
    if agg is None:
        return None
    try:
        pre = importlib.import_module("byzfl.aggregators.preaggregators")
        att = importlib.import_module("byzfl.attacks.attacks")
    except Exception as exc:  # pragma: no cover - depends on the environment
        print(f"ByzFL found but its attacks did not import ({exc!r})")
        return None
    return Byz(agg, pre, att)


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    seed: int
    n: int
    d: int
    dtype: str
    variant: str
    G: torch.Tensor  # ours' input

    @property
    def label(self) -> str:
        return f"seed={self.seed} n={self.n} d={self.d} {self.dtype} {self.variant}"

    @property
    def fs(self) -> list[int]:
        return sorted({1, (self.n - 1) // 2})

    def byz(self, X: torch.Tensor | None = None):
        """ByzFL's copy of the rows (or of ``X``): float32 torch tensor, float64 numpy array."""
        X = self.G if X is None else X
        return X.clone() if self.dtype == "float32" else X.numpy().copy()


def make_cases(seeds=SEEDS, ns=NS, ds=DS, dtypes=DTYPES, variants=VARIANTS) -> list[Case]:
    cases = []
    for seed in seeds:
        for n in ns:
            for d in ds:
                base = torch.randn(n, d, generator=torch.Generator().manual_seed(1000 * seed + 10 * n + d),
                                   dtype=torch.float64)
                for variant in variants:
                    G = base.clone()
                    if variant == "ties":
                        G[1], G[3] = G[0], G[2]
                    elif variant == "far":
                        G[-1] += FAR
                    for dt in dtypes:
                        cases.append(Case(seed, n, d, dt, variant, G.to(getattr(torch, dt))))
    return cases


def as64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class Metric:
    """A precomputed comparison (for non-elementwise checks): ``rel`` is compared with the tolerance."""
    abs: float
    rel: float
    detail: str


class Excluded(Exception):
    """This case is outside where the two definitions coincide (reason in the message)."""


# --------------------------------------------------------------------------- pairs


@dataclass
class Pair:
    name: str
    ours: str
    byzfl: str
    note: str
    run: object  # (case, byz) -> list of (ours, theirs, detail)
    iterative: bool = False
    tol_override: float | None = None
    by_design: bool = False  # a convention differs on purpose: reported, not asserted
    float_only: str | None = None  # only this dtype (e.g. a torch-RNG stream)

    def tol(self, dtype: str) -> float:
        if self.tol_override is not None:
            return self.tol_override
        return TOL_ITERATIVE if self.iterative else TOL_CLOSED[dtype]


def _geomed_objective(z: np.ndarray, X: np.ndarray) -> float:
    return float(np.linalg.norm(X - z, axis=1).sum())


def r_mean(c, b):
    return [(mean(c.G), b.agg.Average()(c.byz()), "")]


def r_median(c, b):
    return [(comed(c.G), b.agg.Median()(c.byz()), "")]


def r_trimmed(c, b):
    return [(trimmed_mean(c.G, f), b.agg.TrMean(f)(c.byz()), f"f=b={f}") for f in c.fs]


def r_geomed_fixed(c, b):
    """Ours from ByzFL's start (z = 0), with its smoothing, without acceleration, for T
    steps (tol = 0) against ByzFL's T-th iterate, while every ByzFL step lowers the true
    objective. Smoothed Weiszfeld lowers the smoothed objective, not always the true one:
    once an iterate is within nu of a row a step can raise it. From there ByzFL returns its
    last iterate, ours the lowest-objective one and, at a row, Vardi-Zhang's test and a
    restart (DEFINITIONS.md, "Geometric median"): there the check is one-sided, ours'
    objective <= the lowest of ByzFL's iterates 1..T (plus rounding)."""
    nu, Ts = 0.1, (1, 3, 25)
    if bool((torch.linalg.vector_norm(c.G.double(), dim=1) <= nu).any()):
        raise Excluded("a row within nu = 0.1 of the start z = 0: ours runs the Vardi-Zhang data-point test "
                       "there instead of a plain Weiszfeld step")
    X = as64(c.G)
    iterates = [np.zeros(c.d)] + [as64(b.agg.GeometricMedian(nu=nu, T=t)(c.byz())) for t in range(1, max(Ts) + 1)]
    obj = [_geomed_objective(z, X) for z in iterates]
    slack = 4 * float(torch.finfo(c.G.dtype).eps) * obj[0]  # rounding of an objective in the rows' dtype
    out = []
    for T in Ts:
        res = geomed_solve(c.G, 2.0, nu=nu, max_iter=T, tol=0.0, start=torch.zeros_like(c.G[0]), memory=0, span=False)
        rose = [t for t in range(1, T + 1) if obj[t] > min(obj[:t]) + slack]
        if not rose:
            out.append((res.z, iterates[T], f"T={T}"))
        else:
            lowest = min(obj[1:T + 1])
            excess = max(0.0, _geomed_objective(as64(res.z), X) - lowest - slack)
            out.append(Metric(excess, excess / lowest, f"T={T}: ByzFL's objective rose at step {rose[0]}: "
                              "one-sided, ours' objective vs ByzFL's lowest iterate"))
    return out


def r_geomed_conv(c, b):
    X = as64(c.G)
    z_ours = geomed(c.G)
    z_byz = b.agg.GeometricMedian(nu=GM_NU_CONVERGED, T=GM_T_CONVERGED)(c.byz())
    if c.d == 1 and c.n % 2 == 0:
        # minimizers: the whole interval between the two middle values; compare objectives
        o_ours, o_byz = _geomed_objective(as64(z_ours), X), _geomed_objective(as64(z_byz), X)
        gap = abs(o_ours - o_byz)
        return [Metric(gap, gap / max(o_byz, 1e-300), "d=1, even n: minimizer not unique, objective rel. gap")]
    return [(z_ours, z_byz, "")]


def r_geomed_defaults(c, b):
    return [(geomed(c.G), b.agg.GeometricMedian()(c.byz()), "ours default vs ByzFL default nu=0.1, T=3")]


def r_krum(c, b):
    return [(krum(c.G, f - 1), b.agg.Krum(f)(c.byz()), f"ours f={f - 1}, ByzFL f={f}") for f in c.fs]


def r_krum_same_f(c, b):
    out = []
    for f in c.fs:
        if not c.n > 2 * f + 2:
            continue
        out.append((krum(c.G, f), b.agg.Krum(f)(c.byz()), f"f={f} both"))
    if not out:
        raise Excluded("ours needs n > 2f + 2")
    return out


def r_multi_krum(c, b):
    return [(multi_krum(c.G, f - 1, c.n - f), b.agg.MultiKrum(f)(c.byz()), f"ours f={f - 1}, m={c.n - f}; ByzFL f={f}")
            for f in c.fs]


def r_cc(c, b):
    out = []
    G2 = c.G.flip(0) * 0.5 + 0.25  # a second step's rows
    for tau in (1.0, 100.0):
        for L in (1, 3):
            v0 = torch.zeros_like(c.G[0])
            out.append((centered_clip(c.G, v0, tau, L), b.agg.CenteredClipping(tau=tau, L=L)(c.byz()),
                        f"tau={tau:g} L={L}, one call from 0"))
            # stateful: two successive calls, the first from the zero center
            ours = make_rule("centered_clipping", base="mean", tau=tau, iters=L, f=0)
            ours.load_state_dict({"center": v0})
            ours(c.G)
            theirs = b.agg.CenteredClipping(tau=tau, L=L)
            theirs(c.byz())
            out.append((ours(G2), theirs(c.byz(G2)), f"tau={tau:g} L={L}, second call (stored center)"))
    return out


def r_clipping(c, b):
    norms = torch.linalg.vector_norm(c.G.double(), dim=1)
    out = []
    for cval in (2.0, float(norms.median())):
        X = c.byz()
        theirs = b.pre.Clipping(cval)(X)  # ByzFL clips its argument in place (and returns it)
        out.append((clip_rows(c.G, cval), theirs, f"c={cval:.4g}"))
    return out


def r_nnm(c, b):
    return [(nnm_mix(c.G, f), b.pre.NNM(f)(c.byz()), f"f={f}") for f in c.fs]


def r_monna(c, b):
    out = []
    for f in c.fs:
        Y = nnm_mix(c.G, f)
        for idx in (0, c.n - 1):
            out.append((Y[idx], b.agg.MoNNA(f, idx)(c.byz()), f"f={f} idx={idx}"))
    return out


def r_meamed(c, b):
    return [(closest_to_median_mean(c.G, c.n - f), b.agg.Meamed(f)(c.byz()), f"f={f}, beta=n-f={c.n - f}")
            for f in c.fs]


@contextlib.contextmanager
def global_seed(seed: int):
    """ByzFL draws from the global torch / numpy RNGs: seed both, restore them after."""
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _byz_perm(c, seed: int, s: int, b):
    """ByzFL's bucketing draw with the global RNG seeded, and the permutation it used."""
    with global_seed(seed):
        theirs = b.pre.Bucketing(s)(c.byz())
    if c.dtype == "float32":
        perm = bucket_permutation(c.n, torch.Generator().manual_seed(seed))  # torch.randperm, same stream
    else:
        with global_seed(seed):
            perm = torch.from_numpy(np.random.permutation(c.n))  # np.random.permutation(rows), same stream
    return theirs, perm


def r_bucketing(c, b):
    out = []
    for s in (2, 3):
        seed = 17 * c.seed + s
        theirs, perm = _byz_perm(c, seed, s, b)
        out.append((bucket_means(c.G, s, perm), theirs, f"s={s}, bucket means"))
        theirs, perm = _byz_perm(c, seed, s, b)
        med = b.agg.Median()(theirs)
        if c.dtype == "float32":  # the rule object itself, its generator seeded like ByzFL's global RNG
            ours = make_rule("bucketing", base="comed", s=s, f=0, generator=seed)(c.G)
            out.append((ours, med, f"s={s}, Bucketing(base=comed, generator={seed}) vs Median(Bucketing)"))
        else:
            out.append((bucketing(c.G, comed, s, perm=perm), med,
                        f"s={s}, bucketing(comed, perm) vs Median(Bucketing)"))
    return out


def _views(c):
    for f in c.fs:
        H = c.G[: c.n - f]
        yield f, H, make_view(H, n=c.n, f=f)


def _rows_vs(ours_rows: torch.Tensor, theirs, detail):
    """Every Byzantine row of ours against ByzFL's single vector."""
    t = as64(theirs)
    return [(ours_rows, np.broadcast_to(t, tuple(ours_rows.shape)), detail)]


def r_signflip(c, b):
    out = []
    for f, H, v in _views(c):
        out += _rows_vs(make_attack("sign_flip")(v), b.att.SignFlipping()(c.byz(H)), f"f={f}")
    return out


def r_ipm(c, b):
    out = []
    for f, H, v in _views(c):
        for eps in (0.1, 10.0):
            out += _rows_vs(make_attack("ipm", eps=eps)(v), b.att.InnerProductManipulation(tau=eps)(c.byz(H)),
                            f"f={f} eps=tau={eps:g}")
    return out


def r_alie(c, b):
    out = []
    for f, H, v in _views(c):
        out += _rows_vs(make_attack("alie", z=-1.5)(v), b.att.ALittleIsEnough(tau=1.5)(c.byz(H)),
                        f"f={f} ours z=-1.5, ByzFL tau=1.5")
        z = alie_z(c.n, f)
        out += _rows_vs(make_attack("alie")(v), b.att.ALittleIsEnough(tau=-z)(c.byz(H)),
                        f"f={f} ours z=z_max={z:.4f}, ByzFL tau=-z_max")
    return out


def r_mimic(c, b):
    out = []
    for f, H, v in _views(c):
        for t in (0, c.n - f - 1):
            out += _rows_vs(make_attack("mimic", target=t)(v), b.att.Mimic(epsilon=t)(c.byz(H)), f"f={f} target={t}")
    return out


def _gaussian_draws(c, b, f, H, sigma=2.0):
    seed = 31 * c.seed + f
    v = make_view(H, n=c.n, f=f, rng=torch.Generator().manual_seed(seed))
    ours = make_attack("gaussian", sigma=sigma, center="zero")(v)
    with global_seed(seed):
        return ours, b.att.Gaussian(mu=0.0, sigma=sigma)(c.byz(H))


def _same_stream(c, f) -> bool:
    """torch's CPU randn draws a tensor of < 16 elements one value at a time and a larger one
    in blocks of 16 (Box-Muller pairs 8 apart): ours' (f, d) draw and ByzFL's (d,) draw from
    the same seed hold the same numbers only when both are small (and ByzFL got a tensor)."""
    return c.dtype == "float32" and f * c.d < 16


def r_gaussian(c, b):
    out = []
    for f, H, _ in _views(c):
        if not _same_stream(c, f):
            continue
        ours, theirs = _gaussian_draws(c, b, f, H)
        out.append((ours[0], theirs, f"f={f} sigma=2, row 0 vs ByzFL's vector, same seed"))
    if not out:
        raise Excluded("random streams differ (numpy input, or f*d >= 16): see the distribution row")
    return out


KS_ALPHA = 1e-3
KS_C = math.sqrt(-0.5 * math.log(KS_ALPHA / 2))  # two-sample KS critical constant


def r_gaussian_dist(c, b):
    """Two-sample Kolmogorov-Smirnov test of ours' f*d values against ByzFL's d values
    (both / sigma). Metric: D / D_crit(alpha = 1e-3); it agrees when <= 1."""
    from scipy.stats import ks_2samp
    out = []
    for f, H, _ in _views(c):
        if _same_stream(c, f) or c.d < 10:
            continue
        ours, theirs = _gaussian_draws(c, b, f, H)
        x, y = as64(ours).ravel() / 2.0, as64(theirs).ravel() / 2.0
        D = float(ks_2samp(x, y).statistic)
        crit = KS_C * math.sqrt((x.size + y.size) / (x.size * y.size))
        out.append(Metric(D, D / crit, f"f={f} KS D={D:.3f} vs D_crit={crit:.3f} ({x.size} vs {y.size} values)"))
    if not out:
        raise Excluded("d = 1 or streams identical (compared elementwise)")
    return out


PAIRS = [
    Pair("mean / Average", "mean(G)", "Average()", "same definition", r_mean),
    Pair("comed / Median", "comed(G)", "Median()",
         "even n: both the mean of the two middle values (ByzFL torch: torch.quantile(q=0.5); numpy: np.median)",
         r_median),
    Pair("trimmed_mean / TrMean", "trimmed_mean(G, b=f)", "TrMean(f)",
         "ByzFL's f is our b: both drop the f largest and f smallest values per coordinate", r_trimmed),
    Pair("geomed fixed T / GeometricMedian(nu=0.1, T)", "geomed_solve(start=0, nu=0.1, max_iter=T, tol=0, memory=0)",
         "GeometricMedian(nu=0.1, T) T=1,3,25",
         "same smoothed Weiszfeld step (weights 1/max(nu, ||z - x_i||)) from ByzFL's z = 0 without acceleration; "
         "once a step raises the true objective (an iterate within nu of a row) ours keeps the best iterate and "
         "tests the row (Vardi-Zhang), ByzFL returns the T-th: there one-sided (ours' objective <= ByzFL's best); "
         "cases with a row within nu of 0 excluded; ours' default: comed start, nu=1e-6, accelerated, to tol",
         r_geomed_fixed),
    Pair("geomed converged / GeometricMedian(large T)", "geomed(G) (default, to tol 1e-7)",
         f"GeometricMedian(nu={GM_NU_CONVERGED:g}, T={GM_T_CONVERGED})",
         "same minimizer argmin sum ||z - x_i||_2; ByzFL's default T=3 is not converged (we differ from it by design)",
         r_geomed_conv, iterative=True),
    Pair("geomed default / GeometricMedian() default", "geomed(G)", "GeometricMedian() (nu=0.1, T=3 from z=0)",
         "BY DESIGN: ByzFL's default stops after 3 Weiszfeld steps from 0, not at the minimizer; informational",
         r_geomed_defaults, iterative=True, by_design=True),
    Pair("krum / Krum (f shifted)", "krum(G, f-1)", "Krum(f)",
         "neighbours: ours n-f-2 (paper eq. (3), Blanchard et al.), ByzFL n-f-1; ByzFL averages the squared "
         "distances (same argmin); ours(f-1) == ByzFL(f)", r_krum),
    Pair("krum / Krum (same f)", "krum(G, f)", "Krum(f)",
         "BY DESIGN different neighbour count (n-f-2 vs n-f-1): outputs may differ; informational", r_krum_same_f,
         by_design=True),
    Pair("multi_krum / MultiKrum", "multi_krum(G, f-1, m=n-f)", "MultiKrum(f)",
         "ByzFL averages m = n-f rows with n-f-1 neighbours; ours(f-1, m=n-f) == ByzFL(f)", r_multi_krum),
    Pair("centered_clipping / CenteredClipping", "centered_clip(G, 0, tau, L); CenteredClipping(base=mean) "
         "with center 0 loaded", "CenteredClipping(tau, L)",
         "same iteration v += mean(clip_tau(x_i - v)); ByzFL's first center is 0 (its m argument always raises "
         "TypeError), ours' default is base(G): pass center 0; both store the output as the next center",
         r_cc),
    Pair("clip_rows / Clipping", "clip_rows(G, c) (helper, not a registered rule)", "Clipping(c)",
         "static per-row l2 clipping x * min(1, c/||x||); ByzFL's Clipping writes into its input", r_clipping),
    Pair("nnm_mix / NNM", "nnm_mix(G, f)", "NNM(f)", "mean of each row's n-f nearest rows (itself included)", r_nnm),
    Pair("nnm_mix[idx] / MoNNA", "nnm_mix(G, f)[idx] (no MoNNA rule)", "MoNNA(f, idx)",
         "MoNNA is NNM's mixed row of the trusted row idx", r_monna),
    Pair("closest_to_median_mean / Meamed", "closest_to_median_mean(G, n-f) (Bulyan's aggregation helper, no "
         "Meamed rule)", "Meamed(f)",
         "mean of the n-f values closest to the coordinate median; ties in distance: ours keeps the smaller value, "
         "ByzFL's topk/argpartition an arbitrary one", r_meamed),
    Pair("bucketing / Bucketing", "bucket_means(G, s, perm); bucketing(G, comed, s, perm); "
         "Bucketing(base=comed, generator=seed)", "Bucketing(s) (+ Median())",
         "same buckets (last one the mean of its actual rows) with the permutation ByzFL draws: torch.randperm "
         "from the global seed (float32) / np.random.permutation (float64)", r_bucketing),
    Pair("sign_flip / SignFlipping", "make_attack('sign_flip') (no view.own)", "SignFlipping()",
         "-mean of the honest rows; ours sends f copies", r_signflip),
    Pair("ipm / InnerProductManipulation", "make_attack('ipm', eps)", "InnerProductManipulation(tau=eps)",
         "-eps * mean; ByzFL's tau is our eps", r_ipm),
    Pair("alie / ALittleIsEnough", "make_attack('alie', z)", "ALittleIsEnough(tau=-z)",
         "ours mu - z*sigma (z default Baruch et al.'s z_max(n, f)), ByzFL mu + tau*sigma (default tau=1.5 "
         "fixed): tau = -z; both unbiased std", r_alie),
    Pair("mimic / Mimic", "make_attack('mimic', target=t)", "Mimic(epsilon=t)",
         "copy of honest row t; ours' default target='auto' (top principal direction) has no ByzFL counterpart",
         r_mimic),
    Pair("gaussian / Gaussian (same stream)", "make_attack('gaussian', sigma=2, center='zero'), view.rng seeded",
         "Gaussian(mu=0, sigma=2), torch global seed",
         "N(0, sigma^2 I); elementwise only where the random streams coincide (float32 torch input, f*d < 16: "
         "torch's randn draws small tensors value by value, larger ones in blocks of 16)", r_gaussian,
         float_only="float32"),
    Pair("gaussian / Gaussian (distribution)", "make_attack('gaussian', sigma=2, center='zero')",
         "Gaussian(mu=0, sigma=2)",
         "where the streams differ (numpy input or f*d >= 16; d >= 10): two-sample KS test, value D / D_crit "
         "at alpha=1e-3 (agrees when <= 1)", r_gaussian_dist, tol_override=1.0),
]

NO_COUNTERPART = {
    "aggregators": {
        "MDA": "no rule of ours (minimum-diameter subset averaging, exhaustive over subsets)",
        "CAF": "no rule of ours (covariance-bound filter; random power-iteration start)",
        "SMEA": "no rule of ours (smallest max-eigenvalue subset averaging; random power-iteration start)",
        "ARC": "no pre-aggregation of ours (adaptive robust clipping); ours has centered clipping only",
        "MoNNA / Meamed": "no rules of ours; compared above with the helpers that compute them",
        "ours: bulyan, mixtailor, geomed with p != 2, krum/multi_krum with p != 2, bucketing mode='resample'":
            "no ByzFL counterpart (ByzFL's rules are l2 only)",
    },
    "attacks": {
        "Inf": "no attack of ours (non-finite rows are in our rule tests, not an attack); ByzFL returns a float64 "
               "+inf vector even for float32 input",
        "Optimal_InnerProductManipulation / Optimal_ALittleIsEnough": "no counterpart: ByzFL line-searches tau "
               "against a given aggregator; ours' min_max / min_sum / adaptive optimize other objectives",
        "LabelFlipping": "data-level in both; ByzFL's vector function returns the honest mean (placeholder), ours "
                         "is a trainer data hook (label_flip)",
        "ours: fang_krum, fang_trim, min_max, min_sum, random_eps, adaptive": "no ByzFL counterpart",
        "mimic target='auto'": "ByzFL's Mimic takes a fixed index only",
        "gaussian center='honest'": "ByzFL's Gaussian takes a fixed mu (scalar) only",
    },
}


def probe_input_types(byz: Byz) -> dict:
    """What ByzFL returns for each input type (observed, not assumed)."""
    out = {}
    X = np.arange(6.0).reshape(3, 2)
    for label, x in (("torch float64", torch.tensor(X, dtype=torch.float64)),
                     ("torch float32", torch.tensor(X, dtype=torch.float32)),
                     ("numpy float64", X.copy()), ("numpy float32", X.astype(np.float32))):
        y = byz.agg.Average()(x)
        out[label] = f"{type(y).__module__.split('.')[0]} {y.dtype}"
    return out


# --------------------------------------------------------------------------- comparison


@dataclass
class Stat:
    pair: Pair
    cases: int = 0
    comparisons: int = 0
    failed: int = 0
    excluded: dict = field(default_factory=dict)
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: str = ""
    failures: list = field(default_factory=list)
    one_sided: int = 0  # comparisons checked one-sidedly (Metric details saying so)

    def add(self, case: Case, ours, theirs=None, detail: str = "") -> None:
        if isinstance(ours, Metric):
            self.one_sided += "one-sided" in ours.detail
            self.record(case, ours.abs, ours.rel, ours.detail)
            return
        a, t = as64(ours), as64(theirs)
        if a.shape != t.shape:
            raise AssertionError(f"{self.pair.name}: shapes {a.shape} vs {t.shape} at {case.label} {detail}")
        if not (np.isfinite(a).all() and np.isfinite(t).all()):
            diff = math.inf if not np.array_equal(a, t) else 0.0
            rel = diff
        else:
            diff = float(np.abs(a - t).max()) if a.size else 0.0
            rows = np.abs(as64(case.G)).max(axis=1)
            scale = max(float(np.abs(a).max()), float(np.abs(t).max()), float(np.median(rows)), 1e-300)
            rel = diff / scale
        self.record(case, diff, rel, detail)

    def record(self, case: Case, diff: float, rel: float, detail: str) -> None:
        tol = self.pair.tol(case.dtype)
        self.comparisons += 1
        self.max_abs = max(self.max_abs, diff)
        if rel > self.max_rel or self.comparisons == 1:
            self.max_rel, self.worst = rel, f"{case.label} {detail}".strip()
        if not rel <= tol:
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append({"case": case.label, "detail": detail, "abs": diff, "rel": rel, "tol": tol})

    def row(self) -> dict:
        p = self.pair
        agrees = None if self.comparisons == 0 else self.failed == 0  # None: nothing compared
        return {
            "pair": p.name, "ours": p.ours, "byzfl": p.byzfl,
            "expected": "differs by design" if p.by_design else "agree",
            "agrees": agrees,
            "cases": self.cases, "comparisons": self.comparisons, "failed": self.failed,
            "excluded": self.excluded,
            "max_abs": self.max_abs, "max_rel": self.max_rel,
            "tol": {dt: p.tol(dt) for dt in ([p.float_only] if p.float_only else DTYPES)},
            "one_sided_comparisons": self.one_sided,
            "worst_case": self.worst, "note": p.note, "failures": self.failures,
        }


def compare(byz: Byz, cases: list[Case], pairs=PAIRS) -> list[dict]:
    """Run every pair on every case; one row per pair (see :meth:`Stat.row`)."""
    stats = {p.name: Stat(p) for p in pairs}
    for case in cases:
        for p in pairs:
            st = stats[p.name]
            if p.float_only and case.dtype != p.float_only:
                st.excluded[f"{case.dtype} input"] = st.excluded.get(f"{case.dtype} input", 0) + 1
                continue
            try:
                results = p.run(case, byz)
            except Excluded as exc:
                st.excluded[str(exc)] = st.excluded.get(str(exc), 0) + 1
                continue
            st.cases += 1
            for item in results:
                st.add(case, *item) if isinstance(item, tuple) else st.add(case, item)
    return [stats[p.name].row() for p in pairs]


def print_table(rows: list[dict]) -> None:
    print("| pair | expected | agrees | comparisons (failed / excluded cases) | max abs | max rel | convention |")
    print("|---|---|---|---|---:|---:|---|")
    for r in rows:
        excl = sum(r["excluded"].values())
        ok = ("not compared" if r["agrees"] is None else "yes" if r["agrees"]
              else "no (by design)" if r["expected"] != "agree" else "NO")
        print(f"| {r['pair']} | {r['expected']} | {ok} | {r['comparisons']} ({r['failed']} / {excl}) | "
              f"{r['max_abs']:.3g} | {r['max_rel']:.3g} | {r['note']} |")
    for r in rows:
        for reason, count in r["excluded"].items():
            print(f"  excluded from {r['pair']}: {count} case(s): {reason}")
        for fl in r["failures"]:
            print(f"  {'differs' if r['expected'] != 'agree' else 'FAILS'}: {r['pair']}: {fl}")


def parse_args(argv, doc: str, out: Path):
    """``--quick`` and ``--out`` (default ``out`` unless quick: then no file) of an agreement script."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seed 0, n in {7, 10}, d in {1, 10}; writes no file "
                    "unless --out is given")
    ap.add_argument("--out", default=None, help=f"results JSON (default {out.relative_to(HERE.parent)})")
    args = ap.parse_args(argv)
    args.out = args.out or (None if args.quick else str(out))
    return args


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, OUT)
    byz = load()
    if byz is None:
        print("agree_byzfl: ByzFL is not importable in this Python; nothing compared "
              "(run it with e.g. /tmp/byzfl-venv/bin/python)")
        return 0
    rows, result = run_cases(compare, byz, args.quick, "ByzFL", {"byzfl_version": byzfl_version()})
    result["setting"].update(byzfl_input="float32: torch tensor; float64: numpy array (ByzFL casts any torch "
                             "tensor to float32)", rel="max|ours - byzfl| / max(|ours|_inf, |byzfl|_inf, "
                             "median_i |G_i|_inf)")
    result.update({
        "byzfl_output_dtype_by_input": probe_input_types(byz),
        "pairs": rows,
        "no_counterpart": NO_COUNTERPART,
        "real_disagreements": result.pop("real_disagreements"),
    })
    print(f"ByzFL's Average output by input type: {result['byzfl_output_dtype_by_input']}")
    return finish(rows, result, args.out)


def run_cases(compare_fn, other, quick: bool, name: str, versions: dict) -> tuple[list, dict]:
    """``compare_fn(other, cases)`` over :func:`make_cases` (``quick``: seed 0, n in {7, 10},
    d in {1, 10}), with a one-line header naming ``name``; returns the rows and the result
    fields every agreement script records (date, ``git describe``, ``versions``, library
    versions, the setting, the pairs that should agree and do not)."""
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    cases = make_cases(seeds=(0,), ns=(7, 10), ds=(1, 10)) if quick else make_cases()
    rows = compare_fn(other, cases)
    wall = time.perf_counter() - t0
    result = {
        "date_utc": started.isoformat(timespec="seconds"),
        "git": git_describe(),
        **versions,
        "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "wall_s": round(wall, 1),
        "setting": {"seeds": sorted({c.seed for c in cases}), "n": sorted({c.n for c in cases}),
                    "d": sorted({c.d for c in cases}), "dtypes": list(DTYPES), "variants": list(VARIANTS),
                    "f": "{1, floor((n-1)/2)}", "far_shift": FAR, "cases": len(cases), "quick": quick,
                    "tol_closed_form": TOL_CLOSED, "tol_iterative": TOL_ITERATIVE},
        "real_disagreements": [r["pair"] for r in rows if r["expected"] == "agree" and r["agrees"] is False],
    }
    print(f"{name} {next(iter(versions.values()))} vs mixtailor-game {result['git']}: {len(cases)} cases, "
          f"{wall:.1f} s")
    return rows, result


def finish(rows: list[dict], result: dict, out: str | None) -> int:
    """Print the table and ``result["no_counterpart"]``, write ``result`` to ``out`` (atomically)
    when given; 1 if a pair that should agree does not (``result["real_disagreements"]``)."""
    print_table(rows)
    print("\nNo counterpart:")
    for group, items in result["no_counterpart"].items():
        for k, v in items.items():
            print(f"  {group}: {k}: {v}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out).with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)
        print(f"\nwrote {out}")
    if result["real_disagreements"]:
        print(f"\nREAL DISAGREEMENTS: {result['real_disagreements']}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
