"""mixtailor-game: robust aggregation rules, MixTailor pools, tailored attacks,
solvers, a simulated trainer, checkers of the paper's results and a game layer.

Layers (imports only point down, see DESIGN.md):
1. ``mixtailor_game.rules``, ``mixtailor_game.theory``, ``mixtailor_game.data``
2. ``solvers`` (a top-level package)
3. ``mixtailor_game.attacks``
4. ``mixtailor_game.train``, ``mixtailor_game.game``, ``mixtailor_game.verify``, the CLI
"""

__version__ = "0.1.0"
