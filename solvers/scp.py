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
3. Evaluate the real rules at the candidate. Accept if the true objective
   drops (then ``r <- 2r``), else ``r <- r / 4``; stop when ``r < r_min``
   (``feasible``, a local optimum of the piecewise model) or after
   ``max_iter`` iterations (``budget``).

Start: the best rows of the line search (``-t sum_i V_i`` with the filter's
spread), so SCP never returns worse rows than the 1-D attack.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .line import line_rows, solve_line
from .linearize import rule_gradient
from .problems import Instance
from .solution import filter_holds, make_solution, unique_rules

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


def _subproblem(inst, Bk, phi, G, w, r, solver):
    """The convex model; returns the step ``Delta`` (numpy ``[f, d]``) or None."""
    f, d = Bk.shape
    identical = inst.structure == "suboptimal"
    filt = inst.structure == "optimal" and inst.eps > 0 and f >= 2
    if identical:
        G = G.sum(1, keepdims=True)
    if inst.kind != "max" and not filt:
        g = np.tensordot(w, G, 1) if inst.kind == "expected" else G[0]
        step = -r * np.sign(g)
        return np.broadcast_to(step, (f, d)).copy()
    import cvxpy as cp  # here, not at the top: importing cvxpy takes ~1 s and the line search needs none of it

    D = cp.Variable((1, d)) if identical else cp.Variable((f, d))
    cons = [cp.abs(D) <= r]
    lin = [phi[m] + cp.sum(cp.multiply(G[m], D)) for m in range(len(phi))]
    if inst.kind == "max":
        xi = cp.Variable()
        cons += [e <= xi for e in lin]
        objective = xi
    elif inst.kind == "expected":
        objective = sum(float(w[m]) * lin[m] for m in range(len(phi)))
    else:
        objective = lin[0]
    if filt:
        p = inst.eps_p
        for i in range(f):
            for j in range(i + 1, f):
                x = Bk[i] - Bk[j]
                if p == 2:
                    nx = np.linalg.norm(x)
                    a = x / nx
                elif p == 1:
                    a = np.sign(x)
                    nx = np.abs(x).sum()
                elif math.isinf(p):
                    k = int(np.argmax(np.abs(x)))
                    a = np.zeros(d)
                    a[k] = np.sign(x[k])
                    nx = abs(x[k])
                else:
                    nx = np.linalg.norm(x, p)
                    a = np.sign(x) * (np.abs(x) / nx) ** (p - 1)
                cons.append(nx + a @ (D[i] - D[j]) >= inst.eps)
    prob = cp.Problem(cp.Minimize(objective), cons)
    try:
        prob.solve(solver=solver)
    except cp.error.SolverError:
        return None
    if D.value is None:
        return None
    return np.broadcast_to(D.value, (f, d)).copy()


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
    if inst.structure != "optimal" and inst.eps > 0 and inst.f >= 2:
        return make_solution(inst, line_rows(inst, [0.0])[0], method="scp", status="infeasible", t0=t0,
                             info=dict(reason="identical rows cannot be eps apart"))
    uniq, _, w = unique_rules(inst.rules, inst.weights)
    if opts["init"] is None:
        t_best, _, linfo = solve_line(inst, **opts["line_options"])
        B = line_rows(inst, [t_best])[0].double()
    else:
        B = torch.as_tensor(opts["init"]).to(inst.R.device).double().reshape(inst.f, inst.d)
    scale = float((inst.R.double() - inst.R.double().mean(0)).abs().max())
    scale = scale if scale > 0 else float(inst.R.double().abs().max()) or 1.0
    r = opts["radius"] if opts["radius"] is not None else 0.5 * scale
    r_min = opts["r_min"] if opts["r_min"] is not None else 1e-7 * scale
    phi, G = linearize(inst, B, uniq)
    score = _score(inst, phi, w)
    it, accepted, status = 0, 0, "budget"
    history = [score]
    for it in range(1, opts["max_iter"] + 1):
        D = _subproblem(inst, B.cpu().numpy(), phi, G, w, r, opts["solver"])
        if D is None or not np.any(D):
            r /= 4
        else:
            Bn = B + torch.from_numpy(D).to(B.device)
            phin, Gn = linearize(inst, Bn, uniq)
            sn = _score(inst, phin, w)
            if sn < score - 1e-12 * (1 + abs(score)) and filter_holds(inst, Bn):
                B, phi, G, score = Bn, phin, Gn, sn
                r = min(2 * r, 1e3 * scale)
                accepted += 1
                history.append(score)
            else:
                r /= 4
        if r < r_min:
            status = "feasible"
            break
    info = dict(accepted=accepted, radius=r, history=history)
    return make_solution(inst, B, method="scp", status=status, t0=t0, iterations=it, info=info,
                         tol=opts["tol"])
