"""Logging a training run, registering its model, loading the champion back (``pipeline.registry.tracking``,
``pyfunc``, ``champion``): a real MLflow store and a real (tiny) trained blend."""

from __future__ import annotations

import os

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.models.blend.weights import BlendWeights
from pipeline.registry.champion import load_champion
from pipeline.registry.store import config_params, tracking_uri
from tests.support.configs import TINY_VALIDATED
from tests.support.registry import CUTOFF, log_run, model_version_rows, promote_run


def test_log_register_promote_and_load_back(mlsettings, engine, result, registered_blend, pairs, tmp_path):
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    report = tmp_path / "evaluation.json"
    report.write_text('{"k": 10}')
    configs = {"als": {"factors": 32, "alpha": 0.25}}  # another evaluated model's hyperparameters
    run = log_run(
        mlsettings, result, 0.30, registered_blend, artifacts={"evaluation": report}, configs=configs
    )
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
    assert {k: params[k] for k in config_params(TINY_VALIDATED)} == config_params(TINY_VALIDATED)
    assert params["dataset"] == "ml-100k" and params["data_cutoff"] == CUTOFF.isoformat()
    assert params["device"] == "cpu"
    assert (params["blend_weight"], params["blend_als_weight"]) == ("0.6", "0.0")
    assert params["config.als.factors"] == "32" and params["config.als.alpha"] == "0.25"
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

    decision = promote_run(mlsettings, engine, run, 0.30)
    assert decision.promoted and decision.champion_version is None and decision.champion_value is None
    [row] = model_version_rows(engine)
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
    net = registered_blend.network
    users, items = (
        net.user_map.index(pairs["user_id"].to_numpy()),
        net.item_map.index(pairs["movie_id"].to_numpy()),
    )
    expected = registered_blend.predict_index(users, items)
    assert registered_blend.ease is not None and registered_blend.mf is not None
    assert not np.allclose(expected, net.predict_index(users, items))
    np.testing.assert_array_equal(predicted["rating"].to_numpy(), expected.astype(np.float64))
    unknown = pyfunc.predict(
        pd.DataFrame({"user_id": [10**9, int(pairs.user_id[0])], "movie_id": [int(pairs.movie_id[0]), 10**9]})
    )
    assert unknown["rating"].isna().all()

    champion, version = load_champion(mlsettings)
    assert version == 1
    np.testing.assert_array_equal(champion.predict_index(users, items), expected)
    np.testing.assert_array_equal(champion.score_users(users[:3]), registered_blend.score_users(users[:3]))
    assert champion.weights == BlendWeights(0.6, 0.5)
