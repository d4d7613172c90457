"""The game layer (layer 4): payoffs, equilibria and vulnerability of a pool.

MixTailor's attacker knows the pool and its probabilities but not the rule
drawn at a step: the defender commits to a mixed strategy over rules. This
package measures payoff matrices attacks x rules (:mod:`.payoff`), computes
the defender's minimax mix (:mod:`.zero_sum`), its optimal commitment in
general-sum games (:mod:`.stackelberg`), the mix against a continuous attack
space (:mod:`.double_oracle`), the vulnerability graph with Proposition 1's
condition (:mod:`.graph`) and pools that maximize the worst-case fraction of
resilient rules (:mod:`.design`). ``mixtailor-game game`` is :mod:`.cli`.
"""

from .design import PoolDesign, design_brute_force, design_greedy, design_ilp, design_pool, worst_fraction
from .double_oracle import DoubleOracleResult, double_oracle, matrix_oracle, solvers_oracle
from .graph import AttackSummary, attack_summaries, vulnerability_graph
from .payoff import (PAYOFFS, PayoffMatrix, Snapshot, defender_loss, load_snapshots, payoff_matrix,
                     payoff_values, synthetic_samples)
from .stackelberg import StackelbergResult, solve_stackelberg
from .zero_sum import ZeroSumResult, best_response_gaps, solve_zero_sum, uniform_exploitability

__all__ = [
    "solve_zero_sum", "ZeroSumResult", "best_response_gaps", "uniform_exploitability",
    "solve_stackelberg", "StackelbergResult",
    "double_oracle", "DoubleOracleResult", "matrix_oracle", "solvers_oracle",
    "vulnerability_graph", "attack_summaries", "AttackSummary",
    "design_pool", "design_greedy", "design_ilp", "design_brute_force", "worst_fraction", "PoolDesign",
    "payoff_matrix", "payoff_values", "PayoffMatrix", "Snapshot", "load_snapshots", "synthetic_samples",
    "defender_loss", "PAYOFFS",
]
