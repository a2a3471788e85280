"""The weekly steps (``pipeline.orchestration.steps``): the whole flow in one process on the real ML-100K
slice, and the run report built from the steps' results."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.models.blend.weights import WeightsDict
from pipeline.orchestration.steps import report
from pipeline.registry.store import mlflow_client
from tests.support.database import fetch_rows
from tests.support.weekly import SLICE_USERS, TOP_N


@pytest.mark.e2e
def test_weekly_run_publishes_one_complete_list_per_user_without_rated_movies(weekly_run):
    results = weekly_run.results
    assert list(results) == [
        "fetch",
        "ingest",
        "quality",
        "evaluation",
        "training",
        "promotion",
        "publication",
        "report",
    ]
    batch = results["publication"]
    engine = create_engine(sqlalchemy_url(weekly_run.settings.database_url))
    try:
        with engine.connect() as conn:
            rows = fetch_rows(
                conn,
                "SELECT batch_id, user_id, rank, movie_id, source FROM current_recommendations "
                "ORDER BY user_id, rank",
            )
            users = {r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM ratings"))}
            rated = {(r[0], r[1]) for r in conn.execute(text("SELECT user_id, movie_id FROM ratings"))}
            summary = conn.execute(
                text("SELECT status, users, rows, catalogue_coverage FROM recommendation_batch_summary")
            ).one()
    finally:
        engine.dispose()
    assert results["promotion"]["promoted"] and batch["registered_version"] == 1
    assert {r[1] for r in rows} == users == set(range(1, SLICE_USERS + 1))
    assert {r[0] for r in rows} == {batch["batch_id"]}
    by_user: dict[int, list[int]] = {}
    for _, user, rank, movie, source in rows:
        by_user.setdefault(user, []).append(rank)
        assert (user, movie) not in rated
        assert source == "model"
    assert all(ranks == list(range(1, TOP_N + 1)) for ranks in by_user.values())
    assert len(rows) == batch["rows"] == SLICE_USERS * TOP_N
    assert summary.status == "published" and summary.users == SLICE_USERS
    assert summary.rows == SLICE_USERS * TOP_N
    assert 0 < float(summary.catalogue_coverage) <= 1
    weights = results["evaluation"]["weights"]
    assert set(weights) == WeightsDict.__required_keys__  # every weight, as blend.json holds them
    assert set(weights["members"]) <= {"sasrec"}  # the default MOVIEREC_BLEND_MEMBERS
    shares = weights["weight"] + weights["als_weight"] + sum(weights["members"].values())
    assert 0 <= weights["als_weight"] and shares <= 1 + 1e-9
    assert (
        0 <= weights["weight"] <= 1 and 0 <= weights["rating_weight"] <= 1 and weights["rerank_weight"] >= 0
    )
    assert 0 <= weights["autorec_weight"] and weights["rating_weight"] + weights["autorec_weight"] <= 1 + 1e-9
    assert "published batch" in results["report"]


@pytest.mark.e2e
def test_the_evaluations_protocol_network_starts_from_the_weight_searchs(weekly_run):
    import json
    from pathlib import Path

    from pipeline.core.defaults import WARM_START_EPOCHS
    from tests.support.weekly import EPOCHS

    report = json.loads(Path(weekly_run.results["evaluation"]["report_path"]).read_text())
    temporal = report["networks"]["temporal"]
    validation, protocol = temporal["validation"], temporal["protocol"]
    assert validation["training"] == "full" and protocol["training"] == "warm"
    # the warm start trains its epochs through (capped by the run's epochs) on every train rating
    assert protocol["epochs"] == min(WARM_START_EPOCHS, EPOCHS)
    assert protocol["ratings"] == report["splits"]["temporal"]["n_train"]
    assert 0 < validation["ratings"] < protocol["ratings"]


@pytest.mark.e2e
def test_the_blends_member_is_evaluated_as_a_row_and_published_when_chosen(weekly_run):
    import json
    from pathlib import Path

    from pipeline.core.defaults import BLEND_MEMBERS

    report_path = weekly_run.results["evaluation"]["report_path"]
    report = json.loads(Path(report_path).read_text())
    temporal = report["results"]["temporal"]
    for name in BLEND_MEMBERS:  # each offered member has its own row (the blend's fit of it when chosen)
        assert 0 < temporal[name]["ndcg@10"] <= 1
    assert report["member_weights"] == weekly_run.results["evaluation"]["weights"]["members"]
    saved = {p.name for p in Path(weekly_run.settings.home).rglob("member-*.npz")}
    chosen = {name for name, share in report["member_weights"].items() if share > 0}
    assert {f"member-{name}.npz" for name in chosen} <= saved
    # the published fit of a chosen member starts from the evaluation's, saved beside the report
    starts = weekly_run.results["evaluation"]["member_starts"]
    assert set(starts) == chosen & {"sasrec"}  # SASRec is the member that can start from a fit
    assert all(Path(path).parent == Path(report_path).with_suffix("") for path in starts.values())
    assert all(Path(path).is_file() for path in starts.values())
    with mlflow_client(weekly_run.settings) as client:
        params = client.get_run(weekly_run.results["training"]["run_id"]).data.params
    assert {name: params[f"blend_member_started.{name}"] for name in chosen} == {
        name: str(name in starts) for name in chosen
    }


def test_report_names_each_step_that_ran():
    results = {
        "ingest": {"ingest_run_id": 3, "rows_accepted": 15000, "rows_rejected": 2},
        "evaluation": {
            "metrics": {"temporal": {"ndcg@10": 0.31234, "network_ndcg@10": 0.2}},
            "baselines": {"ease": {"temporal": {"ndcg@10": 0.25}}},
            "weights": {"weight": 0.6, "rating_weight": 0.5, "rerank_weight": 1.0},
        },
        "training": {"version": 4, "seconds": 12.5, "run_id": "abc", "blend": "ranking: network x 0.60"},
        "promotion": {"reason": "promoted: first champion"},
        "publication": {
            "batch_id": 9,
            "registered_version": 4,
            "users": 150,
            "fallback_users": 0,
            "rows": 3000,
        },
    }
    lines = report(results).splitlines()
    assert lines[0] == "ingest run 3: 15,000 rows accepted, 2 rejected"
    assert "published blend NDCG@10 0.3123, network alone 0.2000, EASE 0.2500" in lines[1]
    assert (
        "(weights: ranking network 0.6, ALS 0.0, rating head 1.0, ratings network 0.5, AutoRec 0.0)"
        in lines[1]
    )
    assert lines[2].startswith("trained movierec-hybrid v4 in 12.5 s (MLflow run abc;")
    assert lines[3] == "gate: promoted: first champion"
    assert lines[4] == ("published batch 9 scored by v4: 150 users (0 on the fallback list), 3,000 rows")
    assert report({}) == ""
    missing = report({"evaluation": {**results["evaluation"], "metrics": {}}})
    assert "NDCG@10 n/a" in missing  # a figure that was not computed is named, not invented


@pytest.mark.e2e
def test_weekly_run_reports_the_diversity_tradeoff_and_the_lists_figures(weekly_run):
    from mlflow import MlflowClient

    from pipeline.core.defaults import TRADEOFF_PENALTIES, TRADEOFF_STRENGTHS
    from pipeline.registry.report import TRADEOFF_ARTIFACT
    from pipeline.registry.store import tracking_uri

    results = weekly_run.results
    rows = results["evaluation"]["tradeoff"]
    assert len(rows) == len(TRADEOFF_STRENGTHS) + len(TRADEOFF_PENALTIES)
    assert all(0 <= r["ndcg@10"] <= 1 and 0 < r["coverage"] <= 1 for r in rows)
    text_report = results["report"]
    assert "diversity trade-off on the validation split (top 10):" in text_report
    assert "strength 0.75" in text_report and "penalty 1" in text_report
    assert (
        "published lists: coverage " in text_report and "(diversity 0, popularity penalty 0)" in text_report
    )
    uri = tracking_uri(weekly_run.settings)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = results["training"]["run_id"]
    files = {f.path for f in client.list_artifacts(run_id)} | {
        f.path for f in client.list_artifacts(run_id, "plots")
    }
    assert {TRADEOFF_ARTIFACT, "plots/diversity_tradeoff.png"} <= files


def test_report_shows_the_tradeoff_table_and_the_lists_figures():
    row = {"ndcg@10": 0.3, "coverage": 0.2, "intra_list_diversity": 0.5, "novelty": 9.0}
    row |= {"long_tail_share": 0.1, "gini": 0.8}
    evaluation = {
        "metrics": {"temporal": {"ndcg@10": 0.3}},
        "baselines": {},
        "weights": {"weight": 0.6, "rating_weight": 0.5, "rerank_weight": 1.0},
        "tradeoff": [
            {**row, "strength": 0.0, "popularity_penalty": 0.0},
            {**row, "strength": 0.5, "popularity_penalty": 0.0, "intra_list_diversity": 0.6},
            {**row, "strength": 0.0, "popularity_penalty": 0.25, "gini": float("nan")},
        ],
    }
    publication = {
        "batch_id": 9,
        "registered_version": 4,
        "users": 150,
        "fallback_users": 0,
        "rows": 3000,
        "list_metrics": {
            "coverage": 0.25,
            "intra_list_diversity": 0.61234,
            "novelty": 9.5,
            "long_tail_share": 0.125,
            "gini": 0.75,
            "rerank": {"strength": 0.25, "popularity_penalty": 0.5},
        },
    }
    lines = report({"evaluation": evaluation, "publication": publication}).splitlines()
    assert lines[1] == "diversity trade-off on the validation split (top 10):"
    assert lines[2].split() == ["setting", "NDCG@10", "Cov", "ILD", "Novelty", "Tail", "Gini"]
    assert lines[3].split() == ["none", "0.3000", "0.2000", "0.5000", "9.0000", "0.1000", "0.8000"]
    assert lines[4].split()[:2] == ["strength", "0.5"] and "0.6000" in lines[4]
    assert lines[5].split()[:2] == ["penalty", "0.25"] and lines[5].endswith("—")
    assert lines[-1] == (
        "published lists: coverage 0.2500, intra-list diversity 0.6123, novelty 9.5000, long-tail share "
        "0.1250, Gini 0.7500 (diversity 0.25, popularity penalty 0.5)"
    )


def test_bad_rerank_settings_fail_before_any_work(tmp_path):
    from pipeline.core.errors import InputError
    from pipeline.core.settings import Settings
    from pipeline.orchestration.steps import publish, run_all

    nowhere = Settings(MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(InputError, match="diversity strength must be between 0 and 1, got 1.5"):
        publish(None, settings=nowhere, diversity=1.5)
    with pytest.raises(InputError, match="popularity penalty must be between 0 and 5, got -0.5"):
        run_all(source=str(tmp_path / "missing"), settings=nowhere, popularity_penalty=-0.5)
