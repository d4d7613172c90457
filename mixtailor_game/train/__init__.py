"""The simulated trainer (layer 4): n workers, f Byzantine, an adversary, one server.

``Trainer(config, out).run()`` / ``train(config, out)`` run one training job
described by a :class:`TrainConfig` into a run directory (``config.json``,
``metrics.jsonl``, ``summary.json``, ``checkpoint.pt``); rerunning with the
same directory resumes. The CLI (``mixtailor-game train | compare | plot``)
lives in :mod:`mixtailor_game.train.cli`; per-worker gradients in
:mod:`mixtailor_game.train.engines`.
"""

from .config import TrainConfig, parse_probs
from .rundir import plot_runs, read_metrics
from .trainer import Trainer, build_server, train

__all__ = ["TrainConfig", "Trainer", "train", "build_server", "parse_probs", "read_metrics", "plot_runs"]
