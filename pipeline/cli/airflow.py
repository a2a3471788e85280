"""``movierec airflow``: Airflow on this machine, wired to the project's settings (no Docker).

``standalone`` runs Airflow's UI, scheduler, DAG processor and triggerer; ``celery`` the same parts with
the CeleryExecutor and N worker processes; ``run-weekly`` runs the weekly DAG
once through Airflow itself (``dag.test``: one process, real metadata database, real task instances).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console

from pipeline.cli.options import FullRetrain, dataset_option, device_option
from pipeline.cli.render import out, output_to_file, print_published_lists, print_task_event, task_line
from pipeline.core.dates import parse_as_of
from pipeline.core.defaults import MAX_SHARDS, SHARD_USERS
from pipeline.core.errors import MovierecError, one_line
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


@app.command("celery")
def celery(
    workers: Annotated[int, typer.Option(min=1, max=16, help="Celery workers to start")] = 2,
    concurrency: Annotated[int, typer.Option(min=1, help="tasks each worker runs at once")] = 1,
    port: Annotated[int, typer.Option(help="port of the UI / API server")] = 8080,
) -> None:
    """Run Airflow with the CeleryExecutor on this machine: UI/API server, scheduler, DAG processor and
    WORKERS Celery workers, each its own process. Broker: AIRFLOW__CELERY__BROKER_URL (Redis, RabbitMQ), else
    PostgreSQL itself (kombu's SQLAlchemy transport on Airflow's metadata database)."""
    import signal
    import time

    from pipeline.orchestration.airflow_cluster import Cluster

    settings = get_settings()
    cluster = Cluster(settings, executor="celery", workers=workers, concurrency=concurrency, port=port)
    asked: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: asked.append(signum))
    with cluster:
        cluster.wait_ready()
        passwords = Path(cluster.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        out.print(
            f"Airflow UI on http://localhost:{port} (user admin, password in {passwords}); CeleryExecutor, "
            f"{workers} worker(s) x {concurrency}; component logs in {cluster.log_dir}; stop with Ctrl-C",
            highlight=False,
            soft_wrap=True,
        )
        sys.stdout.flush()
        while not asked and not cluster.dead():
            time.sleep(1.0)
        dead = cluster.dead()
    if dead and not asked:
        raise MovierecError("Airflow component exited: " + "; ".join(dead))


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): .+$", re.MULTILINE)


def last_exception(log_path: Path, tail_bytes: int = 1 << 20) -> str | None:
    """The last ``package.SomeError: message`` line of a task log (a traceback's last line), bounded."""
    try:
        with log_path.open("rb") as f:
            f.seek(max(0, log_path.stat().st_size - tail_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = _EXCEPTION_LINE.findall(text)
    return one_line(found[-1]) if found else None


@app.command("run-weekly")
def run_weekly_dag(
    logical_date: Annotated[
        str | None, typer.Option(help="the run's logical date = data cut-off (ISO); default: now")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="named dataset (DAG default: ml-100k)")] = None,
    source: Annotated[str | None, typer.Option(help="a directory in a GroupLens/RecBole layout")] = None,
    top_n: Annotated[int | None, typer.Option(min=1, help="length of each published list")] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            min=1, max=MAX_SHARDS, help=f"score_shard tasks (DAG default: one per {SHARD_USERS:,} users)"
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="maximum training epochs")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    max_reject_share: Annotated[float | None, typer.Option(min=0, max=1, help="quality gate")] = None,
    full_retrain: FullRetrain = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="stream Airflow's and the tasks' logs here too")
    ] = False,
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

    # The DAG's params would refuse these too, but only after Airflow has started: usage errors come first.
    dataset = dataset_option(dataset, source)
    if device is not None:
        device_option(device)
    if source is not None and not os.path.exists(source):
        raise click.BadParameter(f"{source!r} does not exist", param_hint="'--source'")
    conf = {
        key: value
        for key, value in {
            "dataset": dataset,
            "source": source,
            "top_n": top_n,
            "shards": shards,
            "epochs": epochs,
            "device": device,
            "max_reject_share": max_reject_share,
            "full_retrain": full_retrain or None,
        }.items()
        if value is not None
    }
    if source is not None:
        conf["source"] = str(os.path.abspath(source))
    try:
        when = parse_as_of(logical_date) or datetime.now(UTC).replace(microsecond=0)
    except ValueError as exc:
        raise click.BadParameter(
            f"{logical_date!r} is not an ISO date such as 1998-01-04", param_hint="'--logical-date'"
        ) from exc
    settings = get_settings()
    airflow_local.activate(settings)
    started = datetime.now(UTC)
    log_path = settings.home / "logs" / f"weekly-{started:%Y%m%dT%H%M%S}.log"
    out.print(
        f"{airflow_local.DAG_ID}: weekly run at {when.isoformat()} "
        f"({'executor' if executor else 'in process'}); "
        + ("task logs follow" if verbose else f"task logs in {log_path}"),
        highlight=False,
        soft_wrap=True,
    )
    seen: set[str] = set()  # task labels (score_shard[2]: a mapped task's instance)

    def run(console: Console) -> airflow_local.RunOutcome:
        airflow_local.init_metadata()  # Airflow's migration logs belong with the rest

        def on_task(event: airflow_local.TaskEvent) -> None:
            seen.add(event.label)
            print_task_event(console, event)

        return airflow_local.run_dag(logical_date=when, conf=conf, use_executor=executor, on_task=on_task)

    try:
        if verbose:
            outcome = run(out)
        else:
            with output_to_file(log_path) as terminal:
                outcome = run(terminal)
    finally:
        # The embedded server's stop at exit logs at info level through Airflow's handlers: after the run
        # (failed or not) that is noise on the terminal, and the log file has the run's own lines.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
    for ti in outcome.tasks:  # tasks that never ran (upstream failed) have no event
        if (label := airflow_local.task_label(ti["task_id"], ti["map_index"])) not in seen:
            out.print(task_line(label, ti["state"], ti["tries"], None), highlight=False)
    took = (datetime.now(UTC) - started).total_seconds()
    out.print(
        f"{airflow_local.DAG_ID} run {outcome.run_id}: {outcome.state} "
        f"({len(outcome.tasks)} tasks, {took / 60:.1f} min)",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.report:
        out.print(outcome.report, markup=False, highlight=False)
    if outcome.state != "success":
        failed = [
            airflow_local.task_label(ti["task_id"], ti["map_index"])
            for ti in outcome.tasks
            if ti["state"] == "failed"
        ]
        where = "above" if verbose else f"in {log_path}"
        reason = None if verbose else last_exception(log_path)
        raise MovierecError(
            f"weekly run {outcome.run_id} ended {outcome.state}; failed: {', '.join(failed) or '-'}"
            + (f": {reason}" if reason else "")
            + f" (task logs {where}; Airflow's own under {os.environ['AIRFLOW_HOME']}/logs)"
        )
    if outcome.results.get("publish"):
        print_published_lists()
