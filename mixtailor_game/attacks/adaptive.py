"""The adaptive attack: solve one of the paper's attack problems at every step.

``AdaptiveAttack(problem="expected")(view)`` builds a problem of :mod:`solvers`
from what the view allows (the visible honest rows, ``view.own`` when none is
visible, ``n``, ``f`` and the known defense) and returns the solver's rows:

- ``"expected"``: :class:`solvers.ExpectedValue` (``min E_m <AGG_m, mu>`` under the
  pool's probabilities; a single rule is a pool of one): the natural attacker
  of MixTailor;
- ``"p3"``: :class:`solvers.P3` (``min_lambda max_m``, rows ``-lambda sum_i V_i``);
- ``"p2"``: :class:`solvers.P2` (``min max_m`` over f free rows with the filter ``eps``);
- ``"tailored"``: :class:`solvers.TailoredAttack` against one rule (the view's
  defense must be a single rule), objective ``"inner"`` by default.

Under partial knowledge the unseen honest rows are the mean of the rows the
adversary has, ``view.own`` and the seen ones (paper A.1.2); ``view.own`` is
also the Byzantines' ``g_1..g_f`` of the no-attack aggregate. Model space is handled by :class:`Attack` (the attack runs on
``w_0 - w_i`` and sends ``w_0 - B``). The latest solution is kept in
``attack.last_solution`` for logging. Not in the paper as an attack (the paper
leaves P1-P3 open); compare IPM / ALIE, which fix the direction and the scale.

Parameters: ``problem`` as above; ``method`` (``None`` = auto, or ``"line"``,
``"milp"``, ``"scp"``, ``"relax"``); ``eps >= 0`` (filter, for ``p2`` /
``expected``); ``structure`` (``None`` = the problem's default: for ``expected``
``"line"``, or ``"optimal"`` (rows spread ``eps`` apart along it) when ``eps > 0``;
not for ``p3``); ``objective``
(tailored only); ``options``: a dict of solver options.

>>> import torch
>>> from mixtailor_game.attacks import make_view
>>> from mixtailor_game.rules import Comed
>>> view = make_view(torch.tensor([[1.0], [2.0], [3.0], [4.0]]), n=5, f=1, defense=Comed(f=1))
>>> AdaptiveAttack(problem="p3")(view).shape
torch.Size([1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .._checks import check_real, fail
from ..rules.base import finite_rows
from .base import Attack, check_choice

PROBLEMS = ("expected", "p3", "tailored", "p2")
METHODS = (None, "line", "milp", "miqcp", "scp", "relax", "coordinatewise")


@dataclass(frozen=True, kw_only=True)
class AdaptiveAttack(Attack):
    """Solve ``problem`` from the view at every step (see the module docstring)."""

    family: ClassVar[str] = "adaptive"
    problem: str = "expected"
    method: str | None = None
    eps: float = 0.0
    structure: str | None = None
    objective: str = "inner"
    options: dict = field(default_factory=dict, compare=False)
    _state: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def validate(self):
        check_choice("adaptive", "problem", self.problem, PROBLEMS)
        check_choice("adaptive", "method", self.method, METHODS)
        object.__setattr__(self, "eps", check_real("adaptive", "eps", self.eps, low=0.0))
        check_choice("adaptive", "objective", self.objective, ("inner", "lambda"))
        if not isinstance(self.options, dict):
            raise TypeError(f"adaptive: options must be a dict, got {type(self.options).__name__}")
        if self.structure is not None and self.problem == "p3":
            raise fail("adaptive", "structure", "None for problem='p3' (its rows are the line itself)",
                       self.structure)

    @property
    def name(self) -> str:
        parts = [f"problem={self.problem}"]
        if self.method is not None:
            parts.append(f"method={self.method}")
        if self.eps:
            parts.append(f"eps={self.eps:g}")
        if self.structure is not None:
            parts.append(f"structure={self.structure}")
        if self.space != "gradient":
            parts.append(f"space={self.space}")
        return f"adaptive[{','.join(parts)}]"

    @property
    def last_solution(self):
        """The :class:`solvers.AttackSolution` of the latest call (``None`` before any)."""
        return self._state.get("solution")

    def build_problem(self, view):
        """The :mod:`solvers` problem this attack solves for ``view`` (duck-typed)."""
        import solvers

        honest = view.honest
        n, f = int(view.n), int(view.f)
        if honest.shape[0]:
            # a NaN / Inf row counts as unseen (A.1.2 fills it with the mean of the rest), as
            # the other attacks leave it out (view.visible); the problem refused it, and the step
            honest = honest[finite_rows(honest)]
        if honest.shape[0] == 0:
            if getattr(view, "own", None) is None:
                raise ValueError("adaptive: needs visible honest rows or view.own, got k=0 and own=None")
            honest = view.own
        k = int(honest.shape[0])
        knowledge = "full" if k == n - f else ("partial", k)
        defense = view.defense
        if defense is None:
            raise fail("adaptive", "view.defense", "a rule or a RulePool (the attack solves against it)", None)
        if hasattr(defense, "public"):
            defense = defense.public
        common = dict(knowledge=knowledge, n=n)
        if getattr(view, "own", None) is not None:  # the paper's g_1..g_f (A.1.2)
            common["own"] = view.own
        if self.problem == "tailored":
            if hasattr(defense, "rules"):
                if len(defense.rules) != 1:
                    raise fail("adaptive", "view.defense", "a single rule for problem='tailored'",
                               f"a pool of {len(defense.rules)} rules")
                defense = defense.rules[0]
            return solvers.TailoredAttack(honest, f, defense, structure=self.structure or "suboptimal",
                                          objective=self.objective, **common)
        pool = defense if hasattr(defense, "rules") else [defense]
        if self.problem == "p3":
            return solvers.P3(honest, f, pool, **common)
        # with a filter the default rows are spread eps apart along the line ("optimal"):
        # identical rows ("line") cannot pass it, and the attack sent zeros every step
        default = "optimal" if self.eps > 0 else "line"
        structure = self.structure or ("optimal" if self.problem == "p2" else default)
        if self.eps > 0 and f >= 2 and structure != "optimal":
            raise fail("adaptive", "structure", "'optimal' with eps > 0 and f >= 2 (identical rows are never "
                       "eps apart)", structure)
        if self.problem == "p2":
            return solvers.P2(honest, f, pool, eps=self.eps, structure=structure, **common)
        return solvers.ExpectedValue(honest, f, pool, eps=self.eps, structure=structure, **common)

    def craft(self, view) -> torch.Tensor:
        import solvers

        sol = solvers.solve(self.build_problem(view), method=self.method, **self.options)
        self._state["solution"] = sol
        return sol.byzantine.to(device=view.honest.device, dtype=view.honest.dtype)
