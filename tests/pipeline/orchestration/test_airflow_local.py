"""How Airflow is wired to the settings (no Airflow import here: these run before tests/dags)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pipeline.core.errors import MovierecError
from pipeline.core.settings import Settings
from pipeline.orchestration.airflow_local import airflow_env, check_metadata_db, dags_folder


def test_database_url_set_means_the_airflow_database_on_the_same_server(tmp_path: Path) -> None:
    settings = Settings(
        MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://app:s3cret@db.internal:5433/movierec"
    )
    env = airflow_env(settings, environ={})
    url = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg2",
        "app",
        "s3cret",
        "db.internal",
        5433,
        "airflow",
    )
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(dags_folder())
    assert env["MOVIEREC_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) <= 4


def test_user_settings_win(tmp_path: Path) -> None:
    settings = Settings(MOVIEREC_HOME=tmp_path, DATABASE_URL="postgresql://app@db/movierec")
    mine = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://af:pw@other/af_meta",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW_HOME": "/srv/airflow",
        "PATH": "/bin",
    }
    env = airflow_env(settings, environ=mine)
    assert {k: env[k] for k in mine} == mine


def test_embedded_default_is_the_embedded_servers_airflow_database(server_url: str, tmp_path: Path) -> None:
    if not make_url(server_url).query.get("host"):
        pytest.skip("DATABASE_URL is set for this test session: no embedded server to look at")
    home = Path(make_url(server_url).query["host"]).parent  # the session's embedded home
    url = make_url(
        airflow_env(Settings(MOVIEREC_HOME=home), environ={})["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    assert (url.drivername, url.database, url.query["host"]) == (
        "postgresql+psycopg2",
        "airflow",
        make_url(server_url).query["host"],
    )
    check_metadata_db(url.render_as_string(hide_password=False))  # it exists and answers


def test_a_missing_metadata_database_is_a_one_line_reason(server_url: str) -> None:
    missing = make_url(server_url).set(drivername="postgresql+psycopg2", database="movierec_test_no_such_db")
    with pytest.raises(
        MovierecError,
        match=r"movierec_test_no_such_db.* is not reachable .*does not exist.*"
        r"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    ):
        check_metadata_db(missing.render_as_string(hide_password=False))
