"""The publication check (``pipeline.batch.release``) on a weekly run of the real ML-100K slice: a list set
whose top-10 coverage or long-tail share falls too far below the published batch's is kept as ``refused``
and the published batch stays; ``force`` publishes it; the figures are kept either way."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from pipeline.batch.publish import publish_batch
from pipeline.batch.release import ListSetRefused
from pipeline.batch.rollback import rollback_batch
from pipeline.core.errors import DataQualityError
from pipeline.models.rerank import Rerank
from pipeline.registry.champion import load_champion
from tests.support.database import fetch_rows
from tests.support.weekly import TOP_N

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch

EARLIER = datetime(1998, 1, 1, tzinfo=UTC)  # a cut-off fewer users have ratings by
WIDE = Rerank(strength=1.0, popularity_penalty=5.0)  # the most diverse, least popular lists the re-rank makes


def _batches(engine) -> dict[int, tuple[str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT batch_id, status, list_metrics FROM recommendation_batches")).all()
    return {b: (s, m if isinstance(m, dict) else json.loads(m)) for b, s, m in rows}


def _current(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT batch_id, user_id, rank, movie_id FROM current_recommendations ORDER BY user_id, rank"
            )
        ).all()


def test_lists_that_lose_their_tail_are_refused_and_kept_and_force_publishes_them(weekly_copy, weekly_engine):
    model, version = load_champion(weekly_copy.settings)
    first = weekly_copy.results["publication"]
    # the weekly run's own batch had nothing to compare with
    assert first["list_metrics"]["release_check"] == {
        "compared_with": None,
        "shared_users": None,
        "checks": [],
        "refused": False,
        "forced": False,
    }
    wide = publish_batch(weekly_engine, model, version, top_n=TOP_N, rerank=WIDE)
    checks = {c["metric"]: c for c in wide["list_metrics"]["release_check"]["checks"]}
    assert set(checks) == {"coverage", "long_tail_share"} and all(c["passed"] for c in checks.values())
    published = _current(weekly_engine)

    # Back to the plain ranking: its top 10 hold far fewer movies, and far fewer from the tail.
    with pytest.raises(
        ListSetRefused, match=rf"refused: top-10 .* against published batch {wide['batch_id']}"
    ):
        publish_batch(weekly_engine, model, version, top_n=TOP_N)
    assert issubclass(ListSetRefused, DataQualityError)  # the DAG fails the task at once, no retry
    assert _current(weekly_engine) == published  # nothing changed for readers
    batches = _batches(weekly_engine)
    [(refused_id, (_, figures))] = [(b, v) for b, v in batches.items() if v[0] == "refused"]
    check = figures["release_check"]
    assert check["refused"] and not check["forced"] and check["compared_with"] == wide["batch_id"]
    failed = [c for c in check["checks"] if c["passed"] is False]
    assert failed and all(c["new"] < c["floor"] < c["incumbent"] for c in failed)
    wide_figures = wide["list_metrics"]["at_10"]
    assert {c["metric"]: c["incumbent"] for c in check["checks"]} == {
        m: pytest.approx(wide_figures[m]) for m in ("coverage", "long_tail_share")
    }
    with weekly_engine.connect() as conn:  # the refused lists are kept for a look
        kept = conn.execute(
            text("SELECT count(*) FROM batch_recommendations WHERE batch_id = :b"), {"b": refused_id}
        ).scalar_one()
    assert kept > 0

    forced = publish_batch(weekly_engine, model, version, top_n=TOP_N, force=True)
    assert forced["list_metrics"]["release_check"]["forced"] is True
    assert not forced["list_metrics"]["release_check"]["refused"]
    assert {r[0] for r in _current(weekly_engine)} == {forced["batch_id"]}
    assert _batches(weekly_engine)[refused_id][0] == "refused"

    # a rollback goes back to the last published batch, never to the refused one
    done = rollback_batch(weekly_engine)
    assert done["published"] == wide["batch_id"]
    assert _current(weekly_engine) == published


def test_refusals_never_prune_the_published_batch(weekly_copy, weekly_engine):
    model, version = load_champion(weekly_copy.settings)
    wide = publish_batch(weekly_engine, model, version, top_n=TOP_N, rerank=WIDE, keep=2)
    for _ in range(3):  # more refusals than batches kept
        with pytest.raises(ListSetRefused):
            publish_batch(weekly_engine, model, version, top_n=TOP_N, keep=2)
    batches = _batches(weekly_engine)
    assert batches[wide["batch_id"]][0] == "published"
    assert len(batches) == 3  # the published one and the 2 most recent refusals
    assert sorted(s for s, _ in batches.values()) == ["published", "refused", "refused"]


def _top10(engine, batch_id: int) -> dict[int, set[int]]:
    """Each listed user's top-10 movies (every listed user has a rank 1)."""
    lists: dict[int, set[int]] = {}
    with engine.connect() as conn:
        for user, movie in fetch_rows(
            conn,
            "SELECT user_id, movie_id FROM batch_recommendations WHERE batch_id = :b AND rank <= 10",
            b=batch_id,
        ):
            lists.setdefault(user, set()).add(movie)
    return lists


def test_coverage_is_compared_over_the_users_both_batches_list(weekly_copy, weekly_engine):
    """A batch at an earlier cut-off lists fewer users, so its own coverage is lower by that alone: the check
    holds it to the published batch's coverage over the same users, counted from both batches' rows."""
    model, version = load_champion(weekly_copy.settings)
    first = weekly_copy.results["publication"]
    early = publish_batch(weekly_engine, model, version, as_of=EARLIER, top_n=TOP_N, force=True)
    check = early["list_metrics"]["release_check"]
    assert check["compared_with"] == first["batch_id"]
    early_lists, first_lists = (
        _top10(weekly_engine, early["batch_id"]),
        _top10(weekly_engine, first["batch_id"]),
    )
    shared = early_lists.keys() & first_lists.keys()
    assert 0 < len(shared) < len(first_lists) and check["shared_users"] == len(shared)
    with weekly_engine.connect() as conn:
        catalogue = conn.execute(text("SELECT count(*) FROM movies")).scalar_one()
    coverage = next(c for c in check["checks"] if c["metric"] == "coverage")
    new = len(set().union(*(early_lists[u] for u in shared))) / catalogue
    incumbent = len(set().union(*(first_lists[u] for u in shared))) / catalogue
    assert coverage["new"] == pytest.approx(new) and coverage["incumbent"] == pytest.approx(incumbent)
    # the published batch's own figure counts all its users: not the one compared
    assert incumbent < first["list_metrics"]["at_10"]["coverage"]
    assert coverage["passed"] == (new >= coverage["floor"])
    tail = next(c for c in check["checks"] if c["metric"] == "long_tail_share")
    assert tail["incumbent"] == pytest.approx(first["list_metrics"]["at_10"]["long_tail_share"])
