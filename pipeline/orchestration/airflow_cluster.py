"""Airflow with a distributed executor on one machine: each component its own process, Celery workers apart.

``airflow standalone`` runs everything with the LocalExecutor. ``Cluster`` starts what a Celery deployment
runs, as separate processes on this machine: the API server (UI, and the Execution API that task processes
report to), the scheduler, the DAG processor and ``workers`` Celery workers (``airflow celery worker``), each
taking ``concurrency`` tasks at a time. With ``executor="local"`` it starts the same components but no
workers: the scheduler runs the tasks (LocalExecutor), the comparison point for a Celery run.

Broker: ``AIRFLOW__CELERY__BROKER_URL`` when set (Redis, RabbitMQ, as a deployment has); otherwise kombu's
SQLAlchemy transport on Airflow's own metadata database (tables ``kombu_queue`` and ``kombu_message``), so
that nothing beyond PostgreSQL is needed to try it. Results: Airflow's default, the metadata database.

Each worker is named (``worker1``...) and reports that name as its host, so the UI's task instance details
(and ``task_instance.hostname``) show which worker ran each shard. Logs: one file per component under
``$AIRFLOW_HOME/logs/cluster``; task logs as usual (the workers share the local log folder, so they do not
serve logs themselves).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings, get_settings
from pipeline.orchestration.airflow_local import CONN_VAR, airflow_env, stop_group

Executor = Literal["local", "celery"]
EXECUTORS: Mapping[str, str] = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
WORKER_VAR = "MOVIEREC_WORKER_NAME"
BROKER_VAR = "AIRFLOW__CELERY__BROKER_URL"
# The health check's parts that must be up before a run is triggered (workers show in no health check).
HEALTHY_PARTS = ("metadatabase", "scheduler", "dag_processor")


def worker_hostname() -> str:
    """Airflow's ``hostname_callable`` on a named worker: ``worker1@host``, so that workers sharing a host
    are told apart in the UI (task instance details) and in ``task_instance.hostname``."""
    name = os.environ.get(WORKER_VAR)
    return f"{name}@{socket.getfqdn()}" if name else socket.getfqdn()


def sqlalchemy_broker(metadata_url: str) -> str:
    """kombu's SQLAlchemy transport on the metadata database: ``sqla+`` and the SQLAlchemy URL."""
    return f"sqla+{metadata_url}"


def cluster_env(
    settings: Settings,
    executor: Executor,
    *,
    port: int,
    slots: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment every component runs with: the project's Airflow wiring, the executor, the API
    server's port, parallelism for ``slots`` tasks at once (unless set), and the broker (Celery)."""
    env = dict(os.environ if environ is None else environ)
    env["AIRFLOW__CORE__EXECUTOR"] = EXECUTORS[executor]
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://localhost:{port}/execution/"
    if slots is not None:
        env.setdefault("AIRFLOW__CORE__PARALLELISM", str(slots))
    env = airflow_env(settings, env)
    # The scheduler signs each task's token for the API server, so every process needs the same secrets;
    # unset, each would make its own. New ones at each start (a deployment sets them, as compose's .env does).
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        env.setdefault(key, secrets.token_urlsafe(32))
    if executor == "celery":
        env.setdefault(BROKER_VAR, sqlalchemy_broker(env[CONN_VAR]))
    return env


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)


def components(env: Mapping[str, str], executor: Executor, workers: int, concurrency: int) -> list[Component]:
    """What to start, in order: the API server first (the others' tasks report to it)."""
    airflow = shutil.which("airflow", path=env.get("PATH")) or shutil.which("airflow")
    if airflow is None:
        raise MovierecError("the `airflow` command is not on PATH (activate the project's virtualenv)")
    base = dict(env)
    parts = [
        Component("api-server", [airflow, "api-server", "--port", base["AIRFLOW__API__PORT"]], base),
        Component("scheduler", [airflow, "scheduler"], base),
        Component("dag-processor", [airflow, "dag-processor"], base),
    ]
    if executor == "celery":
        for i in range(1, workers + 1):
            name = f"worker{i}"
            worker_env = dict(
                base,
                **{WORKER_VAR: name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname"},
            )
            argv = [airflow, "celery", "worker", "--concurrency", str(concurrency)]
            argv += ["--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            parts.append(Component(name, argv, worker_env))
    return parts


class Cluster:
    """Start with ``start()`` (or as a context manager), stop with ``stop()``: every component's process
    group gets SIGTERM, then SIGKILL after a grace period."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        executor: Executor = "celery",
        workers: int = 2,
        concurrency: int = 1,
        port: int = 8080,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if executor not in EXECUTORS:
            raise MovierecError(f"executor {executor!r}: one of {', '.join(EXECUTORS)}")
        if workers < 1 or concurrency < 1:
            raise MovierecError("workers and concurrency must be at least 1")
        self.settings = settings or get_settings()
        self.executor, self.port = executor, port
        slots = workers * concurrency if executor == "celery" else None  # local: the project's default
        self.env = cluster_env(self.settings, executor, port=port, slots=slots, environ=environ)
        self.parts = components(self.env, executor, workers, concurrency)
        self.log_dir = Path(self.env["AIRFLOW_HOME"]) / "logs" / "cluster"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def init(self) -> None:
        """Airflow's metadata schema and the training pool (``movierec airflow init``, in this environment),
        and the broker's tables and the tasks' queue, created once here rather than raced by the workers
        (kombu's SQLAlchemy transport creates a missing queue row under a lock of its own process only: two
        workers starting together, one died of the unique violation)."""
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "airflow", "init"],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        broker = self.env.get(BROKER_VAR, "")
        if broker.startswith("sqla+"):
            from kombu import Connection

            queue = self.env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
            with Connection(broker) as connection:
                channel = connection.default_channel  # opening its session creates the tables
                channel._new_queue(queue)  # noqa: SLF001 (the transport's own get-or-create of a queue row)
                channel.session.close()

    def start(self) -> None:
        Path(self.env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        self.init()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for part in self.parts:
                with (self.log_dir / f"{part.name}.log").open("ab") as log:
                    self.procs[part.name] = subprocess.Popen(
                        part.argv, env=part.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    )
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 60.0) -> None:
        """SIGTERM to every component's process group; what is left after ``grace_s`` gets SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():  # a reaped leader's group: the task processes it left, if any
            stop_group(proc.pid, grace_s=5.0)
            proc.wait()

    def dead(self) -> list[str]:
        """Components whose process has exited, each with the last line of its log."""
        return [
            f"{name} (exit {proc.returncode}): {self.last_log_line(name)}"
            for name, proc in self.procs.items()
            if proc.poll() is not None
        ]

    def last_log_line(self, name: str) -> str:
        try:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:300] if lines else "empty log"

    def health(self) -> dict[str, str]:
        """Each part's status from the API server's health endpoint ({} while it does not answer)."""
        try:
            url = f"http://127.0.0.1:{self.port}/api/v2/monitor/health"
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
        except OSError:
            return {}
        return {part: str(body.get(part, {}).get("status")) for part in HEALTHY_PARTS}

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Until the API server, scheduler and DAG processor report healthy; fails fast if one exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if dead := self.dead():
                raise MovierecError("Airflow component exited: " + "; ".join(dead))
            if set(self.health().values()) == {"healthy"}:
                return
            time.sleep(1.0)
        raise MovierecError(f"Airflow not healthy after {timeout_s:.0f} s: {self.health() or 'no answer'}")

    def airflow(self, *args: str) -> str:
        """An ``airflow`` CLI command against this cluster's metadata database: its output, or a
        ``MovierecError`` with its last line."""
        command = [sys.executable, "-m", "airflow", *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise MovierecError(f"`airflow {' '.join(args[:2])}` failed: {last}")
        return done.stdout
