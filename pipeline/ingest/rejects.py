"""Bad input is kept, never dropped: every rejected line lands in ``rejected_rows`` with its reason.

A rejected line's raw text is cut to ``MAX_REJECT_RAW_CHARS`` (with a note of how long it was) and its
reason to ``MAX_REASON_CHARS``, so a megabyte-long line costs a few kilobytes; a NUL (which PostgreSQL
cannot store in text) is shown as ``\\x00``.

An ingest collects its rejects in a ``RejectSpool``, outside the database transaction that loads the data:
when that transaction is rolled back (a failed run changes no table), the rejects are still written, in
the transaction that closes the run.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, text

from database.bulk import copy_file, copy_line, copy_rows
from pipeline.core.defaults import MAX_REASON_CHARS, MAX_REJECT_RAW_CHARS
from pipeline.core.errors import shorten

_REJECT_COLUMNS = ("ingest_run_id", "source_file", "line_number", "raw_text", "reason")
_SPOOL_IN_MEMORY = 8 << 20  # bytes of rejects held in memory before the spool moves to a temp file


def bounded_raw(text: str) -> str:
    """A rejected line as stored: NUL shown as ``\\x00``, cut to ``MAX_REJECT_RAW_CHARS`` with its length."""
    text = text.replace("\x00", "\\x00")
    if len(text) <= MAX_REJECT_RAW_CHARS:
        return text
    return f"{text[:MAX_REJECT_RAW_CHARS]}… [{len(text)} characters in all]"


def bounded_raw_sql(column: str) -> str:
    """``bounded_raw`` as a SQL expression over a text ``column`` (its NULs are escaped before staging)."""
    n = MAX_REJECT_RAW_CHARS
    return (
        f"CASE WHEN length({column}) > {n} THEN left({column}, {n}) "
        f"|| format('… [%s characters in all]', length({column})) ELSE {column} END"
    )


def bounded_reason_sql(expression: str) -> str:
    """``shorten`` as a SQL expression."""
    n = MAX_REASON_CHARS
    return (
        f"CASE WHEN length({expression}) > {n} THEN left({expression}, {n - 1}) || '…' ELSE {expression} END"
    )


def _rows(
    ingest_run_id: int, source_file: str, rejects: Iterable[tuple[int | None, str, str]]
) -> Iterator[tuple[int, str, int | None, str, str]]:
    for line, raw, reason in rejects:
        yield ingest_run_id, source_file, line, bounded_raw(raw), shorten(reason.replace("\x00", "\\x00"))


def record_rejects(
    conn: Connection, ingest_run_id: int, source_file: str, rejects: Iterable[tuple[int | None, str, str]]
) -> int:
    """Store ``(line_number, raw_text, reason)`` triples for one file; returns how many were stored."""
    return copy_rows(conn, "rejected_rows", _REJECT_COLUMNS, _rows(ingest_run_id, source_file, rejects))


class RejectSpool:
    """One ingest run's rejected lines, held in COPY's text format outside any transaction.

    ``add`` takes parsed rejects, ``add_query`` the rows of a SQL query (a file PostgreSQL checked);
    ``write`` copies them all into ``rejected_rows``, in whatever transaction the caller has open. Memory
    stays bounded: past a few megabytes the spool is a temporary file.
    """

    def __init__(self, ingest_run_id: int) -> None:
        self.ingest_run_id = ingest_run_id
        self.counts: Counter[str] = Counter()
        self._buffer = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY, mode="w+b")

    def add(self, source_file: str, rejects: Iterable[tuple[int | None, str, str]]) -> int:
        n = 0
        for row in _rows(self.ingest_run_id, source_file, rejects):
            self._buffer.write(copy_line(row).encode("utf-8", "backslashreplace"))
            n += 1
        self.counts[source_file] += n
        return n

    def add_query(self, conn: Connection, source_file: str, query: str, params: dict[str, Any]) -> int:
        """Spool the rows of ``query`` (columns ``line_number``, ``raw_text``, ``reason``; bound ``params``).

        They pass through a temporary table of the caller's transaction and come out with ``COPY``, so
        their number does not matter.
        """
        conn.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS spooled_rejects (ingest_run_id integer, source_file text, "
                "line_number bigint, raw_text text, reason text) ON COMMIT DROP"
            )
        )
        conn.execute(text("TRUNCATE spooled_rejects"))
        n = conn.execute(
            text(
                f"INSERT INTO spooled_rejects SELECT :spool_run, :spool_file, line_number, "
                f"{bounded_raw_sql('raw_text')}, {bounded_reason_sql('reason')} FROM ({query}) q "
                "ORDER BY line_number"
            ),
            {**params, "spool_run": self.ingest_run_id, "spool_file": source_file},
        ).rowcount
        if n:
            copy_file(conn, "COPY spooled_rejects TO STDOUT", self._buffer)
        self.counts[source_file] += n
        return n

    def write(self, conn: Connection) -> int:
        """Copy every spooled reject into ``rejected_rows``; returns how many."""
        total = sum(self.counts.values())
        if total:
            self._buffer.seek(0)
            copy_file(
                conn,
                f"COPY rejected_rows ({', '.join(_REJECT_COLUMNS)}) FROM STDIN",
                self._buffer,
            )
        return total

    def close(self) -> None:
        self._buffer.close()
