"""``movierec db``: the database commands, run as a real process against the test's own database."""

import pytest

from tests.support.cli import movierec

pytestmark = pytest.mark.e2e


def test_db_url_prints_database_url_on_last_line(cli_env, db_url):
    done = movierec(cli_env, "db", "url")
    assert done.returncode == 0
    assert done.stdout.strip().splitlines()[-1] == db_url
