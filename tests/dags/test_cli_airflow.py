"""`movierec airflow ...` as a user runs it: a separate process wired by pipeline.airflow_local."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.engine import sqlalchemy_url
from pipeline.orchestration.airflow_local import DAG_ID, TRAINING_POOL
from tests.dags.test_weekly_dag import ORDER
from tests.support.cli import ROOT, movierec
from tests.support.database import admin_connection, copy_of, with_database

pytestmark = pytest.mark.e2e  # `movierec airflow ...` in a subprocess


@pytest.fixture
def user_env(
    airflow_home: Path, server_url: str, template_db: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A user's environment: this test's app database, the session's Airflow metadata database."""
    with copy_of(server_url, template_db) as url:
        env = dict(os.environ, MOVIEREC_HOME=str(tmp_path / "home"), DATABASE_URL=url, MOVIEREC_DEVICE="cpu")
        env.pop("MLFLOW_TRACKING_URI", None)
        yield env


def test_env_prints_the_wiring(user_env: dict[str, str]) -> None:
    done = movierec(user_env, "airflow", "env")
    assert done.returncode == 0, done.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    assert (
        exports["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].strip("'")
        == os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert exports["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert exports["MOVIEREC_HOME"] == user_env["MOVIEREC_HOME"]


def test_env_masks_the_password_on_a_terminal(user_env: dict[str, str]) -> None:
    """A person reading it on a terminal never sees the password; `eval "$(...)"` (a pipe) still gets it."""
    import pty

    secret_url = "postgresql+psycopg2://airflow:s3cret-pw@db.example:5432/airflow"
    env = dict(user_env, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=secret_url)
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "airflow", "env"],
            env=env,
            cwd=ROOT,
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=600,
        )
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: everything is read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert done.returncode == 0, done.stderr
    assert b"s3cret-pw" not in shown and b"airflow:***@db.example:5432/airflow" in shown
    piped = movierec(env, "airflow", "env")
    assert f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN={secret_url}" in piped.stdout


def test_run_weekly_fails_at_the_quality_gate_with_a_reason(
    user_env: dict[str, str], ml100k_dir: Path, tmp_path: Path
) -> None:
    """Too few ratings: the quality task fails at once (no retry), later tasks never run, exit code 1."""
    source = tmp_path / "ml-100k-tiny"
    shutil.copytree(ml100k_dir, source)
    inter = source / "ml-100k.inter"
    inter.write_text("".join(inter.read_text().splitlines(keepends=True)[:301]))  # header + 300 ratings
    done = movierec(
        user_env,
        "airflow",
        "run-weekly",
        "--source",
        str(source),
        "--logical-date",
        "1998-01-04",
        "--epochs",
        "1",
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "failed: quality" in done.stderr
    # one progress line per task: mark, task, state, duration, "try", try number
    rows = {
        cells[1]: (cells[2], cells[5])
        for cells in (line.split() for line in done.stdout.splitlines())
        if len(cells) == 6 and cells[4] == "try"
    }
    assert rows["fetch"][0] == rows["ingest"][0] == "success"
    assert rows["quality"] == ("failed", "1")  # DataQualityError: no retry
    assert rows["train"][0] == rows["score_shard"][0] == rows["publish"][0] == "upstream_failed"
    assert len(rows) == 10  # score_shard never expanded: one line for it
    # Airflow's and the tasks' logs went to a file under MOVIEREC_HOME, named on the terminal and in the error
    logs = list((Path(user_env["MOVIEREC_HOME"]) / "logs").glob("weekly-*.log"))
    assert len(logs) == 1 and str(logs[0]) in done.stdout and str(logs[0]) in done.stderr
    assert "too few to train on" in logs[0].read_text()
    assert "[info" not in done.stdout and "TaskInstance" not in done.stdout
    assert "too few to train on" in done.stdout + done.stderr  # the reason reaches the terminal too


def test_run_weekly_reads_like_a_report(user_env: dict[str, str], ml100k_slice_dir: Path) -> None:
    """The main job's output: a line per task, the run line, the report once, lists, where to look further;
    Airflow's and the tasks' logs in a file under MOVIEREC_HOME, not on the terminal."""
    done = movierec(
        user_env,
        "airflow",
        "run-weekly",
        "--source",
        str(ml100k_slice_dir),
        "--logical-date",
        "1998-05-03",
        "--epochs",
        "1",
        "--top-n",
        "10",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    progress = [line.split() for line in lines if len(line.split()) == 6 and line.split()[4] == "try"]
    # a mapped task's line names its instance: one shard for the slice
    expected = ["score_shard[0]" if task == "score_shard" else task for task in ORDER]
    assert [cells[1] for cells in progress] == expected  # in the order the tasks ran
    assert {cells[2] for cells in progress} == {"success"}
    assert any(
        line.startswith("movierec_weekly run manual__") and ": success (10 tasks" in line for line in lines
    )
    assert sum("published batch" in line for line in lines) == 1  # the report, printed once
    assert sum(line.strip().startswith("top 10 for user") for line in lines) == 3
    assert any(line.startswith("look further: `movierec serve`") for line in lines)
    assert any("SELECT * FROM current_recommendations (psql" in line for line in lines)
    assert "[info" not in done.stdout and "[DAG TEST]" not in done.stdout
    assert "[info" not in done.stderr  # nor after the report (the embedded server's stop)
    assert len(lines) < 120  # a report, not a log (the log stream was ~500 lines)
    (log,) = (Path(user_env["MOVIEREC_HOME"]) / "logs").glob("weekly-*.log")
    assert str(log) in done.stdout and "[DAG TEST] end task task_id=publish" in log.read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_standalone_serves_the_dag_and_the_pool_and_stops_whole(
    user_env: dict[str, str], server_url: str, tmp_path: Path
) -> None:
    """`movierec airflow standalone` (./taskw airflow): the API answers, the DAG and the pool are there, and a
    SIGTERM stops every Airflow process it started (on its own, `airflow standalone` leaves them running)."""
    name = f"movierec_test_airflow_sa_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    port = _free_port()
    env = dict(
        user_env,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlalchemy_url(with_database(server_url, name)),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
    )
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "airflow", "standalone", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):  # readiness, not a timing check: up to ~3 minutes on a loaded machine
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as response:
                    health = json.load(response)
                if all(
                    health.get(part, {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "dag_processor")
                ):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail((tmp_path / "standalone.log").read_text()[-3000:])
        password = json.loads(
            (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").read_text()
        )
        request = urllib.request.Request(
            f"{base}/auth/token",
            method="POST",
            data=json.dumps({"username": "admin", "password": password["admin"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]

        def get(path: str) -> dict:
            req = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as response:
                return json.load(response)

        for _ in range(240):  # the DAG processor parses the folder shortly after it starts
            try:
                dag = get(f"/api/v2/dags/{DAG_ID}")
                break
            except urllib.error.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the DAG never appeared")
        assert dag["is_paused"] is True and dag["has_import_errors"] is False
        assert {t["name"] for t in dag["tags"]} >= {"movierec", "weekly"}
        assert {p["name"]: p["slots"] for p in get("/api/v2/pools")["pools"]}[TRAINING_POOL] == 1
        params = get(f"/api/v2/dags/{DAG_ID}/details")["params"]  # what the trigger form shows
        assert set(params) == {
            "dataset",
            "source",
            "top_n",
            "candidates",
            "diversity",
            "popularity_penalty",
            "force_publish",
            "shards",
            "epochs",
            "device",
            "train_processes",
            "full_retrain",
            "max_reject_share",
        }
        assert params["top_n"]["value"] == 100 and params["top_n"]["description"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=180)
        finally:
            if _group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert proc.returncode == 0
    assert not _group_alive(proc.pid)  # session = process group of everything standalone started


def _processes_with_home(airflow_home: Path) -> list[int]:
    """Processes whose environment names this ``AIRFLOW_HOME``: what the command started and left running."""
    wanted = f"AIRFLOW_HOME={airflow_home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def test_celery_starts_every_component_with_a_worker_and_stops_them_all(
    user_env: dict[str, str], server_url: str, tmp_path: Path
) -> None:
    """`movierec airflow celery` (./taskw airflow:celery): the API reports the scheduler and DAG processor
    healthy, the worker connects to the broker (PostgreSQL), and SIGTERM stops every process it started."""
    name = f"movierec_test_airflow_celery_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    port = _free_port()
    home = tmp_path / "airflow"
    env = dict(
        user_env,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlalchemy_url(with_database(server_url, name)),
        AIRFLOW_HOME=str(home),
    )
    out = tmp_path / "celery.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "airflow",
                "celery",
                "--workers",
                "1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    worker_log = home / "logs" / "cluster" / "worker1.log"
    try:
        for _ in range(360):  # readiness, not a timing check
            assert proc.poll() is None, out.read_text()[-3000:]
            if "stop with Ctrl-C" in out.read_text() and worker_log.exists():
                if "worker1@" in worker_log.read_text(errors="replace") and " ready." in worker_log.read_text(
                    errors="replace"
                ):
                    break
            time.sleep(0.5)
        else:
            pytest.fail(out.read_text()[-3000:])
        assert f"http://localhost:{port}" in out.read_text()
        assert (
            "sqla+postgresql+psycopg2://" in worker_log.read_text()
        )  # the broker: PostgreSQL (no password shown)
        assert len(_processes_with_home(home)) >= 4  # API server, scheduler, DAG processor, worker
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=180)
        finally:
            for pid in _processes_with_home(home):
                os.kill(pid, signal.SIGKILL)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert proc.returncode == 0, out.read_text()[-3000:]
    assert _processes_with_home(home) == []
