"""Robust aggregation rules and MixTailor pools (layer 1).

Every rule is a pure function (``krum(G, f, p)``) plus a frozen config object
(``Krum(f=2, p=2.0)(G)``); ``make_rule(name, **params)`` builds any of them by
the name the CLI uses. ``G`` is a ``Tensor[n, d]``, one row per worker.

On CPU, rows of ``n * d >= 2**19`` entries run ``torch.compile``d kernels: the
first call of each compiles it (seconds), which pays in a training run or a
solver's search; ``MIXTAILOR_COMPILE=off`` in the environment turns them off for
one-off calls (:mod:`._compile`).
"""

from ._distances import lp_norm_rows, pairwise_distances
from .base import Rule
from .bucketing import Bucketing, bucket_means, bucket_permutation, bucketing
from .clipping import CenteredClipping, centered_clip, clip_rows
from .bulyan import Bulyan, bulyan, bulyan_select
from .geomed import Geomed, GeomedResult, geomed, geomed_solve
from .krum import Krum, MultiKrum, krum, krum_scores, multi_krum
from .mean import Mean, mean
from .median import Comed, comed
from .nnm import NNM, nnm, nnm_mix
from .mixtailor import MixTailor, RulePool, paper_pool, pool_from_families
from .registry import as_rule, make_rule, register, rule_names
from .trimmed import TrimmedMean, trimmed_mean
from .pure import AveragedBucketing, ClippingAt, MixtureMean, pure

__all__ = [
    "Rule", "RulePool", "MixTailor", "paper_pool", "pool_from_families",
    "mean", "comed", "trimmed_mean", "krum", "multi_krum", "krum_scores", "geomed",
    "geomed_solve", "bulyan", "bulyan_select", "pairwise_distances", "lp_norm_rows",
    "Mean", "Comed", "TrimmedMean", "Krum", "MultiKrum", "Geomed", "GeomedResult", "Bulyan",
    "centered_clip", "clip_rows", "CenteredClipping", "bucketing", "bucket_means",
    "bucket_permutation", "Bucketing", "nnm", "nnm_mix", "NNM",
    "make_rule", "rule_names", "register", "as_rule", "pure", "ClippingAt", "AveragedBucketing", "MixtureMean",
]
