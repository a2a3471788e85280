"""A published database (champion + batch on the real ML-100K slice) and the API server over it.

``published`` runs the weekly pipeline once for the session; ``live_api`` serves it over real HTTP
(uvicorn in a thread of this process, the app's start-up and shutdown included); ``pg_proxy`` stands
between a server and PostgreSQL so a test can take the database away and bring it back. The servers
themselves are in ``tests.support.servers``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from database.engine import reader_database_url
from tests.support.database import copy_of
from tests.support.servers import LiveServer, PgProxy
from tests.support.weekly import Published, run_weekly_slice, weekly_settings


@pytest.fixture(scope="session")
def published(
    tmp_path_factory: pytest.TempPathFactory, server_url: str, template_db: str, ml100k_slice_dir: Path
) -> Iterator[Published]:
    """One weekly run on the ML-100K slice: champion v1 in a sqlite MLflow store, one published batch.
    Read-only for the tests that share it."""
    with copy_of(server_url, template_db) as url:
        settings = weekly_settings(tmp_path_factory.mktemp("api-home"), url)
        yield Published(settings, run_weekly_slice(settings, ml100k_slice_dir))


@pytest.fixture(scope="session")
def live_api(published: Published) -> Iterator[LiveServer]:
    from model_server.app import create_app

    with LiveServer(create_app(published.settings, poll_seconds=3600)) as server:
        yield server


@pytest.fixture
def api(live_api: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_api.url, timeout=30) as client:
        yield client


@pytest.fixture
def pg_proxy(published: Published) -> Iterator[PgProxy]:
    proxy = PgProxy(reader_database_url(published.settings))
    proxy.start()
    yield proxy
    proxy.stop()
