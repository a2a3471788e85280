"""`movierec airflow ...` as a user runs it: a separate process wired by pipeline.airflow_local."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _copy_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def user_env(airflow_home: Path, server_url: str, template_db: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment: this test's app database, the session's Airflow metadata database."""
    with _copy_of(server_url, template_db) as url:
        env = dict(os.environ, MOVIEREC_HOME=str(tmp_path / "home"), DATABASE_URL=url, MOVIEREC_DEVICE="cpu")
        env.pop("MLFLOW_TRACKING_URI", None)
        yield env


def _movierec(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "airflow", *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def test_env_prints_the_wiring(user_env: dict[str, str]) -> None:
    done = _movierec(user_env, "env")
    assert done.returncode == 0, done.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in done.stdout.splitlines())
    assert exports["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].strip("'") == os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert exports["AIRFLOW__CORE__DAGS_FOLDER"] == str(ROOT / "dags")
    assert exports["MOVIEREC_HOME"] == user_env["MOVIEREC_HOME"]


def test_run_weekly_fails_at_the_quality_gate_with_a_reason(user_env: dict[str, str], ml100k_dir: Path,
                                                            tmp_path: Path) -> None:
    """Too few ratings: the quality task fails at once (no retry), later tasks never run, exit code 1."""
    source = tmp_path / "ml-100k-tiny"
    shutil.copytree(ml100k_dir, source)
    inter = source / "ml-100k.inter"
    inter.write_text("".join(inter.read_text().splitlines(keepends=True)[:301]))  # header + 300 ratings
    done = _movierec(user_env, "run-weekly", "--source", str(source), "--logical-date", "1998-01-04",
                     "--epochs", "1")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "failed: quality" in done.stderr
    rows = {cells[1]: (cells[3], cells[5]) for cells in (line.split() for line in done.stdout.splitlines())
            if len(cells) > 5 and cells[0] == "│"}
    assert rows["fetch"][0] == rows["ingest"][0] == "success"
    assert rows["quality"] == ("failed", "1")  # DataQualityError: no retry
    assert rows["train"][0] == rows["publish"][0] == "upstream_failed"
    assert "too few to train on" in done.stdout + done.stderr
