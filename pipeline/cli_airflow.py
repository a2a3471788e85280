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
from rich.console import Console
from rich.table import Table

from pipeline.errors import MovierecError
from pipeline.settings import get_settings

app = typer.Typer(help="Airflow without Docker: metadata in the embedded PostgreSQL (or DATABASE_URL's server).",
                  no_args_is_help=True)
out = Console() if sys.stdout.isatty() else Console(width=160)

_WIRING = ("MOVIEREC_HOME", "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
           "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__CORE__PARALLELISM", "AIRFLOW__API__WORKERS",
           "AIRFLOW__API__PORT", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL")


@app.command("env")
def env() -> None:
    """Print the Airflow environment as shell exports: eval "$(movierec airflow env)" then use `airflow`."""
    from pipeline.airflow_local import airflow_env

    wired = airflow_env(get_settings())
    for key in _WIRING:
        if key in wired:
            print(f"export {key}={shlex.quote(wired[key])}")


@app.command("init")
def init() -> None:
    """Migrate Airflow's metadata database and create the training pool (safe to re-run)."""
    from pipeline import airflow_local

    airflow_local.activate(get_settings())
    airflow_local.init_metadata()
    out.print(f"Airflow metadata database ready; pool {airflow_local.TRAINING_POOL} "
              f"({airflow_local.TRAINING_POOL_SLOTS} slot)")


@app.command("standalone")
def standalone(port: Annotated[int, typer.Option(help="port of the UI / API server")] = 8080) -> None:
    """Run `airflow standalone` (UI on http://localhost:PORT, scheduler, DAG processor, triggerer)."""
    from pipeline import airflow_local

    settings = get_settings()
    os.environ.setdefault("AIRFLOW__API__PORT", str(port))
    os.environ.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{port}/execution/")
    wired = airflow_local.activate(settings)
    airflow_local.init_metadata()
    executable = shutil.which("airflow")
    if executable is None:
        raise MovierecError("the `airflow` command is not on PATH (activate the project's virtualenv)")
    passwords = airflow_local.airflow_home(settings) / "simple_auth_manager_passwords.json.generated"
    out.print(f"Airflow UI on http://localhost:{port} (user admin, password in {passwords}); DAGs from "
              f"{wired['AIRFLOW__CORE__DAGS_FOLDER']}; stop with Ctrl-C")
    sys.stdout.flush()
    sys.exit(_supervise([executable, "standalone"]))


def _supervise(command: list[str]) -> int:
    """Run ``command`` in its own process group and stop the whole group when this process is asked to stop.

    `airflow standalone` stops its components on Ctrl-C (SIGINT) only; on SIGTERM it dies alone and leaves
    the scheduler and the others running. Here SIGINT and SIGTERM both become SIGINT for it, then SIGTERM
    and SIGKILL for whatever of its group is left.
    """
    import signal
    import subprocess
    import time

    def default_sigint() -> None:  # a background job starts with SIGINT ignored; standalone needs it
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    child = subprocess.Popen(command, start_new_session=True, preexec_fn=default_sigint)
    asked: list[float] = []

    def stop(signum: int, frame: object) -> None:
        if not asked:
            asked.append(time.monotonic())
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while child.poll() is None and not (asked and time.monotonic() - asked[0] > 60):
        time.sleep(0.5)
    _stop_group(child.pid)  # what is left of the group: components the standalone process left behind
    return 0 if asked else (child.wait() or 0)


def _stop_group(pgid: int, grace_s: float = 30.0) -> None:
    """SIGTERM a process group, SIGKILL what is left of it after ``grace_s``."""
    import signal
    import time

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def _logical_date(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date such as 1998-01-04") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("run-weekly")
def run_weekly(
    logical_date: Annotated[str | None, typer.Option(help="the run's logical date = data cut-off (ISO); "
                                                           "default: now")] = None,
    dataset: Annotated[str | None, typer.Option(help="named dataset (DAG default: ml-100k)")] = None,
    source: Annotated[str | None, typer.Option(help="a directory in a GroupLens/RecBole layout")] = None,
    top_n: Annotated[int | None, typer.Option(min=1, help="length of each published list")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="maximum training epochs")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    max_reject_share: Annotated[float | None, typer.Option(min=0, max=1, help="quality gate")] = None,
) -> None:
    """Run the weekly DAG once through Airflow (dag.test) and print each task's outcome and the report."""
    from pipeline import airflow_local

    conf = {key: value for key, value in {"dataset": dataset, "source": source, "top_n": top_n, "epochs": epochs,
                                          "device": device, "max_reject_share": max_reject_share}.items()
            if value is not None}
    if source is not None:
        conf["source"] = str(os.path.abspath(source))
    when = _logical_date(logical_date)
    airflow_local.activate(get_settings())
    airflow_local.init_metadata()
    outcome = airflow_local.run_dag(logical_date=when, conf=conf)

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
        raise MovierecError(f"weekly run {outcome.run_id} ended {outcome.state}; failed: {', '.join(failed) or '-'}"
                            f" (task logs under {os.environ['AIRFLOW_HOME']}/logs)")
    if outcome.results.get("publish"):
        out.print("published: " + json.dumps(outcome.results["publish"]))
        from pipeline.cli import print_published_lists  # the CLI module imports this one at its top

        print_published_lists()
