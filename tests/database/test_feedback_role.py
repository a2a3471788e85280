"""The API's one writer, ``movierec_feedback`` (migration 0007): it records dismissals and may do nothing
else; the reader may read which movies a user dismissed and may not write them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy import Engine, text

from database.engine import as_reader, as_role
from database.roles import FEEDBACK_ROLE, READER_ROLE
from tests.support.database import with_database


def _denied(conn, sql: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether PostgreSQL refuses ``sql`` for lack of privilege (the transaction is rolled back either way)."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return False
    except psycopg2.errors.InsufficientPrivilege:
        return True
    finally:
        conn.rollback()


@pytest.fixture
def feedback(db_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(as_role(db_url, FEEDBACK_ROLE))
    yield conn
    conn.close()


@pytest.fixture
def catalogue(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (1), (2)"))
        conn.execute(
            text("INSERT INTO movies (movie_id, title, source) VALUES (10, 'A', 't'), (11, 'B', 't')")
        )
        conn.execute(text("INSERT INTO ratings VALUES (1, 10, 4, now())"))


def test_feedback_may_insert_dismissals_and_nothing_else(engine: Engine) -> None:
    with engine.connect() as conn:
        rights = conn.execute(
            text(
                "SELECT c.relname, p.privilege FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', "
                "'TRIGGER']) p (privilege) "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S') AND ("
                "has_table_privilege(:role, c.oid, p.privilege) OR (p.privilege IN "
                "('SELECT', 'INSERT', 'UPDATE', 'REFERENCES') AND has_any_column_privilege(:role, c.oid, "
                "p.privilege)))"
            ),
            {"role": FEEDBACK_ROLE},
        ).all()
        insertable = (
            conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'dismissals' "
                    "AND has_column_privilege(:role, 'public.dismissals', column_name, 'INSERT') ORDER BY 1"
                ),
                {"role": FEEDBACK_ROLE},
            )
            .scalars()
            .all()
        )
        functions = conn.execute(
            text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public' AND has_function_privilege(:role, p.oid, 'EXECUTE')"
            ),
            {"role": FEEDBACK_ROLE},
        ).scalar_one()
    assert sorted(rights) == [("dismissals", "INSERT"), ("dismissals", "SELECT")]
    assert insertable == ["movie_id", "user_id"]  # dismissed_at is the server's clock
    assert functions == 0


@pytest.mark.usefixtures("catalogue")
def test_feedback_cannot_read_or_write_anything_else(feedback) -> None:  # type: ignore[no-untyped-def]
    for sql in (
        "SELECT user_id, movie_id FROM ratings",
        "SELECT count(*) FROM users",
        "SELECT title FROM movies",
        "SELECT * FROM current_recommendations",
        "SELECT * FROM recommendation_batches",
        "DELETE FROM dismissals",
        "UPDATE dismissals SET dismissed_at = now()",
        "TRUNCATE dismissals",
        "INSERT INTO dismissals (user_id, movie_id, dismissed_at) VALUES (1, 10, '2001-01-01')",
        "INSERT INTO batch_recommendations (batch_id, user_id, rank, movie_id, score, source, "
        "model_version_id, generated_at) VALUES (1, 1, 1, 10, 1, 'model', 1, now())",
        "INSERT INTO ratings VALUES (2, 11, 5, now())",
        "SELECT name FROM pipeline_locks FOR UPDATE",
        "CREATE TABLE mine (x int)",
    ):  # temporary tables: refused on the app database itself (a test's copy has default database rights)
        assert _denied(feedback, sql), sql


@pytest.mark.usefixtures("catalogue")
def test_the_apis_dismissal_runs_as_feedback_once_and_refuses_unknown_ids(
    engine: Engine, db_url: str
) -> None:
    """``model_server.db._DISMISS`` as the role: a new row, then the same row again (nothing changes); an
    unknown user or movie is refused by the foreign key (no row)."""
    from model_server import db as api_db

    async def run() -> tuple[list[asyncpg.Record], list[str]]:
        conn = await asyncpg.connect(as_role(db_url, FEEDBACK_ROLE))
        try:
            rows = [(await conn.fetch(api_db._DISMISS, 1, 11))[0] for _ in range(2)]
            refused = []
            for user, movie in ((999, 11), (1, 999)):
                with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
                    await conn.fetch(api_db._DISMISS, user, movie)
                refused.append(caught.value.constraint_name)
            return rows, refused
        finally:
            await conn.close()

    (first, again), refused = asyncio.run(run())
    assert (first["user_id"], first["movie_id"], first["created"]) == (1, 11, True)
    assert (again["created"], again["dismissed_at"]) == (False, first["dismissed_at"])
    assert refused == ["dismissals_user_id_fkey", "dismissals_movie_id_fkey"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT user_id, movie_id FROM dismissals")).all() == [(1, 11)]


@pytest.mark.usefixtures("catalogue")
def test_reader_reads_dismissed_movies_but_cannot_write_them(engine: Engine, db_url: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO dismissals (user_id, movie_id) VALUES (1, 10)"))
    reader = psycopg2.connect(as_reader(db_url))
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT user_id, movie_id FROM dismissals")
            assert cur.fetchall() == [(1, 10)]
        reader.rollback()
        for sql in (
            "INSERT INTO dismissals (user_id, movie_id) VALUES (1, 11)",
            "DELETE FROM dismissals",
            "UPDATE dismissals SET movie_id = 11",
            "SELECT dismissed_at FROM dismissals",  # when is not the API's to read
        ):
            assert _denied(reader, sql), sql
    finally:
        reader.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT user_id, movie_id FROM dismissals")).all() == [(1, 10)]


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL set: no embedded server")
def test_embedded_server_bounds_feedback_like_the_reader_and_keeps_it_to_the_app_database(
    server_url: str,
) -> None:
    from pipeline.core.defaults import READER_IDLE_IN_TRANSACTION_TIMEOUT_S, READER_STATEMENT_TIMEOUT_S

    app = psycopg2.connect(as_role(with_database(server_url, "movierec"), FEEDBACK_ROLE))
    try:
        with app.cursor() as cur:
            cur.execute(
                "SELECT name, setting::int FROM pg_settings "
                "WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout')"
            )
            timeouts_ms = dict(cur.fetchall())
            cur.execute(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR pg_has_role(current_user, %s, 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user",
                (READER_ROLE,),
            )
            privileged = cur.fetchone()[0]
        assert timeouts_ms == {
            "statement_timeout": READER_STATEMENT_TIMEOUT_S * 1000,
            "idle_in_transaction_session_timeout": READER_IDLE_IN_TRANSACTION_TIMEOUT_S * 1000,
        }
        assert not privileged  # and no member of the reader: it reads nothing through it
        assert _denied(app, "CREATE TEMP TABLE scratch (x int)")
    finally:
        app.close()
    for name in ("postgres", "airflow", "mlflow"):
        with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
            psycopg2.connect(as_role(with_database(server_url, name), FEEDBACK_ROLE))


def test_migration_0007_downgrades_and_upgrades_again(engine: Engine) -> None:
    from alembic import command

    from database.migrate import alembic_config, current_revision, head_revision, upgrade

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('public.dismissals')")).scalar_one() is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT has_column_privilege(:r, 'public.dismissals', 'movie_id', 'INSERT')"),
            {"r": FEEDBACK_ROLE},
        ).scalar_one()
