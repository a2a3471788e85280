"""The embedded PostgreSQL server (the ``pgserver`` wheel) used when ``DATABASE_URL`` is unset.

One server per ``MOVIEREC_HOME``, holding three databases: ``movierec`` (the app), ``mlflow`` and
``airflow``. It is started on demand and left running for later processes (CLI, tests, API, Airflow
tasks); only ``movierec db stop`` stops it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from database.roles import FEEDBACK_ROLE, READER_ROLE
from pipeline.core.defaults import READER_IDLE_IN_TRANSACTION_TIMEOUT_S, READER_STATEMENT_TIMEOUT_S
from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings

log = logging.getLogger(__name__)

APP_DB = "movierec"
MLFLOW_DB = "mlflow"
AIRFLOW_DB = "airflow"
DATABASES = (APP_DB, MLFLOW_DB, AIRFLOW_DB)


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pgdata: Path
    socket_dir: str | None = None
    pid: int | None = None


def _prepare_env() -> None:
    # pgserver keeps its lock and (for long paths) sockets under the user runtime dir; without
    # XDG_RUNTIME_DIR it warns and falls back to /tmp/runtime-<uid>. Pick that explicitly.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(tempfile.gettempdir()) / f"movierec-run-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)


def _uri(socket_dir: str, database: str) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def start(settings: Settings) -> str:
    """Start (or attach to) the embedded server, create the databases; return the app database URL."""
    if not settings.embedded:
        raise MovierecError("DATABASE_URL is set: the embedded server is not used")
    _prepare_env()
    import pgserver  # heavy-ish import, only when the embedded server is wanted

    settings.pg_dir.mkdir(parents=True, exist_ok=True)
    try:
        # cleanup_mode=None: this process must not stop a server other processes rely on.
        server = pgserver.get_server(settings.pg_dir, cleanup_mode=None)
    except Exception as exc:  # pgserver raises CalledProcessError/TimeoutExpired with the log path
        raise MovierecError(f"embedded PostgreSQL failed to start in {settings.pg_dir}: {exc}") from exc
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    _ensure_databases(socket_dir)
    return _uri(socket_dir, APP_DB)


# Reloadable settings for a bulk-loading workload on a small machine (defaults checkpoint every 1 GB of WAL).
_SERVER_SETTINGS = {"max_wal_size": "4GB", "maintenance_work_mem": "512MB", "work_mem": "64MB"}


def _ensure_databases(socket_dir: str) -> None:
    import psycopg2

    conn = psycopg2.connect(_uri(socket_dir, "postgres"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name, value in _SERVER_SETTINGS.items():
                cur.execute(f"ALTER SYSTEM SET {name} = %s", (value,))  # names are constants above
            cur.execute("SELECT pg_reload_conf()")
            cur.execute("SELECT datname FROM pg_database")
            existing = {row[0] for row in cur.fetchall()}
            for name in DATABASES:
                if name not in existing:
                    cur.execute(f'CREATE DATABASE "{name}"')  # fixed names, not user input
            # Concurrent starts take turns: two processes changing one role or ACL at once would collide.
            cur.execute("SELECT pg_advisory_lock(hashtext('movierec.embedded.roles'))")
            try:
                _secure_reader(cur, socket_dir)
            finally:
                cur.execute("SELECT pg_advisory_unlock(hashtext('movierec.embedded.roles'))")
    finally:
        conn.close()


def _secure_reader(cur: Any, socket_dir: str) -> None:
    """What the API's roles may do on this server (``cur``: database ``postgres`` as the superuser, in
    autocommit); the stack's init script does the same for its roles.

    ``movierec_reader`` (its table rights come from the migrations): session defaults bounding its statements
    and its open transactions; ``CONNECT`` to the app database and to ``mlflow``, where it reads the registry
    (``SELECT`` on MLflow's tables, those MLflow creates later included), never to ``airflow`` or
    ``postgres``; no temporary tables anywhere (the pipeline connects as the superuser, who needs no grant).
    ``movierec_feedback`` (the API's dismissals, migration 0007): the same timeouts, ``CONNECT`` to the app
    database only. Every statement is idempotent."""
    import psycopg2

    for role in (READER_ROLE, FEEDBACK_ROLE):  # constant names
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"ALTER ROLE {role} SET statement_timeout = %s", (f"{READER_STATEMENT_TIMEOUT_S}s",))
        cur.execute(
            f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = %s",
            (f"{READER_IDLE_IN_TRANSACTION_TIMEOUT_S}s",),
        )
    for name in (*DATABASES, "postgres"):
        cur.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
    for name in (APP_DB, MLFLOW_DB):
        cur.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {READER_ROLE}')
    cur.execute(f'GRANT CONNECT ON DATABASE "{APP_DB}" TO {FEEDBACK_ROLE}')
    registry = psycopg2.connect(_uri(socket_dir, MLFLOW_DB))
    try:
        with registry, registry.cursor() as reg:  # one transaction, committed on leaving
            reg.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}")
            reg.execute(
                "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public "
                f"GRANT SELECT ON TABLES TO {READER_ROLE}"
            )
    finally:
        registry.close()


def status(settings: Settings) -> ServerStatus:
    """Whether the server under ``settings.home`` is running; never starts it."""
    _prepare_env()
    from pgserver.utils import PostmasterInfo

    info = None
    for _ in range(50):  # postmaster.pid is rewritten line by line while a server starts or stops
        try:
            info = PostmasterInfo.read_from_pgdata(settings.pg_dir) if settings.pg_dir.exists() else None
            break
        except (AssertionError, ValueError):
            time.sleep(0.1)
    if info is None or not info.is_running():
        return ServerStatus(False, settings.pg_dir)
    return ServerStatus(True, settings.pg_dir, str(info.socket_dir), info.pid)


def stop(settings: Settings) -> bool:
    """Stop the server if it runs; return whether it was running."""
    _prepare_env()
    if not status(settings).running:
        return False
    # pgserver's own wrapper knows the binaries and OS user (its command functions are made at import time)
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pg_dir, user=user)
    return True


def url_for(settings: Settings, database: str) -> str:
    """URL of one of the embedded databases, starting the server if needed."""
    app_url = start(settings)
    return app_url.replace(f"/{APP_DB}?", f"/{database}?", 1)
