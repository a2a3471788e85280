"""The fast part of the reliability drills (``bench/drills.py`` runs them in full): on a published ML-100K
slice with its own embedded PostgreSQL (stopping the session's shared server would break the other tests),
the hostile-request corpus, then a clean database stop and start under a light load; afterwards every app
table holds the rows it held before."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from database import embedded
from database.engine import database_url
from pipeline.core.settings import Settings
from tests.support.drills import (
    accepting,
    hostile_corpus,
    load_with_outage,
    published,
    run_corpus,
    start_database,
    stop_database,
    table_counts,
)
from tests.support.servers import LiveServer
from tests.support.weekly import run_weekly_slice

pytestmark = pytest.mark.e2e  # a weekly run, a live server and a database stopped under it


@pytest.fixture(scope="module")
def drill_world(tmp_path_factory: pytest.TempPathFactory, ml100k_slice_dir: Path) -> Iterator[dict[str, Any]]:
    """A home of its own: embedded server, weekly run on the slice, published users and movies."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("the drill stops and starts an embedded server of its own (DATABASE_URL is set)")
    home = tmp_path_factory.mktemp("drill-home")
    settings = Settings(MOVIEREC_HOME=home, DATABASE_URL="", MLFLOW_TRACKING_URI="", READER_DATABASE_URL="")
    try:
        run_weekly_slice(settings, ml100k_slice_dir)
        url = database_url(settings)
        users, movies = published(url)
        yield {"settings": settings, "url": url, "users": users, "movies": movies}
    finally:
        embedded.stop(settings)
        shutil.rmtree(home, ignore_errors=True)


def test_hostile_requests_and_a_clean_database_stop_under_load(drill_world, capsys):
    from model_server.app import create_app

    settings, users, movies = drill_world["settings"], drill_world["users"], drill_world["movies"]
    before = table_counts(drill_world["url"])
    assert before["ratings"] > 0 and before["batch_recommendations"] > 0, before
    with LiveServer(create_app(settings, poll_seconds=3600)) as server:
        results = run_corpus(server.port, hostile_corpus(users[0], movies[0]))
        wrong = [asdict(r) for r in results if not r.ok]
        assert len(results) > 100 and wrong == [], "\n".join(
            f"{w['name']}: {w['status']} not in {w['expected']}" for w in wrong
        )
        outage = load_with_outage(
            server.url,
            users,
            movies,
            stop=lambda: stop_database(settings, "fast"),
            start=lambda: start_database(settings),
            ready=lambda: accepting(drill_world["url"]),
            mode="fast",
            clients=4,
            before_s=1.5,
            down_s=1.5,
            after_s=1.5,
        )
    report = asdict(outage)
    with capsys.disabled():
        print(
            f"\ndrill: {len(results)} hostile requests as documented; clean stop under {outage.clients} clients: "
            f"{outage.statuses}, recovery {outage.recovery_s:.3f} s after it accepted connections again"
        )
    assert outage.statuses["down"].get("503", 0) > 0, report  # the load did meet the outage
    assert outage.server_errors == 0 and outage.transport_errors == 0, report
    assert outage.without_retry_after == 0, report  # every 503 says when to come back
    assert outage.first_ok_after_back_s is not None and outage.statuses["after"].get("200", 0) > 0, report
    assert table_counts(drill_world["url"]) == before  # nothing the drill sent changed a table
