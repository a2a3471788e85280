"""``movierec recommend`` and ``movierec run`` as users run them: real processes, the test's own database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.cli import movierec
from tests.support.weekly import SLICE_USERS

pytestmark = pytest.mark.e2e


def test_recommend_without_a_champion_fails_with_one_line(cli_env):
    done = movierec({**cli_env, "MLFLOW_TRACKING_URI": ""}, "recommend")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no movierec-hybrid@champion" in done.stderr


def test_run_command_chains_every_step_and_shows_lists(cli_env, ml100k_slice_dir, engine):
    done = movierec(
        {**cli_env, "MLFLOW_TRACKING_URI": ""},
        "run",
        "--source",
        str(ml100k_slice_dir),
        "--epochs",
        "2",
        "--top-n",
        "15",
    )
    assert done.returncode == 0, done.stderr
    for step in ("fetch", "ingest", "quality", "evaluation", "training", "promotion", "publication"):
        assert f"✓ {step}" in done.stderr
    assert "top 10 for user 1" in done.stdout and "current_recommendations" in done.stdout
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM current_recommendations")).scalar_one()
            == SLICE_USERS * 15
        )


@pytest.mark.parametrize(
    ("command", "flag", "value", "message"),
    [
        ("recommend", "--diversity", "1.5", "diversity strength must be between 0 and 1, got 1.5"),
        ("recommend", "--popularity-penalty", "-1", "popularity penalty must be between 0 and 5, got -1.0"),
        ("run", "--diversity", "nan", "diversity strength must be between 0 and 1, got nan"),
        ("run", "--popularity-penalty", "7", "popularity penalty must be between 0 and 5, got 7.0"),
    ],
)
def test_bad_rerank_flags_are_usage_errors_before_any_work(cli_env, command, flag, value, message):
    # no champion, no data: the flag is refused before either is looked for
    done = movierec({**cli_env, "MLFLOW_TRACKING_URI": ""}, command, flag, value)
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{flag}': {message}" in " ".join(done.stderr.split())
