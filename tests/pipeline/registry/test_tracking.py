"""MLflow tracking, registry and promotion gate: a real MLflow store and a real (tiny) trained model."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import text

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.features.interactions import Interactions
from pipeline.models.blend.published import PublishedBlend
from pipeline.models.blend.weights import BlendWeights
from pipeline.models.hybrid.artifact import HybridArtifact
from pipeline.models.hybrid.config import HybridConfig
from pipeline.models.hybrid.fit import TrainingResult, train_hybrid
from pipeline.registry.champion import load_champion
from pipeline.registry.gate import promote_if_better
from pipeline.registry.store import config_params, flatten_metrics, metric_key, tracking_uri
from pipeline.registry.tracking import RunInfo, log_training_run

TINY = HybridConfig(
    epochs=2,
    patience=2,
    embedding_dim=16,
    person_dim=8,
    mlp=(32, 16),
    content_mlp=(32, 16),
    batch_size=2048,
    negatives=256,
)
CUTOFF = datetime(1998, 3, 1, tzinfo=UTC)
BASELINES = {"EASE": {"temporal": {"ndcg@10": 0.21}, "random": {}}, "Popularity": {"temporal.ndcg@10": 0.12}}


@pytest.fixture(scope="module")
def trained(ml100k_data, tmp_path_factory):
    """A tiny hybrid model trained on the first 100 users' real ratings, saved once for the module."""
    data = ml100k_data
    X = data.interactions
    train = X.subset(np.flatnonzero(X.users < 100))
    result = train_hybrid(data, train, TINY, device="cpu", progress=False)
    # Both partners in: what is registered and served must be the whole blend, not the network alone.
    directory = PublishedBlend.from_training(result.model, train, BlendWeights(0.6, 0.5)).save(
        tmp_path_factory.mktemp("registry-model") / "published"
    )
    rows = np.flatnonzero(X.users < 100)[::97][:25]  # real rated pairs
    pairs = pd.DataFrame(
        {"user_id": data.user_map.ids[X.users[rows]], "movie_id": data.item_map.ids[X.items[rows]]}
    )
    return directory, result, pairs


@pytest.fixture
def result(trained) -> TrainingResult:
    directory, original, _ = trained
    return TrainingResult(
        HybridArtifact.load(directory / "network"),
        original.history,
        original.best_epoch,
        original.seconds,
        original.samples_per_s,
    )


@pytest.fixture
def published(trained) -> PublishedBlend:
    return PublishedBlend.load(trained[0])


@pytest.fixture
def pairs(trained) -> pd.DataFrame:
    return trained[2]


@pytest.fixture
def mlsettings(tmp_path: Path, db_url: str) -> Settings:
    """The default store when DATABASE_URL is set: sqlite under a fresh home (never a user's MLflow)."""
    return Settings(MOVIEREC_HOME=tmp_path / "home", DATABASE_URL=db_url, MLFLOW_TRACKING_URI="")


def _log(
    mlsettings: Settings, result: TrainingResult, ndcg: float, published: PublishedBlend | None = None, **kw
) -> RunInfo:
    metrics = {"temporal": {"ndcg@10": ndcg, "recall@10": ndcg * 1.5}, "random": {"rmse": 0.95, "mae": 0.75}}
    published = published or PublishedBlend.from_training(
        result.model, _train_of(result.model), BlendWeights()
    )
    return log_training_run(
        mlsettings, published, result, metrics, BASELINES, dataset="ml-100k", data_cutoff=CUTOFF, **kw
    )


def _train_of(model: HybridArtifact) -> Interactions:
    users, items = model.history_pairs
    return Interactions(
        users,
        items,
        np.full(len(users), 4.0, np.float32),
        np.zeros(len(users), np.int64),
        len(model.user_map),
        len(model.item_map),
    )


def _promote(mlsettings: Settings, engine, run: RunInfo, ndcg: float):
    return promote_if_better(
        mlsettings,
        engine,
        run,
        dataset="ml-100k",
        data_cutoff=CUTOFF,
        metrics={"temporal.ndcg@10": ndcg},
        params=TINY.to_dict(),
    )


def _rows(engine) -> list[dict]:
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


# --- pure helpers -------------------------------------------------------------------------------------------


def test_metric_names_and_params():
    assert metric_key("ndcg@10") == "ndcg_at_10"
    assert flatten_metrics({"temporal": {"ndcg@10": 0.3, "users": None}, "random.rmse": 1}) == {
        "temporal.ndcg_at_10": 0.3,
        "random.rmse": 1.0,
    }
    params = config_params(TINY)
    assert params["mlp"] == "32,16" and params["recency_half_life_days"] == "60.0"
    assert set(params) == set(TINY.to_dict())


def test_verdict_direction_ties_and_missing_figures():
    from pipeline.registry.gate import _verdict

    assert _verdict(0.31, 0.30, 1, "temporal.ndcg_at_10", higher=True, force=False)[0]
    assert not _verdict(0.30, 0.30, 1, "temporal.ndcg_at_10", higher=True, force=False)[0]
    assert _verdict(0.90, 0.95, 1, "random.rmse", higher=False, force=False)[0]  # errors must shrink
    assert not _verdict(0.96, 0.95, 1, "random.rmse", higher=False, force=False)[0]
    assert not _verdict(float("nan"), None, None, "temporal.ndcg_at_10", higher=True, force=False)[0]
    kept, reason = _verdict(0.5, None, 3, "temporal.ndcg_at_10", higher=True, force=False)
    assert not kept and "no temporal.ndcg_at_10 figure" in reason
    assert _verdict(0.5, None, 3, "temporal.ndcg_at_10", higher=True, force=True)[0]


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


# --- logging, registration, first promotion, loading --------------------------------------------------------


def test_log_register_promote_and_load_back(mlsettings, engine, result, published, pairs, tmp_path):
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    report = tmp_path / "evaluation.json"
    report.write_text('{"k": 10}')
    run = _log(mlsettings, result, 0.30, published, artifacts={"evaluation": report})
    assert run.registered_version == 1 and run.model_uri == f"models:/{REGISTERED_MODEL}/1"
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before  # nothing leaks into a later Settings()
    assert (mlsettings.home / "mlflow.db").exists()

    client = MlflowClient(tracking_uri(mlsettings), tracking_uri(mlsettings))
    logged = client.get_run(run.run_id)
    assert client.get_experiment(logged.info.experiment_id).name == "movierec-ml-100k"
    assert client.get_experiment(logged.info.experiment_id).artifact_location.startswith(
        (mlsettings.home / "mlartifacts").as_uri()
    )
    params = logged.data.params
    assert {k: params[k] for k in config_params(TINY)} == config_params(TINY)
    assert params["dataset"] == "ml-100k" and params["data_cutoff"] == CUTOFF.isoformat()
    assert params["device"] == "cpu"
    metrics = logged.data.metrics
    assert metrics["temporal.ndcg_at_10"] == 0.30 and metrics["random.rmse"] == 0.95
    assert metrics["baseline.ease.temporal.ndcg_at_10"] == 0.21
    assert metrics["baseline.popularity.temporal.ndcg_at_10"] == 0.12
    for name in ("loss", "mse", "ranking_ce", "val_rmse"):
        history = client.get_metric_history(run.run_id, name)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([h[name] for h in result.history])
    files = {f.path for f in client.list_artifacts(run.run_id)}
    files |= {f.path for d in ("plots", "evaluation") for f in client.list_artifacts(run.run_id, d)}
    assert {
        "id_maps.json",
        "plots/learning_curve.png",
        "plots/evaluation.png",
        "evaluation/evaluation.json",
    } <= files

    with pytest.raises(MovierecError, match="no movierec-hybrid@champion"):
        load_champion(mlsettings)  # registered, but nobody promoted it yet

    decision = _promote(mlsettings, engine, run, 0.30)
    assert decision.promoted and decision.champion_version is None and decision.champion_value is None
    [row] = _rows(engine)
    assert row["status"] == "champion" and row["registered_version"] == 1
    assert row["mlflow_run_id"] == run.run_id
    assert row["metric_value"] == pytest.approx(0.30) and row["primary_metric"] == "ndcg_at_10"
    assert row["data_cutoff"] == CUTOFF and row["params"]["mlp"] == [32, 16]
    assert row["metrics"] == {"temporal.ndcg_at_10": 0.30}

    # The logged pyfunc, loaded by alias, predicts exactly what the in-memory model does.
    mlflow.set_tracking_uri(tracking_uri(mlsettings))
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}@champion")
        assert pyfunc.metadata.signature is not None
        assert pyfunc.metadata.get_input_schema().input_names() == ["user_id", "movie_id"]
        predicted = pyfunc.predict(pairs)
    finally:
        mlflow.set_tracking_uri(None)
        if env_before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
    # The blend, partners included: the network alone predicts something else.
    net = published.network
    users, items = (
        net.user_map.index(pairs["user_id"].to_numpy()),
        net.item_map.index(pairs["movie_id"].to_numpy()),
    )
    expected = published.predict_index(users, items)
    assert published.ease is not None and published.mf is not None
    assert not np.allclose(expected, net.predict_index(users, items))
    np.testing.assert_array_equal(predicted["rating"].to_numpy(), expected.astype(np.float64))
    unknown = pyfunc.predict(
        pd.DataFrame({"user_id": [10**9, int(pairs.user_id[0])], "movie_id": [int(pairs.movie_id[0]), 10**9]})
    )
    assert unknown["rating"].isna().all()

    champion, version = load_champion(mlsettings)
    assert version == 1
    np.testing.assert_array_equal(champion.predict_index(users, items), expected)
    np.testing.assert_array_equal(champion.score_users(users[:3]), published.score_users(users[:3]))
    assert champion.weights == BlendWeights(0.6, 0.5)


# --- the gate -----------------------------------------------------------------------------------------------


def test_gate_refuses_worse_and_accepts_better(mlsettings, engine, result):
    with pytest.raises(MovierecError, match="no movierec-hybrid@champion"):
        load_champion(mlsettings)  # an empty store: no registered model at all
    first = _log(mlsettings, result, 0.30, plots=False)
    assert _promote(mlsettings, engine, first, 0.30).promoted

    worse = _log(mlsettings, result, 0.25, plots=False)
    decision = _promote(mlsettings, engine, worse, 0.25)
    assert not decision.promoted and decision.champion_version == 1
    assert decision.new_value == 0.25 and decision.champion_value == 0.30
    assert "rejected" in decision.reason
    client = MlflowClient(tracking_uri(mlsettings), tracking_uri(mlsettings))
    assert int(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == 1
    tags = client.get_model_version(REGISTERED_MODEL, str(worse.registered_version)).tags
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.new_value"]) == 0.25 and float(tags["promotion.champion_value"]) == 0.30
    assert client.get_run(worse.run_id).data.tags["promotion.champion_version"] == "1"
    rows = _rows(engine)
    assert [r["status"] for r in rows] == ["champion", "rejected"]
    assert rows[1]["metric_value"] == pytest.approx(0.25)
    assert rows[1]["champion_metric_value"] == pytest.approx(0.30)
    assert rows[1]["decision"].startswith("rejected")

    tie = _log(mlsettings, result, 0.30, plots=False)
    assert not _promote(mlsettings, engine, tie, 0.30).promoted  # strictly greater only

    better = _log(mlsettings, result, 0.35, plots=False)
    decision = _promote(mlsettings, engine, better, 0.35)
    assert decision.promoted and decision.champion_value == 0.30 and decision.champion_version == 1
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert int(champion.version) == better.registered_version
    assert [r["status"] for r in _rows(engine)] == ["retired", "rejected", "rejected", "champion"]
    assert client.get_model_version(REGISTERED_MODEL, "1").tags["promotion.retired_by"] == "4"
    assert load_champion(mlsettings)[1] == 4
    assert math.isclose(_rows(engine)[-1]["champion_metric_value"], 0.30, rel_tol=1e-6)
