"""The data-quality rule a run must pass before anything trains on the data it loaded."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Engine, text

from pipeline.core.defaults import MAX_REJECT_SHARE, MIN_RATINGS
from pipeline.core.errors import DataQualityError


class QualityReport(TypedDict):
    rejected_share: float
    rows_rejected: int
    ratings: int
    users: int
    max_reject_share: float


def check_data_quality(
    engine: Engine,
    ingest_run_id: int,
    rows_accepted: int,
    rows_rejected: int,
    *,
    max_reject_share: float = MAX_REJECT_SHARE,
    min_ratings: int = MIN_RATINGS,
) -> QualityReport:
    """Fail (``DataQualityError``) when too large a share of an ingest's rows was rejected or too few ratings
    are in the database; else the figures checked."""
    share = rows_rejected / max(rows_accepted + rows_rejected, 1)
    with engine.connect() as conn:
        ratings = int(conn.execute(text("SELECT count(*) FROM ratings")).scalar_one())
        users = int(conn.execute(text("SELECT count(DISTINCT user_id) FROM ratings")).scalar_one())
    if share > max_reject_share:
        raise DataQualityError(
            f"{rows_rejected:,} of {rows_accepted + rows_rejected:,} input rows rejected ({share:.1%} > "
            f"{max_reject_share:.1%}); see rejected_rows WHERE ingest_run_id = {ingest_run_id}"
        )
    if ratings < min_ratings:
        raise DataQualityError(
            f"only {ratings:,} ratings in the database (< {min_ratings:,}): too few to train on"
        )
    return QualityReport(
        rejected_share=round(share, 6),
        rows_rejected=rows_rejected,
        ratings=ratings,
        users=users,
        max_reject_share=max_reject_share,
    )
