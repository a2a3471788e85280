"""The read-only role ``movierec_reader``: exactly what the API reads (migration 0004), the queries the API
runs, no temporary tables, and on the embedded server its timeouts and which databases it may enter."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import psycopg2
import psycopg2.errors
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text

from database.engine import as_reader, sqlalchemy_url
from database.migrate import alembic_config, current_revision, upgrade
from database.roles import READER_ROLE
from pipeline.batch.fallback import most_rated
from tests.support.database import admin_connection, with_database

# The read-only role's contract: whole views (analysts) and the columns the API reads. Nothing else.
VIEWS = {
    "current_recommendations",
    "recommendation_batch_summary",
    "recommendation_churn",
    "recommendation_popularity",
    # migration 0005, for the web UI: every kept batch's lists, and each version's gate decision
    "recommendation_history",
    "model_version_decisions",
}
COLUMNS = (
    {("movies", c) for c in ("movie_id", "title", "year", "genres")}
    | {
        ("recommendation_batches", c)
        for c in ("batch_id", "model_version_id", "status", "data_cutoff", "generated_at", "top_n")
    }
    | {("model_versions", c) for c in ("model_version_id", "registered_version")}
    | {("ratings", c) for c in ("user_id", "movie_id", "rated_at")}
    | {("dismissals", c) for c in ("user_id", "movie_id")}  # migration 0007: left out of a user's answers
    | {("recommendation_batches", "list_metrics")}  # migration 0008: each batch's list-set figures
    # migration 0009: a group member's explanation names the directors and actors a movie shares
    | {("movie_persons", c) for c in ("movie_id", "person_id", "role", "ordering")}
    | {("persons", c) for c in ("person_id", "name")}
)


def _reader(db_url: str):  # type: ignore[no-untyped-def]
    return psycopg2.connect(as_reader(db_url))


@pytest.fixture
def reader(db_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = _reader(db_url)
    yield conn
    conn.close()


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


def test_reader_may_read_exactly_the_contract(engine: Engine) -> None:
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT c.table_name, c.column_name, t.table_type FROM information_schema.columns c "
                "JOIN information_schema.tables t USING (table_schema, table_name) "
                "WHERE c.table_schema = 'public'"
            )
        ).all()
        readable = {
            (table, column, kind)
            for table, column, kind in columns
            if conn.execute(
                text("SELECT has_column_privilege(:role, :t, :c, 'SELECT')"),
                {"role": READER_ROLE, "t": f"public.{table}", "c": column},
            ).scalar_one()
        }
        writable = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S') AND ("
                "has_table_privilege(:role, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') "
                "OR has_any_column_privilege(:role, c.oid, 'INSERT, UPDATE, REFERENCES'))"
            ),
            {"role": READER_ROLE},
        ).all()
    view_columns = {(t, c) for t, c, kind in columns if kind == "VIEW" and t in VIEWS}
    assert {(t, c) for t, c, _ in readable} == COLUMNS | view_columns
    assert {t for t, _, kind in readable if kind == "VIEW"} == VIEWS
    assert writable == []


def test_reader_cannot_read_raw_rejects_paths_or_demographics(reader) -> None:  # type: ignore[no-untyped-def]
    for sql in (
        "SELECT raw_text FROM rejected_rows",
        "SELECT count(*) FROM rejected_rows",
        "SELECT source FROM ingest_runs",
        "SELECT gender, age, occupation, zip FROM users",
        "SELECT count(*) FROM users",
        "SELECT rating FROM ratings",
        "SELECT * FROM movies",  # overview and ids beyond the contract
        "SELECT metrics, params, mlflow_run_id FROM model_versions",
        "SELECT count(*) FROM text_embeddings",
        "SELECT * FROM pipeline_locks",
        "SELECT * FROM alembic_version",
    ):
        assert _denied(reader, sql), sql
    for sql in (
        "SELECT name FROM pipeline_locks WHERE name = 'publish' FOR UPDATE",
        "LOCK TABLE pipeline_locks IN ROW SHARE MODE",
        "LOCK TABLE recommendation_batches IN ROW EXCLUSIVE MODE",
        "SELECT batch_id FROM recommendation_batches FOR UPDATE",
        "INSERT INTO movies (movie_id, title, source) VALUES (99999, 'x', 'x')",
    ):
        assert _denied(reader, sql), sql


def test_every_query_of_the_api_runs_as_the_reader(engine: Engine, db_url: str) -> None:
    """The API's own statements (every query of model_server.db, and pipeline.batch.fallback.most_rated),
    run as the reader."""
    from model_server import db as api_db

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (1), (2)"))
        conn.execute(
            text("INSERT INTO movies (movie_id, title, source) VALUES (10, 'A', 't'), (11, 'B', 't')")
        )
        conn.execute(
            text("INSERT INTO ratings VALUES (1, 10, 4, now()), (2, 10, 5, now()), (2, 11, 3, now())")
        )

    queries = [
        v for v in vars(api_db).values() if isinstance(v, str) and v.lstrip().upper().startswith("SELECT")
    ]
    assert len(queries) >= 3  # the user's list, the published batch, the movies

    async def run() -> list[int]:
        conn = await asyncpg.connect(as_reader(db_url))
        try:
            for query in queries:  # executed (privileges are checked when a statement runs), NULL arguments
                statement = await conn.prepare(query)
                await statement.fetch(*[None] * len(statement.get_parameters()))
            rows = await conn.fetch(api_db._MOVIES, [10, 11])
            return sorted(r["movie_id"] for r in rows)
        finally:
            await conn.close()

    assert asyncio.run(run()) == [10, 11]
    reader_engine = create_engine(sqlalchemy_url(as_reader(db_url)))
    try:
        with reader_engine.connect() as conn:
            movies, share = most_rated(conn, None, 1000)
            for view in sorted(VIEWS):
                conn.execute(text(f"SELECT * FROM {view} LIMIT 1"))  # analysts' views
    finally:
        reader_engine.dispose()
    assert movies.tolist() == [10, 11] and share.tolist() == [1.0, 0.5]


def test_migration_0004_takes_temporary_tables_away_and_downgrades(engine: Engine, db_url: str) -> None:
    """A database copied from the template has default database rights, so this one goes down to 0003 and
    up again: 0003 let the reader read every table and create temporary tables; 0004 neither."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    assert current_revision(engine) == "0003"
    reader = _reader(db_url)
    try:
        assert not _denied(reader, "SELECT raw_text FROM rejected_rows")
        assert not _denied(reader, "CREATE TEMP TABLE scratch (x int)")
    finally:
        reader.close()
    upgrade(engine)
    reader = _reader(db_url)
    try:
        assert _denied(reader, "SELECT raw_text FROM rejected_rows")
        assert _denied(reader, "CREATE TEMP TABLE scratch (x int)")
    finally:
        reader.close()
    with engine.begin() as conn:  # the pipeline's role keeps its temporary tables
        conn.execute(text("CREATE TEMP TABLE stage (x int) ON COMMIT DROP"))
        assert conn.execute(text("SELECT name FROM pipeline_locks ORDER BY name")).scalars().all() == [
            "promotion",
            "publish",
        ]


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL set: no embedded server")
def test_embedded_server_bounds_the_reader_and_keeps_it_out_of_other_databases(server_url: str) -> None:
    from pipeline.core.defaults import READER_IDLE_IN_TRANSACTION_TIMEOUT_S, READER_STATEMENT_TIMEOUT_S

    app = psycopg2.connect(as_reader(with_database(server_url, "movierec")))
    try:
        with app.cursor() as cur:
            cur.execute(
                "SELECT name, setting::int FROM pg_settings "
                "WHERE name IN ('statement_timeout', 'idle_in_transaction_session_timeout')"
            )
            timeouts_ms = dict(cur.fetchall())
            cur.execute(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            )
            privileged = cur.fetchone()[0]
        assert timeouts_ms == {
            "statement_timeout": READER_STATEMENT_TIMEOUT_S * 1000,
            "idle_in_transaction_session_timeout": READER_IDLE_IN_TRANSACTION_TIMEOUT_S * 1000,
        }
        assert not privileged
        assert _denied(app, "CREATE TEMP TABLE scratch (x int)")
    finally:
        app.close()
    for name in ("postgres", "airflow"):
        with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
            psycopg2.connect(as_reader(with_database(server_url, name)))

    # The registry: MLflow's tables, those created later included, readable and nothing more.
    admin = admin_connection(with_database(server_url, "mlflow"))
    with admin.cursor() as cur:
        cur.execute("CREATE TABLE reader_probe (x int)")
        cur.execute("INSERT INTO reader_probe VALUES (1)")
    try:
        registry = psycopg2.connect(as_reader(with_database(server_url, "mlflow")))
        try:
            with registry.cursor() as cur:
                cur.execute("SELECT x FROM reader_probe")
                assert cur.fetchall() == [(1,)]
            registry.rollback()
            assert _denied(registry, "INSERT INTO reader_probe VALUES (2)")
            assert _denied(registry, "CREATE TEMP TABLE scratch (x int)")
            assert _denied(registry, "CREATE TABLE mine (x int)")
        finally:
            registry.close()
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP TABLE reader_probe")
        admin.close()


def test_the_web_uis_views_show_no_run_ids_metrics_or_params(engine: Engine) -> None:
    """Migration 0005's views: the gate's own figures and the kept lists, nothing of MLflow or training."""
    with engine.connect() as conn:
        columns = set(
            conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_name IN ('model_version_decisions', 'recommendation_history')"
                )
            ).all()
        )
    assert {c for t, c in columns if t == "model_version_decisions"} == {
        "model_version_id", "registered_model", "registered_version", "dataset", "data_cutoff", "protocol",
        "primary_metric", "metric_value", "champion_metric_value", "status", "decision", "trained_at",
    }  # fmt: skip
    assert {c for t, c in columns if t == "recommendation_history"} == {
        "batch_id", "batch_status", "user_id", "rank", "movie_id", "score", "source", "model_version",
        "generated_at",
        "because", "shared", "reason",  # migration 0009: each entry's explanation
    }  # fmt: skip


def test_every_query_of_the_web_ui_runs_as_the_reader(engine: Engine, db_url: str) -> None:
    """The pages' own statements (``model_server.web.queries``) run as the reader, on data of each kind."""
    from model_server.web import queries as ui_queries

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        conn.execute(text("INSERT INTO movies (movie_id, title, source) VALUES (10, 'A', 't')"))
        conn.execute(text("INSERT INTO ratings VALUES (1, 10, 4, now())"))
    queries = [
        v for v in vars(ui_queries).values() if isinstance(v, str) and v.lstrip().upper().startswith("SELECT")
    ]
    assert len(queries) >= 8

    async def run() -> tuple[int, list[int]]:
        conn = await asyncpg.connect(as_reader(db_url))
        try:
            for query in queries:
                statement = await conn.prepare(query)
                await statement.fetch(*[None] * len(statement.get_parameters()))
            rated = await conn.fetch(ui_queries.USER_RATED, 1, 10)
            months = await conn.fetch(ui_queries.MOVIE_RATINGS_PER_MONTH, 10)
            return rated[0]["total"], [m["ratings"] for m in months]
        finally:
            await conn.close()

    assert asyncio.run(run()) == (1, [1])


def test_reader_may_compare_batches_with_what_it_reads_already(engine: Engine, reader) -> None:  # type: ignore[no-untyped-def]
    """Migration 0006's ``compare_batches`` runs with its caller's rights over what the reader may read:
    it runs as the reader (EXECUTE granted), not as its owner, and PUBLIC may not run it."""
    with reader.cursor() as cur:
        cur.execute("SELECT users_a, users_both, overlap_at_k FROM compare_batches(1, 2)")
        assert cur.fetchall() == [(0, 0, None)]
    reader.rollback()
    with engine.connect() as conn:
        security_definer, public_may_run = conn.execute(
            text(
                "SELECT prosecdef, has_function_privilege('public', p.oid, 'EXECUTE') FROM pg_proc p "
                "WHERE proname = 'compare_batches'"
            )
        ).one()
    assert not security_definer and not public_may_run
