"""The MLflow store's names and where it lives (``pipeline.registry.store``)."""

from __future__ import annotations

import os

from mlflow import MlflowClient

from pipeline.core.settings import Settings
from pipeline.registry.store import config_params, flatten_metrics, metric_key, tracking_uri
from tests.support.configs import TINY_VALIDATED


def test_metric_names_and_params():
    assert metric_key("ndcg@10") == "ndcg_at_10"
    assert flatten_metrics({"temporal": {"ndcg@10": 0.3, "users": None}, "random.rmse": 1}) == {
        "temporal.ndcg_at_10": 0.3,
        "random.rmse": 1.0,
    }
    params = config_params(TINY_VALIDATED)
    assert params["mlp"] == "32,16" and params["recency_half_life_days"] == "60.0"
    assert set(params) == set(TINY_VALIDATED.to_dict())


def test_tracking_uri_choices(tmp_path, server_url, test_home):
    explicit = Settings(
        MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://x@h/db", MLFLOW_TRACKING_URI="http://mlflow:5000"
    )
    assert tracking_uri(explicit) == "http://mlflow:5000"
    local = Settings(MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://x@h/db", MLFLOW_TRACKING_URI="")
    assert tracking_uri(local) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    if os.environ.get("DATABASE_URL"):
        return  # the session's server is external: there is no embedded one to point at
    embedded = Settings(MOVIEREC_HOME=test_home, MLFLOW_TRACKING_URI="")
    uri = tracking_uri(embedded)
    assert uri.startswith("postgresql+psycopg2://") and "/mlflow?host=" in uri
    assert MlflowClient(uri, uri).search_experiments()  # the embedded mlflow database works as a store
