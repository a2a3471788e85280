"""Each batch's list-set figures in ``recommendation_batches.list_metrics`` (``pipeline.batch.list_figures``),
on a weekly run of the real ML-100K slice: filled by every publication with its re-rank settings, the same
as the publication returns, and in agreement with the SQL function ``compare_batches``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from pipeline.batch.compare import compare_batches
from pipeline.batch.publish import publish_batch
from pipeline.evaluation.list_metrics import LIST_METRIC_NAMES
from pipeline.models.rerank import Rerank
from pipeline.registry.champion import load_champion
from tests.support.weekly import SLICE_USERS, TOP_N

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch


def _stored(engine, batch_id: int) -> dict:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT list_metrics FROM recommendation_batches WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one()
    return value if isinstance(value, dict) else json.loads(value)


def test_the_weekly_publication_stores_its_figures_and_default_settings(weekly_copy, weekly_engine):
    publication = weekly_copy.results["publication"]
    stored = _stored(weekly_engine, publication["batch_id"])
    assert stored == publication["list_metrics"]
    assert stored["rerank"] == Rerank().to_dict()
    assert stored["users"] == SLICE_USERS and stored["rows"] == publication["rows"]
    for name in LIST_METRIC_NAMES:
        assert 0 <= stored[name] and stored["at_10"][name] >= 0
    assert stored["at_10"]["rows"] == SLICE_USERS * 10
    assert 0 < stored["intra_list_diversity"] < 1


def test_a_re_ranked_batch_records_its_settings_and_agrees_with_compare_batches(weekly_copy, weekly_engine):
    model, version = load_champion(weekly_copy.settings)
    first = weekly_copy.results["publication"]
    rerank = Rerank(strength=0.75, popularity_penalty=1.0)
    second = publish_batch(weekly_engine, model, version, top_n=TOP_N, rerank=rerank)
    stored = _stored(weekly_engine, second["batch_id"])
    assert stored == second["list_metrics"]
    assert stored["rerank"] == {"strength": 0.75, "popularity_penalty": 1.0}
    assert stored["intra_list_diversity"] > first["list_metrics"]["intra_list_diversity"]
    assert stored["novelty"] > first["list_metrics"]["novelty"]
    with weekly_engine.connect() as conn:
        sql = compare_batches(conn, first["batch_id"], second["batch_id"], k=TOP_N)
    assert stored["coverage"] == pytest.approx(sql.coverage_b, rel=1e-9)
    assert stored["novelty"] == pytest.approx(sql.novelty_b, rel=1e-9)
    assert first["list_metrics"]["coverage"] == pytest.approx(sql.coverage_a, rel=1e-9)
    assert first["list_metrics"]["novelty"] == pytest.approx(sql.novelty_a, rel=1e-9)
