"""The pipeline's locks (``database.locks``): rows of ``pipeline_locks`` the reader cannot touch, waits that
end in a one-line error naming the lock and the timeout."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import Engine, text

from database.engine import as_reader
from database.locks import LOCKS, PUBLISH, duration, pipeline_lock
from pipeline.core.errors import MovierecError


def test_every_lock_has_its_row(engine: Engine) -> None:
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM pipeline_locks")).scalars().all()
    assert sorted(names) == sorted(LOCKS)


def test_a_held_lock_fails_the_waiter_with_the_lock_and_timeout_named(engine: Engine) -> None:
    with engine.connect() as holder, holder.begin():
        holder.execute(text("SELECT name FROM pipeline_locks WHERE name = 'publish' FOR UPDATE"))
        with pytest.raises(MovierecError) as failed, engine.connect() as conn, conn.begin():
            with pipeline_lock(conn, PUBLISH, 0.05):
                pytest.fail("the lock was granted while another session held it")
    message = str(failed.value)
    assert "publish lock is held by another session" in message and "0.05 s" in message
    assert "MOVIEREC_LOCK_TIMEOUT_S" in message and "\n" not in message
    with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, 0.05):
        pass  # released with the holder's transaction


def test_a_table_lock_after_the_pipeline_lock_is_bounded_too(engine: Engine) -> None:
    with engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE recommendation_batches IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(
            MovierecError, match=r"publish: a table or row lock was not granted within 0\.05 s"
        ):
            with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, 0.05):
                conn.execute(text("UPDATE recommendation_batches SET top_n = top_n"))


def test_unknown_lock_and_bad_timeout(engine: Engine) -> None:
    with pytest.raises(MovierecError, match="no 'nightly' row in pipeline_locks: run `movierec db migrate`"):
        with engine.connect() as conn, conn.begin(), pipeline_lock(conn, "nightly", 1):
            pass
    with pytest.raises(MovierecError, match="lock timeout must be positive"):
        with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, 0):
            pass
    assert duration(900) == "15 min" and duration(0.2) == "0.2 s" and duration(90) == "90 s"
    with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, 1e12):  # PostgreSQL's longest
        assert conn.execute(text("SHOW lock_timeout")).scalar_one() == "2147483647ms"


def test_the_reader_can_neither_take_nor_hold_a_pipeline_lock(engine: Engine, db_url: str) -> None:
    reader = psycopg2.connect(as_reader(db_url))
    try:
        for sql in (
            "SELECT name FROM pipeline_locks WHERE name = 'publish' FOR UPDATE",
            "SELECT name FROM pipeline_locks WHERE name = 'publish' FOR KEY SHARE",
            "LOCK TABLE pipeline_locks IN ACCESS SHARE MODE",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), reader.cursor() as cur:
                cur.execute(sql)
            reader.rollback()
        # The lock's old form, an advisory lock on a known key, is anybody's to take: it no longer matters.
        with reader.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext('movierec.publish'))")
        with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, 5):
            conn.execute(text("UPDATE recommendation_batches SET top_n = top_n"))
    finally:
        reader.close()
