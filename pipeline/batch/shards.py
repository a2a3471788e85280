"""One batch's lists written by several processes: the weekly DAG's ``prepare_batch`` -> ``score_shard``
(mapped over ranges of user ids) -> ``publish``.

The same three pieces as ``publish_batch`` (``pipeline.batch.publish``), each in a transaction of its own:

* ``prepare_shards``: a ``pending`` batch (``open_pending``) and the shard plan: the cut-off's users, sorted,
  cut into contiguous ranges of user ids as even as whole users allow (``plan_shards``). The plan depends on
  the cut-off's users only, and travels with each ``Shard`` (plain JSON), so a retried shard writes the same
  range. No reader sees a pending batch: the views leave it out, a rollback never returns to it.
* ``score_shard``: the lists of one range's users (``write_lists``, the one COPY writer), committed at once.
  It first deletes whatever rows its range (and its explanations' shared attributes, kept per shard so
  that shards never wait on each other's keys) already has in the batch, in the same transaction: a
  retried shard (or one run twice) replaces its rows, never adds to them; a shard killed half-way leaves
  nothing (PostgreSQL discards its transaction). Shards lock the batch row FOR SHARE: they write side by
  side, and a prune of the batch waits for them.
* ``publish_shards``: under the publish lock, ``finish_batch`` as ``publish_batch`` calls it: every user of
  the cut-off listed exactly once (else ``BatchIncomplete``: nothing is published and the batch stays
  pending, so re-running the missing shard and then the publication completes it), the list figures, the
  publication check, and the publication, in one transaction.

Both paths write each user's list with the same function from the same inputs, so the lists are the same."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypedDict

import numpy as np
from sqlalchemy import Engine, text

from database.locks import PUBLISH, pipeline_lock
from pipeline.batch.publish import (
    BatchPlan,
    ListSettings,
    OpenBatch,
    Publication,
    announce,
    check_batch_args,
    cutoff_users,
    finish_batch,
    lock_pending,
    open_pending,
    read_cutoff,
    write_lists,
)
from pipeline.core.defaults import DEFAULT_KEEP, LOCK_TIMEOUT_S, MAX_SHARDS, SHARD_USERS
from pipeline.core.errors import InputError, MovierecError
from pipeline.models.blend.published import PublishedBlend

log = logging.getLogger(__name__)

TIMED = ("read", "score", "explain", "write", "copy")  # a shard's timings, summed over shards at publication


class Shard(TypedDict):
    """One ``score_shard`` task's work (an XCom): the users of the batch whose ids lie in
    ``first_user``..``last_user`` (inclusive)."""

    batch: BatchPlan
    shard: int  # 0-based
    shards: int
    first_user: int
    last_user: int
    users: int  # users of the cut-off in the range


class ShardResult(TypedDict):
    """What one shard wrote (an XCom)."""

    batch_id: int
    shard: int
    users: int
    fallback_users: int
    rows: int
    replaced: int  # rows of an earlier try of this shard it deleted first
    timings: dict[str, float]


def default_shards(users: int, per_shard: int = SHARD_USERS) -> int:
    """Shards for ``users`` users when none is asked for: one per ``per_shard`` users, at most
    ``MAX_SHARDS``."""
    return max(1, min(MAX_SHARDS, math.ceil(users / per_shard)))


def check_shards(shards: int | None) -> None:
    if shards is not None and not 1 <= shards <= MAX_SHARDS:
        raise InputError(f"shards must be between 1 and {MAX_SHARDS}, got {shards}")


def plan_shards(user_ids: np.ndarray, shards: int) -> list[tuple[int, int, int]]:
    """``(first user id, last user id, users)`` of each shard: the distinct ``user_ids``, sorted, cut into
    ``shards`` contiguous runs as even as whole users allow (fewer when there are fewer users). The same users
    give the same plan."""
    users = np.unique(user_ids)
    parts = np.array_split(users, max(1, min(shards, len(users))))
    return [(int(p[0]), int(p[-1]), len(p)) for p in parts if len(p)]


def prepare_shards(
    engine: Engine,
    registered_version: int,
    *,
    as_of: datetime | None,
    lists: ListSettings,
    shards: int | None = None,
) -> list[Shard]:
    """A pending batch for the champion ``registered_version`` and its shards (``shards`` ranges; None:
    ``default_shards`` of the cut-off's users)."""
    check_batch_args(lists.top_n, 1, lists.candidates)
    check_shards(shards)
    with engine.connect() as conn, conn.begin():
        users = cutoff_users(conn, as_of)
        batch = open_pending(conn, registered_version, as_of, lists)
    plan = plan_shards(users, shards or default_shards(len(users)))
    log.info("batch %s: %s users in %s shards", batch.batch_id, len(users), len(plan))
    return [
        Shard(
            batch=batch.to_dict(),
            shard=k,
            shards=len(plan),
            first_user=first,
            last_user=last,
            users=n,
        )
        for k, (first, last, n) in enumerate(plan)
    ]


def score_shard(
    engine: Engine,
    model: PublishedBlend,
    shard: Shard,
    *,
    progress: bool = False,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    _after_chunk: Callable[[int], None] | None = None,
) -> ShardResult:
    """Write the lists of ``shard``'s users into its pending batch, replacing any rows its range already
    has there, in one transaction. ``model`` must be the batch's champion (``shard["batch"]``'s
    ``registered_version``). ``_after_chunk(k)``: called after the k-th chunk (tests die there)."""
    batch = OpenBatch.from_dict(shard["batch"])
    number, first, last = int(shard["shard"]), int(shard["first_user"]), int(shard["last_user"])
    started = time.perf_counter()
    with engine.connect() as conn, conn.begin():
        lock_pending(conn, batch.batch_id, share=True, timeout_s=lock_timeout_s)
        replaced = conn.execute(
            text(
                "DELETE FROM batch_recommendations WHERE batch_id = :b AND user_id BETWEEN :first AND :last"
            ),
            {"b": batch.batch_id, "first": first, "last": last},
        ).rowcount
        conn.execute(
            text("DELETE FROM batch_shared_attributes WHERE batch_id = :b AND shard = :s"),
            {"b": batch.batch_id, "s": number},
        )
        cutoff = read_cutoff(conn, batch.as_of, users=(first, last))
        read = round(time.perf_counter() - started, 3)
        written = write_lists(
            conn, batch, model, cutoff, progress=progress, after_chunk=_after_chunk, shard=number
        )
    if replaced:
        log.info(
            "shard %s of batch %s replaced %s rows of an earlier try",
            number,
            batch.batch_id,
            replaced,
        )
    return ShardResult(
        batch_id=batch.batch_id,
        shard=number,
        users=written.users,
        fallback_users=written.fallback_users,
        rows=written.rows,
        replaced=int(replaced),
        timings={"read": read, **written.timings, "total": round(time.perf_counter() - started, 3)},
    )


def publish_shards(
    engine: Engine,
    model: PublishedBlend,
    shards: Sequence[Shard],
    scored: Sequence[ShardResult] = (),
    *,
    keep: int = DEFAULT_KEEP,
    force: bool = False,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> Publication:
    """Check and publish the batch ``shards`` wrote, in one transaction under the publish lock
    (``finish_batch``; see the module doc). ``scored``: the shards' results, for the timings only: what
    counts is what the batch holds."""
    if not shards:
        raise MovierecError("no shards to publish: prepare a batch first")
    batch = OpenBatch.from_dict(shards[0]["batch"])
    if others := {int(s["batch"]["batch_id"]) for s in shards} - {batch.batch_id}:
        raise MovierecError(
            f"shards of batches {batch.batch_id} and {min(others)} cannot be published together"
        )
    check_batch_args(batch.lists.top_n, keep, batch.lists.candidates)
    started = time.perf_counter()
    # Seconds summed over the shards (work, not wall time: shards may run side by side).
    timings = {key: round(sum(r["timings"].get(key, 0.0) for r in scored), 3) for key in TIMED}
    earlier = sum(r["timings"].get("total", 0.0) for r in scored)
    with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, lock_timeout_s):
        cutoff = read_cutoff(conn, batch.as_of)
        timings["read"] = round(timings["read"] + time.perf_counter() - started, 3)
        finished = finish_batch(
            conn,
            batch,
            model,
            cutoff,
            keep=keep,
            force=force,
            timings=timings,
            started=started,
            earlier_s=earlier,
        )
    return announce(finished)
