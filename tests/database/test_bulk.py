"""Bulk writes and reads (``database.bulk``): binary COPY of numpy columns."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import text

from database.bulk import copy_columns


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


def test_copy_columns_variable_width_text_jsonb_and_integer_arrays(engine):
    """Text, jsonb and integer[] columns of varying width beside fixed-width ones, across row blocks."""
    import database.bulk as bulk

    n = 7
    texts = ["", "Fargo", "é – “quoted”", "a\tb\nc", "x" * 300, "Blood Simple", "z"]
    docs = ['{"genres": []}', "{}", '{"a": [1, 2]}', '{"é": "ü"}', "[]", '{"n": null}', '{"k": 1.5}']
    arrays = np.array([[5, 6, 7], [0, 0, 0], [9, 0, 0], [1, 2, 0], [0, 0, 0], [2**31 - 1, -1, 3], [4, 0, 0]])
    counts = np.array([3, 0, 1, 2, 0, 3, 1])
    block, bulk._BLOCK_ROWS = bulk._BLOCK_ROWS, 3  # several blocks, one COPY
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE v (k integer, s text, j jsonb, a integer[], r real, src text)"))
            sent = copy_columns(
                conn,
                "v",
                {
                    "k": np.arange(n, dtype=np.int32),
                    "s": bulk.TextColumn(texts),
                    "j": bulk.TextColumn(docs, jsonb=True),
                    "a": bulk.IntArrays(arrays, counts),
                    "r": np.linspace(0, 1, n).astype(np.float32),
                    "src": "model",
                },
            )
            rows = conn.execute(text("SELECT k, s, j::text, a, src FROM v ORDER BY k")).all()
            parsed = conn.execute(text("SELECT j FROM v ORDER BY k")).scalars().all()
    finally:
        bulk._BLOCK_ROWS = block
    assert sent == n
    assert [r.s for r in rows] == texts
    assert parsed == [json.loads(d) for d in docs]
    assert [r.a for r in rows] == [arrays[k, : counts[k]].tolist() for k in range(n)]
    assert {r.src for r in rows} == {"model"}
