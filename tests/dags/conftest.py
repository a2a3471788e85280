"""Real Airflow for the DAG tests: its own metadata database on the test PostgreSQL server.

Airflow reads its configuration and sets up process-wide logging and ORM state when first imported, so
it is imported only here, after its environment is set, and these tests run after every other test of
the session (``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from database.engine import sqlalchemy_url
from pipeline.core.settings import Settings
from tests.support.database import admin_connection, with_database

HERE = Path(__file__).parent


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    items.sort(key=lambda item: item.path.is_relative_to(HERE))  # stable: Airflow's tests last


@pytest.fixture(scope="session")
def airflow_home(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Airflow wired like ``movierec airflow`` wires it, on a fresh metadata database; yields AIRFLOW_HOME."""
    if "airflow.settings" in sys.modules:
        pytest.fail("airflow was imported before the DAG tests set its environment")
    name = f"movierec_test_airflow_{os.getpid()}"
    admin = admin_connection(server_url)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    root = tmp_path_factory.mktemp("airflow")
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", sqlalchemy_url(with_database(server_url, name)))
    patch.setenv("AIRFLOW_HOME", str(root / "airflow-home"))
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW_CONFIG"):
        patch.delenv(key, raising=False)
    from pipeline.orchestration import airflow_local

    root_logger = logging.getLogger()
    level, handlers = root_logger.level, set(root_logger.handlers)
    settings = Settings(MOVIEREC_HOME=root / "movierec-home")
    env = airflow_local.airflow_env(settings)
    for key, value in env.items():  # through the patch, so that the session ends with the environment it had
        patch.setenv(key, value)
    airflow_local.activate(settings)
    airflow_local.init_metadata()
    yield Path(env["AIRFLOW_HOME"])

    from airflow import settings as airflow_settings

    airflow_settings.dispose_orm()
    for handler in set(root_logger.handlers) - handlers:  # Airflow's stdout handler outlives pytest's capture
        if not type(handler).__module__.startswith("_pytest"):
            root_logger.removeHandler(handler)
    root_logger.setLevel(level)
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
    patch.undo()


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path):  # type: ignore[no-untyped-def]
    from airflow.models import DagBag

    from pipeline.orchestration.airflow_local import dags_folder

    return DagBag(dag_folder=str(dags_folder()))
