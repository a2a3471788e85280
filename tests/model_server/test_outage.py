"""Database down: every route that needs it answers 503 with a clear message; the server recovers by itself."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from model_server.app import create_app

pytestmark = pytest.mark.e2e  # the API over the weekly run's lists, its database behind a proxy


def _until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_database_outage_is_a_503_and_the_server_recovers(published, pg_proxy):
    app = create_app(published.settings, poll_seconds=3600, database_url=pg_proxy.url)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/users/3/recommendations").status_code == 200
        assert client.get("/health").status_code == 200

        pg_proxy.stop()  # the database goes away, its connections with it
        _until(lambda: client.get("/health").status_code == 503)
        health_response = client.get("/health")
        assert health_response.headers["retry-after"] == "5"  # like every other 503
        health = health_response.json()
        assert health["status"] == "degraded" and health["database"]["status"] == "unavailable"
        assert health["database"]["detail"].startswith("database unavailable")
        assert health["model"]["status"] == "loaded"  # the model is not the problem
        for response in (
            client.get("/users/3/recommendations"),  # a list served before: not from memory
            client.get("/users/123456/recommendations"),
            client.get("/movies/50/similar"),
            client.post("/recommendations/existing", json={"user_id": 3, "movie_ids": [50]}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["detail"].startswith("database unavailable")
            assert response.headers["retry-after"] == "5" and "Traceback" not in response.text
        # what needs no database still answers
        assert (
            client.post(
                "/predict/new-movie", json={"title": "T", "genres": ["Drama"], "user_id": 3}
            ).status_code
            == 200
        )
        assert client.get("/ping").status_code == 200

        pg_proxy.start()  # the database is back: no restart, no intervention
        _until(lambda: client.get("/users/3/recommendations").status_code == 200)
        _until(lambda: client.get("/health").status_code == 200)
        assert client.get("/movies/50/similar").status_code == 200
        metrics = client.get("/metrics").text
        assert 'route="/users/{user_id}/recommendations",status="503"' in metrics


def test_server_starts_without_a_database_and_serves_once_it_appears(published, pg_proxy):
    pg_proxy.stop()
    app = create_app(published.settings, poll_seconds=3600, database_url=pg_proxy.url)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/users/3/recommendations")
        assert r.status_code == 503 and r.json()["detail"].startswith("database unavailable")
        pg_proxy.start()
        _until(lambda: client.get("/users/3/recommendations").status_code == 200)
