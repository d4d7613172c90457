"""Do our rules and attacks give the same outputs as Blades' on the same inputs?

The companion of ``agree_byzfl.py`` for Blades 0.0.13 (the last Blades release that
ships its own aggregators and attackers; later ones moved them to a package that is
not on PyPI). Same inputs (``agree_byzfl.make_cases``: seeds x n in {7, 10, 15} x
d in {1, 10, 1000} x float32 / float64 x plain / ties / far, f in {1, floor((n-1)/2)}),
same metric and tolerances (``agree_byzfl.Stat``), and where the two definitions
coincide the same pair functions: Blades is put behind a small facade with ByzFL's
names (:class:`Facade`), so ``agree_byzfl.r_mean``, ``r_median``, ``r_cc``, ``r_ipm``,
``r_geomed_fixed``, ``r_geomed_conv``, ``r_krum_same_f``, ``r_gaussian`` and
``r_gaussian_dist`` run unchanged. Blades always gets a torch tensor of the case's
dtype (its rules are torch-only and keep float64).

Where conventions differ the mapping that makes them equal is used and written next
to the row; rows marked "differs by design" (a convention) or "differs (suspected
Blades bug)" are reported, not asserted. What Blades' code does, read from its
source (0.0.13):

- ``Krum`` scores ``sum ||x_i - x_j||_2^4``: ``_pairwise_euclidean_distances`` stores
  ``norm() ** 2`` and ``_compute_scores`` squares those again, although its docstring
  says squared distances (the same double squaring is in several Krum copies of this
  lineage). Same n - f - 2 neighbours as ours. Reproduced exactly by our own
  distance helpers with the squared distances squared (``krum_4th_power``).
- ``Geomed`` (default ``maxiter=100, eps=1e-6, ftol=1e-10``) starts at the mean and
  overwrites its weights with the reweighted ones each step
  (``weights = max(eps, weights / max(eps, d_i))``, normalized): the weights
  compound, ``w_t ~ prod_s 1 / d_i(z_s)``, instead of Weiszfeld's ``1 / d_i(z_t)``.
  Its first step is a Weiszfeld step (agrees with ours); after that it drifts to a
  single input row (in all 162 cases here; the medoid in 123), not the geometric
  median (objective up to 35% higher; equal only where the minimizer is a row). Reproduced by
  the recursion written out here (:func:`compounding_geomed`). Blades' correct
  smoothed Weiszfeld (``smoothed_weiszfeld``, fixed T, weights ``max(eps,
  alpha / max(d, eps))``) is defined in the same module but used nowhere; it is
  compared with ``alpha = 2**64`` (a common factor that cancels, exact in binary,
  and keeps its ``eps`` floor on the weights inactive).
- ``Trimmedmean`` sums every value and then subtracts the dropped ones, so a far row
  costs it ``~ n * eps * max|G|`` of cancellation: compared elementwise without the
  far row, and relative to ``max|G|`` with it.
- ``AlieClient``'s default ``z`` is ``Phi^{-1}((n - f - s) / (n - f))`` (the honest
  workers only), ours Baruch et al.'s ``Phi^{-1}((n - s) / n)``; with Blades' ``z``
  passed to ours they agree.
- ``SignflippingClient`` negates its gradients during local training: with one plain
  SGD step its update is minus its honest update, our ``sign_flip`` with ``view.own``.

Blades is never a dependency: run with a Python that has it, e.g.

    python -m venv --system-site-packages /tmp/blades-venv
    /tmp/blades-venv/bin/pip install --no-deps blades==0.0.13
    /tmp/blades-venv/bin/python benchmarks/agree_blades.py [--quick] [--out PATH]

Without Blades importable the script prints one line and exits 0. With it, it prints
the table, writes ``benchmarks/results/agree_blades.json`` (date, Blades version,
``git describe``; ``--quick`` writes nothing unless ``--out`` is given) and exits 1 if
a pair that should agree does not.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import agree_byzfl as ab  # noqa: E402
from agree_byzfl import Excluded, Metric, Pair, as64  # noqa: E402

from mixtailor_game.attacks import make_attack, make_view  # noqa: E402
from mixtailor_game.rules import geomed, geomed_solve, trimmed_mean  # noqa: E402
from mixtailor_game.rules._distances import squared_distances  # noqa: E402
from mixtailor_game.rules.krum import scores_from_squared  # noqa: E402

OUT = HERE / "results" / "agree_blades.json"
BLADES_EPS = 1e-6  # Geomed's default eps (smoothing and weight floor)
ALPHA = 2.0 ** 64  # smoothed_weiszfeld's per-row alpha: cancels, keeps its eps floor off
MODULES = ("client", "aggregators.mean", "aggregators.median", "aggregators.trimmedmean", "aggregators.krum",
           "aggregators.geomed", "aggregators.centeredclipping", "attackers.alieclient", "attackers.ipmclient",
           "attackers.noiseclient", "attackers.signflippingclient", "attackers.labelflippingclient")


# --------------------------------------------------------------------------- Blades


def load() -> dict | None:
    """Blades' modules (``MODULES``, keyed by their name under ``blades.``), or None.

    Imported from the installed package without its training stack: the
    ``blades.aggregators`` / ``blades.attackers`` package ``__init__``s are not run
    (``aggregators/__init__`` imports ``Clippedclustering``, which needs ``torch._six``,
    gone since torch 2.0), and ``blades.client``'s top-level ``import ray.train`` (used only
    for distributed training) gets an empty stand-in while the modules load. The
    stand-ins and ``sys.path`` (``labelflippingclient`` prepends Blades' folder) are
    restored afterwards."""
    spec = importlib.util.find_spec("blades")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    stubs = []
    if importlib.util.find_spec("ray") is None:
        for name in ("ray", "ray.train"):
            sys.modules[name] = types.ModuleType(name)
            stubs.append(name)
        sys.modules["ray"].train = sys.modules["ray.train"]
    path = list(sys.path)
    try:
        importlib.import_module("blades")  # its __init__ is a comment only
        for sub in ("aggregators", "attackers"):
            if f"blades.{sub}" not in sys.modules:
                pkg = types.ModuleType(f"blades.{sub}")
                pkg.__path__ = [str(root / sub)]
                sys.modules[f"blades.{sub}"] = pkg
        return {name: importlib.import_module(f"blades.{name}") for name in MODULES}
    except Exception as exc:  # pragma: no cover - depends on the environment
        print(f"Blades found but its modules did not import ({exc!r})")
        return None
    finally:
        sys.path[:] = path
        for name in stubs:
            sys.modules.pop(name, None)


def blades_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("blades")
    except Exception:
        return None


def _rows(X) -> torch.Tensor:
    """Blades' input: a torch tensor (the cases' float64 copies arrive as numpy)."""
    return torch.as_tensor(X)


class _Row:
    """The one method Blades' ``Centeredclipping`` asks of a client."""

    def __init__(self, x):
        self.x = x

    def get_update(self):
        return self.x


class _Simulator:
    """What Blades' omniscient attackers read: ``_clients`` / ``get_clients()``."""

    def __init__(self, clients):
        self._clients = dict(enumerate(clients))

    def get_clients(self):
        return list(self._clients.values())


class Facade:
    """Blades' classes behind ByzFL's names, so ``agree_byzfl``'s pair functions run
    unchanged (``b.agg.Average()(X)`` etc.); ``mods`` is :func:`load`'s dict."""

    def __init__(self, mods: dict):
        self.mods = mods
        agg, att = types.SimpleNamespace(), types.SimpleNamespace()
        agg.Average = lambda: lambda X: mods["aggregators.mean"].Mean()(_rows(X))
        agg.Median = lambda: lambda X: mods["aggregators.median"].Median()(_rows(X))
        agg.TrMean = lambda b: lambda X: mods["aggregators.trimmedmean"].Trimmedmean(nb=b)(_rows(X))
        agg.Krum = lambda f: lambda X: mods["aggregators.krum"].Krum(num_clients=len(X), num_byzantine=f)(_rows(X))
        agg.GeometricMedian = self._weiszfeld
        agg.CenteredClipping = self._centered_clipping
        att.InnerProductManipulation = lambda tau: lambda H: self.omniscient(
            mods["attackers.ipmclient"].IpmClient(epsilon=tau), H)
        att.Gaussian = self._noise
        self.agg, self.att = agg, att

    def _weiszfeld(self, nu, T):
        """``smoothed_weiszfeld`` from z = 0 (ByzFL's start), alpha = 2**64 for every row."""
        def run(X):
            X = _rows(X)
            return self.mods["aggregators.geomed"].smoothed_weiszfeld(
                list(X), [ALPHA] * len(X), torch.zeros_like(X[0]), eps=nu, T=T)
        return run

    def _centered_clipping(self, tau, L):
        """One stateful ``Centeredclipping`` (its center starts at 0 and is kept between calls)."""
        cc = self.mods["aggregators.centeredclipping"].Centeredclipping(tau=tau, n_iter=L)
        return lambda X: cc([_Row(x) for x in _rows(X)])

    def client(self, x=None):
        c = self.mods["client"].BladesClient()
        if x is not None:
            c.save_update(x)
        return c

    def omniscient(self, attacker, H, save_shape_from=None):
        """The attacker's ``omniscient_callback`` with the honest rows ``H`` as clients."""
        H = _rows(H)
        if save_shape_from is not None:
            attacker.save_update(save_shape_from)
        attacker.omniscient_callback(_Simulator([self.client(h) for h in H] + [attacker]))
        return attacker.get_update()

    def _noise(self, mu, sigma):
        """One ``NoiseClient``'s vector: ``torch.normal(mu, sigma, size=(d,))`` (global RNG)."""
        def run(H):
            H = _rows(H)
            noise = self.mods["attackers.noiseclient"].NoiseClient(mean=mu, std=sigma)
            return self.omniscient(noise, H[:0], save_shape_from=H[0])
        return run

    def alie(self, n, f, z=None):
        return self.mods["attackers.alieclient"].AlieClient(num_clients=n, num_byzantine=f, z=z)


# --------------------------------------------------------------------------- definitions written out


def krum_4th_power(G: torch.Tensor, f: int) -> torch.Tensor:
    """Blades' Krum with our helpers: the row minimizing the sum of the n - f - 2 smallest
    ``||x_i - x_j||_2^4`` (our squared distances, squared). Ties: lowest index."""
    S = squared_distances(G, 2.0)
    return G[int(torch.argmin(scores_from_squared(S * S, G.shape[0] - f - 2)))].clone()


def compounding_geomed(G: torch.Tensor, T: int, eps: float = BLADES_EPS) -> np.ndarray:
    """Blades' ``Geomed(maxiter=T, ftol=0)`` as a recursion (float64): ``z_0`` the mean,
    ``w_0 = 1/n``; ``w_t = max(eps, w_{t-1} / max(eps, ||z_{t-1} - x_i||))`` normalized,
    ``z_t = sum_i w_t,i x_i``. Weiszfeld would use ``1/n`` in place of ``w_{t-1}``."""
    X = as64(G)
    w = np.full(len(X), 1.0 / len(X))
    z = X.mean(axis=0)
    for _ in range(T):
        w = np.maximum(eps, w / np.maximum(eps, np.linalg.norm(X - z, axis=1)))
        w /= w.sum()
        z = w @ X
    return z


def _objective(z, G) -> float:
    return float(np.linalg.norm(as64(G) - as64(z), axis=1).sum())


# --------------------------------------------------------------------------- pairs (Blades-only)


def _no_far(c):
    if c.variant == "far":
        raise Excluded("far row: Blades' Trimmedmean sums it and subtracts it (cancellation); see the far-row pair")


def r_trimmed(c, b):
    _no_far(c)
    return ab.r_trimmed(c, b)


def r_trimmed_far(c, b):
    """Far row only: ``max|ours - Blades| / max|G|`` (Blades' cancellation error scales with
    the largest value it sums, ~ n eps max|G|)."""
    if c.variant != "far":
        raise Excluded("no far row: compared elementwise in the plain pair")
    big = float(np.abs(as64(c.G)).max())
    out = []
    for f in c.fs:
        diff = float(np.abs(as64(trimmed_mean(c.G, f)) - as64(b.agg.TrMean(f)(c.byz()))).max())
        out.append(Metric(diff, diff / big, f"f=b={f}, relative to max|G| = {big:.3g}"))
    return out


def r_krum_4th(c, b):
    out = [(krum_4th_power(c.G, f), b.agg.Krum(f)(c.byz()), f"f={f}, n-f-2={c.n - f - 2} neighbours")
           for f in c.fs if 2 * f + 2 <= c.n]
    if not out:
        raise Excluded("Blades' Krum needs n >= 2f + 2")
    return out


def r_geomed_one_step(c, b):
    """One step of both from the mean: ours' smoothed Weiszfeld (nu = eps) against Blades'
    ``Geomed(maxiter=1)``, whose weights are then still ``(1/n) / max(eps, d_i)`` unless
    floored at eps (a row farther than 1/(n eps) from the mean: excluded)."""
    z0 = c.G.mean(dim=0)
    dist = torch.linalg.vector_norm((c.G - z0).double(), dim=1)
    if bool((dist > 1.0 / (c.n * BLADES_EPS)).any()):
        raise Excluded("a row farther than 1/(n eps) from the mean: Blades floors its weight at eps")
    res = geomed_solve(c.G, 2.0, nu=BLADES_EPS, max_iter=1, tol=0.0, start=z0, memory=0, span=False)
    theirs = b.mods["aggregators.geomed"].Geomed(maxiter=1, eps=BLADES_EPS, ftol=0.0)(_rows(c.byz()))
    return [(res.z, theirs, "T=1 from the mean, nu=eps=1e-6")]


def r_geomed_compounding(c, b):
    Geomed = b.mods["aggregators.geomed"].Geomed
    return [(compounding_geomed(c.G, T), Geomed(maxiter=T, eps=BLADES_EPS, ftol=0.0)(_rows(c.byz())), f"T={T}")
            for T in (2, 5, 25)]


def r_geomed_blades_default(c, b):
    """Objective excess of Blades' default ``Geomed()`` over ours' geometric median."""
    theirs = b.mods["aggregators.geomed"].Geomed()(_rows(c.byz()))
    o_ours, o_theirs = _objective(geomed(c.G), c.G), _objective(theirs, c.G)
    X = as64(c.G)
    to_rows = np.linalg.norm(X - as64(theirs), axis=1)
    medoid = int(np.argmin([np.linalg.norm(X - x, axis=1).sum() for x in X]))
    gap = o_theirs - o_ours
    return [Metric(abs(gap), abs(gap) / o_ours, f"objective ours {o_ours:.6g}, Blades {o_theirs:.6g}; Blades' "
                   f"output {to_rows.min():.2g} from row {int(np.argmin(to_rows))}, {to_rows[medoid]:.2g} from the "
                   f"medoid (row {medoid})")]


def r_alie(c, b):
    out = []
    for f, H, v in ab._views(c):
        z = float(b.alie(c.n, f).z_max)
        out += ab._rows_vs(make_attack("alie", z=z)(v), b.omniscient(b.alie(c.n, f), c.byz(H)),
                           f"f={f} ours z = Blades' default z_max = {z:.4f}")
        out += ab._rows_vs(make_attack("alie", z=1.5)(v), b.omniscient(b.alie(c.n, f, z=1.5), c.byz(H)),
                           f"f={f} z=1.5 both")
    return out


def r_alie_defaults(c, b):
    out = []
    for f, H, v in ab._views(c):
        a = b.alie(c.n, f)
        out += ab._rows_vs(make_attack("alie")(v), b.omniscient(a, c.byz(H)),
                           f"f={f} ours z={make_attack('alie').z_for(c.n, f):.4f}, Blades z={float(a.z_max):.4f}")
    return out


def _local_updates(c, b, f, steps):
    """Each of the f Byzantine clients trains a Linear(d, 2) (same start, case dtype) for
    ``steps`` plain-SGD steps (lr 0.1, cross-entropy) on the honest rows with its own
    labels: its honest update (BladesClient) and its sign-flipping one."""
    H = c.G[: c.n - f]
    model = torch.nn.Linear(c.d, 2).to(c.G.dtype)
    gen = torch.Generator().manual_seed(7 * c.seed + f)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(c.G.dtype))
    honest, flipped = [], []
    for k in range(f):
        batches = [(H, (torch.arange(len(H)) + k + s) % 2) for s in range(steps)]
        for cls, acc in ((b.mods["client"].BladesClient, honest),
                         (b.mods["attackers.signflippingclient"].SignflippingClient, flipped)):
            cl = cls()
            cl.set_model(model, torch.optim.SGD, lr=0.1)
            cl.set_loss()
            cl.local_training(num_rounds=1, use_actor=True, data_batches=batches)
            acc.append(cl.get_update())
    return torch.stack(honest), torch.stack(flipped)


def _signflip(c, b, steps):
    out = []
    for f in c.fs:
        own, flipped = _local_updates(c, b, f, steps)
        view = make_view(torch.zeros(c.n - f, own.shape[1], dtype=own.dtype), n=c.n, f=f, own=own)
        out.append((make_attack("sign_flip")(view), flipped, f"f={f}, {steps} local SGD step(s)"))
    return out


def r_signflip(c, b):
    return _signflip(c, b, 1)


def r_signflip_two_steps(c, b):
    return _signflip(c, b, 2)


def r_labelflip(c, b):
    out = []
    for C in (2, 10):
        y = (torch.arange(c.n) * 7) % C
        _, ours = make_attack("label_flip").data_hook(c.G, y, C)
        _, theirs = b.mods["attackers.labelflippingclient"].LabelflippingClient(num_classes=C).on_train_batch_begin(
            c.G, y)
        out.append((ours.double(), theirs.double(), f"num_classes={C}: y -> C - 1 - y"))
    return out


BLADES_BUG = {"krum / Krum (same f)", "geomed / Geomed() default"}

PAIRS = [
    Pair("mean / Mean", "mean(G)", "Mean()", "same definition", ab.r_mean),
    Pair("comed / Median", "comed(G)", "Median()",
         "even n: both the mean of the two middle values (Blades: (median(x) - median(-x)) / 2 with torch's lower "
         "median)", ab.r_median),
    Pair("trimmed_mean / Trimmedmean", "trimmed_mean(G, b)", "Trimmedmean(nb=b)",
         "nb is our b: both drop the b largest and b smallest values per coordinate (Blades lowers nb only when "
         "n <= 2 nb); far-row cases in the next row", r_trimmed),
    Pair("trimmed_mean / Trimmedmean (far row)", "trimmed_mean(G, b)", "Trimmedmean(nb=b)",
         "same definition; Blades sums all n values then subtracts the 2b dropped ones, so the far row's 1e4 "
         "cancels with error ~ n eps max|G|: rel = max|diff| / max|G|", r_trimmed_far),
    Pair("krum 4th power (our helpers) / Krum", "argmin_i sum of n-f-2 smallest ||G_i - G_j||_2^4 "
         "(squared_distances(G)**2, scores_from_squared)", "Krum(num_clients=n, num_byzantine=f)",
         "Blades squares the already squared distances (krum.py: _pairwise_euclidean_distances returns "
         "norm()**2, _compute_scores squares again); same n-f-2 neighbours, lowest index on ties; Blades also "
         "accepts n = 2f+2", r_krum_4th),
    Pair("krum / Krum (same f)", "krum(G, f)", "Krum(num_clients=n, num_byzantine=f)",
         "SUSPECTED BLADES BUG (docstring: squared distances; code: 4th powers): ours' eq. (3) sums squared "
         "distances, so the chosen row differs on some inputs; no f mapping fixes it; informational",
         ab.r_krum_same_f, by_design=True),
    Pair("geomed one step / Geomed(maxiter=1)", "geomed_solve(start=mean, nu=1e-6, max_iter=1, tol=0, memory=0)",
         "Geomed(maxiter=1, eps=1e-6, ftol=0)",
         "the first step of both is the smoothed Weiszfeld step from the mean (weights 1/max(eps, d_i)); "
         "cases where Blades' eps floor on the weights (1/n)/d_i binds are excluded", r_geomed_one_step),
    Pair("compounding recursion / Geomed(maxiter=T)", "compounding_geomed(G, T) (this script, not a rule of ours)",
         "Geomed(maxiter=T, eps=1e-6, ftol=0) T=2,5,25",
         "evidence for Blades' Geomed: its weights are overwritten each step, w_t = max(eps, w_{t-1} / max(eps, "
         "d_i)) normalized, so they compound (Weiszfeld: 1/d_i(z_t) each step)", r_geomed_compounding),
    Pair("geomed / Geomed() default", "geomed(G)", "Geomed() (maxiter=100, eps=1e-6, ftol=1e-10)",
         "SUSPECTED BLADES BUG: the compounding weights drive Blades' Geomed to one input row (often the "
         "medoid), not the geometric median: rel = objective excess over ours; informational",
         r_geomed_blades_default, iterative=True, by_design=True),
    Pair("geomed fixed T / smoothed_weiszfeld(T)", "geomed_solve(start=0, nu=0.1, max_iter=T, tol=0, memory=0)",
         "smoothed_weiszfeld(rows, alphas=2**64, z=0, eps=0.1, T) T=1,3,25 (defined, unused in Blades)",
         "same smoothed Weiszfeld step from z = 0 without acceleration (agree_byzfl.r_geomed_fixed: one-sided "
         "once a step raises the true objective); alpha = 2**64 keeps Blades' weight floor max(eps, .) off",
         ab.r_geomed_fixed),
    Pair("geomed converged / smoothed_weiszfeld(T=3000)", "geomed(G) (default, to tol 1e-7)",
         f"smoothed_weiszfeld(alphas=2**64, z=0, eps={ab.GM_NU_CONVERGED:g}, T={ab.GM_T_CONVERGED})",
         "same minimizer argmin sum ||z - x_i||_2 (d = 1, even n: objective gap)", ab.r_geomed_conv,
         iterative=True),
    Pair("centered_clipping / Centeredclipping", "centered_clip(G, 0, tau, L); CenteredClipping(base=mean) "
         "with center 0 loaded", "Centeredclipping(tau, n_iter=L) (clients with get_update())",
         "same iteration v += mean(clip_tau(x_i - v)); Blades' first center is 0, ours' default base(G): pass "
         "center 0; both keep the output as the next center", ab.r_cc),
    Pair("ipm / IpmClient", "make_attack('ipm', eps)", "IpmClient(epsilon=eps).omniscient_callback",
         "-eps * mean of the honest rows; Blades' epsilon is our eps", ab.r_ipm),
    Pair("alie / AlieClient (z mapped)", "make_attack('alie', z=Blades' z_max); make_attack('alie', z=1.5)",
         "AlieClient(n, f); AlieClient(n, f, z=1.5)",
         "both mu - z*sigma, unbiased std; Blades' default z = Phi^-1((n-f-s)/(n-f)), s = floor(n/2+1) - f: "
         "passed to ours", r_alie),
    Pair("alie / AlieClient (defaults)", "make_attack('alie') (z = Phi^-1((n-s)/n))", "AlieClient(n, f)",
         "BY DESIGN: ours Baruch et al.'s z over all n workers, Blades' over the n-f honest ones (equal only "
         "if s*f = 0); informational", r_alie_defaults, by_design=True),
    Pair("sign_flip (view.own) / SignflippingClient", "make_attack('sign_flip') with view.own = honest updates",
         "SignflippingClient.local_training (1 SGD step)",
         "Blades negates the gradients inside local training; after one plain SGD step (lr 0.1, Linear(d, 2)) "
         "that is -(own honest update) = ours with view.own", r_signflip),
    Pair("sign_flip (view.own) / SignflippingClient (2 steps)", "make_attack('sign_flip') with view.own",
         "SignflippingClient.local_training (2 SGD steps)",
         "BY DESIGN: over several steps Blades' flipped trajectory leaves the honest one (gradients taken at "
         "other points), so it is not -own; informational", r_signflip_two_steps, by_design=True),
    Pair("label_flip / LabelflippingClient", "make_attack('label_flip').data_hook", "LabelflippingClient"
         ".on_train_batch_begin", "data level: y -> C - 1 - y in both", r_labelflip),
    Pair("gaussian / NoiseClient (same stream)", "make_attack('gaussian', sigma=2, center='zero'), view.rng seeded",
         "NoiseClient(mean=0, std=2), torch global seed",
         "N(mean, std^2 I) with Blades' defaults mean = std = 0.1 replaced by 0 / 2; elementwise where the streams "
         "coincide (float32, f*d < 16: agree_byzfl._same_stream); Blades always returns float32", ab.r_gaussian,
         float_only="float32"),
    Pair("gaussian / NoiseClient (distribution)", "make_attack('gaussian', sigma=2, center='zero')",
         "NoiseClient(mean=0, std=2)",
         "where the streams differ (float64 or f*d >= 16; d >= 10): two-sample KS test, D / D_crit at "
         "alpha=1e-3 (agrees when <= 1)", ab.r_gaussian_dist, tol_override=1.0),
]

NO_COUNTERPART = {
    "aggregators": {
        "Autogm": "no rule of ours (geometric median with adaptive, lambda-regularized row weights); it calls "
                  "Blades' Geomed, so it inherits the compounding weights",
        "Clustering": "no rule of ours (2-cluster agglomerative clustering on cosine similarity, mean of the "
                      "larger cluster); also fails with scikit-learn >= 1.4 (AgglomerativeClustering(affinity=) "
                      "was removed)",
        "Clippedclustering": "no rule of ours (norm clipping at the median of past norms + Clustering); its "
                             "module imports torch._six, removed in torch 2.0, so it does not import here",
        "Fltrust": "no rule of ours (needs a trusted client's update)",
        "ByzantineSGD / Safeguard": "not exported by blades.aggregators; stateful over an optimizer / need "
                                    "modules Blades 0.0.13 does not ship (safeguard imports simulator.utils)",
        "_AnchorClipping / _AsyncCenteredClipping / _AsyncMean / _DecentralizedAggregator": "private "
                                    "decentralized / asynchronous variants; no counterpart",
        "ours: multi_krum, bulyan, mixtailor, nnm, bucketing, clipping wrappers, geomed / krum with p != 2":
            "no Blades 0.0.13 counterpart (its Krum fixes m = 1)",
    },
    "attacks": {
        "ours: fang_krum, fang_trim, min_max, min_sum, mimic, random_eps, adaptive, gaussian center='honest'":
            "no Blades 0.0.13 counterpart",
        "sign_flip without view.own": "ours then sends -mean of the honest rows (IPM with eps=1, compared in "
                                      "the IPM row); Blades' sign flip always uses the client's own gradient",
    },
}


def _blades_words(text: str) -> str:
    """The reused pair functions' wording, for Blades (which gets a tensor, never numpy)."""
    return text.replace("ByzFL's", "Blades'").replace("ByzFL", "Blades").replace("numpy input", "float64 input")


def _relabel(rows: list[dict]) -> list[dict]:
    """``agree_byzfl.Stat.row`` names the other side 'byzfl': rename it, and mark suspected
    Blades bugs as such."""
    for r in rows:
        r["blades"] = r.pop("byzfl")
        if r["pair"] in BLADES_BUG:
            r["expected"] = "differs (suspected Blades bug)"
        r["worst_case"] = _blades_words(r["worst_case"])
        r["excluded"] = {_blades_words(k): v for k, v in r["excluded"].items()}
        for fl in r["failures"]:
            fl["detail"] = _blades_words(fl["detail"])
    return rows


def compare(fac: Facade, cases, pairs=PAIRS) -> list[dict]:
    return _relabel(ab.compare(fac, cases, pairs))


def main(argv=None) -> int:
    args = ab.parse_args(argv, __doc__, OUT)
    mods = load()
    if mods is None:
        print("agree_blades: Blades is not importable in this Python; nothing compared "
              "(run it with e.g. /tmp/blades-venv/bin/python)")
        return 0
    rows, result = ab.run_cases(compare, Facade(mods), args.quick, "Blades", {"blades_version": blades_version()})
    result["setting"].update(blades_input="a torch tensor of the case's dtype",
                             rel="max|ours - blades| / max(|ours|_inf, |blades|_inf, median_i |G_i|_inf) unless "
                                 "the row's note says otherwise")
    result.update(pairs=rows, no_counterpart=NO_COUNTERPART, real_disagreements=result.pop("real_disagreements"))
    return ab.finish(rows, result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
