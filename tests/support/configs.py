"""Tiny model configurations: real training code paths at a size that trains in seconds on a CPU."""

from __future__ import annotations

import dataclasses

from pipeline.models.baselines import BiasedMFConfig, EASEConfig
from pipeline.models.hybrid.config import HybridConfig

# The hybrid network at toy width: three epochs, no early stopping (no validation split).
TINY = HybridConfig(
    epochs=3,
    patience=0,
    embedding_dim=16,
    person_dim=8,
    mlp=(32, 16),
    content_mlp=(32, 16),
    batch_size=2048,
    negatives=512,
)

# Two epochs with a validation split (patience > 0): the history carries val_rmse, as a weekly training's does.
TINY_VALIDATED = dataclasses.replace(TINY, epochs=2, patience=2, negatives=256)

# What the recommender contract fits, three times per model: one epoch is enough to check the contract.
TINY_CONTRACT = dataclasses.replace(TINY, epochs=1)

SMALL_MF = BiasedMFConfig(factors=16, epochs=5)
SMALL_EASE = EASEConfig(lam=100.0)
