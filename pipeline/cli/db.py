"""``movierec db``: the embedded PostgreSQL server, or ``DATABASE_URL``'s."""

from __future__ import annotations

import typer

from pipeline.cli.render import out
from pipeline.core.settings import get_settings

app = typer.Typer(help="The app database: the embedded server, or DATABASE_URL.", no_args_is_help=True)


@app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL server (no-op when running or when DATABASE_URL is set)."""
    from database import embedded

    settings = get_settings()
    if not settings.embedded:
        out.print("DATABASE_URL is set: nothing embedded to start")
        return
    embedded.start(settings)
    st = embedded.status(settings)
    out.print(f"embedded PostgreSQL running (pid {st.pid}) with data in {st.pgdata}")


@app.command("stop")
def db_stop() -> None:
    """Stop the embedded server of this MOVIEREC_HOME."""
    from database import embedded

    settings = get_settings()
    if not settings.embedded:
        out.print("DATABASE_URL is set: nothing embedded to stop")
        return
    out.print("stopped" if embedded.stop(settings) else "not running")


@app.command("status")
def db_status() -> None:
    """Say where the app database is and whether it answers; exit 1 when it does not."""
    from sqlalchemy import text

    from database import embedded
    from database.engine import get_engine
    from database.migrate import current_revision

    settings = get_settings()
    if settings.embedded:
        st = embedded.status(settings)
        if not st.running:
            out.print(f"embedded PostgreSQL: not running (data dir {st.pgdata})")
            raise typer.Exit(1)
        out.print(f"embedded PostgreSQL: running, pid {st.pid}, data dir {st.pgdata}")
    engine = get_engine(settings)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version")).scalar_one()
    out.print(
        f"server version {version}; schema revision "
        f"{current_revision(engine) or 'none (run: movierec db migrate)'}"
    )


@app.command("migrate")
def db_migrate() -> None:
    """Apply the Alembic migrations up to head (creates every table on an empty database)."""
    from database.engine import get_engine
    from database.migrate import current_revision, upgrade

    engine = get_engine()
    upgrade(engine)
    out.print(f"schema at revision {current_revision(engine)}")


@app.command("url")
def db_url() -> None:
    """Print the app database URL (last line), starting the embedded server if needed."""
    from database.engine import database_url

    print(database_url())
