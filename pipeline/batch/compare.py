"""Two kept batches side by side: the figures of the SQL function ``compare_batches`` (migration 0006).

Over the users listed in both: the mean share of the first batch's top-``k`` still in the second's
(``overlap_at_k``), the mean Jaccard index of the two top-``k`` sets, and churn (share of the second
batch's whole list that is new); for each batch its catalogue coverage and novelty (mean self-information
``-log2`` of each listed movie's share of the ratings up to that batch's cut-off). The SQL holds the
definitions, so analysts querying the function and the command see the same figures."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from pipeline.batch.rollback import published_and_previous
from pipeline.core.errors import MovierecError

DEFAULT_K = 10


@dataclass(frozen=True)
class BatchComparison:
    """``compare_batches(a, b, k)``'s row: ``a`` is the reference, ``b`` the batch compared with it."""

    batch_a: int
    batch_b: int
    top_k: int
    users_a: int
    users_b: int
    users_both: int
    overlap_at_k: float | None  # None: no user in both
    jaccard_at_k: float | None
    churn: float | None
    coverage_a: float | None  # None: an empty catalogue
    coverage_b: float | None
    novelty_a: float | None  # None: an empty batch
    novelty_b: float | None

    @property
    def coverage_change(self) -> float | None:
        return _change(self.coverage_a, self.coverage_b)

    @property
    def novelty_change(self) -> float | None:
        return _change(self.novelty_a, self.novelty_b)


def default_pair(conn: Connection) -> tuple[int, int]:
    """(previous kept batch, published batch): what a comparison shows when given no batches."""
    published, previous = published_and_previous(conn)
    if published is None or previous is None:
        raise MovierecError(
            "no published batch and earlier kept batch to compare: give two batch ids"
            if published is None
            else f"batch {published} is published and no earlier kept batch is left: give two batch ids"
        )
    return previous, published


def compare_batches(conn: Connection, a: int, b: int, k: int = DEFAULT_K) -> BatchComparison:
    """Batch ``b`` against batch ``a`` (both kept); ``k``: the list head the overlaps look at."""
    if k < 1:
        raise MovierecError(f"k must be at least 1, got {k}")
    kept = set(
        conn.execute(
            # a pending batch's lists may be half written: not kept yet (recommendation_history leaves it out)
            text(
                "SELECT batch_id FROM recommendation_batches "
                "WHERE batch_id IN (:a, :b) AND status <> 'pending'"
            ),
            {"a": a, "b": b},
        ).scalars()
    )
    missing = sorted({a, b} - kept)
    if missing:
        raise MovierecError(
            f"no kept batch {', '.join(map(str, missing))}: recommendation_batch_summary lists the kept ones"
        )
    row = conn.execute(text("SELECT * FROM compare_batches(:a, :b, :k)"), {"a": a, "b": b, "k": k}).one()
    return BatchComparison(**row._mapping)


def _change(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before
