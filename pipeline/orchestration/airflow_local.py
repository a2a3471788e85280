"""Airflow on this machine, without Docker, wired to the project's settings.

``airflow_env(settings)`` is the environment every Airflow process of this project runs with:

* ``AIRFLOW_HOME`` = ``$MOVIEREC_HOME/airflow`` (config, logs, the generated admin password);
* the DAGs folder = this repository's ``dags/``;
* the metadata database: ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` when the user set it; else the embedded
  server's ``airflow`` database (``DATABASE_URL`` unset), else the ``airflow`` database on ``DATABASE_URL``'s
  server with the same credentials — always through the psycopg2 driver (Airflow derives its asyncpg
  connection from it);
* no example DAGs, low parallelism for a small machine (user-set ``AIRFLOW__*`` variables win);
* ``MOVIEREC_HOME`` as an absolute path, so tasks find the same state whatever their working directory.

Airflow reads its configuration when first imported: call ``activate`` before importing ``airflow``.
``init_metadata`` migrates the metadata database and creates the training pool.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.defaults import DAG_ID, TRAINING_POOL, TRAINING_POOL_SLOTS
from pipeline.core.errors import InputError, MovierecError
from pipeline.core.settings import Settings, get_settings

if TYPE_CHECKING:  # airflow is imported only after activate() (see above)
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG

POOL_DESCRIPTION = "movierec: one training at a time (one GPU)"
log = logging.getLogger(__name__)

CONN_VAR = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"

# Defaults for a 2-4 core machine: LocalExecutor's default parallelism (32) starts 32 worker processes.
_DEFAULTS = {
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "2",
    "AIRFLOW__API__WORKERS": "1",
}


def dags_folder() -> Path:
    """This repository's ``dags/`` folder."""
    return Path(__file__).resolve().parents[2] / "dags"


def airflow_home(settings: Settings) -> Path:
    return settings.home / "airflow"


def metadata_url(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """Airflow's metadata database URL (psycopg2 driver); may start the embedded server."""
    from sqlalchemy.engine import make_url

    from database.engine import sqlalchemy_url

    environ = os.environ if environ is None else environ
    if environ.get(CONN_VAR):
        return environ[CONN_VAR]
    if settings.embedded:
        from database import embedded

        return sqlalchemy_url(embedded.url_for(settings, embedded.AIRFLOW_DB))
    url = make_url(sqlalchemy_url(settings.database_url or ""))
    return url.set(database="airflow").render_as_string(hide_password=False)


def airflow_env(settings: Settings | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment for an Airflow process of this project (``environ`` plus the wiring)."""
    settings = settings or get_settings()
    env = dict(os.environ if environ is None else environ)
    env["MOVIEREC_HOME"] = str(settings.home)
    env.setdefault("AIRFLOW_HOME", str(airflow_home(settings)))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(dags_folder()))
    env[CONN_VAR] = metadata_url(settings, env)
    for key, value in _DEFAULTS.items():
        env.setdefault(key, value)
    return env


def activate(settings: Settings | None = None) -> dict[str, str]:
    """Put ``airflow_env`` into this process's environment; must run before ``airflow`` is imported."""
    env = airflow_env(settings)
    if "airflow.settings" in sys.modules and os.environ.get(CONN_VAR) != env[CONN_VAR]:
        raise MovierecError("Airflow was imported before its environment was set; call activate() first")
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def check_metadata_db(url: str) -> None:
    """Fail with a one-line reason when the metadata database cannot be reached."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        where = make_url(url).render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise MovierecError(
            f"Airflow's metadata database {where} is not reachable ({first}); create it or set {CONN_VAR}"
        ) from exc
    finally:
        engine.dispose()


def init_metadata() -> None:
    """Migrate Airflow's metadata database (a no-op at head) and create the training pool."""
    check_metadata_db(os.environ[CONN_VAR])
    from airflow.utils import db

    db.upgradedb()
    ensure_pool()


def ensure_pool(slots: int = TRAINING_POOL_SLOTS) -> None:
    """Create (or resize) the pool the training tasks run in."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(TRAINING_POOL, slots, POOL_DESCRIPTION, include_deferred=False)


@dataclass
class RunOutcome:
    """One DAG run as the metadata database recorded it."""

    run_id: str
    state: str
    tasks: list[dict[str, Any]]  # task_id, map_index (-1: not mapped), state, tries, seconds, in DAG order
    # task_id -> its return value (XCom), for the tasks that returned one; a mapped task: a list by map index
    results: dict[str, Any]

    @property
    def report(self) -> str | None:
        return self.results.get("report")


def load_dag(dag_id: str = DAG_ID) -> DAG:
    """The DAG as Airflow's DagBag parses it from the DAGs folder; fails on any import error."""
    from airflow.models import DagBag

    bag = DagBag(dag_folder=os.environ.get("AIRFLOW__CORE__DAGS_FOLDER", str(dags_folder())))
    if bag.import_errors:
        path, error = next(iter(bag.import_errors.items()))
        raise MovierecError(f"DAG import error in {path}: {error.strip().splitlines()[-1]}")
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise MovierecError(f"no DAG {dag_id!r} in {bag.dag_folder}")
    return dag


def run_dag(
    logical_date: datetime | None,
    conf: Mapping[str, Any] | None = None,
    *,
    dag: DAG | None = None,
    use_executor: bool = False,
    on_task: Callable[[TaskEvent], None] | None = None,
) -> RunOutcome:
    """Run the weekly DAG once through Airflow (``dag.test``) and read back what it recorded; ``on_task`` is
    called as each task settles (``TaskWatcher``).

    ``use_executor``: the tasks run as Airflow's configured executor runs them (task processes talking to
    the Airflow API server, logs in its log folder, readable in the UI), not in this process; the Docker
    stack runs it so, where an API server is up."""
    dag = dag or load_dag()
    if logical_date is not None and dag.start_date is not None and logical_date < dag.start_date:
        # Airflow would create the run without a single task instance and call it a success.
        raise InputError(
            f"logical date {logical_date.isoformat()} is before {dag.dag_id}'s start date "
            f"{dag.start_date.date().isoformat()}: Airflow would run none of its tasks"
        )
    if not is_paused(dag.dag_id):
        # A running scheduler would schedule this run's tasks as well: each would run twice.
        raise MovierecError(
            f"{dag.dag_id} is unpaused, so the scheduler runs it: trigger a run in the Airflow UI (or "
            f"`airflow dags trigger {dag.dag_id}`), or pause it to run it here"
        )
    watcher = TaskWatcher(dag.dag_id, on_task) if on_task is not None else None
    if watcher is not None:
        watcher.start()
    try:
        dag_run = dag.test(logical_date=logical_date, run_conf=dict(conf or {}), use_executor=use_executor)
    finally:
        if watcher is not None:
            watcher.stop()
    return outcome_of(dag, dag_run.run_id)


@dataclass(frozen=True)
class TaskEvent:
    """A task instance of the run reaching a state worth a line: finished, failed, or waiting for a retry."""

    task_id: str
    state: str
    tries: int
    seconds: float | None
    map_index: int = -1  # which instance of a mapped task (score_shard: which shard); -1: not mapped

    @property
    def label(self) -> str:
        return task_label(self.task_id, self.map_index)


def task_label(task_id: str, map_index: int) -> str:
    """``score_shard[2]`` for a mapped task's instance, the task id otherwise."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


# States a task instance settles in (for this try); "up_for_retry" announces the next try.
_REPORTED_STATES = frozenset({"success", "failed", "up_for_retry", "skipped", "upstream_failed", "removed"})


class TaskWatcher:
    """Polls the metadata database while a run goes on and calls ``on_task`` once per task instance try
    that settles (``TaskEvent``), from a thread of its own. Only tries that ended after the watch started
    count, so an earlier run at the same logical date is not reported."""

    def __init__(self, dag_id: str, on_task: Callable[[TaskEvent], None], every_s: float = 1.0) -> None:
        self.dag_id, self.on_task, self.every_s = dag_id, on_task, every_s
        self.seen: set[tuple[str, int, int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="movierec-task-watcher", daemon=True)
        self._since: datetime | None = None

    def start(self) -> None:
        self._since = datetime.now(UTC)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.poll()  # the last task's state, recorded just before the run ended

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.poll()
            except Exception:  # a progress line is not worth failing the run: the next poll tries again
                log.debug("task watcher poll failed", exc_info=True)

    def poll(self) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(
                    TaskInstance.task_id,
                    TaskInstance.map_index,
                    TaskInstance.state,
                    TaskInstance.try_number,
                    TaskInstance.duration,
                    TaskInstance.end_date,
                ).where(TaskInstance.dag_id == self.dag_id, TaskInstance.end_date >= self._since)
            ).all()
        # in the order they ended: tasks that settle within one poll are reported as they ran, not by name
        for task_id, map_index, state, tries, seconds, _ in sorted(rows, key=lambda r: (r[5], r[0], r[1])):
            key = (task_id, int(map_index), int(tries or 0), str(state))
            if state is None or str(state) not in _REPORTED_STATES or key in self.seen:
                continue
            self.seen.add(key)
            self.on_task(TaskEvent(task_id, str(state), int(tries or 0), seconds, int(map_index)))


def is_paused(dag_id: str) -> bool:
    """Whether the scheduler leaves ``dag_id`` alone (paused, or never parsed into the metadata database)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        model = session.get(DagModel, dag_id)
        return model is None or bool(model.is_paused)


def outcome_of(dag: DAG, run_id: str) -> RunOutcome:
    """States, tries and return values of one recorded run of ``dag``, tasks in DAG order."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    order = {task.task_id: i for i, task in enumerate(dag.topological_sort())}
    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)
        ).one()
        tis = sorted(
            run.get_task_instances(session=session),
            key=lambda ti: (order.get(ti.task_id, len(order)), ti.map_index),
        )
        tasks = [
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(ti.state) if ti.state else "none",
                "tries": ti.try_number,
                "seconds": f"{ti.duration:.1f}" if ti.duration else "-",
            }
            for ti in tis
        ]
        # get_many is annotated Select[tuple[XComModel]], SQLAlchemy 2.0's spelling: 2.1 reads tuple rows
        rows: Sequence[XComModel] = session.scalars(  # type: ignore[assignment]
            XComModel.get_many(run_id=run_id, dag_ids=dag.dag_id, key="return_value")
        ).all()
        results: dict[str, Any] = {}
        for row in sorted(rows, key=lambda r: r.map_index):
            value = XComModel.deserialize_value(row)
            if row.map_index >= 0:  # a mapped task's instances: their values in map-index order
                results.setdefault(row.task_id, []).append(value)
            else:
                results[row.task_id] = value
        return RunOutcome(run_id, str(run.state), tasks, results)


def run_standalone(command: list[str]) -> int:
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
    stop_group(child.pid)  # what is left of the group: components the standalone process left behind
    return 0 if asked else (child.wait() or 0)


def stop_group(pgid: int, grace_s: float = 30.0) -> None:
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
