"""``solvers.solve(problem, method=None, **options)``: one entry point for every method.

Methods (one module each): ``"line"`` (1-D global search, :mod:`solvers.line`),
``"milp"`` (exact mixed-integer program for mean / comed / trimmed mean,
:mod:`solvers.milp`), ``"miqcp"`` (exact nonconvex MIQCP with SCIP for Krum and Bulyan(select=krum), alone or
pooled with mean / comed / trimmed mean, :mod:`solvers.miqcp` and
:mod:`solvers.bulyan_exact`; needs the optional
``pyscipopt``), ``"scp"`` (sequential convex programming for f free rows,
:mod:`solvers.scp`), ``"relax"`` (convex piecewise-linear relaxation of the 1-D
problem, :mod:`solvers.relax`), ``"coordinatewise"`` (exact closed forms when every
rule is comed / trimmed mean with b >= f, :mod:`solvers.coordinatewise`).
``method=None`` picks, in order:

1. ``"line"`` for the 1-D structure (P3, ``structure="line"``); then
   ``"coordinatewise"`` when every rule is comed / trimmed mean with b >= f (exact
   closed forms at any size, :mod:`solvers.coordinatewise`);
2. ``"milp"`` when every rule is mean / comed / trimmed mean, ``f <= 4`` and
   ``n * d <= milp_max_size`` (400), and the filter norm is l_1 / l_inf (or d = 1);
3. ``"miqcp"`` when some rule is Krum or Bulyan(select=krum), every rule is
   Krum / Bulyan / mean / comed / trimmed mean as ``miqcp_applicable`` allows,
   ``n <= 7``, ``d <= 3`` (``d <= 2`` with Bulyan: 2-15 s measured, d = 3 untested),
   there is no similarity filter (``eps = 0``) and ``pyscipopt`` is importable
   (else the next item applies); its default ``time_limit`` is 60 s;
4. ``"line"`` for a tailored ``"lambda"`` problem (exact equality is out of
   reach of first-order methods);
5. ``"scp"`` otherwise (started from the best point of the line search).

The solution records the method used (``solution.method``).
"""

from __future__ import annotations

from mixtailor_game._checks import check_int
from mixtailor_game.rules import Bulyan, Krum

from . import coordinatewise, line, milp, miqcp, relax, scp
from .coordinatewise import coordinatewise_applicable, method_coordinatewise
from .line import method_line
from .milp import milp_applicable, method_milp
from .miqcp import method_miqcp, miqcp_applicable, scip_available
from .problems import ExpectedValue, Instance, P1, P2, P3, TailoredAttack
from .relax import method_relax
from .scp import method_scp
from .solution import AttackSolution

METHODS = {"line": method_line, "milp": method_milp, "miqcp": method_miqcp, "scp": method_scp,
           "relax": method_relax, "coordinatewise": method_coordinatewise}
# The options each method takes (its module's OPTIONS), to say which method an option
# belongs to when the automatic choice picked another
METHOD_OPTIONS = {"line": line.OPTIONS, "milp": milp.OPTIONS, "miqcp": miqcp.OPTIONS, "scp": scp.OPTIONS,
                  "relax": relax.OPTIONS, "coordinatewise": coordinatewise.OPTIONS}
MIQCP_MAX_N, MIQCP_MAX_D = 7, 3  # auto picks "miqcp" up to these sizes (seconds to ~a minute)
MIQCP_BULYAN_MAX_D = 2           # with Bulyan in the pool (n = 7, f = 1): seconds at d <= 2
PROBLEMS = (TailoredAttack, P1, P2, P3, ExpectedValue)


def choose_method(problem, milp_max_size: int = 400) -> str:
    """The method ``solve(problem)`` uses when none is given (see the module docstring);
    ``problem``: a problem of :mod:`solvers.problems` or its compiled :class:`Instance`."""
    if isinstance(problem, PROBLEMS):
        problem = problem.compile()
    elif not isinstance(problem, Instance):
        raise TypeError(f"solvers.choose_method: problem must be one of {[p.__name__ for p in PROBLEMS]} or an "
                        f"Instance, got {type(problem).__name__}")
    inst = problem
    if inst.structure == "line":
        return "line"
    if coordinatewise_applicable(inst) is None:
        return "coordinatewise"  # exact closed forms, at any size
    if milp_applicable(inst) is None and inst.n * inst.d <= milp_max_size:
        return "milp"
    has_bulyan = any(type(r) is Bulyan for r in inst.rules)
    max_d = MIQCP_BULYAN_MAX_D if has_bulyan else MIQCP_MAX_D
    if (any(type(r) in (Krum, Bulyan) for r in inst.rules) and inst.n <= MIQCP_MAX_N and inst.d <= max_d
            and not inst.eps > 0 and miqcp_applicable(inst) is None and scip_available()):
        return "miqcp"
    if inst.objective == "lambda":
        return "line"
    return "scp"


def solve(problem, method: str | None = None, **options) -> AttackSolution:
    """Solve one problem of :mod:`solvers.problems`; returns an :class:`AttackSolution`.

    Errors: ``TypeError`` for an object that is not a problem, ``ValueError``
    for an unknown method or option (with ``method=None``, an option the chosen
    method does not take: the message names that method and the ones that take
    it), or a method that does not apply (the message says why). An infeasible problem is a result (status
    ``"infeasible"``), not an exception.

    >>> import torch
    >>> from mixtailor_game.rules import Comed
    >>> V = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    >>> sol = solve(P3(V, f=1, pool=[Comed(f=1)]))
    >>> (sol.method, sol.status, round(sol.value, 4))
    ('line', 'optimal', 5.0)
    """
    if not isinstance(problem, PROBLEMS):
        raise TypeError(f"solvers.solve: problem must be one of {[p.__name__ for p in PROBLEMS]}, "
                        f"got {type(problem).__name__}")
    if not (method is None or (isinstance(method, str) and method in METHODS)):  # a list raised "unhashable"
        raise ValueError(f"solvers.solve: method must be one of {sorted(METHODS)} or None, got {method!r}")
    inst = problem.compile()
    if method is None:  # "coordinatewise" returned before the size was compared: "x" passed
        method = choose_method(inst, check_int("solvers.solve", "milp_max_size", options.pop("milp_max_size", 400),
                                               low=0))
        foreign = sorted(set(options) - set(METHOD_OPTIONS[method]))
        if foreign:  # e.g. time_limit (milp / miqcp) when the choice was scp
            takes = {m: sorted(set(foreign) & set(o)) for m, o in METHOD_OPTIONS.items() if set(foreign) & set(o)}
            raise ValueError(f"solvers.solve: options {foreign} do not apply to method {method!r}, chosen "
                             f"automatically for this problem (it takes {sorted(METHOD_OPTIONS[method])}); "
                             f"{'they belong to ' + str(takes) if takes else 'no method takes them'}: "
                             "pass method=... or drop them")
    return METHODS[method](inst, **options)
