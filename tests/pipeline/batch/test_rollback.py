"""``movierec publish --rollback``: the previous kept batch published again, exactly, in one transaction
under the publish lock; refused (changing nothing) when there is none; the API's watcher follows; the next
weekly publish behaves as always. Each test works on its own copy of the weekly run's database."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text

from database.engine import reader_database_url
from pipeline.batch.publish import publish_batch
from pipeline.batch.rollback import rollback_batch
from pipeline.core.errors import MovierecError
from pipeline.registry.champion import load_champion
from tests.support.cli import movierec
from tests.support.weekly import TOP_N, Published

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch

EARLIER = datetime(1998, 1, 1, tzinfo=UTC)  # a cut-off that makes the second batch's lists differ


def _digest(engine: Engine) -> tuple[str, int]:
    """md5 over (user, rank, movie) of the published lists, and the published batch id."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT md5(string_agg(user_id || ':' || rank || ':' || movie_id, ',' "
                "ORDER BY user_id, rank)), min(batch_id) FROM current_recommendations"
            )
        ).one()
    return row[0], row[1]


def _statuses(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT batch_id, status FROM recommendation_batches")).all())


def _publish(published: Published, engine: Engine, **kwargs: object) -> int:
    model, version = load_champion(published.settings)
    return publish_batch(engine, model, version, top_n=TOP_N, **kwargs)["batch_id"]  # type: ignore[arg-type]


def test_rollback_restores_the_previous_batch_exactly_and_the_api_follows(weekly_copy, weekly_engine):
    from model_server.db import Database
    from model_server.lists import PublishedLists

    first_digest, first = _digest(weekly_engine)
    with weekly_engine.connect() as conn:
        user = conn.execute(text("SELECT min(user_id) FROM current_recommendations")).scalar_one()
    second = _publish(weekly_copy, weekly_engine, as_of=EARLIER)
    second_digest, published = _digest(weekly_engine)
    assert published == second != first and second_digest != first_digest

    lists = PublishedLists(Database(reader_database_url(weekly_copy.settings)), max_bytes=1 << 20)

    async def served() -> int:
        """The batch of the user's answer once the watcher has looked at the published batch."""
        await lists.check()
        return int(json.loads(await lists.answer(user, 10))["batch_id"])

    async def scenario() -> tuple[int, bytes | None, int]:
        try:
            before = await served()
            done = rollback_batch(weekly_engine)
            assert done == {"published": first, "rolled_back": second, "by": done["by"]}
            stale = lists.kept(user, 10)  # memory still holds the rolled-back batch's answer ...
            return before, stale, await served()  # ... until the watcher sees the other batch id
        finally:
            await lists.db.close()

    before, stale, after = asyncio.run(scenario())
    assert before == second and after == first
    assert stale is not None and json.loads(stale)["batch_id"] == second
    assert _digest(weekly_engine) == (first_digest, first)
    assert _statuses(weekly_engine) == {first: "published", second: "rolled_back"}
    with weekly_engine.connect() as conn:  # published_at says when it went back on the air
        times = dict(conn.execute(text("SELECT batch_id, published_at FROM recommendation_batches")).all())
    assert times[first] > times[second]


def test_rollback_is_refused_without_an_earlier_kept_batch_and_changes_nothing(weekly_copy, weekly_engine):
    digest = _digest(weekly_engine)
    statuses = _statuses(weekly_engine)
    assert list(statuses.values()) == ["published"]
    with pytest.raises(MovierecError, match="no earlier kept batch"):
        rollback_batch(weekly_engine)
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(weekly_copy.settings.home),
        "DATABASE_URL": weekly_copy.settings.database_url,
        "MLFLOW_TRACKING_URI": "",
    }
    cli = movierec(env, "publish", "--rollback")
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [
        f"error: batch {digest[1]} is published and no earlier kept batch is left to roll back to"
    ]
    assert _digest(weekly_engine) == digest and _statuses(weekly_engine) == statuses


def test_a_rerun_with_the_batch_named_does_nothing_and_a_publish_after_a_rollback_works(
    weekly_copy, weekly_engine
):
    _, first = _digest(weekly_engine)
    second = _publish(weekly_copy, weekly_engine, as_of=EARLIER)
    assert rollback_batch(weekly_engine, expect=second)["rolled_back"] == second
    again = rollback_batch(weekly_engine, expect=second)  # the same command run twice
    assert again["rolled_back"] is None and again["published"] == first
    assert _statuses(weekly_engine) == {first: "published", second: "rolled_back"}
    with pytest.raises(MovierecError, match=f"batch {first} is published and no earlier kept batch"):
        rollback_batch(weekly_engine)  # the rolled-back batch is never a candidate
    with pytest.raises(MovierecError, match="batch 999 is not the published batch"):
        rollback_batch(weekly_engine, expect=999)

    # The next weekly publish: the restored batch is superseded, pruning keeps the last `keep` by id.
    third = _publish(weekly_copy, weekly_engine, keep=3)
    assert _statuses(weekly_engine) == {first: "superseded", second: "rolled_back", third: "published"}
    third_digest = _digest(weekly_engine)
    fourth = _publish(weekly_copy, weekly_engine, as_of=EARLIER, keep=3)
    assert _statuses(weekly_engine) == {second: "rolled_back", third: "superseded", fourth: "published"}
    with weekly_engine.connect() as conn:
        kept_rows = set(conn.execute(text("SELECT DISTINCT batch_id FROM batch_recommendations")).scalars())
    assert kept_rows == {second, third, fourth}
    rolled = rollback_batch(weekly_engine)  # skips the rolled-back batch 2: back to 3
    assert rolled["published"] == third and rolled["rolled_back"] == fourth
    assert _digest(weekly_engine) == third_digest
