"""The stack's container commands run outside Docker, against a real PostgreSQL initialised by the stack's own
init script: the roles and databases, `airflow-init`'s command, the MLflow server's entrypoint, the Airflow
component commands. What Docker itself adds (images, networking, volumes, health checks) is not exercised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from pipeline.core.defaults import READER_IDLE_IN_TRANSACTION_TIMEOUT_S, READER_STATEMENT_TIMEOUT_S

pytestmark = pytest.mark.e2e  # the stack's services and the movierec command, each in a subprocess

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {
    "MOVIEREC_DB_PASSWORD": "app-secret",
    "MLFLOW_DB_PASSWORD": "mlflow-secret",
    "AIRFLOW_DB_PASSWORD": "airflow-secret",
    "MOVIEREC_READER_PASSWORD": "reader's secret",
    "MOVIEREC_FEEDBACK_PASSWORD": "feedback's secret",
}


@dataclass
class StackPostgres:
    socket_dir: str
    env: dict[str, str]  # psql on PATH, PGHOST at the socket

    def url(self, role: str, database: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{role}@/{database}?host={self.socket_dir}"

    def connect(self, role: str, database: str, password: str | None = None):  # type: ignore[no-untyped-def]
        return psycopg2.connect(host=self.socket_dir, user=role, dbname=database, password=password)


@pytest.fixture(scope="module")
def stack_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackPostgres]:
    """A fresh PostgreSQL (never the tests' shared server: roles are cluster-wide) set up by init-databases.sh
    exactly as the postgres image runs it on its first start."""
    import pgserver

    from database.embedded import _prepare_env

    _prepare_env()
    server = pgserver.get_server(tmp_path_factory.mktemp("stack-pg"), cleanup_mode="stop")
    socket_dir = str(server.get_postmaster_info().socket_dir)
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    env = dict(
        os.environ,
        PATH=f"{bindir}:{os.environ['PATH']}",
        PGHOST=socket_dir,
        POSTGRES_USER="postgres",
        **PASSWORDS,
    )
    done = subprocess.run(
        ["sh", str(ROOT / "database" / "docker" / "init-databases.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    try:
        yield StackPostgres(socket_dir, env)
    finally:
        server.cleanup()


def test_init_script_roles_and_databases(stack_pg: StackPostgres) -> None:
    owners = {}
    with stack_pg.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database")
        owners = dict(cur.fetchall())
        # Require the passwords the script set: scram on the socket for the reader, then reload.
        cur.execute("SHOW hba_file")
        hba = Path(cur.fetchone()[0])
    assert {owners["movierec"], owners["mlflow"], owners["airflow"]} == {"movierec", "mlflow", "airflow"}
    assert owners["movierec"] == "movierec"
    with stack_pg.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        for role in ("movierec_reader", "movierec_feedback"):  # the API's writer: the reader's bounds
            cur.execute("SELECT rolconfig FROM pg_roles WHERE rolname = %s", (role,))
            assert sorted(cur.fetchone()[0]) == [
                f"idle_in_transaction_session_timeout={READER_IDLE_IN_TRANSACTION_TIMEOUT_S}s",
                f"statement_timeout={READER_STATEMENT_TIMEOUT_S}s",
            ], role
    with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
        stack_pg.connect("mlflow", "movierec")  # each role in its own database only
    hba.write_text("local all movierec_reader,movierec_feedback scram-sha-256\n" + hba.read_text())
    with stack_pg.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    try:
        stack_pg.connect("movierec_reader", "movierec", PASSWORDS["MOVIEREC_READER_PASSWORD"]).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            stack_pg.connect("movierec_reader", "movierec", "wrong")
        for database in ("mlflow", "airflow", "postgres"):
            with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
                stack_pg.connect("movierec_reader", database, PASSWORDS["MOVIEREC_READER_PASSWORD"])
        stack_pg.connect("movierec_feedback", "movierec", PASSWORDS["MOVIEREC_FEEDBACK_PASSWORD"]).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            stack_pg.connect("movierec_feedback", "movierec", "wrong")
        for database in ("mlflow", "airflow", "postgres"):
            with pytest.raises(psycopg2.OperationalError, match="CONNECT privilege"):
                stack_pg.connect("movierec_feedback", database, PASSWORDS["MOVIEREC_FEEDBACK_PASSWORD"])
    finally:
        hba.write_text(hba.read_text().split("\n", 1)[1])
        with stack_pg.connect("postgres", "postgres") as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_reload_conf()")


def _movierec(stack_pg: StackPostgres, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`movierec ...` with the environment docker-compose.yml gives the Airflow containers."""
    env = dict(
        stack_pg.env,
        MOVIEREC_HOME=str(tmp_path / "home"),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        DATABASE_URL=stack_pg.url("movierec", "movierec", "postgresql"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=stack_pg.url("airflow", "airflow"),
    )
    env.pop("AIRFLOW__CORE__DAGS_FOLDER", None)
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_airflow_init_command_as_the_stack_roles(stack_pg: StackPostgres, tmp_path: Path) -> None:
    """airflow-init's `movierec db migrate && movierec airflow init`, each database as its own role;
    then the model server's role reads the app's tables and writes nothing."""
    migrated = _movierec(stack_pg, tmp_path, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    init = _movierec(stack_pg, tmp_path, "airflow", "init")
    assert init.returncode == 0, init.stdout + init.stderr
    with stack_pg.connect("airflow", "airflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT slots FROM slot_pool WHERE pool = 'movierec_training'")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT count(*) FROM pg_tables WHERE tableowner = 'airflow'")
        assert cur.fetchone()[0] > 30
    with stack_pg.connect("movierec_reader", "movierec") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM current_recommendations")
        assert cur.fetchone() == (0,)
        for sql in (
            "INSERT INTO users (user_id) VALUES (1)",
            "SELECT raw_text FROM rejected_rows",
            "SELECT name FROM pipeline_locks FOR UPDATE",
            "CREATE TEMP TABLE scratch (x int)",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
            conn.rollback()
    with stack_pg.connect("movierec_feedback", "movierec") as conn, conn.cursor() as cur:  # dismissals only
        for sql in (
            "SELECT count(*) FROM ratings",
            "DELETE FROM dismissals",
            "INSERT INTO users (user_id) VALUES (1)",
            "CREATE TEMP TABLE scratch (x int)",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
            conn.rollback()
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):  # allowed, and refused: no such user
            cur.execute("INSERT INTO dismissals (user_id, movie_id) VALUES (1, 1)")
        conn.rollback()
    with stack_pg.connect("movierec", "movierec") as conn, conn.cursor() as cur:  # the pipeline's role
        cur.execute("CREATE TEMP TABLE stage (x int)")
        cur.execute("SELECT name FROM pipeline_locks WHERE name = 'publish' FOR UPDATE")
        assert cur.fetchone() == ("publish",)


@pytest.mark.parametrize("command", [["api-server", "--port", "8080"], ["scheduler"], ["dag-processor"]])
def test_airflow_component_commands_exist(command: list[str], tmp_path: Path) -> None:
    """The commands the three Airflow services run, as the pinned Airflow parses them."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, AIRFLOW_HOME=str(tmp_path)),
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def mlflow_server(stack_pg: StackPostgres, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """mlflow_server/entrypoint.sh as the container runs it, backend store = the stack's mlflow database."""
    port = _free_port()
    artifacts = tmp_path / "artifacts"
    env = dict(
        stack_pg.env,
        MLFLOW_BACKEND_STORE_URI=stack_pg.url("mlflow", "mlflow"),
        MLFLOW_ARTIFACTS_DESTINATION=str(artifacts),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
        PATH=f"{Path(sys.executable).parent}:{stack_pg.env['PATH']}",
    )
    log = (tmp_path / "mlflow.log").open("w")
    proc = subprocess.Popen(
        ["sh", str(ROOT / "mlflow_server" / "entrypoint.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,
    )
    try:
        for _ in range(240):  # readiness, not a timing check: up to ~2 minutes on a loaded machine
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(tmp_path / 'mlflow.log').read_text()[-3000:]}")
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server never answered: {(tmp_path / 'mlflow.log').read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}", port, artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_mlflow_entrypoint_serves_runs_from_postgres_and_artifacts_from_the_volume(
    mlflow_server: tuple[str, int, Path], stack_pg: StackPostgres, tmp_path: Path
) -> None:
    url, port, artifacts = mlflow_server
    health = subprocess.run(
        [sys.executable, str(ROOT / "mlflow_server" / "healthcheck.py")],
        env=dict(os.environ, MLFLOW_PORT=str(port)),
        timeout=30,
    )
    assert health.returncode == 0
    api = f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    assert _get(api, host=f"mlflow:{port}")[0] == 200  # the name the other containers use
    assert _get(api, host="evil.example")[0] == 403  # DNS-rebinding protection stays on

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("stack-check")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "ndcg_at_10", 0.25)
    (tmp_path / "report.json").write_text('{"ok": true}')
    client.log_artifact(run.info.run_id, str(tmp_path / "report.json"))

    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")
    stored = list(artifacts.rglob("report.json"))  # written by the server, not by the client
    assert len(stored) == 1 and stored[0].read_text() == '{"ok": true}'
    with stack_pg.connect("mlflow", "mlflow") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT value FROM metrics WHERE run_uuid = %s AND key = 'ndcg_at_10'", (run.info.run_id,)
        )
        assert cur.fetchone() == (0.25,)
