"""Write the notebooks of this folder from the cell sources below (outputs empty).

    python notebooks/_build.py            # rewrites notebooks/0*.ipynb

Edit a notebook here, not in JupyterLab, so that the stored files stay small,
clean (no outputs) and reviewable. Each notebook has exactly one cell tagged
``parameters`` that sets ``SCALE = "full"`` and its parameters;
``tests/test_notebooks.py`` inserts ``SCALE = "small"`` after it (as papermill
would) and executes the notebook with nbclient. The test only limits each cell
to 300 s and does not time the whole notebook; the "small" notebooks are meant
to stay under a minute on a 2-core CPU (measured: 4-15 s each, kernel start
included) and each prints its elapsed time at the end.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Makes ``import solvers`` work from any working directory (the kernel of the
# tests runs in a temporary folder): the top-level package ``solvers`` sits next
# to ``mixtailor_game`` in the repository.
SETUP = '''\
import sys
import time
from pathlib import Path

import numpy as np
import torch
import matplotlib.pyplot as plt

import mixtailor_game

REPO = Path(mixtailor_game.__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the top-level `solvers` package lives next to mixtailor_game
T0 = time.perf_counter()'''


def params_cell(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# --------------------------------------------------------------------------- 01
NB01 = [
    new_markdown_cell("""\
# 01 - Attack feasibility against a pool of rules

An informed adversary knows the honest gradients `V` and the pool of rules
`AGG_1..AGG_M` of MixTailor, but not the rule drawn at a step. Appendix A.4 of
the paper writes its best attack as

* **P1 / P2**: `min_B max_m <AGG_m(B, V), mu>` subject to `||B_i - B_j|| >= eps`
  (P2 is the epigraph form with `xi`), `mu` the mean of the honest rows;
* **P3**: the same restricted to `B_i = -lambda * sum_i V_i` (a 1-D search);
* and, for an attacker that also knows the probabilities, the
  **expected-value** problem `min_B sum_m p_m <AGG_m(B, V), mu>`.

`xi* < 0` is a *certificate*: the attack turns every rule of the pool against
the descent direction. This notebook solves these problems with `solvers.solve`
while `f`, `n`, the pool, the similarity filter `eps` and the noise of the
honest gradients vary, and shows where the certificate appears. Values are
reported as `xi* / ||mu||^2` (scale free: `+1` is the honest mean itself).
"""),
    params_cell('''\
SCALE = "full"     # "small": a quick pass (CI, < 1 min); "full": finer grids
SEED = 0
N = 12             # workers (for the sweep over f)
F = 2              # Byzantine workers (for the sweep over n)
NOISE = 2.0        # noise-to-signal ratio of one honest gradient (||noise|| / ||mu||)'''),
    new_code_cell(SETUP + '''

import solvers
from mixtailor_game.rules import make_rule
from mixtailor_game.game import synthetic_samples

SIZES = {
    "small": dict(d=4, fs=[1, 2, 3, 4], ns=[8, 10, 12, 16], noises=[0.5, 2.0, 8.0], eps_grid=[0.0, 1.0, 4.0]),
    "full": dict(d=10, fs=[1, 2, 3, 4, 5], ns=[7, 8, 10, 12, 16, 20, 24], noises=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
                 eps_grid=[0.0, 0.5, 1.0, 2.0, 4.0]),
}[SCALE]
print(SCALE, SIZES)'''),
    new_markdown_cell("""\
## Pools and honest gradients

Honest rows are `mu + noise * z / sqrt(d)` (`game.synthetic_samples`): with a
large noise-to-signal ratio, as in deep learning, a few Byzantine rows can pull
a robust rule far from `mu`. A pool is skipped where one of its rules is outside
its regime (Krum needs `n > 2f + 2`, Bulyan `n >= 4f + 3`)."""),
    new_code_cell('''\
POOLS = {
    "krum": ["krum"],
    "comed": ["comed"],
    "krum+comed": ["krum", "comed"],
    "krum+comed+geomed": ["krum", "comed", "geomed"],
    "krum+comed+geomed+bulyan": ["krum", "comed", "geomed", "bulyan"],
}


def build_pool(names, n, f):
    """The rules of a pool, or None when one of them is outside its (n, f) regime."""
    rules = [make_rule(name, f=f) for name in names]
    try:
        for r in rules:
            r.check(n)
    except ValueError:
        return None
    return rules


def honest_rows(k, noise, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    return synthetic_samples(k, SIZES["d"], samples=1, mean_norm=1.0, noise=noise, generator=g,
                             dtype=torch.float64)[0]


def scaled(sol, V):
    """xi* / ||mu||^2 (+1 means the aggregate is as good as the honest mean)."""
    return sol.value / float(V.mean(0).square().sum())'''),
    new_markdown_cell("""\
## xi* against f (n fixed) and against n (f fixed): P3 and the expected-value problem

P3 searches one scale `lambda` for all Byzantine rows (`B = -lambda sum V_i`); the
expected-value attacker minimises the *average* inner product under the uniform
mix (the pool's probabilities). Filled markers: value < 0 (for P3, a
certificate: every rule of the pool is turned; a negative expected value is
not one, it is an average over the rules)."""),
    new_code_cell('''\
def sweep(points, make_nf):
    rows = []
    for x in points:
        n, f = make_nf(x)
        V = honest_rows(n - f, NOISE)
        for pname, names in POOLS.items():
            pool = build_pool(names, n, f)
            if pool is None:
                continue
            p3 = solvers.solve(solvers.P3(V, f, pool))
            ev = solvers.solve(solvers.ExpectedValue(V, f, pool))
            rows.append(dict(x=x, n=n, f=f, pool=pname, p3=scaled(p3, V), p3_status=p3.status,
                             certificate=bool(p3.certificate), ev=scaled(ev, V), ev_status=ev.status))
    return rows


def plot_sweep(ax, rows, key, xlabel, title):
    for pname in POOLS:
        rs = [r for r in rows if r["pool"] == pname and r[key + "_status"] != "infeasible"]
        if not rs:
            continue
        line, = ax.plot([r["x"] for r in rs], [r[key] for r in rs], label=pname)
        cert = [r for r in rs if r[key] < 0]
        ax.scatter([r["x"] for r in cert], [r[key] for r in cert], color=line.get_color(), zorder=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("value / ||mu||^2")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


rows_f = sweep(SIZES["fs"], lambda f: (N, f))
rows_n = sweep(SIZES["ns"], lambda n: (n, F))
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
plot_sweep(axes[0, 0], rows_f, "p3", "f", f"P3: xi*, n={N}")
plot_sweep(axes[0, 1], rows_f, "ev", "f", f"expected value (uniform), n={N}")
plot_sweep(axes[1, 0], rows_n, "p3", "n", f"P3: xi*, f={F}")
plot_sweep(axes[1, 1], rows_n, "ev", "n", f"expected value (uniform), f={F}")
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
plt.show()
for r in rows_f:
    print(f"n={r['n']:2d} f={r['f']} {r['pool']:26s} P3 xi*/|mu|^2={r['p3']:+8.3f} ({r['p3_status']}, "
          f"certificate={r['certificate']})  E-value={r['ev']:+8.3f}")'''),
    new_markdown_cell("""\
## Where does the certificate appear? P2 with a similarity filter

P2 (f free rows, `||B_i - B_j|| >= eps`) over a grid of the filter `eps` (in units
of `||mu||`) and the noise-to-signal ratio, for the pool krum+comed at `n = N`,
`f = F`. The colour is `xi* / ||mu||^2`; `x` marks a certificate, a blank cell
an infeasible problem. More noise makes the attack easier; a larger filter
forces the Byzantine rows apart and makes it harder."""),
    new_code_cell('''\
pool = build_pool(POOLS["krum+comed"], N, F)
grid = np.full((len(SIZES["noises"]), len(SIZES["eps_grid"])), np.nan)
status = {}
for i, noise in enumerate(SIZES["noises"]):
    V = honest_rows(N - F, noise)
    scale = float(V.mean(0).norm())
    for j, eps in enumerate(SIZES["eps_grid"]):
        sol = solvers.solve(solvers.P2(V, F, pool, eps=eps * scale))
        status[i, j] = sol.status
        if sol.status != "infeasible":
            grid[i, j] = scaled(sol, V)
fig, ax = plt.subplots(figsize=(6, 4))
vmax = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
im = ax.imshow(grid, cmap="coolwarm_r", vmin=-vmax, vmax=vmax, aspect="auto", origin="lower")
for (i, j), st in status.items():
    if np.isfinite(grid[i, j]) and grid[i, j] < 0:
        ax.text(j, i, "x", ha="center", va="center")
ax.set_xticks(range(len(SIZES["eps_grid"])), [f"{e:g}" for e in SIZES["eps_grid"]])
ax.set_yticks(range(len(SIZES["noises"])), [f"{s:g}" for s in SIZES["noises"]])
ax.set_xlabel("filter eps / ||mu||")
ax.set_ylabel("noise / ||mu||")
ax.set_title(f"P2 xi*/||mu||^2, pool krum+comed, n={N}, f={F}", fontsize=9)
fig.colorbar(im)
plt.show()
print({k: v for k, v in status.items()})'''),
    new_markdown_cell("""\
## One solution in detail

The per-rule inner products `<AGG_m(B, V), mu>` of the P2 solution for the
largest pool in its regime: the attack is a certificate only if every bar is
below zero, and the solver recomputes them with the real rules."""),
    new_code_cell('''\
V = honest_rows(N - F, SIZES["noises"][-1])
names = next(n for n in reversed(list(POOLS.values())) if build_pool(n, N, F) is not None)
pool = build_pool(names, N, F)
sol = solvers.solve(solvers.P2(V, F, pool, eps=0.0))
print(sol.summary())
mu2 = float(V.mean(0).square().sum())
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(range(len(sol.per_rule_inner)), [v / mu2 for v in sol.per_rule_inner])
ax.set_xticks(range(len(sol.per_rule_inner)), [str(r) for r in sol.rule_names], rotation=30, ha="right",
              fontsize=7)
ax.axhline(0, color="k", lw=0.8)
ax.set_ylabel("<AGG_m, mu> / ||mu||^2")
fig.tight_layout()
plt.show()
print(f"elapsed {time.perf_counter() - T0:.1f} s")'''),
]

# --------------------------------------------------------------------------- 02
NB02 = [
    new_markdown_cell("""\
# 02 - Proposition 1: how large must the pool be?

Proposition 1 (Section 4, proof in Appendix A.3): if an attack compromises `q`
of the `M` rules of a uniform pool and every other rule `m'` keeps
`E[U_m']^T grad F >= beta_m' > 0`, then

`M / q > 1 + lambda L / min beta_m'`

guarantees `E[U]^T grad F > 0` for the mixture (`lambda`: the largest
`||E[U_i]||` of a compromised rule, `L = sup ||grad F||`). The bound is
sufficient, not necessary. `mixtailor_game.verify.proposition1.run_scenario`
measures all the quantities on problems with an exact gradient and sweeps `M/q`;
here we plot the mixture's worst inner product against `M/q`, with the
threshold the proposition gives and the one actually measured.
"""),
    params_cell('''\
SCALE = "full"     # "small": a quick pass (CI, < 1 min); "full": more trials, both problems
SEED = 0
N, F, D = 11, 4, 10
SIGMA2 = 4.0       # honest gradient noise variance
Q = 4              # compromised entries in the pool'''),
    new_code_cell(SETUP + '''

from mixtailor_game import theory
from mixtailor_game.verify.proposition1 import SCENARIOS, run_scenario

SIZES = {
    "small": dict(trials=150, points=2, problems=["quadratic"]),
    "full": dict(trials=2000, points=6, problems=["quadratic", "logistic"]),
}[SCALE]
print(SCALE, SIZES, "scenarios:", SCENARIOS)'''),
    new_code_cell('''\
results = [run_scenario(problem, scenario, n=N, f=F, d=D, sigma2=SIGMA2, q=Q, bound_scale=1.0, seed=SEED,
                        trials=SIZES["trials"], points=SIZES["points"])
           for problem in SIZES["problems"] for scenario in SCENARIOS]
for r in results:
    print(f"{r['problem']:9s} {r['attack']:14s} compromised={r['compromised']} resilient={r['resilient']}")
    if r["threshold"] is not None:
        print(f"    lambda={r['lam']:.3g}  L={r['L']:.3g}  beta_min={r['beta_min']:.3g}  "
              f"guaranteed M/q > {r['threshold']:.3g}  measured positive from M/q >= {r['actual_threshold']}")
        print(f"    with the compromised rules' measured worst inner product instead of -lambda L: "
              f"M/q > {r['rough_threshold']:.3g}")
    else:
        print("    ", r["note"])'''),
    new_markdown_cell("""\
## The threshold from its parts

The guaranteed ratio is recomputed with `theory.proposition1_threshold` from the
measured `lambda`, `L`, `beta_min`, and every point of the sweep is checked
against `theory.proposition1_condition`: where the proposition claims
positivity, the measured mixture must be positive (a `VIOLATED` status would
contradict the paper)."""),
    new_code_cell('''\
violations = 0
for r in results:
    if r["threshold"] is None:
        continue
    thr = theory.proposition1_threshold(r["lam"], r["L"], r["beta_min"])
    assert abs(thr - r["threshold"]) <= 1e-9 * max(1.0, thr)
    for row in r["sweep"]:
        claim = theory.proposition1_condition(row["M"], row["q"], r["lam"], r["L"], r["beta_min"])
        assert claim == row["claim"], row
        violations += row["status"] == "VIOLATED"
print("points where the proposition claims positivity but the mixture is negative:", violations)'''),
    new_code_cell('''\
shown = [r for r in results if r["sweep"]]
fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(5 * max(1, len(shown)), 3.6), squeeze=False)
for ax, r in zip(axes[0], shown):
    xs = [row["ratio_Mq"] for row in r["sweep"]]
    val = [row["inner"]["value"] for row in r["sweep"]]
    lo = [row["inner"]["lo"] for row in r["sweep"]]
    hi = [row["inner"]["hi"] for row in r["sweep"]]
    sim = [row["mixtailor_sim"]["value"] for row in r["sweep"]]
    ax.plot(xs, val, marker=".", label="E[U]^T grad F (worst w)")
    ax.fill_between(xs, lo, hi, alpha=0.3)
    ax.plot(xs, sim, ls=":", label="MixTailor draws (simulated)")
    ax.axhline(0, color="k", lw=0.8)
    ax.axvline(r["threshold"], color="r", ls="--", label=f"guaranteed > {r['threshold']:.3g}")
    if r["actual_threshold"] is not None:
        ax.axvline(r["actual_threshold"], color="g", ls="--", label=f"measured >= {r['actual_threshold']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("M / q")
    ax.set_title(f"{r['problem']}, {r['attack']}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(f"elapsed {time.perf_counter() - T0:.1f} s")'''),
    new_markdown_cell("""\
Reading the plots: the measured mixture turns positive at a much smaller `M/q`
than the guarantee `1 + lambda L / beta_min`. The guarantee combines worst cases
taken separately over Omega (and over the rules): `-lambda L` for the
compromised rules, `beta_min` for the weakest resilient one. They need not fall
at the same `w`, and the mixture pays for neither in full. In the `ipm-small`
scenario the compromised Krums do reach `-lambda L` (the printed threshold with
their measured worst inner product is about the guaranteed one), so there the
slack comes only from combining the worst cases; in others (`ipm-large`) the
compromised rules also stay well above `-lambda L`."""),
]

# --------------------------------------------------------------------------- 03
NB03 = [
    new_markdown_cell("""\
# 03 - Adaptive adversaries against MixTailor training

Simulated training (`mixtailor_game.train`) with `n = 12` workers, `f = 2` of
them Byzantine, on the embedded 8x8 `digits` data (no download). The server
uses MixTailor over a pool of rules; the adversary sees every honest gradient
and knows the pool and its probabilities, never the rule drawn. We compare:

* the tailored attacks of the paper (IPM, `eps = 0.1` against Krum and
  `eps = 10` against comed) and ALIE;
* **adaptive** attackers that solve an attack problem at every step
  (`make_attack("adaptive", problem=...)`): the expected-value problem (the
  natural attacker of a mixture) and P3;
* the omniscient baseline (the mean of the honest rows, no attack).
"""),
    params_cell('''\
SCALE = "full"     # "small": a quick pass (CI, < 1 min); "full": longer runs, the MLP
SEED = 0
POOL = "krum,comed,geomed,trimmed_mean"   # MixTailor's pool (a comma list of rule names, or "paper")
LR = 0.05'''),
    new_code_cell(SETUP + '''

from mixtailor_game.train import TrainConfig, Trainer

SIZES = {
    "small": dict(model="logreg", steps=4, eval_every=2),
    "full": dict(model="mlp", steps=400, eval_every=20),
}[SCALE]
ATTACKS = {
    "ipm eps=0.1": ("ipm", {"eps": 0.1}),
    "ipm eps=10": ("ipm", {"eps": 10.0}),
    "alie": ("alie", {}),
    "adaptive: expected value": ("adaptive", {"problem": "expected"}),
    "adaptive: P3": ("adaptive", {"problem": "p3"}),
}
if SCALE == "small":
    ATTACKS.pop("alie")
    ATTACKS.pop("ipm eps=10")
    ATTACKS.pop("adaptive: P3")
print(SCALE, SIZES, list(ATTACKS))'''),
    new_code_cell('''\
def run(aggregator, attack, params):
    config = TrainConfig(dataset="digits", model=SIZES["model"], workers=12, byzantine=2, aggregator=aggregator,
                         pool=POOL, attack=attack, attack_params=params, steps=SIZES["steps"],
                         eval_every=SIZES["eval_every"], lr=LR, seed=SEED, deterministic_draw=True)
    rows = []
    summary = Trainer(config, callback=lambda step, row: rows.append(row)).run()
    return summary, rows


curves = {}
summary, rows = run("omniscient", "none", {})
curves["omniscient (no attack)"] = rows
for label, (attack, params) in ATTACKS.items():
    t = time.perf_counter()
    summary, rows = run("mixtailor", attack, params)
    curves[label] = rows
    print(f"{label:26s} final accuracy {summary['test_accuracy']:.3f}  ({time.perf_counter() - t:.1f} s)")'''),
    new_code_cell('''\
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
for label, rows in curves.items():
    ev = [r for r in rows if "test_accuracy" in r]
    ax1.plot([r["step"] for r in ev], [r["test_accuracy"] for r in ev], marker=".", label=label)
    ax2.plot([r["step"] for r in rows], [r["cosine"] for r in rows], lw=0.8, label=label)
ax1.set_xlabel("step"); ax1.set_ylabel("test accuracy"); ax1.grid(alpha=0.3); ax1.legend(fontsize=7)
ax2.set_xlabel("step"); ax2.set_ylabel("cos(aggregate, honest mean)"); ax2.grid(alpha=0.3)
ax1.set_title(f"MixTailor ({POOL}), n=12, f=2", fontsize=9)
fig.tight_layout()
plt.show()'''),
    new_markdown_cell("""\
## Which rule was drawn when the attack worked?

Every metrics row records the rule MixTailor drew and the cosine between the
aggregate and the honest mean: a negative cosine is a step that went uphill."""),
    new_code_cell('''\
for label, rows in curves.items():
    if label.startswith("omniscient"):
        continue
    by_rule = {}
    for r in rows:
        by_rule.setdefault(r["rule"], []).append(r["cosine"])
    text = ", ".join(f"{rule}: mean cos {np.nanmean(c):+.2f} ({len(c)} draws)" for rule, c in sorted(by_rule.items()))
    print(f"{label:26s} {text}")
print(f"elapsed {time.perf_counter() - T0:.1f} s")'''),
]

# --------------------------------------------------------------------------- 04
NB04 = [
    new_markdown_cell("""\
# 04 - Equilibrium mixing: payoff matrix, equilibrium, exploitability

MixTailor draws each rule with probability `1/M`. An attacker that knows the
probabilities best-responds to them; the defender can instead commit to the
minimax mix of the zero-sum game whose payoff is the attacker's gain
`-<AGG_r(B_a, V), mu>` (`mixtailor_game.game`). Here we measure the payoff
matrix attacks x rules on synthetic honest gradients, solve the game (HiGHS LP,
with the best-response gap as a certificate), and compare the exploitability of
the uniform mix with the equilibrium mix as the gradient noise grows.
"""),
    params_cell('''\
SCALE = "full"     # "small": a quick pass (CI, < 1 min); "full": more samples and a finer noise grid
SEED = 0
F = 2
K = 10             # honest rows (n = K + F)
D = 20
RULES = ["krum", "comed", "geomed", "trimmed_mean", "bulyan"]
ATTACKS = ["ipm[eps=0.1]", "ipm[eps=10]", "alie", "fang_krum", "min_max", "sign_flip"]'''),
    new_code_cell(SETUP + '''

from mixtailor_game.game import (best_response_gaps, double_oracle, payoff_matrix, solve_zero_sum,
                                 solvers_oracle, synthetic_samples, uniform_exploitability)

SIZES = {
    "small": dict(samples=4, noises=[0.5, 3.0, 10.0], oracle_iter=3),
    "full": dict(samples=32, noises=[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0], oracle_iter=15),
}[SCALE]
print(SCALE, SIZES)'''),
    new_code_cell('''\
def matrix(noise):
    S = synthetic_samples(K, D, samples=SIZES["samples"], noise=noise,
                          generator=torch.Generator().manual_seed(SEED))
    return payoff_matrix(ATTACKS, RULES, S, f=F, generator=torch.Generator().manual_seed(SEED))


P = matrix(3.0)
fig, ax = plt.subplots(figsize=(7, 4))
im = ax.imshow(P.values, cmap="coolwarm_r", aspect="auto")
ax.set_xticks(range(len(P.rules)), P.rules, rotation=30, ha="right", fontsize=7)
ax.set_yticks(range(len(P.attacks)), P.attacks, fontsize=7)
for a in range(P.values.shape[0]):
    for r in range(P.values.shape[1]):
        ax.text(r, a, f"{P.values[a, r]:.2f}", ha="center", va="center", fontsize=7)
ax.set_title("<AGG_r(B_a, V), mu> (mean over samples), noise 3", fontsize=9)
fig.colorbar(im)
fig.tight_layout()
plt.show()'''),
    new_markdown_cell("""\
## The equilibrium and its certificate

`solve_zero_sum(L)` returns the defender's mix `p`, the attacker's mix `q`, the
value and the best-response gap `max_a (L p)_a - min_r (q^T L)_r` (0 at an exact
equilibrium). Every rule played with positive probability must be a best
response to `q`, which `best_response_gaps` checks independently."""),
    new_code_cell('''\
L = P.loss
res = solve_zero_sum(L)
print(res.status, "value", round(res.value, 4), "gap", res.gap)
print("best-response gaps (defender, attacker):", best_response_gaps(L, res.defender, res.attacker))
u = np.full(L.shape[1], 1 / L.shape[1])
print("uniform mix: worst-case loss", round(float(np.max(L @ u)), 4),
      "exploitability", round(uniform_exploitability(L), 4))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
ax1.bar(range(len(P.rules)), res.defender, label="equilibrium")
ax1.plot(range(len(P.rules)), u, "k_", markersize=20, label="uniform")
ax1.set_xticks(range(len(P.rules)), P.rules, rotation=30, ha="right", fontsize=7)
ax1.set_title("defender's mix over rules", fontsize=9)
ax1.legend(fontsize=7)
ax2.bar(range(len(P.attacks)), res.attacker)
ax2.set_xticks(range(len(P.attacks)), P.attacks, rotation=30, ha="right", fontsize=7)
ax2.set_title("attacker's equilibrium mix", fontsize=9)
fig.tight_layout()
plt.show()'''),
    new_markdown_cell("""\
## Exploitability of the uniform mix as the noise grows

For each noise-to-signal ratio: the game value (the defender's loss at the
equilibrium, `-<AGG, mu>`), the worst-case loss of the uniform mix against the
attack that best-responds to it, and their difference (the exploitability)."""),
    new_code_cell('''\
rows = []
for noise in SIZES["noises"]:
    Lm = matrix(noise).loss
    r = solve_zero_sum(Lm)
    uni = float(np.max(Lm @ np.full(Lm.shape[1], 1 / Lm.shape[1])))
    rows.append((noise, r.value, uni, uni - r.value))
    print(f"noise {noise:5.2f}: equilibrium loss {r.value:+.3f}, uniform worst loss {uni:+.3f}, "
          f"exploitability {uni - r.value:.3f} ({r.status})")
rows = np.array(rows)
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(rows[:, 0], rows[:, 1], marker="o", label="equilibrium mix")
ax.plot(rows[:, 0], rows[:, 2], marker="s", label="uniform mix (MixTailor)")
ax.axhline(0, color="k", lw=0.8)
ax.set_xscale("log")
ax.set_xlabel("noise / ||mu||")
ax.set_ylabel("worst-case defender loss  -<AGG, mu>")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()'''),
    new_markdown_cell("""\
## A continuous attacker: double oracle

The finite list of attacks above is arbitrary. `double_oracle` grows it with
best responses computed by `solvers` (`solvers_oracle`: the expected-value
problem against the current mix) until the mix is (nearly) unexploitable."""),
    new_code_cell('''\
V = synthetic_samples(K, D, samples=1, noise=3.0, generator=torch.Generator().manual_seed(SEED))[0]
from mixtailor_game.rules import as_rule
pool = [as_rule(name, F) for name in RULES]   # the same construction payoff_matrix uses
oracle = solvers_oracle(V, F, pool)
do = double_oracle(oracle, len(pool), max_iter=SIZES["oracle_iter"], tol=1e-3)
print(f"status {do.status}: {len(do.attacks)} attacks found, restricted value {do.value:+.4f}, "
      f"oracle's best loss against the mix {do.upper:+.4f}, gap {do.gap:.2e}")
print("defender's mix:", {r: round(float(x), 3) for r, x in zip(RULES, do.defender)} if do.defender is not None else None)
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy([h["iteration"] for h in do.history], [max(h["gap"], 1e-12) for h in do.history], marker="o")
ax.set_xlabel("iteration"); ax.set_ylabel("gap u_k - v_k"); ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(f"elapsed {time.perf_counter() - T0:.1f} s")'''),
]


NOTEBOOKS = {
    "01_attack_feasibility.ipynb": NB01,
    "02_proposition1.ipynb": NB02,
    "03_adaptive_training.ipynb": NB03,
    "04_equilibrium_mixing.ipynb": NB04,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = notebook(cells)
        for i, cell in enumerate(nb.cells):   # stable ids: a rebuild changes only the cells edited
            cell.id = hashlib.sha1(f"{name}:{i}".encode()).hexdigest()[:8]
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
