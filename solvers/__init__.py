"""Solvers for the attack problems of the MixTailor paper (layer 2).

Problems (frozen dataclasses, :mod:`solvers.problems`): :class:`TailoredAttack`
(Section 2.3, A.1), :class:`P1`, :class:`P2`, :class:`P3` (A.4) and
:class:`ExpectedValue`. ``solve(problem, method=None, **options)`` returns an
:class:`AttackSolution` whose values are recomputed with the real rules.
Imports only :mod:`mixtailor_game.rules` (and the shared input checks).
"""

from .problems import ExpectedValue, Instance, P1, P2, P3, TailoredAttack, as_pool
from .solution import AttackSolution, evaluate
from .solve import METHODS, choose_method, solve

__all__ = ["TailoredAttack", "P1", "P2", "P3", "ExpectedValue", "AttackSolution", "solve",
           "choose_method", "METHODS", "evaluate", "as_pool", "Instance"]
