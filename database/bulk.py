"""The one way to bulk-load: PostgreSQL ``COPY ... FROM STDIN`` through psycopg2.

``copy_rows`` streams Python tuples (small tables: movies, users, people, rejected rows);
``copy_file`` streams a file's bytes untouched, so the server does the parsing (ratings: millions of rows).
Both run on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import Connection

if TYPE_CHECKING:
    import pandas as pd

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BATCH_BYTES = 4 << 20


def dbapi_cursor(conn: Connection) -> Any:
    """The psycopg2 cursor behind a SQLAlchemy connection (same transaction)."""
    return conn.connection.dbapi_connection.cursor()


def _text_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (list, tuple)):  # PostgreSQL array literal
        return _text_field("{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                                          for v in value) + "}")
    return str(value).translate(_ESCAPES)


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table(columns)`` in text format; returns the number of rows sent."""
    cur = dbapi_cursor(conn)
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    buf = io.StringIO()
    sent = 0
    for row in rows:
        buf.write("\t".join(_text_field(v) for v in row))
        buf.write("\n")
        sent += 1
        if buf.tell() >= _BATCH_BYTES:
            buf.seek(0)
            cur.copy_expert(sql, buf)
            buf = io.StringIO()
    if buf.tell():
        buf.seek(0)
        cur.copy_expert(sql, buf)
    return sent


class _ReadTap(io.RawIOBase):
    """Wraps a binary file: reports every chunk read (progress, checksums) while COPY pulls it."""

    def __init__(self, raw: IO[bytes], on_chunk: Callable[[bytes], None]) -> None:
        self._raw = raw
        self._on_chunk = on_chunk

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        if chunk:
            self._on_chunk(chunk)
        return chunk


def copy_file(conn: Connection, copy_sql: str, fileobj: IO[bytes],
              on_chunk: Callable[[bytes], None] | None = None, chunk_size: int = 1 << 20) -> int:
    """Stream ``fileobj`` into ``copy_sql`` (a ``COPY ... FROM STDIN ...`` statement); returns rows loaded."""
    cur = dbapi_cursor(conn)
    source = _ReadTap(fileobj, on_chunk) if on_chunk else fileobj
    cur.copy_expert(copy_sql, source, size=chunk_size)
    return cur.rowcount


def read_frame(conn: Connection, query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run ``query`` through ``COPY (...) TO STDOUT`` into a DataFrame: the bulk way out, for millions of rows.

    Parameters are bound by psycopg2 (``%(name)s`` placeholders), never formatted into the text by hand.
    """
    import pandas as pd

    cur = dbapi_cursor(conn)
    bound = cur.mogrify(query, params or {}).decode()
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER)", buf)
    buf.seek(0)
    return pd.read_csv(buf, keep_default_na=False, na_values=[""])
