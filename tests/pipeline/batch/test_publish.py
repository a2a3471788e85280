"""Publishing weekly lists with the champion of a weekly run: atomic publication, a writer killed mid-way,
the fallback list for new and thin users, the data cut-off. Each test publishes into its own copy of the
run's database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from pipeline.batch.publish import publish_batch
from pipeline.core.errors import MovierecError
from pipeline.registry.champion import load_champion
from tests.support.database import fetch_rows
from tests.support.weekly import SLICE_USERS, TOP_N

pytestmark = pytest.mark.e2e  # the weekly flow publishes the first batch


def _current(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT batch_id, user_id, rank, movie_id, source FROM current_recommendations "
                "ORDER BY user_id, rank"
            )
        ).all()


def test_writer_killed_mid_write_leaves_the_previous_batch_published(weekly_copy, weekly_engine):
    before = _current(weekly_engine)
    assert len(before) == SLICE_USERS * TOP_N
    script = (
        "import sys, time\n"
        "from database.engine import get_engine\n"
        "from pipeline.batch.publish import publish_batch\n"
        "from pipeline.core.settings import Settings\n"
        "from pipeline.registry.champion import load_champion\n"
        "s = Settings()\n"
        "model, version = load_champion(s)\n"
        "def stall(k):\n"
        "    print('wrote chunk', k, flush=True)\n"
        "    time.sleep(600)\n"
        f"publish_batch(get_engine(s), model, version, top_n={TOP_N}, chunk_users=10,\n"
        "                        _after_chunk=stall)\n"
    )
    settings = weekly_copy.settings
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": "",
    }
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("wrote chunk 0")  # rows of the new batch are in the table
        with weekly_engine.connect() as conn:  # ... but invisible: the publication is not committed
            assert conn.execute(text("SELECT count(*) FROM recommendation_batches")).scalar_one() == 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert _current(weekly_engine) == before
    with weekly_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM batch_recommendations")).scalar_one() == len(before)

    model, version = load_champion(settings)
    again = publish_batch(weekly_engine, model, version, top_n=TOP_N, keep=1)
    after = _current(weekly_engine)
    assert again["batch_id"] != before[0][0] and {r[0] for r in after} == {again["batch_id"]}
    assert len(after) == len(before)
    with weekly_engine.connect() as conn:  # keep=1 pruned the older batch and its rows
        assert conn.execute(text("SELECT count(*) FROM recommendation_batches")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM batch_recommendations")).scalar_one() == len(after)


def test_new_and_thin_users_get_the_labelled_fallback(weekly_copy, weekly_engine):
    with weekly_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (9001)"))
        conn.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES "
                "(9001, 50, 5, now()), (9001, 100, 4, now())"
            )
        )
    model, version = load_champion(weekly_copy.settings)
    result = publish_batch(weekly_engine, model, version, top_n=TOP_N)
    assert result["fallback_users"] == 1 and result["users"] == SLICE_USERS + 1
    with weekly_engine.connect() as conn:
        rows = fetch_rows(
            conn,
            "SELECT rank, movie_id, source FROM current_recommendations WHERE user_id = 9001 ORDER BY rank",
        )
        counts = dict(conn.execute(text("SELECT movie_id, count(*) FROM ratings GROUP BY movie_id")).all())
    assert [r.rank for r in rows] == list(range(1, TOP_N + 1))
    assert {r.source for r in rows} == {"fallback_popularity"}
    assert not {50, 100} & {r.movie_id for r in rows}
    listed = [counts[r.movie_id] for r in rows]
    assert listed == sorted(listed, reverse=True)  # most rated first


def test_cut_off_hides_later_ratings_from_the_lists(weekly_copy, weekly_engine):
    as_of = datetime(1998, 1, 1, tzinfo=UTC)
    model, version = load_champion(weekly_copy.settings)
    result = publish_batch(weekly_engine, model, version, as_of=as_of, top_n=TOP_N)
    with weekly_engine.connect() as conn:
        early = conn.execute(
            text("SELECT count(DISTINCT user_id) FROM ratings WHERE rated_at <= :t"), {"t": as_of}
        ).scalar_one()
        cutoff = conn.execute(text("SELECT DISTINCT data_cutoff FROM current_recommendations")).scalar_one()
    assert result["users"] == early < SLICE_USERS
    assert cutoff == as_of


def test_bad_arguments_fail_before_anything_is_written(weekly_copy, weekly_engine):
    before = _current(weekly_engine)
    model, version = load_champion(weekly_copy.settings)
    for kwargs in ({"top_n": 0}, {"top_n": 1001}, {"keep": 0}, {"candidates": -1}):
        with pytest.raises(MovierecError):
            publish_batch(weekly_engine, model, version, **kwargs)
    with pytest.raises(MovierecError, match="no model_versions row for champion v99"):
        publish_batch(weekly_engine, model, 99, top_n=TOP_N)
    assert _current(weekly_engine) == before
    with weekly_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM recommendation_batches")).scalar_one() == 1


def test_a_reader_holding_the_old_lock_key_and_its_views_does_not_block_a_publish(weekly_copy, weekly_engine):
    """The read-only role takes the advisory lock publishing used to take and holds a transaction open on
    everything it may read (ACCESS SHARE on the views' tables): a publication still goes through, its lock
    waits bounded by a short timeout so that a regression fails here instead of hanging."""
    import psycopg2

    from database.engine import reader_database_url

    reader = psycopg2.connect(reader_database_url(weekly_copy.settings))
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext('movierec.publish'))")
            cur.execute("SELECT pg_advisory_lock(hashtext('movierec.promotion.movierec-hybrid'))")
            for view in (
                "current_recommendations",
                "recommendation_batch_summary",
                "recommendation_churn",
                "recommendation_popularity",
            ):
                cur.execute(f"SELECT count(*) FROM {view}")
            cur.execute(
                "SELECT b.batch_id, v.registered_version FROM recommendation_batches b "
                "JOIN model_versions v USING (model_version_id)"
            )
            cur.execute("SELECT count(*) FROM ratings WHERE rated_at <= now()")
        model, version = load_champion(weekly_copy.settings)
        result = publish_batch(weekly_engine, model, version, top_n=TOP_N, keep=1, lock_timeout_s=10)
        assert {r[0] for r in _current(weekly_engine)} == {result["batch_id"]}  # published and pruned
    finally:
        reader.close()


def test_a_publish_waiting_on_the_held_lock_fails_naming_it(weekly_copy, weekly_engine):
    """Another pipeline session holds the publish lock: the weekly publish step gives up after the settings'
    lock timeout with a one-line error, and the published batch stays as it was."""
    from pipeline.orchestration.steps import publish

    before = _current(weekly_engine)
    settings = weekly_copy.settings.model_copy(update={"lock_timeout_s": 0.2})
    with weekly_engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT name FROM pipeline_locks WHERE name = 'publish' FOR UPDATE"))
        with pytest.raises(MovierecError) as failed:
            publish(None, TOP_N, settings=settings)
    message = str(failed.value)
    assert "the publish lock is held by another session: gave up after 0.2 s" in message
    assert "\n" not in message
    assert _current(weekly_engine) == before
    assert publish(None, TOP_N, settings=settings)["rows"] == len(before)  # the lock is free again
