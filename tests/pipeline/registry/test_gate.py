"""The promotion gate (``pipeline.registry.gate``): the verdict, then the gate over a real MLflow store and the
app database, with a real (tiny) trained model logged again and again."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient
from sqlalchemy import text

from pipeline.core.defaults import REGISTERED_MODEL
from pipeline.core.errors import MovierecError
from pipeline.evaluation.guardrails import Guardrail, check_guardrails, failures
from pipeline.evaluation.protocol import evaluate_model
from pipeline.evaluation.splits import make_split
from pipeline.models.baselines import EASE, EASEConfig, Popularity
from pipeline.registry.champion import load_champion
from pipeline.registry.gate import _verdict, promote_if_better
from pipeline.registry.store import tracking_uri
from tests.support.ml100k_slice import load_ml100k_slice
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


@pytest.fixture(scope="module")
def ease_figures(ml100k_dir):  # type: ignore[no-untyped-def]
    """Real temporal figures of EASE on the ML-100K slice at two penalties: lambda 500 ranks better (NDCG@10
    0.17 vs 0.16) by listing more popular films (coverage@10 0.12 vs 0.17)."""
    data = load_ml100k_slice(ml100k_dir)
    train, test = make_split(data, "temporal")
    return {
        lam: {"temporal": evaluate_model(EASE(EASEConfig(lam=lam)).fit(train), train, test, "temporal")}
        for lam in (50.0, 500.0)
    }


def test_guardrail_floors_slack_and_missing_figures():
    rails = (Guardrail("coverage", 0.15), Guardrail("long_tail_share", 0.15, 0.01), Guardrail("gini", 0.1))
    checks = check_guardrails(
        {"coverage": 0.20, "long_tail_share": 0.0}, {"coverage": 0.24, "long_tail_share": 0.003}, rails
    )
    coverage, tail, gini = checks
    assert coverage.floor == pytest.approx(0.204) and coverage.passed is False  # 0.20 below 0.24 * 0.85
    assert tail.passed is True  # within the slack: 0.003 * 0.85 - 0.01 < 0
    assert gini.passed is None and "not compared" in gini.describe()  # neither side has it
    assert failures(checks) == [coverage]
    assert not check_guardrails({"coverage": float("nan")}, {"coverage": 0.2}, rails[:1])[0].passed
    with pytest.raises(ValueError, match="margin"):
        Guardrail("coverage", 1.0)


def test_gate_refuses_a_better_ranking_that_collapses_to_popular_films(
    mlsettings, engine, result, ease_figures
):
    """Real figures: EASE at lambda 500 beats the lambda-50 champion on NDCG@10 by listing fewer, more popular
    films; coverage@10 falls more than the margin, so the gate refuses it and records why."""
    diverse, popular = ease_figures[50.0], ease_figures[500.0]
    assert popular["temporal"]["ndcg@10"] > diverse["temporal"]["ndcg@10"]
    champion = log_run(mlsettings, result, 0, metrics=diverse, plots=False)
    assert promote_run(mlsettings, engine, champion, 0, metrics=diverse).promoted

    run = log_run(mlsettings, result, 0, metrics=popular, plots=False)
    decision = promote_run(mlsettings, engine, run, 0, metrics=popular)
    assert not decision.promoted
    assert decision.reason.startswith("rejected by guardrails: temporal.coverage_at_10")
    checks = {c["metric"]: c for c in decision.guardrails}
    assert checks["temporal.coverage_at_10"]["passed"] is False
    assert checks["temporal.coverage_at_10"]["incumbent"] == pytest.approx(diverse["temporal"]["coverage@10"])
    assert checks["temporal.cold_ndcg_at_10"]["passed"] is True
    client = MlflowClient(tracking_uri(mlsettings), tracking_uri(mlsettings))
    assert int(client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version) == 1
    tags = client.get_model_version(REGISTERED_MODEL, str(run.registered_version)).tags
    assert tags["promotion.decision"] == "rejected"
    assert '"passed": false' in tags["promotion.guardrails"]
    row = model_version_rows(engine)[-1]
    assert row["status"] == "rejected" and row["decision"].startswith("rejected by guardrails")
    assert row["metrics"]["temporal.coverage_at_10"] == pytest.approx(popular["temporal"]["coverage@10"])


def test_gate_refuses_the_popularity_list_on_every_guarded_figure_it_has(
    mlsettings, engine, result, ml100k_dir
):
    """The most-rated films for everyone against EASE: worse NDCG, and the guardrails name its coverage."""
    train, test = make_split(load_ml100k_slice(ml100k_dir), "temporal")
    figures = {
        name: {"temporal": evaluate_model(model.fit(train), train, test, "temporal")}
        for name, model in (("ease", EASE()), ("popularity", Popularity()))
    }
    champion = log_run(mlsettings, result, 0, metrics=figures["ease"], plots=False)
    assert promote_run(mlsettings, engine, champion, 0, metrics=figures["ease"]).promoted
    run = log_run(mlsettings, result, 0, metrics=figures["popularity"], plots=False)
    decision = promote_if_better(
        mlsettings,
        engine,
        run,
        dataset="ml-100k",
        data_cutoff=None,
        metrics=figures["popularity"],
        params={},
        force=True,  # forced past its worse NDCG: the reason still names the broken guardrails
    )
    assert decision.promoted and "guardrails overridden: temporal.coverage_at_10" in decision.reason
    assert "temporal.cold_ndcg_at_10" in decision.reason
