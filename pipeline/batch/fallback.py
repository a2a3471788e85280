"""The popularity fallback list, SQL only: the batch lists it for users the model cannot rank, the API for
users without a published list."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from database.bulk import read_frame


def most_rated(
    conn: Connection, as_of: datetime | None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The popularity fallback list: movies by how many users rated them up to ``as_of`` (ties: lower id
    first), best first, with each one's share of those users as its score.

    One definition for both places that serve it: the batch (minus what each fallback user rated) and the
    API (as it is, for users without a published list, at the published batch's cut-off).
    """
    frame = read_frame(
        conn,
        "WITH r AS (SELECT user_id, movie_id FROM ratings"
        + (" WHERE rated_at <= %(as_of)s" if as_of else "")
        + ") "
        "SELECT movie_id, count(*)::float8 / (SELECT count(DISTINCT user_id) FROM r) AS share "
        "FROM r GROUP BY movie_id ORDER BY count(*) DESC, movie_id"
        + (" LIMIT %(limit)s" if limit is not None else ""),
        {"as_of": as_of, "limit": limit},
    )
    return frame["movie_id"].to_numpy(np.int64), frame["share"].to_numpy(np.float32)
