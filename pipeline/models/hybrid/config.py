"""The hybrid network's hyperparameters: one validated value, logged whole to MLflow and saved with the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class HybridConfig:
    """Hyperparameters, logged whole to MLflow. Defaults follow the original design."""

    embedding_dim: int = 64
    person_dim: int = 16
    mlp: tuple[int, ...] = (256, 128, 64)
    content_mlp: tuple[int, ...] = (128, 64)
    dropout: float = 0.2
    id_dropout: float = 0.25  # share of training rows whose movie id embedding is hidden
    history: bool = True  # add |N(u)|^-1/2 * sum of embeddings of the movies u rated (SVD++)
    min_person_count: int = 2
    # training
    epochs: int = 60
    batch_size: int = 2048
    learning_rate: float = 7e-4
    weight_decay: float = 1e-5
    embedding_l2: float = 0.05  # per rating, on the embeddings a batch touches (as ALS weighs it)
    ranking_weight: float = 1.0  # loss = MSE(rating) + ranking_weight * sampled softmax CE
    negatives: int = 2048  # sampled unrated movies per batch (all movies when fewer)
    temperature: float = 0.5
    recency_half_life_days: float | None = (
        60.0  # weight of a positive in the ranking loss halves per this age
    )
    patience: int = 5
    validation_fraction: float = 0.05
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HybridConfig:
        data = dict(data)
        for key in ("mlp", "content_mlp"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)
