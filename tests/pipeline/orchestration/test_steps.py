"""The weekly steps (``pipeline.orchestration.steps``): the whole flow in one process on the real ML-100K
slice, and the run report built from the steps' results."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url
from pipeline.orchestration.steps import report
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
    assert set(weights) == {"weight", "rating_weight", "rerank_weight"}
    assert (
        0 <= weights["weight"] <= 1 and 0 <= weights["rating_weight"] <= 1 and weights["rerank_weight"] >= 0
    )
    assert "published batch" in results["report"]


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
    assert "(weights: ranking 0.6, rating head 1.0, ratings 0.5)" in lines[1]
    assert lines[2].startswith("trained movierec-hybrid v4 in 12.5 s (MLflow run abc;")
    assert lines[3] == "gate: promoted: first champion"
    assert lines[4] == ("published batch 9 scored by v4: 150 users (0 on the fallback list), 3,000 rows")
    assert report({}) == ""
    missing = report({"evaluation": {**results["evaluation"], "metrics": {}}})
    assert "NDCG@10 n/a" in missing  # a figure that was not computed is named, not invented
