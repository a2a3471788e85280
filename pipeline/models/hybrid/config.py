"""The hybrid network's hyperparameters: one validated value, logged whole to MLflow and saved with the
model."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from pydantic.dataclasses import dataclass

from pipeline.models.base import HYPERPARAMETERS

# A share of something that must leave some of it: [0, 1).
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
# Hidden layer widths, at least one layer (the heads read the last width).
Layers = Annotated[tuple[PositiveInt, ...], Field(min_length=1)]


@dataclass(config=HYPERPARAMETERS)
class HybridConfig:
    """Hyperparameters, logged whole to MLflow. Defaults follow the original design.

    Every value is checked on construction, ``dataclasses.replace`` and assignment (see
    ``pipeline.models.base.HYPERPARAMETERS``): a bad one raises ``pydantic.ValidationError``, a
    ``ValueError``.
    """

    embedding_dim: PositiveInt = 64
    person_dim: PositiveInt = 16
    mlp: Layers = (256, 128, 64)
    content_mlp: Layers = (128, 64)
    dropout: Fraction = 0.2
    # share of training rows whose movie id embedding is hidden (1: content only)
    id_dropout: Annotated[float, Field(ge=0.0, le=1.0)] = 0.25
    history: bool = True  # add |N(u)|^-1/2 * sum of embeddings of the movies u rated (SVD++)
    min_person_count: PositiveInt = 2
    # training
    epochs: PositiveInt = 60
    batch_size: PositiveInt = 2048
    learning_rate: PositiveFloat = 7e-4
    weight_decay: NonNegativeFloat = 1e-5
    embedding_l2: NonNegativeFloat = 0.05  # per rating, on the embeddings a batch touches (as ALS weighs it)
    ranking_weight: NonNegativeFloat = 1.0  # loss = MSE(rating) + ranking_weight * sampled softmax CE
    negatives: PositiveInt = 2048  # sampled unrated movies per batch (all movies when fewer)
    temperature: PositiveFloat = 0.5
    # weight of a positive in the ranking loss halves per this age; None: no recency weighting
    recency_half_life_days: PositiveFloat | None = 60.0
    patience: NonNegativeInt = 5  # epochs without improvement before early stopping (0: never stop early)
    validation_fraction: Fraction = 0.05
    seed: NonNegativeInt = 42  # numpy's generators take no negative seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HybridConfig:
        data = dict(data)
        for key in ("mlp", "content_mlp"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
