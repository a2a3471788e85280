"""The pipeline's locks: rows of ``pipeline_locks`` (migration 0004) taken ``FOR UPDATE``.

One row per lock (``publish``, ``promotion``). Locking a row needs rights on the table, which only the
pipeline's role has: the read-only role ``movierec_reader`` can neither take nor hold one (an advisory lock,
which every role may take on any key, could be held by it to stall the pipeline). The wait is bounded:
``lock_timeout`` is set for the rest of the transaction, so the lock itself and every table or row lock
after it fail after ``timeout_s`` with a one-line error naming the lock, rather than hang.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from pipeline.core.errors import MovierecError, one_line

PUBLISH = "publish"
PROMOTION = "promotion"
LOCKS = (PUBLISH, PROMOTION)

_MAX_MS = 2**31 - 1
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's lock_not_available: lock_timeout expired or NOWAIT refused


def duration(seconds: float) -> str:
    """``0.2 s``, ``45 s``, ``15 min``: a timeout as an error message shows it."""
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def lock_timed_out(exc: DBAPIError) -> bool:
    """Whether ``exc`` is PostgreSQL giving up on a lock (``lock_timeout`` expired)."""
    return getattr(exc.orig, "pgcode", None) == _LOCK_NOT_AVAILABLE


def set_lock_timeout(conn: Connection, timeout_s: float) -> None:
    """Wait at most ``timeout_s`` for each lock for the rest of ``conn``'s transaction."""
    # set_config(..., true) is SET LOCAL with a bound value; in ms, at least 1 (0 would mean no limit), at
    # most PostgreSQL's largest (about 24.8 days).
    ms = min(max(1, round(timeout_s * 1000)), _MAX_MS)
    conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{ms}ms"})


@contextmanager
def pipeline_lock(conn: Connection, name: str, timeout_s: float) -> Iterator[None]:
    """Hold lock ``name`` until ``conn``'s transaction ends (enter inside the transaction); wait at most
    ``timeout_s`` for it and for each lock the block takes after it; a wait that runs out raises a
    ``MovierecError`` naming the lock and the timeout (``MOVIEREC_LOCK_TIMEOUT_S``)."""
    if not timeout_s > 0:
        raise MovierecError(f"lock timeout must be positive, got {timeout_s}")
    waited = f"{duration(timeout_s)} (MOVIEREC_LOCK_TIMEOUT_S)"
    set_lock_timeout(conn, timeout_s)
    try:
        row = conn.execute(
            text("SELECT name FROM pipeline_locks WHERE name = :name FOR UPDATE"), {"name": name}
        ).first()
    except DBAPIError as exc:
        if lock_timed_out(exc):
            raise MovierecError(
                f"the {name} lock is held by another session: gave up after {waited}; another {name} is "
                "probably running, retry when it has finished"
            ) from None
        raise
    if row is None:
        raise MovierecError(f"no {name!r} row in pipeline_locks: run `movierec db migrate`")
    try:
        yield
    except DBAPIError as exc:
        if lock_timed_out(exc):
            raise MovierecError(
                f"{name}: a table or row lock was not granted within {waited}, holding the {name} lock "
                f"({one_line(exc.orig or exc)})"
            ) from None
        raise
