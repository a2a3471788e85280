"""``movierec db``: the database commands, run as a real process against the test's own database."""

import pytest

from tests.support.cli import movierec
from tests.support.database import copy_of

pytestmark = pytest.mark.e2e


def test_db_url_prints_database_url_on_last_line(cli_env, db_url):
    done = movierec(cli_env, "db", "url")
    assert done.returncode == 0
    assert done.stdout.strip().splitlines()[-1] == db_url


def test_a_command_on_a_database_never_migrated_says_to_migrate(cli_env, server_url):
    with copy_of(server_url, "template0") as blank:  # a database without movierec's tables
        env = {**cli_env, "DATABASE_URL": blank}
        # a bulk read (psycopg2's error) and a SQLAlchemy query (its error wrapping psycopg2's)
        runs = [movierec(env, "evaluate"), movierec(env, "compare-batches")]
    for done in runs:
        assert done.returncode == 1
        [line] = done.stderr.strip().splitlines()
        assert "UndefinedTable" in line and "run `movierec db migrate`" in line, line


def test_db_status_exits_1_when_the_embedded_server_is_not_running(cli_env, tmp_path):
    """The command's own exit code reaches the shell (Typer hands it back rather than exiting)."""
    env = {**cli_env, "MOVIEREC_HOME": str(tmp_path / "home")}
    env.pop("DATABASE_URL", None)  # the embedded server's home, never started
    done = movierec(env, "db", "status")
    assert "not running" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1
