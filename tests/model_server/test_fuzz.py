"""Schemathesis over the live server's own OpenAPI schema with every check: no server error, every answer as
documented, every request the schema allows accepted and every one it forbids refused.

Runs the schemathesis CLI (its pytest plugin does not load under pytest 9) against the session's live
server: every phase (schema examples, coverage of the bounds, fuzzing valid and invalid input, stateful),
``FUZZ_EXAMPLES`` (default 100) generated cases per operation and phase, fixed seed. The number of cases
is printed with the test's result.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from database.engine import sqlalchemy_url

pytestmark = pytest.mark.e2e  # schemathesis against the live server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
CHECKS = "all"  # positive_data_acceptance and negative_data_rejection included
CONFIG = Path(__file__).with_name("schemathesis.toml")  # a 413 for an oversized body is a rejection too


@pytest.fixture
def dismissals_undone(published, live_api):  # type: ignore[no-untyped-def]
    """The fuzzer records dismissals (the API's one write) in the shared database: remove the ones it added
    and the server's kept answers of those users, so later tests see the published lists as they were."""
    engine = create_engine(sqlalchemy_url(published.settings.database_url))
    query = text("SELECT user_id, movie_id FROM dismissals")
    with engine.connect() as conn:
        before = set(conn.execute(query).all())
    yield
    with engine.begin() as conn:
        added = set(conn.execute(query).all()) - before
        for user_id, movie_id in added:
            conn.execute(
                text("DELETE FROM dismissals WHERE user_id = :u AND movie_id = :m"),
                {"u": user_id, "m": movie_id},
            )
    for user_id in {u for u, _ in added}:
        live_api.app.state.lists.forget(user_id)
    engine.dispose()


@pytest.mark.usefixtures("dismissals_undone")
def test_no_server_error_and_every_answer_as_documented(live_api, capsys, tmp_path):
    cli = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    done = subprocess.run(
        [
            cli,
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{live_api.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "20261121",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
    )  # its cache: not in the repo
    out = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated", out)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    warnings = out[out.find("WARNINGS") : out.find("SUMMARY")] if "WARNINGS" in out else ""
    with capsys.disabled():
        print(f"\nschemathesis: {cases.group(1) if cases else '?'} cases; {last}\n{warnings.strip()}")
    assert done.returncode == 0, out[-6000:]  # any failed check (a 5xx, an undocumented answer) exits 1
    assert cases and int(cases.group(1)) > 0 and "failure" not in last and "error" not in last, out[-6000:]
