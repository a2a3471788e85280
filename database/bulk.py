"""The one way to bulk-load: PostgreSQL ``COPY ... FROM STDIN`` through psycopg2.

``copy_rows`` streams Python tuples (small tables: movies, users, people, rejected rows);
``copy_file`` streams a file's bytes untouched, so the server does the parsing (ratings: millions of rows);
``copy_columns`` sends numpy columns in COPY's binary format, built without a Python loop per row
(recommendation lists: tens of millions of rows).
Both run on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection

if TYPE_CHECKING:
    import pandas as pd

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_BATCH_BYTES = 4 << 20


def dbapi_cursor(conn: Connection) -> Any:
    """The psycopg2 cursor behind a SQLAlchemy connection (same transaction)."""
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:  # SQLAlchemy's "connection invalidated or detached"
        raise RuntimeError("the SQLAlchemy connection has no database connection behind it (invalidated)")
    return dbapi.cursor()


def _text_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (list, tuple)):  # PostgreSQL array literal
        return _text_field(
            "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value) + "}"
        )
    return str(value).translate(_ESCAPES)


def copy_line(row: Sequence[Any]) -> str:
    """One row in COPY's text format, newline included."""
    return "\t".join(_text_field(v) for v in row) + "\n"


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY ``rows`` into ``table(columns)`` in text format; returns the number of rows sent."""
    cur = dbapi_cursor(conn)
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    buf = io.StringIO()
    sent = 0
    for row in rows:
        buf.write(copy_line(row))
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


def copy_file(
    conn: Connection,
    copy_sql: str,
    fileobj: IO[bytes],
    on_chunk: Callable[[bytes], None] | None = None,
    chunk_size: int = 1 << 20,
) -> int:
    """Stream ``fileobj`` into ``copy_sql`` (a ``COPY ... FROM STDIN ...`` statement), or a
    ``COPY ... TO STDOUT`` into ``fileobj``; returns the rows copied."""
    cur = dbapi_cursor(conn)
    source = _ReadTap(fileobj, on_chunk) if on_chunk else fileobj
    cur.copy_expert(copy_sql, source, size=chunk_size)
    return cur.rowcount


def read_frame(conn: Connection, query: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run ``query`` through ``COPY (...) TO STDOUT`` into a DataFrame: the bulk way out, for millions of
    rows.

    Parameters are bound by psycopg2 (``%(name)s`` placeholders), never formatted into the text by hand.
    """
    import pandas as pd

    cur = dbapi_cursor(conn)
    bound = cur.mogrify(query, params or {}).decode()
    buf = io.BytesIO()
    cur.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER)", buf)
    buf.seek(0)
    return pd.read_csv(buf, keep_default_na=False, na_values=[""])


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_BINARY_TRAILER = struct.pack(">h", -1)
# numpy dtype -> big-endian wire type; the column's SQL type must match (int2/int4/int8/real/double).
_WIRE = {
    np.dtype(np.int16): ">i2",
    np.dtype(np.int32): ">i4",
    np.dtype(np.int64): ">i8",
    np.dtype(np.float32): ">f4",
    np.dtype(np.float64): ">f8",
}


def _wire_column(value: Any, n: int) -> tuple[str, np.ndarray]:
    """(numpy wire dtype, n values) for an array, or for a scalar repeated n times (str, datetime, number)."""
    if isinstance(value, str):
        raw = value.encode()
        return f"S{len(raw)}", np.full(n, raw, dtype=f"S{len(raw)}")
    if isinstance(value, datetime):  # timestamptz: microseconds since 2000-01-01 UTC
        if value.tzinfo is None:
            raise ValueError("timestamps for COPY must be timezone-aware")
        delta = value - _PG_EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return ">i8", np.full(n, micros, np.int64)
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.dtype not in _WIRE:
        raise TypeError(f"no COPY binary mapping for dtype {array.dtype}")
    if len(array) != n:
        raise ValueError(f"column of length {len(array)}, expected {n}")
    return _WIRE[array.dtype], array


def copy_columns(conn: Connection, table: str, columns: Mapping[str, Any]) -> int:
    """COPY equal-length numpy columns (or scalars repeated on every row) into ``table`` in binary format.

    Each tuple is a fixed-width record (field count, then length + big-endian value per field), so the
    whole payload is one structured array's bytes. Returns the number of rows sent.
    """
    lengths = {len(v) for v in columns.values() if not isinstance(v, (str, datetime)) and np.ndim(v) == 1}
    if len(lengths) != 1:
        raise ValueError(f"columns need one common length, got {sorted(lengths)}")
    n = lengths.pop()
    wire = [_wire_column(v, n) for v in columns.values()]
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, (dtype, _) in enumerate(wire):
        fields += [(f"len{k}", ">i4"), (f"val{k}", dtype)]
    records = np.empty(n, dtype=np.dtype(fields))
    records["count"] = len(wire)
    for k, (dtype, values) in enumerate(wire):
        records[f"len{k}"] = np.dtype(dtype).itemsize
        records[f"val{k}"] = values
    payload = io.BytesIO(_BINARY_HEADER + records.tobytes() + _BINARY_TRAILER)
    dbapi_cursor(conn).copy_expert(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)", payload
    )
    return n
