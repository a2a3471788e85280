"""The weekly flow (``pipeline.orchestration.steps.run_all``) on the real ML-100K slice: what the end-to-end
tests publish before they look at the lists, the API or the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from pipeline.core.settings import Settings

TOP_N = 20  # list length the end-to-end runs publish
EPOCHS = 2
SLICE_USERS = 150  # users of the ML-100K slice (tests.support.ml100k_slice.SLICE_MAX_USER_ID)
SLICE_DATASET = "ml-100k-slice"


@dataclass
class Published:
    """A database and MOVIEREC_HOME after one weekly run: a champion in MLflow (sqlite under the home) and one
    published batch; ``results`` is what ``run_all`` returned, step by step."""

    settings: Settings
    results: dict[str, Any]


def run_weekly_slice(settings: Settings, source: Path, *, top_n: int = TOP_N) -> dict[str, Any]:
    """Every weekly step, in this process, on the slice in ``source`` (a RecBole ML-100K directory)."""
    from pipeline.orchestration.steps import run_all

    return run_all(SLICE_DATASET, str(source), epochs=EPOCHS, top_n=top_n, settings=settings)


def weekly_settings(home: Path, database_url: str) -> Settings:
    """A user whose database is ``database_url`` and whose MLflow store is sqlite under ``home``."""
    return Settings(MOVIEREC_HOME=home, DATABASE_URL=database_url, MLFLOW_TRACKING_URI="")


def published_lists(engine: Engine) -> dict[str, Any]:
    """What readers see now (``current_recommendations``): its batch, model version, cut-off, row and user
    counts, and a digest of every (user, rank, movie)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT min(batch_id), min(model_version), min(data_cutoff), count(*), count(DISTINCT user_id), "
                "count(DISTINCT batch_id), md5(string_agg(user_id || ':' || rank || ':' || movie_id, ',' "
                "ORDER BY user_id, rank)) FROM current_recommendations"
            )
        ).one()
    keys = ("batch_id", "model_version", "data_cutoff", "rows", "users", "batches", "digest")
    return dict(zip(keys, row))
