"""``movierec``: the command line that tests, DAG tasks and the README share.

Every command is safe to re-run, shows progress on long work, and on failure exits non-zero with a
one-line reason on stderr. One module per group of commands: ``db``, ``data`` (ingest), ``model`` (train,
evaluate), ``batch`` (recommend, run, publish, compare-batches), ``airflow``, ``serve``; ``render`` prints,
``options`` holds the shared options.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import typer

from pipeline.cli import airflow, batch, data, db, model, serve
from pipeline.cli.render import err
from pipeline.core.errors import MovierecError, one_line

__all__ = ["app", "main"]

app = typer.Typer(help="Weekly batch movie recommender.", no_args_is_help=True, add_completion=False)
app.add_typer(db.app, name="db")
app.add_typer(airflow.app, name="airflow")
app.command()(data.ingest)
app.command()(model.train)
app.command()(model.evaluate)
app.command()(batch.recommend)
app.command()(batch.run)
app.command("publish")(batch.publish_kept)
app.command("compare-batches")(batch.compare_batches)
app.command()(serve.serve)


def main() -> None:
    """Entry point: expected failures become one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow configures its own INFO logging on import ("Creating initial MLflow database tables..."):
    # the CLI's stderr is for progress and one-line failures.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    try:
        # Outside standalone mode a command's ``typer.Exit(code)`` comes back as the return value; the name is
        # the command's under `python -m pipeline.cli` too.
        code = app(standalone_mode=False, prog_name="movierec")
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:  # the commands' own usage checks
        exc.show()
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Typer parses options with a click of its own (typer._click), whose errors are not click's; each is
        # that copy's ClickException (the only TyperException), shown as click's are: usage line, option.
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(130)
    except MovierecError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:  # anything unexpected still ends in one readable line, not a traceback
        logging.getLogger("pipeline").debug("unexpected failure", exc_info=True)
        err.print(f"error: {one_line(exc)}{_hint(exc)}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


# PostgreSQL's SQLSTATE for a missing table or column: the database was never migrated, or is behind the code.
_SCHEMA_MISSING = {"42P01": "table", "42703": "column"}


def _hint(exc: BaseException) -> str:
    """What to do about a failure whose cause the one line does not say."""
    # psycopg2's error itself (a bulk read), or wrapped by SQLAlchemy
    code = getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    what = _SCHEMA_MISSING.get(code or "")
    if what:
        return (
            f" (a {what} the code expects is missing: is the database migrated? run `movierec db migrate`, "
            "then ingest a dataset with `movierec ingest`)"
        )
    return ""


if __name__ == "__main__":
    main()
