"""The promotion gate (``pipeline.registry.gate``): the verdict, then the gate over a real MLflow store and the
app database, with a real (tiny) trained model logged again and again."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from sqlalchemy import text

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.registry.champion import load_champion
from pipeline.registry.gate import _verdict
from pipeline.registry.store import tracking_uri
from tests.support.registry import log_run, model_version_rows, promote_run


def test_verdict_direction_ties_and_missing_figures():
    assert _verdict(0.31, 0.30, 1, "temporal.ndcg_at_10", higher=True, force=False)[0]
    assert not _verdict(0.30, 0.30, 1, "temporal.ndcg_at_10", higher=True, force=False)[0]
    assert _verdict(0.90, 0.95, 1, "random.rmse", higher=False, force=False)[0]  # errors must shrink
    assert not _verdict(0.96, 0.95, 1, "random.rmse", higher=False, force=False)[0]
    assert not _verdict(float("nan"), None, None, "temporal.ndcg_at_10", higher=True, force=False)[0]
    kept, reason = _verdict(0.5, None, 3, "temporal.ndcg_at_10", higher=True, force=False)
    assert not kept and "no temporal.ndcg_at_10 figure" in reason
    assert _verdict(0.5, None, 3, "temporal.ndcg_at_10", higher=True, force=True)[0]


def test_gate_refuses_worse_and_accepts_better(mlsettings, engine, result):
    with pytest.raises(MovierecError, match="no movierec-hybrid@champion"):
        load_champion(mlsettings)  # an empty store: no registered model at all
    first = log_run(mlsettings, result, 0.30, plots=False)
    assert promote_run(mlsettings, engine, first, 0.30).promoted

    worse = log_run(mlsettings, result, 0.25, plots=False)
    decision = promote_run(mlsettings, engine, worse, 0.25)
    assert not decision.promoted and decision.champion_version == 1
    assert decision.new_value == 0.25 and decision.champion_value == 0.30
    assert "rejected" in decision.reason
    client = MlflowClient(tracking_uri(mlsettings), tracking_uri(mlsettings))
    assert int(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == 1
    tags = client.get_model_version(REGISTERED_MODEL, str(worse.registered_version)).tags
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.new_value"]) == 0.25 and float(tags["promotion.champion_value"]) == 0.30
    assert client.get_run(worse.run_id).data.tags["promotion.champion_version"] == "1"
    rows = model_version_rows(engine)
    assert [r["status"] for r in rows] == ["champion", "rejected"]
    assert rows[1]["metric_value"] == pytest.approx(0.25)
    assert rows[1]["champion_metric_value"] == pytest.approx(0.30)
    assert rows[1]["decision"].startswith("rejected")

    tie = log_run(mlsettings, result, 0.30, plots=False)
    assert not promote_run(mlsettings, engine, tie, 0.30).promoted  # strictly greater only

    better = log_run(mlsettings, result, 0.35, plots=False)
    decision = promote_run(mlsettings, engine, better, 0.35)
    assert decision.promoted and decision.champion_value == 0.30 and decision.champion_version == 1
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert int(champion.version) == better.registered_version
    assert [r["status"] for r in model_version_rows(engine)] == [
        "retired",
        "rejected",
        "rejected",
        "champion",
    ]
    assert client.get_model_version(REGISTERED_MODEL, "1").tags["promotion.retired_by"] == "4"
    assert load_champion(mlsettings)[1] == 4
    assert math.isclose(model_version_rows(engine)[-1]["champion_metric_value"], 0.30, rel_tol=1e-6)


def test_gate_waiting_on_the_held_promotion_lock_fails_naming_it(mlsettings, engine, result):
    """Another pipeline session holds the promotion lock: the gate gives up after the settings' lock timeout
    with a one-line error, decides nothing (no row, no tag, no alias), and decides once the lock is free."""
    run = log_run(mlsettings, result, 0.30, plots=False)
    hurried = mlsettings.model_copy(update={"lock_timeout_s": 0.2})
    with engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT name FROM pipeline_locks WHERE name = 'promotion' FOR UPDATE"))
        with pytest.raises(MovierecError) as failed:
            promote_run(hurried, engine, run, 0.30)
    message = str(failed.value)
    assert "the promotion lock is held by another session: gave up after 0.2 s" in message
    assert "\n" not in message
    assert model_version_rows(engine) == []
    client = MlflowClient(tracking_uri(mlsettings), tracking_uri(mlsettings))
    assert "promotion.decision" not in client.get_model_version(REGISTERED_MODEL, "1").tags
    assert promote_run(hurried, engine, run, 0.30).promoted
