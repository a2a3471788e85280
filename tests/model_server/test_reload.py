"""`movierec serve` picks up a newly published champion and batch without a restart and without a failed request."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.support.database import copy_of
from tests.support.servers import free_port
from tests.support.weekly import TOP_N, run_weekly_slice, weekly_settings

pytestmark = pytest.mark.e2e  # the weekly flow, then `movierec serve` in a subprocess


@pytest.fixture
def own_published(tmp_path, server_url, template_db, ml100k_slice_dir):
    """A weekly run of its own: this test publishes again, which the shared database must not see."""
    with copy_of(server_url, template_db) as url:
        settings = weekly_settings(tmp_path / "home", url)
        yield settings, run_weekly_slice(settings, ml100k_slice_dir)


def _publish_a_new_champion(settings, evaluation) -> int:
    """Train, register, promote (forced: the same data need not beat v1) and publish: the weekly steps."""
    from database.engine import get_engine
    from pipeline.core.defaults import PRIMARY_METRIC, PRIMARY_PROTOCOL
    from pipeline.orchestration.steps import publish, train
    from pipeline.registry.gate import promote_if_better
    from pipeline.registry.tracking import RunInfo

    training = train(None, evaluation, epochs=1, settings=settings)
    run = RunInfo(training["run_id"], training["model_uri"], int(training["version"]))
    decision = promote_if_better(
        settings,
        get_engine(settings),
        run,
        dataset=training["dataset"],
        data_cutoff=None,
        protocol=PRIMARY_PROTOCOL,
        primary_metric=PRIMARY_METRIC,
        metrics=evaluation["metrics"],
        params={},
        force=True,
    )
    assert decision.promoted
    batch = publish(None, TOP_N, settings=settings)
    assert batch["registered_version"] == run.registered_version
    return run.registered_version


class Traffic(threading.Thread):
    """Lookups, predictions and new-movie scores, back to back, until stopped; keeps every status and the
    model versions answers came from."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.versions: dict[str, set[int]] = {"list": set(), "existing": set(), "new": set()}

    def run(self) -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                user = rng.randint(1, 150)
                title = f"Film {rng.randint(1, 30)}"
                requests = (
                    ("list", "GET", f"/users/{user}/recommendations?limit=5", None),
                    (
                        "existing",
                        "POST",
                        "/recommendations/existing",
                        {"user_id": user, "movie_ids": [50, 100]},
                    ),
                    (
                        "new",
                        "POST",
                        "/predict/new-movie",
                        {"title": title, "genres": ["Drama"], "user_id": user},
                    ),
                )
                for kind, method, path, body in requests:
                    try:
                        r = client.request(method, path, json=body)
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{kind}: {exc!r}")
                        continue
                    self.statuses[r.status_code] += 1
                    if r.status_code != 200:
                        self.failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                    else:
                        self.versions[kind].add(r.json()["model_version"])


def test_new_champion_and_batch_are_served_without_restart_or_failed_request(own_published):
    settings, first = own_published
    port = free_port()
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": "",
        "MOVIEREC_MODEL_POLL_SECONDS": "0.5",
    }
    env.pop("READER_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "server exited"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "movierec serve did not become healthy"
            time.sleep(0.5)
        assert httpx.get(f"{url}/health").json()["model"]["version"] == 1

        traffic = Traffic(url)
        traffic.start()
        version = _publish_a_new_champion(settings, first["evaluation"])
        deadline = time.monotonic() + 120
        while True:
            health = httpx.get(f"{url}/health", timeout=10).json()
            if health["model"]["version"] == version and health["database"]["batch_model_version"] == version:
                break
            assert time.monotonic() < deadline, f"v{version} not served: {health}"
            time.sleep(0.25)
        time.sleep(2)  # list answers of the new batch (watched every second) and traffic on the new model
        traffic.stop.set()
        traffic.join(timeout=60)

        assert traffic.failures == [] and traffic.statuses[200] > 0
        assert traffic.versions["existing"] == {1, version} and traffic.versions["new"] == {1, version}
        assert traffic.versions["list"] == {1, version}
        assert httpx.get(f"{url}/users/3/recommendations").json()["model_version"] == version
        assert f"movierec_model_version {float(version)}" in httpx.get(f"{url}/metrics").text
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
