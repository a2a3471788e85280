"""Migration 0009: each list entry's explanation (``because``, ``shared``, ``reason``), shown by the views."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, Engine, text

from database.migrate import alembic_config, current_revision, head_revision, upgrade
from database.roles import READER_ROLE


def _view_columns(engine: Engine, view: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = :v "
                    "ORDER BY ordinal_position"
                ),
                {"v": view},
            ).scalars()
        )


def _published_batch(conn: Connection, rows: int) -> int:
    """User 1, four Coen brothers movies, a champion and a published batch of ``rows`` rows to fill."""
    conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
    conn.execute(
        text(
            "INSERT INTO movies (movie_id, title, source) VALUES (1, 'Fargo', 't'), "
            "(2, 'Blood Simple', 't'), (3, 'Raising Arizona', 't'), (4, 'Miller''s Crossing', 't')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO model_versions (registered_model, registered_version, dataset, protocol, "
            "primary_metric, status) VALUES ('movierec-hybrid', 1, 'd', 'temporal', 'ndcg_at_10', 'champion')"
        )
    )
    return int(
        conn.execute(
            text(
                "INSERT INTO recommendation_batches (model_version_id, top_n, users, fallback_users, rows, "
                "status) SELECT model_version_id, :n, 1, 0, :n, 'published' FROM model_versions "
                "RETURNING batch_id"
            ),
            {"n": rows},
        ).scalar_one()
    )


def test_views_show_the_explanation_after_their_earlier_columns(engine: Engine) -> None:
    assert _view_columns(engine, "current_recommendations")[-4:] == [
        "because",
        "because_titles",
        "shared",
        "reason",
    ]
    assert _view_columns(engine, "current_recommendations")[0] == "user_id"
    assert _view_columns(engine, "recommendation_history")[-3:] == ["because", "shared", "reason"]


def test_because_titles_follow_because_order(engine: Engine) -> None:
    with engine.begin() as conn:
        _published_batch(conn, rows=1)
        conn.execute(
            text(
                "INSERT INTO batch_recommendations (batch_id, user_id, rank, movie_id, score, source, "
                "model_version_id, generated_at, because, shared, reason) "
                "SELECT batch_id, 1, 1, 3, 1.0, 'model', model_version_id, now(), '{2,1}', "
                "'{\"genres\": [\"Comedy\"]}', 'Because you rated Blood Simple and Fargo highly' "
                "FROM recommendation_batches"
            )
        )
        row = conn.execute(
            text("SELECT because, because_titles, shared, reason FROM current_recommendations")
        ).one()
    assert row.because == [2, 1]
    assert row.because_titles == ["Blood Simple", "Fargo"]
    assert row.shared == {"genres": ["Comedy"]}
    assert row.reason.startswith("Because you rated Blood Simple")


def test_migration_0009_downgrades_and_upgrades_again(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
    assert "because" not in _view_columns(engine, "current_recommendations")
    assert _view_columns(engine, "recommendation_popularity")  # its dependant is back
    with engine.connect() as conn:
        assert not conn.execute(
            text("SELECT has_column_privilege(:r, 'public.persons', 'name', 'SELECT')"), {"r": READER_ROLE}
        ).scalar_one()
        assert conn.execute(
            text("SELECT has_table_privilege(:r, 'public.recommendation_popularity', 'SELECT')"),
            {"r": READER_ROLE},
        ).scalar_one()
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _view_columns(engine, "recommendation_history")[-1] == "reason"


def test_the_views_assemble_shared_and_reason_from_the_parts_and_the_downgrade_keeps_them(
    engine: Engine,
) -> None:
    """0012: a row with a ``shared_key`` shows its batch's shared attributes and the sentence assembled from
    ``because``'s titles, ``rated_highly`` and the clause; a row without one shows what it stores. Going
    back to 0011 writes the assembled JSON and sentence onto the row."""
    with engine.begin() as conn:
        batch = _published_batch(conn, rows=2)
        conn.execute(
            text(
                "INSERT INTO batch_shared_attributes (batch_id, shard, shared_key, shared, clause) VALUES (:b, 0, 42, "
                '\'{"genres": ["Crime"], "directors": ["Joel Coen"], "actors": []}\', '
                "'; same director: Joel Coen')"
            ),
            {"b": batch},
        )
        conn.execute(
            text(
                "INSERT INTO batch_recommendations (batch_id, user_id, rank, movie_id, score, source, "
                "model_version_id, generated_at, because, rated_highly, shared_key, reason) "
                "SELECT :b, 1, 1, 4, 1.0, 'model', model_version_id, now(), '{2,1,3}'::int[], true, 42, '' "
                "FROM model_versions UNION ALL "
                "SELECT :b, 1, 2, 3, 0.5, 'model', model_version_id, now(), '{}'::int[], false, 0, 'stored' "
                "FROM model_versions"
            ),
            {"b": batch},
        )
    expected = [
        (
            {"genres": ["Crime"], "directors": ["Joel Coen"], "actors": []},
            "Because you rated Blood Simple, Fargo and Raising Arizona highly; same director: Joel Coen",
        ),
        ({}, "stored"),
    ]
    for view in ("current_recommendations", "recommendation_history"):
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT shared, reason FROM {view} ORDER BY rank")).tuples().all()
        assert rows == expected, view
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT shared, reason FROM batch_recommendations ORDER BY rank")).tuples()
        assert stored.all() == expected
        assert (
            conn.execute(text("SELECT shared, reason FROM current_recommendations ORDER BY rank"))
            .tuples()
            .all()
            == expected
        )
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        rows = (
            conn.execute(text("SELECT shared, reason FROM current_recommendations ORDER BY rank"))
            .tuples()
            .all()
        )
    assert rows == expected  # the rows now carry their own (key 0)
