"""Bad input is kept, never dropped: every rejected line lands in ``rejected_rows`` with its reason."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from database.bulk import copy_rows


def record_rejects(
    conn: Connection, ingest_run_id: int, source_file: str, rejects: Iterable[tuple[int | None, str, str]]
) -> int:
    """Store ``(line_number, raw_text, reason)`` triples for one file; returns how many were stored."""
    rows = ((ingest_run_id, source_file, line, raw, reason) for line, raw, reason in rejects)
    return copy_rows(
        conn, "rejected_rows", ("ingest_run_id", "source_file", "line_number", "raw_text", "reason"), rows
    )
