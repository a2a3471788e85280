"""Bulk writes and reads (``database.bulk``): binary COPY of numpy columns."""

from __future__ import annotations

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
