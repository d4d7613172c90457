"""Empirical checks of the paper's results (layer 4).

``python -m mixtailor_game.verify theorem1 | theorem2 | proposition1`` runs a
Monte Carlo check of Theorem 1 / Theorem 2 (bias of generalized Krum under a
worst-case adversary search) or Proposition 1 (sufficient condition for a
mixed pool), prints a table and exits 0 when every case holds.
"""

from .adversaries import Family, builtin_families, largest_selected, registry_families
from .estimate import Estimate, bias_squared, mean_estimate, moment_ratios
from .krum_bias import grid_cases, run_case
from .report import exit_code, positivity_verdict, upper_bound_verdict

__all__ = [
    "Estimate", "bias_squared", "mean_estimate", "moment_ratios", "Family", "builtin_families",
    "largest_selected", "registry_families", "grid_cases", "run_case", "exit_code",
    "upper_bound_verdict", "positivity_verdict",
]
