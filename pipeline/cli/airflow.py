"""``movierec airflow``: Airflow on this machine, wired to the project's settings (no Docker).

``standalone`` runs Airflow's UI, scheduler, DAG processor and triggerer; ``run-weekly`` runs the weekly DAG
once through Airflow itself (``dag.test``: one process, real metadata database, real task instances).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from datetime import UTC, datetime
from typing import Annotated

import click
import typer
from rich.table import Table

from pipeline.cli.render import out, print_published_lists
from pipeline.core.dates import parse_as_of
from pipeline.core.errors import MovierecError
from pipeline.core.settings import get_settings

app = typer.Typer(
    help="Airflow without Docker: metadata in the embedded PostgreSQL (or DATABASE_URL's server).",
    no_args_is_help=True,
)

_WIRING = (
    "MOVIEREC_HOME",
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__API__WORKERS",
    "AIRFLOW__API__PORT",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)


@app.command("env")
def env() -> None:
    """Print the Airflow environment as shell exports: eval "$(movierec airflow env)" then use `airflow`.

    On a terminal the metadata database's password is masked; `eval "$(...)"` (a pipe) receives it."""
    from sqlalchemy.engine import make_url

    from pipeline.orchestration.airflow_local import airflow_env

    wired = airflow_env(get_settings())
    if sys.stdout.isatty() and "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in wired:
        url = make_url(wired["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        wired["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url.render_as_string(hide_password=True)
    for key in _WIRING:
        if key in wired:
            print(f"export {key}={shlex.quote(wired[key])}")


@app.command("init")
def init() -> None:
    """Migrate Airflow's metadata database and create the training pool (safe to re-run)."""
    from pipeline.orchestration import airflow_local

    airflow_local.activate(get_settings())
    airflow_local.init_metadata()
    out.print(
        f"Airflow metadata database ready; pool {airflow_local.TRAINING_POOL} "
        f"({airflow_local.TRAINING_POOL_SLOTS} slot)"
    )


@app.command("standalone")
def standalone(port: Annotated[int, typer.Option(help="port of the UI / API server")] = 8080) -> None:
    """Run `airflow standalone` (UI on http://localhost:PORT, scheduler, DAG processor, triggerer)."""
    from pipeline.orchestration import airflow_local

    settings = get_settings()
    os.environ.setdefault("AIRFLOW__API__PORT", str(port))
    os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{port}/execution/")
    wired = airflow_local.activate(settings)
    airflow_local.init_metadata()
    executable = shutil.which("airflow")
    if executable is None:
        raise MovierecError("the `airflow` command is not on PATH (activate the project's virtualenv)")
    passwords = airflow_local.airflow_home(settings) / "simple_auth_manager_passwords.json.generated"
    out.print(
        f"Airflow UI on http://localhost:{port} (user admin, password in {passwords}); DAGs from "
        f"{wired['AIRFLOW__CORE__DAGS_FOLDER']}; stop with Ctrl-C"
    )
    sys.stdout.flush()
    sys.exit(airflow_local.run_standalone([executable, "standalone"]))


@app.command("run-weekly")
def run_weekly_dag(
    logical_date: Annotated[
        str | None, typer.Option(help="the run's logical date = data cut-off (ISO); default: now")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="named dataset (DAG default: ml-100k)")] = None,
    source: Annotated[str | None, typer.Option(help="a directory in a GroupLens/RecBole layout")] = None,
    top_n: Annotated[int | None, typer.Option(min=1, help="length of each published list")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="maximum training epochs")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    max_reject_share: Annotated[float | None, typer.Option(min=0, max=1, help="quality gate")] = None,
    executor: Annotated[
        bool,
        typer.Option(
            "--executor",
            help="run the tasks through Airflow's configured executor (task processes, logs in Airflow's "
            "log folder and UI); needs the Airflow API server, as in the Docker stack",
        ),
    ] = False,
) -> None:
    """Run the weekly DAG once through Airflow (dag.test) and print each task's outcome and the report."""
    from pipeline.orchestration import airflow_local

    conf = {
        key: value
        for key, value in {
            "dataset": dataset,
            "source": source,
            "top_n": top_n,
            "epochs": epochs,
            "device": device,
            "max_reject_share": max_reject_share,
        }.items()
        if value is not None
    }
    if source is not None:
        conf["source"] = str(os.path.abspath(source))
    try:
        when = parse_as_of(logical_date) or datetime.now(UTC).replace(microsecond=0)
    except ValueError as exc:
        raise click.BadParameter(f"{logical_date!r} is not an ISO date such as 1998-01-04") from exc
    airflow_local.activate(get_settings())
    airflow_local.init_metadata()
    outcome = airflow_local.run_dag(logical_date=when, conf=conf, use_executor=executor)

    table = Table(title=f"{airflow_local.DAG_ID} run {outcome.run_id}: {outcome.state}")
    for col in ("task", "state", "tries", "seconds"):
        table.add_column(col)
    for ti in outcome.tasks:
        table.add_row(ti["task_id"], ti["state"], str(ti["tries"]), ti["seconds"])
    out.print(table)
    if outcome.report:
        out.print(outcome.report, markup=False, highlight=False)
    if outcome.state != "success":
        failed = [ti["task_id"] for ti in outcome.tasks if ti["state"] == "failed"]
        raise MovierecError(
            f"weekly run {outcome.run_id} ended {outcome.state}; failed: {', '.join(failed) or '-'}"
            f" (task logs under {os.environ['AIRFLOW_HOME']}/logs)"
        )
    if outcome.results.get("publish"):
        out.print("published: " + json.dumps(outcome.results["publish"]))
        print_published_lists()
