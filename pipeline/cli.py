"""``movierec``: the command line that tests, DAG tasks and the README share.

Every command is safe to re-run, shows progress on long work, and on failure exits non-zero with a
one-line reason on stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from pipeline.errors import MovierecError
from pipeline.settings import get_settings

app = typer.Typer(help="Weekly batch movie recommender.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The app database: the embedded server, or DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
out = Console()
err = Console(stderr=True)


@db_app.command("start")
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


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded server of this MOVIEREC_HOME."""
    from database import embedded

    settings = get_settings()
    if not settings.embedded:
        out.print("DATABASE_URL is set: nothing embedded to stop")
        return
    out.print("stopped" if embedded.stop(settings) else "not running")


@db_app.command("status")
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
    out.print(f"server version {version}; schema revision {current_revision(engine) or 'none (run: movierec db migrate)'}")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the Alembic migrations up to head (creates every table on an empty database)."""
    from database.engine import get_engine
    from database.migrate import current_revision, upgrade

    engine = get_engine()
    upgrade(engine)
    out.print(f"schema at revision {current_revision(engine)}")


@db_app.command("url")
def db_url() -> None:
    """Print the app database URL (last line), starting the embedded server if needed."""
    from database.engine import database_url

    print(database_url())


@app.command()
def ingest(
    dataset: Annotated[Optional[str], typer.Option(help="named dataset: ml-100k, ml-1m, ml-latest-small, "
                                                        "ml-25m, ml-32m")] = None,
    source: Annotated[Optional[Path], typer.Option(help="a directory in a GroupLens (or RecBole) layout")] = None,
    imdb: Annotated[Optional[Path], typer.Option(help="directory with IMDb TSV dumps to enrich from")] = None,
) -> None:
    """Load a MovieLens dataset (and optionally IMDb) into the database, then summarise it."""
    from database.engine import get_engine
    from database.migrate import upgrade
    from pipeline.ingest import ingest_directory

    if (dataset is None) == (source is None):
        raise click.UsageError("give exactly one of --dataset NAME or --source DIR")
    settings = get_settings()
    if dataset is not None:
        from pipeline.datasets import fetch_dataset

        fetched = fetch_dataset(dataset, settings, echo=lambda msg: err.print(msg))
        directory, origin = fetched.path, fetched.source
    else:
        directory, origin = source, str(source.resolve())
    engine = get_engine(settings)
    upgrade(engine)  # idempotent: a fresh database needs no separate migrate step
    result = ingest_directory(engine, directory, dataset=dataset, source=origin, imdb_dir=imdb,
                              progress=sys.stderr.isatty())
    _print_ingest(result)
    _print_summary(engine)


def _print_ingest(result) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"ingest run {result.ingest_run_id}: {result.dataset} ({result.layout} layout)")
    for col in ("rows", "accepted", "rejected", "inserted", "updated"):
        table.add_column(col, justify="right" if col != "rows" else "left")
    for kind in ("movies", "users", "credits", "ratings"):
        c = result.counts
        if f"{kind}_accepted" in c:
            table.add_row(kind, *(str(c.get(f"{kind}_{k}", "")) for k in ("accepted", "rejected", "inserted",
                                                                              "updated")))
    out.print(table)
    if result.rows_rejected:
        out.print(f"[yellow]{result.rows_rejected} rejected lines kept in rejected_rows "
                  f"(ingest_run_id = {result.ingest_run_id})[/yellow]")
    out.print("timings (s): " + ", ".join(f"{k} {v}" for k, v in result.timings.items()))


def _print_summary(engine) -> None:  # type: ignore[no-untyped-def]
    from pipeline.summary import database_summary

    s = database_summary(engine)
    out.print(f"database: {s['ratings']:,} ratings by {s['users']:,} users of {s['movies']:,} movies "
              f"({s['first_rating']} to {s['last_rating']}, mean {s['mean_rating']}); "
              f"{s['persons']:,} people, directors known for {s['movies_with_director']:,} movies; "
              f"{s['rejected_rows']:,} rejected rows over {s['ingest_runs']} ingest runs")
    table = Table(title="most-rated movies")
    for col in ("title", "year", "ratings", "mean rating"):
        table.add_column(col)
    for m in s["most_rated"]:
        table.add_row(m["title"], str(m["year"] or ""), str(m["ratings"]), str(m["mean_rating"]))
    out.print(table)


def main() -> None:
    """Entry point: expected failures become one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except MovierecError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # anything unexpected still ends in one readable line, not a traceback
        logging.getLogger("pipeline").debug("unexpected failure", exc_info=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err.print(f"error: {type(exc).__name__}: {first}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
