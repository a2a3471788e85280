"""``movierec train`` and ``movierec evaluate`` end to end: real ML-100K, real MLflow store, real gate."""

import json
import os

import pytest
from sqlalchemy import create_engine

from database.engine import sqlalchemy_url
from pipeline.core.defaults import BLEND_MEMBERS, EVALUATION_ONLY_MODELS, WEEKLY_EVALUATION_MODELS
from tests.support.cli import movierec
from tests.support.database import fetch_rows

pytestmark = pytest.mark.e2e

PUBLISHED_AND_BASELINES = ("global_mean", "popularity", "biased_mf", "ease", "hybrid", "blend")


def test_train_registers_and_promotes_then_evaluate_writes_a_report(ml100k_copy_url, tmp_path):
    env = dict(os.environ, MOVIEREC_HOME=str(tmp_path / "home"), DATABASE_URL=ml100k_copy_url)
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: sqlite under MOVIEREC_HOME
    done = movierec(env, "train", "--epochs", "2", "--as-of", "1998-03-01")
    assert done.returncode == 0, done.stderr[-3000:]
    flat = " ".join(done.stdout.split())
    assert "registered movierec-hybrid version 1" in flat and "promoted to champion" in flat
    for name in ("ease", "biased_mf", "popularity", "global_mean", "hybrid", "blend"):
        assert name in flat
    engine = create_engine(sqlalchemy_url(ml100k_copy_url))
    with engine.connect() as conn:
        (row,) = fetch_rows(
            conn,
            "SELECT status, registered_version, data_cutoff::date::text, protocol, "
            "primary_metric, metric_value FROM model_versions",
        )
    engine.dispose()
    assert row[:5] == ("champion", 1, "1998-03-01", "temporal", "ndcg_at_10") or row[:4] == (
        "champion",
        1,
        "1998-03-01",
        "temporal",
    )
    assert 0.0 < row[5] < 1.0
    assert (tmp_path / "home" / "mlflow.db").exists()
    # The weekly evaluation: the published blend's members, the baselines and the weekly evaluation-only models.
    [weekly] = (tmp_path / "home" / "reports").glob("evaluation-*.json")
    weekly_rows = json.loads(weekly.read_text())["results"]["temporal"]
    assert set(weekly_rows) == {*PUBLISHED_AND_BASELINES, *WEEKLY_EVALUATION_MODELS, *BLEND_MEMBERS}
    assert all(row["ndcg@10"] > 0 for row in weekly_rows.values())

    report = tmp_path / "eval.json"
    done = movierec(env, "evaluate", "--epochs", "1", "--output", str(report))
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert set(data["cold_start"]) == {"hybrid_content", "genre_popularity"}
    assert data["results"]["random"]["biased_mf"]["rmse"] < data["results"]["random"]["global_mean"]["rmse"]
    # One row per model under both protocols, named after it; the ranking-only ones have no rating figures.
    for protocol in ("random", "temporal"):
        assert set(data["results"][protocol]) == {*PUBLISHED_AND_BASELINES, *EVALUATION_ONLY_MODELS}
    for name in EVALUATION_ONLY_MODELS:
        assert (
            data["results"]["temporal"][name]["ndcg@10"] > 0
            and "error" not in data["results"]["temporal"][name]
        )
        # AutoRec predicts ratings (the rating blend's member); every other one ranks only
        assert ("rmse" in data["results"]["random"][name]) == (name == "autorec")
    autorec = data["results"]["random"]["autorec"]["rmse"]
    assert autorec < data["results"]["random"]["global_mean"]["rmse"]
    assert data["configs"]["item_knn"]["neighbours"] > 0 and data["configs"]["als"]["factors"] > 0


def test_train_with_a_cutoff_before_any_rating_fails_cleanly(ml100k_copy_url, tmp_path):
    env = dict(os.environ, MOVIEREC_HOME=str(tmp_path / "home"), DATABASE_URL=ml100k_copy_url)
    done = movierec(env, "train", "--as-of", "1990-01-01")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: no ratings up to 1990-01-01")
