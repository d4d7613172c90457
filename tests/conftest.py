"""Shared test settings: a hypothesis profile that fits CI's 2 cores."""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Two cores on CI: keep torch from oversubscribing them in tests.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
