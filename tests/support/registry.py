"""Logging, registering and promoting tiny trained models in a real MLflow store: what the registry tests repeat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, text

from pipeline.core.settings import Settings
from pipeline.features.interactions import Interactions
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.fit import TrainingResult
from pipeline.registry.gate import PromotionDecision, promote_if_better
from pipeline.registry.tracking import RunInfo, log_training_run
from tests.support.configs import TINY_VALIDATED

CUTOFF = datetime(1998, 3, 1, tzinfo=UTC)
BASELINES = {"EASE": {"temporal": {"ndcg@10": 0.21}, "random": {}}, "Popularity": {"temporal.ndcg@10": 0.12}}


def history_of(model: HybridArtifact) -> Interactions:
    """The (user, movie) pairs ``model`` was trained on, as interactions (ratings and times made up)."""
    assert model.history_pairs is not None
    users, items = model.history_pairs
    return Interactions(
        users,
        items,
        np.full(len(users), 4.0, np.float32),
        np.zeros(len(users), np.int64),
        len(model.user_map),
        len(model.item_map),
    )


def log_run(
    settings: Settings,
    result: TrainingResult,
    ndcg: float,
    published: PublishedBlend | None = None,
    metrics: dict[str, Any] | None = None,
    **kwargs: Any,
) -> RunInfo:
    """Log and register ``published`` (default: ``result``'s network alone) with ``metrics`` (default: made-up
    figures whose temporal NDCG@10 is ``ndcg``)."""
    metrics = metrics or {
        "temporal": {"ndcg@10": ndcg, "recall@10": ndcg * 1.5},
        "random": {"rmse": 0.95, "mae": 0.75},
    }
    published = published or PublishedBlend.from_training(
        result.model, history_of(result.model), BlendWeights()
    )
    return log_training_run(
        settings, published, result, metrics, BASELINES, dataset="ml-100k", data_cutoff=CUTOFF, **kwargs
    )


def promote_run(
    settings: Settings, engine: Engine, run: RunInfo, ndcg: float, metrics: dict[str, Any] | None = None
) -> PromotionDecision:
    """The gate on temporal NDCG@10 for ``run`` (whose figure is ``ndcg``, or ``metrics``' own)."""
    return promote_if_better(
        settings,
        engine,
        run,
        dataset="ml-100k",
        data_cutoff=CUTOFF,
        metrics=metrics or {"temporal.ndcg@10": ndcg},
        params=TINY_VALIDATED.to_dict(),
    )


def model_version_rows(engine: Engine) -> list[dict[str, Any]]:
    """The gate's records in ``model_versions``, oldest first."""
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT registered_version, status, metric_value, champion_metric_value, decision, protocol, "
                    "primary_metric, dataset, data_cutoff, mlflow_run_id, metrics, params "
                    "FROM model_versions ORDER BY model_version_id"
                )
            )
        ]
