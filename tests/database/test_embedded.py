"""The embedded server: started on demand, shared by later processes, separate per MOVIEREC_HOME."""

import os
import subprocess
import sys

import psycopg2
import pytest

from database import embedded
from pipeline.core.settings import Settings

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL set: no embedded server"
)


def test_two_homes_never_share_a_server(tmp_path):
    a, b = Settings(MOVIEREC_HOME=tmp_path / "a"), Settings(MOVIEREC_HOME=tmp_path / "b")
    try:
        url_a, url_b = embedded.start(a), embedded.start(b)
        assert url_a != url_b
        assert embedded.status(a).pid != embedded.status(b).pid
        conn = psycopg2.connect(url_a)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE only_in_a (x int)")
        conn.close()
        conn = psycopg2.connect(url_b)
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('only_in_a')")
            assert cur.fetchone()[0] is None
            cur.execute("SELECT datname FROM pg_database ORDER BY 1")
            assert {"movierec", "mlflow", "airflow"} <= {r[0] for r in cur.fetchall()}
        conn.close()
    finally:
        embedded.stop(a)
        embedded.stop(b)
    assert not embedded.status(a).running and not embedded.status(b).running


@pytest.mark.e2e  # `movierec db url` in a subprocess
def test_server_outlives_the_process_that_started_it(tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ, MOVIEREC_HOME=str(home))
    env.pop("DATABASE_URL", None)
    try:
        out = (
            subprocess.run(
                [sys.executable, "-m", "pipeline.cli", "db", "url"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        settings = Settings(MOVIEREC_HOME=home)
        assert embedded.status(settings).running  # the CLI process has exited; the server has not
        conn = psycopg2.connect(out)
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == "movierec"
        conn.close()
        assert embedded.start(settings) == out  # a later process attaches to the same server
    finally:
        assert embedded.stop(Settings(MOVIEREC_HOME=home))
    assert not embedded.stop(Settings(MOVIEREC_HOME=home))
