"""The API server reads the MLflow registry as the read-only role: with the embedded server, `movierec serve`
loads and polls the champion through the ``mlflow`` database as ``movierec_reader``, and none of its
connections is a superuser's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from mlflow import MlflowClient

from database.engine import get_engine
from database.migrate import upgrade
from pipeline.core.defaults import CHAMPION_ALIAS, REGISTERED_MODEL
from pipeline.core.settings import Settings
from pipeline.registry.gate import promote_if_better
from pipeline.registry.store import reader_tracking_uri, tracking_uri
from tests.support.database import fetch_rows
from tests.support.registry import CUTOFF, log_run
from tests.support.servers import free_port

pytestmark = [
    pytest.mark.e2e,  # `movierec serve` in a subprocess
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="DATABASE_URL set: no embedded server"),
]

_UNSET = ("DATABASE_URL", "MLFLOW_TRACKING_URI", "READER_DATABASE_URL", "MLFLOW_READER_TRACKING_URI")


def _backends(engine, label: str) -> list:  # type: ignore[no-untyped-def]
    """(role, database, superuser?) of every connection labelled ``label`` on ``engine``'s server."""
    with engine.connect() as conn:
        return fetch_rows(
            conn,
            "SELECT a.usename, a.datname, r.rolsuper FROM pg_stat_activity a "
            "JOIN pg_roles r ON r.rolname = a.usename WHERE a.application_name = :label",
            label=label,
        )


def test_reader_registry_uri_choices(tmp_path):
    explicit = Settings(
        MOVIEREC_HOME=tmp_path,
        MLFLOW_TRACKING_URI="postgresql://mlflow:secret@db/mlflow",
        MLFLOW_READER_TRACKING_URI="postgresql://registry_reader:other@db/mlflow",
    )
    assert reader_tracking_uri(explicit) == "postgresql://registry_reader:other@db/mlflow"
    server = Settings(MOVIEREC_HOME=tmp_path, MLFLOW_TRACKING_URI="http://mlflow:5000")
    assert reader_tracking_uri(server) == "http://mlflow:5000"
    local = Settings(MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://x@h/db", MLFLOW_TRACKING_URI="")
    assert reader_tracking_uri(local) == tracking_uri(local)  # a sqlite file: no roles


def test_a_registry_with_nothing_trained_yet_is_not_created_by_the_reader(tmp_path):
    """A fresh embedded home: MLflow would create its tables on first use; as the reader it may not, and
    says what is missing instead (the API shows it in /health until a model is trained)."""
    from database import embedded
    from pipeline.core.errors import MovierecError
    from pipeline.registry.champion import champion_version
    from pipeline.registry.store import reader_settings

    settings = Settings(MOVIEREC_HOME=tmp_path / "fresh", **{k: "" for k in _UNSET})
    try:
        with pytest.raises(
            MovierecError, match=r"cannot read the MLflow registry as this role .*nothing trained"
        ):
            champion_version(reader_settings(settings))
        assert champion_version(settings) is None  # the pipeline's role creates the store on first use
        assert champion_version(reader_settings(settings)) is None  # then the reader reads it
    finally:
        embedded.stop(settings)


def test_the_api_reads_the_registry_as_the_reader_and_holds_no_superuser_connection(test_home, result):
    settings = Settings(MOVIEREC_HOME=test_home, **{k: "" for k in _UNSET})
    assert settings.embedded
    app_engine = get_engine(settings)
    upgrade(app_engine)  # the home's own app database (other tests work on copies of the template)
    run = log_run(settings, result, 0.30, plots=False)
    decision = promote_if_better(
        settings,
        app_engine,
        run,
        dataset="ml-100k",
        data_cutoff=CUTOFF,
        metrics={"temporal.ndcg@10": 0.30},
        params={},
        force=True,
    )
    assert decision.promoted

    uri = reader_tracking_uri(settings)
    assert uri.startswith("postgresql+psycopg2://movierec_reader@/mlflow?")
    client = MlflowClient(uri, uri)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert int(champion.version) == run.registered_version
    with pytest.raises(Exception, match="permission denied"):  # reads the registry, never changes it
        client.set_registered_model_alias(REGISTERED_MODEL, "reader-was-here", champion.version)

    label = f"movierec-api-{uuid.uuid4().hex[:8]}"  # libpq's application_name for the server's connections
    env = {**{k: v for k, v in os.environ.items() if k not in _UNSET}, "PGAPPNAME": label}
    env.update(MOVIEREC_HOME=str(test_home), MOVIEREC_MODEL_POLL_SECONDS="0.5")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        backends: list = []
        health: dict = {}
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "server exited"
            try:
                health = httpx.get(f"{url}/health", timeout=5).json()
            except httpx.HTTPError:
                health = {}
            backends = _backends(app_engine, label)
            served = (health.get("model") or {}).get("version")
            if served == run.registered_version and any(b.datname == "mlflow" for b in backends):
                break
            assert time.monotonic() < deadline, f"champion not served through the registry: {health}"
            time.sleep(0.5)
        time.sleep(1.5)  # a few more registry polls, then look again at every connection the server holds
        backends = _backends(app_engine, label)
        assert backends and {b.usename for b in backends} == {"movierec_reader"}
        assert not any(b.rolsuper for b in backends)
        assert "mlflow" in {b.datname for b in backends}
        assert httpx.get(f"{url}/health", timeout=5).json()["database"]["role"] == "movierec_reader"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        app_engine.dispose()
