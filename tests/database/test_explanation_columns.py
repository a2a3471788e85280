"""Migration 0009: each list entry's explanation (``because``, ``shared``, ``reason``), shown by the views."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from database.engine import READER_ROLE
from database.migrate import alembic_config, current_revision, head_revision, upgrade


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
        conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        conn.execute(
            text(
                "INSERT INTO movies (movie_id, title, source) VALUES (1, 'Fargo', 't'), "
                "(2, 'Blood Simple', 't'), (3, 'Raising Arizona', 't')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO model_versions (registered_model, registered_version, dataset, protocol, "
                "primary_metric, status) VALUES ('movierec-hybrid', 1, 'd', 'temporal', 'ndcg_at_10', 'champion')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO recommendation_batches (model_version_id, top_n, users, fallback_users, rows, "
                "status) SELECT model_version_id, 1, 1, 0, 1, 'published' FROM model_versions"
            )
        )
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
