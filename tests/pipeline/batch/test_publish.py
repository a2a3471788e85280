"""Weekly lists: scoring, the write, atomic publication, a writer killed mid-way, the fallback list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import text

from database.bulk import copy_columns
from pipeline.batch.publish import publish_batch
from pipeline.core.settings import Settings
from pipeline.models.topn import top_k
from pipeline.orchestration.steps import run_all
from pipeline.registry.champion import load_champion

TOP_N = 20


def test_top_k_orders_best_first_and_never_returns_masked_entries():
    scores = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, 0.2, -np.inf]], np.float32)
    idx, values = top_k(scores, 3)
    assert idx.tolist() == [[1, 3, 0], [2, -1, -1]]
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.1])


def test_copy_columns_round_trips_every_supported_type(engine):
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE t (a smallint, b integer, c bigint, d real, e double precision, "
                "f text, g timestamptz)"
            )
        )
        stamp = datetime(2026, 11, 21, 12, 30, 15, 123456, tzinfo=UTC)
        sent = copy_columns(
            conn,
            "t",
            {
                "a": np.array([1, -2], np.int16),
                "b": np.array([7, 8], np.int32),
                "c": np.array([2**40, -1], np.int64),
                "d": np.array([0.5, 1.5], np.float32),
                "e": np.array([1e-9, 2.0]),
                "f": "model",
                "g": stamp,
            },
        )
        rows = conn.execute(text("SELECT * FROM t ORDER BY b")).all()
    assert sent == 2
    assert [tuple(r) for r in rows] == [
        (1, 7, 2**40, 0.5, 1e-9, "model", stamp),
        (-2, 8, -1, 1.5, 2.0, "model", stamp),
    ]


@pytest.fixture
def weekly_settings(tmp_path, db_url) -> Settings:
    return Settings(MOVIEREC_HOME=tmp_path / "home", DATABASE_URL=db_url, MLFLOW_TRACKING_URI="")


@pytest.fixture
def published(weekly_settings, ml100k_slice_dir):
    """One weekly run on the real ML-100K slice (two epochs): a champion and a published batch."""
    return run_all("ml-100k-slice", str(ml100k_slice_dir), epochs=2, top_n=TOP_N, settings=weekly_settings)


def _current(engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT batch_id, user_id, rank, movie_id, source FROM current_recommendations "
                "ORDER BY user_id, rank"
            )
        ).all()


def test_weekly_run_publishes_one_complete_list_per_user_without_rated_movies(engine, published):
    batch = published["publication"]
    rows = _current(engine)
    with engine.connect() as conn:
        users = {r[0] for r in conn.execute(text("SELECT DISTINCT user_id FROM ratings"))}
        rated = {(r[0], r[1]) for r in conn.execute(text("SELECT user_id, movie_id FROM ratings"))}
        summary = conn.execute(
            text("SELECT status, users, rows, catalogue_coverage FROM recommendation_batch_summary")
        ).one()
    assert published["promotion"]["promoted"] and batch["registered_version"] == 1
    assert {r[1] for r in rows} == users == set(range(1, 151))
    assert {r[0] for r in rows} == {batch["batch_id"]}
    by_user: dict[int, list[int]] = {}
    for _, user, rank, movie, source in rows:
        by_user.setdefault(user, []).append(rank)
        assert (user, movie) not in rated
        assert source == "model"
    assert all(ranks == list(range(1, TOP_N + 1)) for ranks in by_user.values())
    assert len(rows) == batch["rows"] == 150 * TOP_N
    assert summary.status == "published" and summary.users == 150 and summary.rows == 150 * TOP_N
    assert 0 < float(summary.catalogue_coverage) <= 1
    assert "published batch" in published["report"]


def test_writer_killed_mid_write_leaves_the_previous_batch_published(engine, published, weekly_settings):
    before = _current(engine)
    script = (
        "import sys, time\n"
        "from database.engine import get_engine\n"
        "from pipeline.batch.publish import publish_batch\n"
        "from pipeline.registry.champion import load_champion\n"
        "from pipeline.core.settings import Settings\n"
        "s = Settings()\n"
        "model, version = load_champion(s)\n"
        "def stall(k):\n"
        "    print('wrote chunk', k, flush=True)\n"
        "    time.sleep(600)\n"
        f"publish_batch(get_engine(s), model, version, top_n={TOP_N}, chunk_users=10,\n"
        "                        _after_chunk=stall)\n"
    )
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(weekly_settings.home),
        "DATABASE_URL": weekly_settings.database_url,
        "MLFLOW_TRACKING_URI": "",
    }
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("wrote chunk 0")  # rows of the new batch are in the table
        with engine.connect() as conn:  # ... but invisible: the publication is not committed
            assert conn.execute(text("SELECT count(*) FROM recommendation_batches")).scalar_one() == 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert _current(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM batch_recommendations")).scalar_one() == len(before)

    model, version = load_champion(weekly_settings)
    again = publish_batch(engine, model, version, top_n=TOP_N, keep=1)
    after = _current(engine)
    assert again.batch_id != before[0][0] and {r[0] for r in after} == {again.batch_id}
    assert len(after) == len(before)
    with engine.connect() as conn:  # keep=1 pruned the older batch and its rows
        assert conn.execute(text("SELECT count(*) FROM recommendation_batches")).scalar_one() == 1


def test_new_and_thin_users_get_the_labelled_fallback(engine, published, weekly_settings):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (user_id) VALUES (9001)"))
        conn.execute(
            text(
                "INSERT INTO ratings (user_id, movie_id, rating, rated_at) VALUES "
                "(9001, 50, 5, now()), (9001, 100, 4, now())"
            )
        )
    model, version = load_champion(weekly_settings)
    result = publish_batch(engine, model, version, top_n=TOP_N)
    assert result.fallback_users == 1 and result.users == 151
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT rank, movie_id, source FROM current_recommendations WHERE user_id = 9001 "
                "ORDER BY rank"
            )
        ).all()
        counts = dict(conn.execute(text("SELECT movie_id, count(*) FROM ratings GROUP BY movie_id")).all())
    assert [r.rank for r in rows] == list(range(1, TOP_N + 1))
    assert {r.source for r in rows} == {"fallback_popularity"}
    assert not {50, 100} & {r.movie_id for r in rows}
    listed = [counts[r.movie_id] for r in rows]
    assert listed == sorted(listed, reverse=True)  # most rated first


def test_cut_off_hides_later_ratings_from_the_lists(engine, published, weekly_settings):
    as_of = datetime(1998, 1, 1, tzinfo=UTC)
    model, version = load_champion(weekly_settings)
    result = publish_batch(engine, model, version, as_of=as_of, top_n=TOP_N)
    with engine.connect() as conn:
        early = conn.execute(
            text("SELECT count(DISTINCT user_id) FROM ratings WHERE rated_at <= :t"), {"t": as_of}
        ).scalar_one()
        cutoff = conn.execute(text("SELECT DISTINCT data_cutoff FROM current_recommendations")).scalar_one()
    assert result.users == early < 150
    assert cutoff == as_of


def test_recommend_without_a_champion_fails_with_one_line(cli_env):
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "recommend"],
        env={**cli_env, "MLFLOW_TRACKING_URI": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no movierec-hybrid@champion" in done.stderr


def test_run_command_chains_every_step_and_shows_lists(cli_env, ml100k_slice_dir, engine):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--source",
            str(ml100k_slice_dir),
            "--epochs",
            "2",
            "--top-n",
            "15",
        ],
        env={**cli_env, "MLFLOW_TRACKING_URI": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    for step in ("fetch", "ingest", "quality", "evaluation", "training", "promotion", "publication"):
        assert f"✓ {step}" in done.stderr
    assert "top 10 for user 1" in done.stdout and "current_recommendations" in done.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM current_recommendations")).scalar_one() == 150 * 15
