"""The one way to bulk-load: PostgreSQL ``COPY ... FROM STDIN`` through psycopg2.

``copy_rows`` streams Python tuples (small tables: movies, users, people, rejected rows);
``copy_file`` streams a file's bytes untouched, so the server does the parsing (ratings: millions of rows);
``copy_columns`` sends numpy columns in COPY's binary format, built without a Python loop per row
(recommendation lists: tens of millions of rows); variable-width columns (``TextColumn`` for text or jsonb,
``IntArrays`` for ``integer[]``) go in the same binary COPY, placed by offset arithmetic.
Both run on the caller's connection, inside the caller's transaction.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
    np.dtype(np.bool_): "?",  # boolean: one byte, 0 or 1
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


@dataclass(frozen=True)
class TextColumn:
    """One string per row for a ``text`` column, or (``jsonb=True``) JSON texts for a ``jsonb`` column."""

    values: Sequence[str]
    jsonb: bool = False

    def wire(self) -> tuple[np.ndarray, np.ndarray]:
        prefix = b"\x01" if self.jsonb else b""  # jsonb's binary input: a version byte, then the text
        encoded = [prefix + v.encode() for v in self.values]
        return np.fromiter(map(len, encoded), np.int64, len(encoded)), np.frombuffer(
            b"".join(encoded), np.uint8
        )


@dataclass(frozen=True)
class IntArrays:
    """One ``integer[]`` per row: row r is ``values[r, :lengths[r]]`` (``values``: rows x the longest)."""

    values: np.ndarray
    lengths: np.ndarray

    def wire(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(self.values, np.int64).reshape(len(self.lengths), -1)
        lengths = np.asarray(self.lengths, np.int64)
        sizes = np.where(lengths > 0, 20 + 8 * lengths, 12)  # header (+ dimension) + (length, int4) each
        ends = np.cumsum(sizes)
        blob = np.zeros(int(ends[-1]) if len(ends) else 0, np.uint8)
        # rows of one length have one layout: each group is a fixed-width structured array
        for c in np.unique(lengths):
            rows = np.flatnonzero(lengths == c)
            fields = [("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">i4")]
            if c:
                fields += [("dim", ">i4"), ("lbound", ">i4")]
                fields += [(n, ">i4") for k in range(c) for n in (f"len{k}", f"val{k}")]
            rec = np.zeros(len(rows), np.dtype(fields))
            rec["oid"] = 23  # int4
            if c:
                rec["ndim"], rec["dim"], rec["lbound"] = 1, c, 1
                for k in range(c):
                    rec[f"len{k}"], rec[f"val{k}"] = 4, values[rows, k]
            width = rec.dtype.itemsize
            dest = (ends[rows] - width)[:, None] + np.arange(width)
            blob[dest] = rec.view(np.uint8).reshape(len(rows), width)
        return sizes, blob


_VarColumn = TextColumn | IntArrays


def _variable_payload(wire: list[tuple[str, np.ndarray] | tuple[np.ndarray, np.ndarray]], n: int) -> bytes:
    """The tuples of a binary COPY whose fields are fixed-width numpy values (``(dtype, values)``) or
    variable-width bytes (``(lengths, blob)``, the rows' values back to back)."""
    sizes: list[np.ndarray] = []
    blobs: list[np.ndarray] = []
    for dtype, values in wire:
        if isinstance(dtype, str):  # fixed width
            width = np.dtype(dtype).itemsize
            sizes.append(np.full(n, width, np.int64))
            blobs.append(np.ascontiguousarray(values.astype(dtype)).view(np.uint8))
        else:
            sizes.append(dtype)
            blobs.append(values)
    row_size = np.full(n, 2, np.int64) + sum(4 + s for s in sizes)
    starts = np.cumsum(row_size) - row_size
    out = np.empty(int(row_size.sum()), np.uint8)
    out[starts[:, None] + np.arange(2)] = np.frombuffer(struct.pack(">h", len(wire)), np.uint8)
    at = starts + 2
    for size, blob in zip(sizes, blobs, strict=True):
        out[at[:, None] + np.arange(4)] = size.astype(">i4").view(np.uint8).reshape(n, 4)
        at = at + 4
        # each byte of the blob to its row's field: row r's bytes start at blob offset src[r]
        src = np.cumsum(size) - size
        out[np.repeat(at - src, size) + np.arange(len(blob))] = blob
        at = at + size
    return out.tobytes()


_BLOCK_ROWS = 32_768  # rows per variable-width block: bounds the byte-index arrays (~ 8 B per payload byte)


def copy_columns(conn: Connection, table: str, columns: Mapping[str, Any]) -> int:
    """COPY equal-length numpy columns (or scalars repeated on every row) into ``table`` in binary format.

    Each tuple is a fixed-width record (field count, then length + big-endian value per field), so the
    whole payload is one structured array's bytes. With a ``TextColumn`` or ``IntArrays`` among the columns
    the tuples vary in width: every field's bytes are placed by offset arithmetic, in blocks of rows, still
    without a Python loop per row. Returns the number of rows sent.
    """
    lengths = {
        len(v.lengths if isinstance(v, IntArrays) else v.values) if isinstance(v, _VarColumn) else len(v)
        for v in columns.values()
        if isinstance(v, _VarColumn) or (not isinstance(v, (str, datetime)) and np.ndim(v) == 1)
    }
    if len(lengths) != 1:
        raise ValueError(f"columns need one common length, got {sorted(lengths)}")
    n = lengths.pop()
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)"
    if any(isinstance(v, _VarColumn) for v in columns.values()):
        parts = [_BINARY_HEADER]
        for lo in range(0, n, _BLOCK_ROWS):
            hi = min(n, lo + _BLOCK_ROWS)
            block = [
                _block_of(v, lo, hi).wire()
                if isinstance(v, _VarColumn)
                else _wire_column(_rows(v, lo, hi), hi - lo)
                for v in columns.values()
            ]
            parts.append(_variable_payload(block, hi - lo))
        parts.append(_BINARY_TRAILER)
        dbapi_cursor(conn).copy_expert(sql, io.BytesIO(b"".join(parts)))
        return n
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
    dbapi_cursor(conn).copy_expert(sql, payload)
    return n


def _rows(value: Any, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of a column (a scalar stays one)."""
    return value if isinstance(value, (str, datetime)) or np.ndim(value) == 0 else np.asarray(value)[lo:hi]


def _block_of(column: _VarColumn, lo: int, hi: int) -> _VarColumn:
    if isinstance(column, IntArrays):
        return IntArrays(np.asarray(column.values)[lo:hi], np.asarray(column.lengths)[lo:hi])
    return TextColumn(column.values[lo:hi], column.jsonb)
