"""Sharded scoring (``pipeline.batch.shards``): the shards' union is exactly the single-process lists; a shard
killed mid-write and retried, or run twice, leaves each list once; a batch missing a shard is refused and
nothing is published; a pending batch is in no view, no rollback, and is pruned like any other. Each test
works on its own copy of the weekly run's database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from pipeline.batch.publish import BatchIncomplete, ListSettings, publish_batch
from pipeline.batch.rollback import rollback_batch
from pipeline.batch.shards import (
    default_shards,
    plan_shards,
    prepare_shards,
    publish_shards,
    score_shard,
)
from pipeline.core.defaults import MAX_SHARDS, SHARD_USERS
from pipeline.core.errors import MovierecError
from pipeline.models.rerank import Rerank
from pipeline.registry.champion import load_champion
from tests.support.weekly import SLICE_USERS, TOP_N

LIST_COLUMNS = (
    "user_id, rank, movie_id, score, source, because, shared, reason, model_version_id, generated_at"
)


def _rows(
    engine: Engine, batch_id: int, columns: str = LIST_COLUMNS, source: str = "batch_recommendations"
) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(f"SELECT {columns} FROM {source} WHERE batch_id = :b ORDER BY user_id, rank"),
                {"b": batch_id},
            )
        ]


def _shown(engine: Engine, batch_id: int) -> list[tuple[Any, ...]]:
    """The batch's lists as the analyst view shows them: explanations assembled from their parts."""
    columns = "user_id, rank, movie_id, score, source, because, shared, reason"
    return _rows(engine, batch_id, columns, "recommendation_history")


def _attributes(engine: Engine, batch_id: int, shard: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM batch_shared_attributes WHERE batch_id = :b AND shard = :s"),
                {"b": batch_id, "s": shard},
            ).scalar_one()
        )


def _published(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT batch_id, user_id, rank, movie_id FROM current_recommendations ORDER BY user_id, rank"
                )
            )
        ]


def _status(engine: Engine, batch_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT status FROM recommendation_batches WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one_or_none()


def test_the_plan_is_contiguous_even_and_depends_on_the_users_only() -> None:
    users = np.array([7, 3, 3, 12, 5, 9, 1, 20, 15, 11], np.int64)  # nine distinct users, one rated twice
    plan = plan_shards(users, 4)
    assert plan == [(1, 5, 3), (7, 9, 2), (11, 12, 2), (15, 20, 2)]  # as even as whole users allow
    assert plan == plan_shards(np.random.default_rng(0).permutation(users), 4)  # any order, same ranges
    assert plan_shards(users, 50) == [(int(u), int(u), 1) for u in np.unique(users)]  # never an empty shard
    assert plan_shards(users, 1) == [(1, 20, 9)]
    assert default_shards(943) == 1 and default_shards(SHARD_USERS + 1) == 2
    assert default_shards(200_948) == 5 and default_shards(10**9) == MAX_SHARDS


def test_three_shards_write_exactly_the_single_process_lists(weekly_copy, weekly_engine) -> None:
    """Same users, ranks, movies, scores, sources and explanations, with the diversity re-rank on; and the
    same counts and list figures."""
    model, version = load_champion(weekly_copy.settings)
    rerank = Rerank(0.25, 0.5)
    single = publish_batch(weekly_engine, model, version, top_n=TOP_N, rerank=rerank, force=True)

    shards = prepare_shards(
        weekly_engine, version, as_of=None, lists=ListSettings(top_n=TOP_N, rerank=rerank), shards=3
    )
    assert [s["shard"] for s in shards] == [0, 1, 2] and {s["shards"] for s in shards} == {3}
    assert sum(s["users"] for s in shards) == SLICE_USERS
    batch_id = shards[0]["batch"]["batch_id"]
    assert _status(weekly_engine, batch_id) == "pending"
    scored = [score_shard(weekly_engine, model, shard) for shard in shards]
    assert [r["users"] for r in scored] == [s["users"] for s in shards]
    sharded = publish_shards(weekly_engine, model, shards, scored, force=True)

    assert sharded["batch_id"] == batch_id != single["batch_id"]
    assert _status(weekly_engine, batch_id) == "published"
    columns = "user_id, rank, movie_id, score, source, because, rated_highly, shared, reason"
    assert _rows(weekly_engine, batch_id, columns) == _rows(weekly_engine, single["batch_id"], columns)
    shown = _shown(weekly_engine, batch_id)
    assert shown == _shown(weekly_engine, single["batch_id"]) and len(shown) == SLICE_USERS * TOP_N
    assert all(r[7].startswith("Because you rated ") for r in shown if r[4] == "model")
    assert all(_attributes(weekly_engine, batch_id, k) > 0 for k in range(3))  # each shard its own
    assert len(_rows(weekly_engine, batch_id)) == SLICE_USERS * TOP_N
    for key in ("users", "fallback_users", "rows", "top_n", "candidates", "registered_version"):
        assert sharded[key] == single[key], key  # type: ignore[literal-required]
    figures = {k: v for k, v in sharded["list_metrics"].items() if k != "release_check"}
    assert figures == {k: v for k, v in single["list_metrics"].items() if k != "release_check"}
    assert {r[0] for r in _published(weekly_engine)} == {batch_id}
    assert set(sharded["timings"]) >= {"read", "score", "write", "copy", "list_metrics", "total"}


def _kill_mid_write(settings, shard: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Run ``shard`` in a process of its own and SIGKILL it once its first chunk is written (uncommitted)."""
    script = (
        "import json, sys, time\n"
        "from database.engine import get_engine\n"
        "from pipeline.batch.shards import score_shard\n"
        "from pipeline.core.settings import Settings\n"
        "from pipeline.registry.champion import load_champion\n"
        "s = Settings()\n"
        "shard = json.loads(sys.argv[1])\n"
        "model, _ = load_champion(s, version=shard['batch']['registered_version'])\n"
        "def stall(k):\n"
        "    print('wrote chunk', k, flush=True)\n"
        "    time.sleep(600)\n"
        "score_shard(get_engine(s), model, shard, _after_chunk=stall)\n"
    )
    env = {
        **os.environ,
        "MOVIEREC_HOME": str(settings.home),
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(shard)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("wrote chunk 0")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def test_a_shard_killed_mid_write_then_retried_or_run_twice_lists_each_user_once(
    weekly_copy, weekly_engine
) -> None:
    model, version = load_champion(weekly_copy.settings)
    before = _published(weekly_engine)
    # ten users a chunk: the killed shard has written rows (uncommitted) when it dies
    shards = prepare_shards(
        weekly_engine, version, as_of=None, lists=ListSettings(top_n=TOP_N, chunk_users=10), shards=3
    )
    batch_id, victim = shards[0]["batch"]["batch_id"], shards[1]
    _kill_mid_write(weekly_copy.settings, victim)  # type: ignore[arg-type]
    assert _rows(weekly_engine, batch_id) == []  # its transaction died with it
    assert _published(weekly_engine) == before

    first = score_shard(weekly_engine, model, victim)  # the retry
    assert first["replaced"] == 0 and first["rows"] == victim["users"] * TOP_N
    once, parts = _rows(weekly_engine, batch_id), _attributes(weekly_engine, batch_id, victim["shard"])
    again = score_shard(weekly_engine, model, victim)  # the same shard run twice: replaces, never adds
    assert again["replaced"] == first["rows"] == again["rows"]
    twice = _rows(weekly_engine, batch_id)
    assert twice == once  # generated_at included: the batch's one time stamp
    assert _attributes(weekly_engine, batch_id, victim["shard"]) == parts > 0  # its explanations' too
    users = {r[0] for r in twice}
    assert len(users) == victim["users"] and all(
        victim["first_user"] <= u <= victim["last_user"] for u in users
    )
    assert _published(weekly_engine) == before  # a pending batch's rows are seen by nobody

    scored = [
        score_shard(weekly_engine, model, shards[0]),
        again,
        score_shard(weekly_engine, model, shards[2]),
    ]
    published = publish_shards(weekly_engine, model, shards, scored, force=True)
    rows = _rows(weekly_engine, batch_id, "user_id, rank")
    assert len(rows) == len(set(rows)) == published["rows"] == SLICE_USERS * TOP_N
    assert {r[0] for r in _published(weekly_engine)} == {batch_id}


def test_a_batch_missing_a_shard_is_refused_and_nothing_is_published(weekly_copy, weekly_engine) -> None:
    """One shard never ran: the publication fails with one line naming the missing users, readers keep the
    published lists, and the batch stays pending (no view, no rollback shows it) until the shard runs."""
    model, version = load_champion(weekly_copy.settings)
    before = _published(weekly_engine)
    shards = prepare_shards(weekly_engine, version, as_of=None, lists=ListSettings(top_n=TOP_N), shards=3)
    batch_id = shards[0]["batch"]["batch_id"]
    scored = [score_shard(weekly_engine, model, shards[k]) for k in (0, 2)]
    with pytest.raises(BatchIncomplete) as refused:
        publish_shards(weekly_engine, model, shards, scored, force=True)
    message = str(refused.value)
    assert "\n" not in message
    assert (
        f"batch {batch_id} not published: {shards[1]['users']} of the cut-off's {SLICE_USERS} users"
        in message
    )
    assert f"(user {shards[1]['first_user']})" in message
    assert _published(weekly_engine) == before
    assert _status(weekly_engine, batch_id) == "pending"

    with weekly_engine.connect() as conn:  # the half-written batch is in no view
        for view in ("recommendation_batch_summary", "recommendation_history"):
            shown = conn.execute(text(f"SELECT count(*) FROM {view} WHERE batch_id = :b"), {"b": batch_id})
            assert shown.scalar_one() == 0, view
        assert batch_id not in set(conn.execute(text("SELECT batch_id FROM recommendation_churn")).scalars())
    with pytest.raises(MovierecError, match="no earlier kept batch"):  # the only other batch is published
        rollback_batch(weekly_engine)

    scored.append(score_shard(weekly_engine, model, shards[1]))  # the missing shard, run at last
    published = publish_shards(weekly_engine, model, shards, scored, force=True)
    assert published["batch_id"] == batch_id and published["users"] == SLICE_USERS
    assert {r[0] for r in _published(weekly_engine)} == {batch_id}


def test_an_abandoned_pending_batch_is_pruned_and_its_shards_then_refused(weekly_copy, weekly_engine) -> None:
    model, version = load_champion(weekly_copy.settings)
    shards = prepare_shards(weekly_engine, version, as_of=None, lists=ListSettings(top_n=TOP_N), shards=2)
    batch_id = shards[0]["batch"]["batch_id"]
    score_shard(weekly_engine, model, shards[0])
    assert _rows(weekly_engine, batch_id)
    publish_batch(weekly_engine, model, version, top_n=TOP_N, keep=1, force=True)  # a later run's publication
    assert _status(weekly_engine, batch_id) is None and _rows(weekly_engine, batch_id) == []
    with pytest.raises(MovierecError, match=f"batch {batch_id} is no longer kept"):
        score_shard(weekly_engine, model, shards[1])
    with pytest.raises(MovierecError, match=f"batch {batch_id} is no longer kept"):
        publish_shards(weekly_engine, model, shards)
    assert _rows(weekly_engine, batch_id) == []  # the refused shard left no orphan rows
