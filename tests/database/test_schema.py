from sqlalchemy import inspect, text

from database.migrate import current_revision, upgrade
from database.models import Base


def test_upgrade_head_builds_every_table(engine):
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(engine) is not None


def test_upgrade_is_idempotent(engine):
    before = current_revision(engine)
    upgrade(engine)
    assert current_revision(engine) == before


def test_models_match_migrations(engine):
    """Autogenerate finds nothing to do: the models and the migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_latest_rating_wins_is_enforced_by_key(engine):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (1)"))
        conn.execute(text("INSERT INTO movies (movie_id, title, source) VALUES (1, 'A', 't')"))
        conn.execute(text("INSERT INTO ratings VALUES (1, 1, 4, now())"))
    with engine.begin() as conn:
        try:
            conn.execute(text("INSERT INTO ratings VALUES (1, 1, 5, now())"))
            raised = False
        except Exception:
            raised = True
    assert raised
