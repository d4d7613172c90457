"""Method ``"scp"``: sequential convex programming for f free rows (or one replicated row).

Iteration k (a trust-region SCP, as in Mao et al.'s SCvx without the virtual
control; the filter handled as in DCCP, Shen et al. 2016):

1. Linearize every rule at the current rows ``B_k`` with its choices fixed
   (:mod:`solvers.linearize`): ``phi_m(B) ~ phi_m(B_k) + <grad_m, B - B_k>`` with
   ``phi_m(B) = <AGG_m(B, R) - w_0, u>``: Krum's selected row, the order
   statistics comed / trimmed mean average, the Weiszfeld weights of the
   geometric median, Bulyan's selected rows; ``phi_m(B_k)`` itself always comes
   from the real rule.
2. Solve the convex subproblem in cvxpy: ``min xi`` s.t. the linearized
   ``phi_m <= xi`` (max objective; ``sum_m p_m phi_m`` for the expectation, one
   ``phi`` for a tailored attack), ``||B - B_k||_inf <= r`` (trust region), and the
   filter ``||B_i - B_j|| >= eps`` replaced by its linearization at ``B_k``,
   ``<a_ij, B_i - B_j> >= eps`` with ``a_ij = (B_i - B_j) / ||B_i - B_j||`` (for l_2; the
   sign / subgradient of the l_1 / l_inf norm otherwise): a convex function is
   above its tangent, so every point the linearized filter accepts passes the
   true filter (the convex-concave procedure). An LP; a closed form
   ``-r sign(grad)`` when the objective is linear and there is no filter.
   The filter is linearized against ``eps (1 + 1e-6)`` plus a few ulps of the
   rows' magnitude in the problem's dtype, so accepted rows still pass the
   filter after the cast back to that dtype. Where ``B_i = B_j`` the tangent is
   ``e_k`` (k = the coordinate of smallest ``|u|``): ``||y||_p >= y_k`` for every p.
   The LP is solved in normalized units (steps divided by the data scale, the
   objective centred on the current score and divided by its magnitude), so
   the solver's absolute tolerances do not depend on the data's magnitude.
3. Evaluate the real rules at the candidate. Accept if the true objective
   drops and the filter holds in the problem's dtype (then ``r <- 2r``), else
   ``r <- r / 4``. Phase 1: while the current rows break the filter, the LP
   only minimizes the linearized violation, and a step is accepted when it
   reduces the violation, whatever the score does.
4. Stop when ``r < r_min`` (``feasible``, a local optimum of the piecewise
   model) or after ``max_iter`` iterations (``budget``). A subproblem counts
   only when cvxpy reports ``optimal`` / ``optimal_inaccurate``; failures are
   counted in ``info["failed_subproblems"]``, and a run whose radius fell
   through failed subproblems (any failure since the last accepted step) ends
   ``budget`` with ``info["reason"]``, never ``feasible``.

Start: the best rows of the line search (``-t sum_i V_i`` with the filter's
spread), so SCP never returns worse rows than the 1-D attack; or ``init``
(finite, shape ``(f, d)`` or ``(d,)``; identical rows for ``"suboptimal"``).
Options are validated up front (``max_iter`` int >= 0, ``radius`` finite > 0,
``r_min`` finite >= 0, ``line_options`` a dict, ``solver`` installed in cvxpy).
A linear model that is not finite (inner products beyond float64) raises.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from mixtailor_game._checks import check_int, check_real, fail

from .line import line_rows, solve_line
from .linearize import rule_gradient
from .problems import Instance
from .solution import filter_holds, filter_ignored, make_solution, pair_distances, unique_rules

_W = "solvers.scp"
OK_STATUSES = ("optimal", "optimal_inaccurate")
OPTIONS = ("max_iter", "radius", "r_min", "init", "line_options", "solver", "tol")


def linearize(inst: Instance, B: torch.Tensor, uniq, grads: bool = True):
    """``phi_m`` at ``B`` (float64 numpy ``[U]``) from the real rules, and the gradients
    ``[U, f, d]`` of their fixed-choice linear models (:mod:`solvers.linearize`)."""
    R = inst.R.double()
    u, o = inst.u.double(), inst.offset.double()
    G = torch.cat([B.double(), R], 0)
    phis, gs = [], []
    for r in uniq:
        phis.append(float((r(G).double() - o) @ u))
        if grads:
            gs.append(rule_gradient(r, G, u, inst.f))
    return np.asarray(phis), (torch.stack(gs).cpu().numpy() if grads else None)


def _score(inst, phi, w):
    if inst.kind == "max":
        return float(phi.max())
    if inst.kind == "expected":
        return float(phi @ w)
    return float(phi[0])


def _tangent(x: np.ndarray, p: float, k0: int):
    """``(||x||_p, a)`` with ``a`` a dual-norm unit subgradient of ``||.||_p`` at ``x``.

    Computed on ``x / max|x|`` so it cannot underflow; at ``x = 0`` any dual unit
    vector is a subgradient, and ``e_k0`` is one for every p."""
    m = float(np.abs(x).max()) if x.size else 0.0
    if not m > 0:
        a = np.zeros_like(x)
        a[k0] = 1.0
        return 0.0, a
    y = x / m
    if p == 2:
        ny = np.linalg.norm(y)
        a = y / ny
    elif p == 1:
        ny, a = np.abs(y).sum(), np.sign(y)
    elif math.isinf(p):
        k = int(np.argmax(np.abs(y)))
        ny, a = abs(y[k]), np.zeros_like(y)
        a[k] = np.sign(y[k])
    else:
        ny = np.linalg.norm(y, p)
        a = np.sign(y) * (np.abs(y) / ny) ** (p - 1)
    return m * float(ny), a


def _filter_margin(inst, Bk: np.ndarray, r: float) -> float:
    """``eps`` plus a margin: ``1e-6`` relative and a few ulps (in ``inst.R``'s
    dtype) of the rows' magnitude, so the rows pass after the cast to that dtype."""
    ulp = float(torch.finfo(inst.R.dtype).eps) * (float(np.abs(Bk).max()) + r)
    p = inst.eps_p
    spread = 1.0 if math.isinf(p) else inst.d ** (1.0 / p)  # worst rounding of a difference, in l_p
    return inst.eps * (1 + 1e-6) + 2 * spread * ulp  # rounding each row moves a difference <= ulp per coordinate


def violation(inst, B: torch.Tensor) -> float:
    """``max(0, eps - min_ij ||B_i - B_j||)`` with the rows in ``inst.R``'s dtype."""
    if inst.eps <= 0 or B.shape[0] < 2:
        return 0.0
    dist = pair_distances(B.to(inst.R.dtype), inst.eps_p)
    return max(0.0, inst.eps - float(dist.min()))


def _subproblem(inst, Bk, phi, G, w, r, solver, scale, phase1=False):
    """The convex model; returns ``(Delta, status)``: the step (numpy ``[f, d]``,
    None when the solve failed) and cvxpy's status (``"closed_form"`` without LP)."""
    f, d = Bk.shape
    identical = inst.structure == "suboptimal"
    filt = inst.structure == "optimal" and inst.eps > 0 and f >= 2
    if identical:
        G = G.sum(1, keepdims=True)
    if inst.kind != "max" and not filt:
        g = np.tensordot(w, G, 1) if inst.kind == "expected" else G[0]
        step = -r * np.sign(g)
        return np.broadcast_to(step, (f, d)).copy(), "closed_form"
    import cvxpy as cp  # here, not at the top: importing cvxpy takes ~1 s and the line search needs none of it

    # normalized units: D = scale * Dn; objective centred on the score, divided by its magnitude
    s0 = _score(inst, phi, w)
    c = max(scale * float(np.abs(G).sum(axis=(1, 2)).max()), float(np.abs(phi - s0).max()), 1e-300)
    phin, Gn = (phi - s0) / c, G * (scale / c)
    Dn = cp.Variable((1, d)) if identical else cp.Variable((f, d))
    cons = [cp.abs(Dn) <= r / scale]
    lin = [phin[m] + cp.sum(cp.multiply(Gn[m], Dn)) for m in range(len(phi))]
    if inst.kind == "max":
        xi = cp.Variable()
        cons += [e <= xi for e in lin]
        objective = xi
    elif inst.kind == "expected":
        objective = sum(float(w[m]) * lin[m] for m in range(len(phi)))
    else:
        objective = lin[0]
    if filt:
        eps_m = _filter_margin(inst, Bk, r) / scale
        k0 = int(torch.argmin(inst.u.abs()))
        slack = cp.Variable(nonneg=True) if phase1 else 0.0
        for i in range(f):
            for j in range(i + 1, f):
                nx, a = _tangent(Bk[i] - Bk[j], inst.eps_p, k0)
                # a pair already >= eps but inside the margin must not shrink (keeps D = 0 feasible)
                target = eps_m if phase1 else min(eps_m, max(nx, inst.eps) / scale)
                cons.append(nx / scale + a @ (Dn[i] - Dn[j]) + slack >= target)
        if phase1:  # the rows break the filter: only reduce the (linearized) violation
            objective = slack
    prob = cp.Problem(cp.Minimize(objective), cons)
    try:
        prob.solve(solver=solver)
    except (cp.error.SolverError, ValueError) as e:
        return None, type(e).__name__
    if prob.status not in OK_STATUSES or Dn.value is None or not np.isfinite(Dn.value).all():
        return None, str(prob.status)
    return np.broadcast_to(scale * Dn.value, (f, d)).copy(), str(prob.status)


def _check_finite(phi, G) -> None:
    """The LP needs a finite linear model; inner products of huge rows overflow float64."""
    if not (np.isfinite(phi).all() and (G is None or np.isfinite(G).all())):
        raise fail(_W, "honest", "rows whose inner products fit in float64 (rescale them)",
                   "a non-finite linear model")


def _check_solver(solver) -> str:
    import cvxpy as cp  # only for runs that solve LPs, see _subproblem

    installed = cp.installed_solvers()
    if not isinstance(solver, str) or solver.upper() not in installed:
        raise fail(_W, "solver", f"one of cvxpy's installed solvers {installed}", solver)
    return solver.upper()


def _check_options(inst, opts) -> dict:
    """Validate the numeric options; ``None`` keeps a default (set from the data's scale)."""
    out = dict(opts)
    out["max_iter"] = check_int(_W, "max_iter", opts["max_iter"], low=0)
    if opts["radius"] is not None:
        out["radius"] = check_real(_W, "radius", opts["radius"], low=0.0, low_open=True)
    if opts["r_min"] is not None:
        out["r_min"] = check_real(_W, "r_min", opts["r_min"], low=0.0)
    out["tol"] = check_real(_W, "tol", opts["tol"], low=0.0)
    if not isinstance(opts["line_options"], dict):
        raise fail(_W, "line_options", "a dict of solvers.line options", opts["line_options"])
    return out


def _init_rows(inst, init) -> torch.Tensor:
    """``init`` as float64 rows ``[f, d]``: finite, ``(f, d)`` or ``(d,)`` (broadcast);
    identical rows for ``"suboptimal"`` (one row sent f times)."""
    f, d = inst.f, inst.d
    want = f"a finite Tensor of shape ({f}, {d}) or ({d},)"
    try:
        B = torch.as_tensor(init).to(device=inst.R.device, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise fail(_W, "init", want, type(init).__name__) from None
    if B.shape == (d,):
        B = B.expand(f, d)
    if tuple(B.shape) != (f, d):
        raise fail(_W, "init", want, f"shape {tuple(B.shape)}")
    if not torch.isfinite(B).all():
        raise fail(_W, "init", want, "a tensor with NaN/Inf")
    if inst.structure == "suboptimal" and not bool((B == B[0]).all()):
        raise fail(_W, "init", "identical rows for structure='suboptimal'", "different rows")
    return B.clone()


def _accept(inst, Bn, score, sn, viol, phin, Gn, scale) -> bool:
    """Phase 1 (the rows break the filter): any step that reduces the violation.
    Otherwise: a lower true score with the filter holding in the problem's dtype."""
    if not (np.isfinite(phin).all() and np.isfinite(Gn).all()):
        return False
    if viol > 0:
        return violation(inst, Bn) < viol
    # relative to the score's units (scale * |u|), not to 1: the data may be tiny
    tol = 1e-12 * (abs(score) + scale * float(inst.u.double().abs().sum()))
    return sn < score - tol and filter_holds(inst, Bn.to(inst.R.dtype))


def method_scp(inst: Instance, **options):
    """``solvers.solve(problem, method="scp")``; see the module docstring."""
    t0 = time.perf_counter()
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"solvers.scp: options must be among {sorted(OPTIONS)}, got unknown {unknown}")
    if inst.structure == "line":
        raise ValueError("solvers.scp: structure must be 'optimal' or 'suboptimal', got 'line' (use method='line')")
    if inst.objective == "lambda":
        raise ValueError("solvers.scp: objective must be 'inner' (exact anti-alignment is not a smooth "
                         "objective), got 'lambda' (use method='line' or 'milp')")
    opts = dict(max_iter=50, radius=None, r_min=None, init=None, line_options={}, solver="CLARABEL", tol=1e-6)
    opts.update(options)
    opts = _check_options(inst, opts)
    filt = inst.structure == "optimal" and inst.eps > 0 and inst.f >= 2
    if inst.kind == "max" or filt or "solver" in options:  # the LP path (or an explicit request)
        opts["solver"] = _check_solver(opts["solver"])
    if opts["init"] is not None:
        B = _init_rows(inst, opts["init"])
    if inst.structure != "optimal" and inst.eps > 0 and inst.f >= 2:
        return filter_ignored(inst, method_scp, "scp", t0, **options)
    uniq, _, w = unique_rules(inst.rules, inst.weights)
    if opts["init"] is None:
        t_best, _, linfo = solve_line(inst, **opts["line_options"])
        B = line_rows(inst, [t_best])[0].double()
    scale = float((inst.R.double() - inst.R.double().mean(0)).abs().max())
    scale = scale if scale > 0 else float(inst.R.double().abs().max()) or 1.0
    r = opts["radius"] if opts["radius"] is not None else 0.5 * scale
    r_min = opts["r_min"] if opts["r_min"] is not None else 1e-7 * scale
    phi, G = linearize(inst, B, uniq)
    _check_finite(phi, G)
    score = _score(inst, phi, w)
    viol = violation(inst, B)
    it, accepted, failed, failed_since, status = 0, 0, 0, 0, "budget"
    history, last_fail = [score], None
    for it in range(1, opts["max_iter"] + 1):
        D, sp_status = _subproblem(inst, B.cpu().numpy(), phi, G, w, r, opts["solver"], scale, phase1=viol > 0)
        if D is None:  # a failed solve says nothing about the model: count it
            failed, failed_since, last_fail = failed + 1, failed_since + 1, sp_status
            r /= 4
        elif not np.any(D):
            r /= 4
        else:
            Bn = B + torch.from_numpy(D).to(B.device)
            phin, Gn = linearize(inst, Bn, uniq)
            sn = _score(inst, phin, w)
            if _accept(inst, Bn, score, sn, viol, phin, Gn, scale):
                B, phi, G, score, viol = Bn, phin, Gn, sn, violation(inst, Bn)
                r = min(2 * r, 1e3 * scale)
                accepted, failed_since = accepted + 1, 0
                history.append(score)
            else:
                r /= 4
        if r < r_min:
            status = "feasible"
            break
    info = dict(accepted=accepted, radius=r, history=history, failed_subproblems=failed)
    if status == "feasible" and failed_since:  # the radius shrank through failed solves: no local optimum shown
        status = "budget"
        info["reason"] = (f"{failed_since} subproblem(s) failed since the last accepted step "
                          f"(last cvxpy status {last_fail!r}); not a local optimum")
    return make_solution(inst, B, method="scp", status=status, t0=t0, iterations=it, info=info,
                         tol=opts["tol"])
