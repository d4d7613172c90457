"""The adversary's view and the literature's attacks (layer 3).

``attack = make_attack(name, **params)``; ``attack(view) -> Tensor[f, d]``,
``view = make_view(honest_all, n=..., f=..., knowledge="full" | "partial:K" | "own")``.
Every attack is a frozen dataclass; ``space="model"`` gives its model-space
version (paper A.1.3-A.1.5). ``python -m mixtailor_game.attacks.report``
prints the cosine of every (attack, rule) pair on a fixed synthetic sample.
"""

from .alie import ALIE, alie_z
from .base import Attack
from .fang_krum import FangKrum, FangKrumResult, fang_krum, fang_lambda_max
from .fang_trim import FangTrim, fang_trim_bounds
from .ipm import IPM, RandomEps, ipm
from .labelflip import LabelFlip, flip_labels
from .mimic import Mimic, mimic_target
from .minmax import GammaResult, MinMax, MinSum, gamma_attack
from .noise import GaussianNoise
from .registry import attack_names, attack_params, make_attack
from .signflip import SignFlip
from .view import AdversaryView, make_view

__all__ = [
    "AdversaryView", "make_view", "make_attack", "attack_names", "attack_params", "Attack",
    "IPM", "RandomEps", "ALIE", "FangKrum", "FangTrim", "MinMax", "MinSum", "Mimic",
    "GaussianNoise", "SignFlip", "LabelFlip",
    "ipm", "alie_z", "fang_krum", "fang_lambda_max", "FangKrumResult", "fang_trim_bounds",
    "gamma_attack", "GammaResult", "mimic_target", "flip_labels",
]
