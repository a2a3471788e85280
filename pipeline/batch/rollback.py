"""Taking the published batch off the air: the previous kept batch becomes current again.

The previous kept batch is the newest ``superseded`` batch older than the published one; a ``rolled_back``
batch is never chosen again. Like a publication, the swap is one transaction under the ``publish`` lock, so
readers (the API's watcher included) see the old published batch or the restored one, never none, and a
rollback cannot interleave with a weekly publish. The restored batch gets ``published_at = now()`` (when it
went back on the air); the batch taken off gets ``status = 'rolled_back'`` and stays kept until pruned. The
next weekly publish is unchanged: it supersedes the restored batch and keeps the last ``keep`` by id."""

from __future__ import annotations

import getpass
import logging
from typing import TypedDict

from sqlalchemy import Connection, Engine, text

from database.locks import PUBLISH, pipeline_lock
from pipeline.core.defaults import LOCK_TIMEOUT_S
from pipeline.core.errors import MovierecError

log = logging.getLogger(__name__)


class Rollback(TypedDict):
    """What one rollback did: ``rolled_back`` is None when there was nothing left to do (``expect``)."""

    published: int
    rolled_back: int | None
    by: str


def published_and_previous(conn: Connection) -> tuple[int | None, int | None]:
    """The published batch and the previous kept one (newest ``superseded`` older than it); None where
    there is none."""
    row = conn.execute(
        text(
            "SELECT p.batch_id, (SELECT max(s.batch_id) FROM recommendation_batches s "
            "WHERE s.status = 'superseded' AND s.batch_id < p.batch_id) "
            "FROM recommendation_batches p WHERE p.status = 'published'"
        )
    ).first()
    return (None, None) if row is None else (row[0], row[1])


def rollback_batch(
    engine: Engine, *, expect: int | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> Rollback:
    """Make the previous kept batch the published one again; refused (``MovierecError``, nothing changed)
    when there is no published batch or no earlier kept batch.

    ``expect``: the batch the caller means to roll back. When it is no longer published because it was
    already rolled back, nothing is done (a re-run after a rollback whose outcome went unseen); when it is
    neither published nor rolled back, the rollback is refused. Without it each call steps back one kept
    batch, until none is left."""
    by = _who()
    with engine.connect() as conn, conn.begin(), pipeline_lock(conn, PUBLISH, lock_timeout_s):
        published, previous = published_and_previous(conn)
        if expect is not None and expect != published:
            status = conn.execute(
                text("SELECT status FROM recommendation_batches WHERE batch_id = :b"), {"b": expect}
            ).scalar_one_or_none()
            if status == "rolled_back" and published is not None:
                return Rollback(published=published, rolled_back=None, by=by)
            raise MovierecError(
                f"batch {expect} is not the published batch ({_describe(status)}; published: "
                f"{published or 'none'}): nothing rolled back"
            )
        if published is None:
            raise MovierecError("no published batch: nothing to roll back")
        if previous is None:
            raise MovierecError(
                f"batch {published} is published and no earlier kept batch is left to roll back to"
            )
        conn.execute(
            text("UPDATE recommendation_batches SET status = 'rolled_back' WHERE batch_id = :b"),
            {"b": published},
        )
        conn.execute(
            text(
                "UPDATE recommendation_batches SET status = 'published', published_at = now() "
                "WHERE batch_id = :b"
            ),
            {"b": previous},
        )
    log.info("rolled back batch %s (by %s): batch %s is published again", published, by, previous)
    return Rollback(published=previous, rolled_back=published, by=by)


def _describe(status: str | None) -> str:
    return "no such kept batch" if status is None else f"it is {status.replace('_', ' ')}"


def _who() -> str:
    """The operating-system user running the rollback, for the log and the command's report."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry or login name (a bare container)
        return "unknown"
