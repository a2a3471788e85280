"""``movierec``: the command line that tests, DAG tasks and the README share.

Every command is safe to re-run, shows progress on long work, and on failure exits non-zero with a
one-line reason on stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli_airflow import app as airflow_app
from pipeline.cli_serve import serve
from pipeline.errors import MovierecError
from pipeline.settings import get_settings

app = typer.Typer(help="Weekly batch movie recommender.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The app database: the embedded server, or DATABASE_URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(airflow_app, name="airflow")
app.command()(serve)
# Logs and pipes get wide tables rather than rich's 80-column default, so no figure is cut.
out = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)


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
    dataset: Annotated[str | None, typer.Option(help="named dataset: ml-100k, ml-1m, ml-latest-small, "
                                                        "ml-25m, ml-32m")] = None,
    source: Annotated[Path | None, typer.Option(help="a directory in a GroupLens (or RecBole) layout")] = None,
    imdb: Annotated[Path | None, typer.Option(help="directory with IMDb TSV dumps to enrich from")] = None,
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


def _parse_as_of(value: str | None):  # type: ignore[no-untyped-def]
    from pipeline.weekly import parse_as_of

    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date such as 1998-01-01") from exc


AsOf = Annotated[str | None, typer.Option("--as-of", help="data cut-off (ISO date): later ratings are unseen")]
Epochs = Annotated[int | None, typer.Option(min=1, help="maximum epochs (early stopping may end sooner)")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: MOVIEREC_DEVICE)")]


def _config(epochs: int | None):  # type: ignore[no-untyped-def]
    from pipeline.weekly import hybrid_config

    return hybrid_config(epochs)


def _device(device: str | None) -> str:
    value = device or get_settings().device
    if value not in ("auto", "cpu", "cuda"):
        raise click.BadParameter(f"--device must be auto, cpu or cuda, not {value!r}")
    return value


@app.command()
def train(as_of: AsOf = None, epochs: Epochs = None, device: Device = None,
          all_protocols: Annotated[bool, typer.Option(
              "--all-protocols", help="also evaluate the random protocol (RMSE/MAE): two more trainings")] = False,
          ) -> None:
    """Evaluate beside the baselines, train on all data up to the cut-off, register in MLflow, run the gate."""
    from database.engine import get_engine
    from pipeline.training import PRIMARY_PROTOCOL, train_and_register

    settings = get_settings()
    protocols = (PRIMARY_PROTOCOL, "random") if all_protocols else (PRIMARY_PROTOCOL,)
    outcome = train_and_register(settings, get_engine(settings), as_of=_parse_as_of(as_of), cfg=_config(epochs),
                                 device=_device(device), progress=sys.stderr.isatty(), protocols=protocols)
    out.print(outcome.evaluation.report.table())
    _print_extras(outcome.evaluation)
    d = outcome.decision
    verdict = "promoted to champion" if d.promoted else "not promoted"
    out.print(f"registered movierec-hybrid version {outcome.version} (MLflow run {outcome.run_id}): {verdict} — "
              f"{d.reason}")
    out.print(f"evaluation report: {outcome.report_path}")


@app.command()
def evaluate(as_of: AsOf = None, epochs: Epochs = None, device: Device = None,
             output: Annotated[Path | None, typer.Option(help="write the report as JSON here")] = None) -> None:
    """Both protocols, every baseline and the network on the same splits, plus item cold start."""
    import json

    from database.engine import get_engine
    from pipeline.features import load_training_data
    from pipeline.training import evaluate_all

    settings = get_settings()
    engine = get_engine(settings)
    data = load_training_data(engine, _parse_as_of(as_of), progress=sys.stderr.isatty())
    outcome = evaluate_all(data, _config(epochs), device=_device(device), progress=sys.stderr.isatty())
    out.print(outcome.report.table())
    _print_extras(outcome)
    if output:
        output.write_text(json.dumps(outcome.to_dict(), indent=1))
        out.print(f"report written to {output}")


TopN = Annotated[int, typer.Option("--top-n", min=1, max=10_000, help="list length per user")]


Candidates = Annotated[int | None, typer.Option(
    min=0, help="movies per user the network's rating head re-ranks, retrieved by the cheap terms "
                "(default 500; 0: score every movie with every term)")]


@app.command()
def recommend(top_n: TopN = 100, as_of: AsOf = None, device: Device = None, candidates: Candidates = None) -> None:
    """Score every user with the champion and publish the lists (current_recommendations) atomically."""
    from pipeline.weekly import publish_recommendations

    batch = publish_recommendations(as_of, top_n, device=_device(device) if device else "cpu",
                                    progress=sys.stderr.isatty(), candidates=candidates)
    out.print(f"published batch {batch['batch_id']} scored by movierec-hybrid v{batch['registered_version']}: "
              f"{batch['users']:,} users ({batch['fallback_users']:,} on the fallback list), {batch['rows']:,} rows "
              f"in {batch['timings']['total']} s")
    print_published_lists()


@app.command()
def run(
    dataset: Annotated[str | None, typer.Option(help="named dataset (default ml-100k)")] = None,
    source: Annotated[Path | None, typer.Option(help="a directory in a GroupLens (or RecBole) layout")] = None,
    as_of: AsOf = None, top_n: TopN = 100, epochs: Epochs = None, device: Device = None,
) -> None:
    """The weekly pipeline in one process: ingest, evaluate, train, promote, recommend; then show lists."""
    from pipeline.weekly import run_weekly

    if dataset and source:
        raise click.UsageError("give at most one of --dataset NAME or --source DIR")
    _parse_as_of(as_of)  # a bad date fails before any work

    def on_step(name: str, value: dict) -> None:
        err.print(f"[green]✓[/green] {name}", highlight=False)

    results = run_weekly(dataset or (None if source else "ml-100k"), str(source) if source else None, as_of=as_of,
                         top_n=top_n, epochs=epochs, device=_device(device), progress=sys.stderr.isatty(),
                         on_step=on_step)
    out.print(results["report"], highlight=False)
    print_published_lists()


def print_published_lists(users: int = 3, k: int = 10) -> None:
    from sqlalchemy import text

    from database.engine import database_url, get_engine

    with get_engine().connect() as conn:
        picked = [r[0] for r in conn.execute(text(
            "SELECT user_id FROM (SELECT DISTINCT user_id FROM current_recommendations) u ORDER BY user_id "
            "LIMIT :n"), {"n": users})]
        for user in picked:
            table = Table(title=f"top {k} for user {user}")
            for col in ("rank", "title", "year", "genres", "score", "list"):
                table.add_column(col)
            for r in conn.execute(text(
                    "SELECT rank, title, year, genres, score, source FROM current_recommendations "
                    "WHERE user_id = :u AND rank <= :k ORDER BY rank"), {"u": user, "k": k}):
                table.add_row(str(r.rank), r.title, str(r.year or ""), ", ".join(r.genres), f"{r.score:.3f}",
                              r.source)
            out.print(table)
    url = database_url()
    out.print(f"every user's list: SELECT * FROM current_recommendations (psql \"{url}\"); "
              "example queries in database/sql/examples/", highlight=False, soft_wrap=True)


def _print_extras(outcome) -> None:  # type: ignore[no-untyped-def]
    out.print(f"published = blend: ranking network x {outcome.blend_weight:.1f} + EASE + rating head x "
              f"{outcome.rerank_weight:.2f}, ratings network x {outcome.rating_weight:.1f} + biased MF "
              "(weights chosen on validation splits of the train data)")
    for name, figures in outcome.cold_start.items():
        out.print(f"cold start, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))


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
    # MLflow configures its own INFO logging on import ("Creating initial MLflow database tables..."):
    # the CLI's stderr is for progress and one-line failures.
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
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
