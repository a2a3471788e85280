"""Rolling back a published batch, and comparing two kept batches.

* ``recommendation_batches.status`` may be ``rolled_back``: the batch ``movierec publish --rollback`` took
  off the air (``pipeline.batch.rollback``). It stays kept, is never chosen again as "the previous batch",
  and is pruned like any other beyond the last ``keep``.
* ``compare_batches(a, b, k)``: a set-returning SQL function, not a view, because a view cannot take the two
  batch ids (and a view over every pair of kept batches would compute all of them on each read). One row:
  users of each batch and of both; over the users in both, the mean share of ``a``'s top-``k`` still in
  ``b``'s top-``k`` (``overlap_at_k``), the mean Jaccard index of the two top-``k`` sets, the mean churn
  (share of ``b``'s whole list not in ``a``'s, as ``recommendation_churn``); each batch's catalogue coverage
  (distinct listed movies / movies) and novelty (mean self-information ``-log2(share)`` of its listed rows,
  ``share`` = a movie's ratings up to that batch's ``data_cutoff`` over all of them, add-one smoothed over the
  catalogue so a movie unrated by then counts as rated once, not as infinitely novel).
  It reads only what ``movierec_reader`` may read already (``recommendation_history``, the reader's columns
  of ``recommendation_batches``, ``ratings`` and ``movies``) and runs with its caller's rights, so the
  reader is granted ``EXECUTE`` (and ``PUBLIC``, who has it by default, loses it).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"
SIGNATURE = "compare_batches(integer, integer, integer)"

# Positional $1..$3 in the body: in a SQL function a column of the same name would win over a parameter.
COMPARE_BATCHES = """
CREATE OR REPLACE FUNCTION compare_batches(a integer, b integer, k integer DEFAULT 10)
RETURNS TABLE (
    batch_a integer, batch_b integer, top_k integer,
    users_a bigint, users_b bigint, users_both bigint,
    overlap_at_k double precision, jaccard_at_k double precision, churn double precision,
    coverage_a double precision, coverage_b double precision,
    novelty_a double precision, novelty_b double precision
)
LANGUAGE sql STABLE AS $fn$
WITH pairs AS (  -- one row per (user, movie) listed by a, b or both
    SELECT coalesce(x.user_id, y.user_id) AS user_id, x.rank AS rank_a, y.rank AS rank_b
    FROM (SELECT user_id, movie_id, rank FROM recommendation_history WHERE batch_id = $1) x
    FULL JOIN (SELECT user_id, movie_id, rank FROM recommendation_history WHERE batch_id = $2) y
        ON y.user_id = x.user_id AND y.movie_id = x.movie_id
), per_user AS (
    SELECT user_id,
           count(rank_a) AS n_a, count(rank_b) AS n_b, count(rank_a + rank_b) AS n_both,
           count(*) FILTER (WHERE rank_a <= $3) AS k_a, count(*) FILTER (WHERE rank_b <= $3) AS k_b,
           count(*) FILTER (WHERE rank_a <= $3 AND rank_b <= $3) AS k_both
    FROM pairs GROUP BY user_id
), shared AS (
    SELECT count(*) FILTER (WHERE n_a > 0) AS users_a, count(*) FILTER (WHERE n_b > 0) AS users_b,
           count(*) FILTER (WHERE n_a > 0 AND n_b > 0) AS users_both,
           avg(k_both::float8 / k_a) FILTER (WHERE n_a > 0 AND n_b > 0 AND k_a > 0) AS overlap_at_k,
           avg(k_both::float8 / (k_a + k_b - k_both))
               FILTER (WHERE n_a > 0 AND n_b > 0 AND k_a + k_b > 0) AS jaccard_at_k,
           avg(1 - n_both::float8 / n_b) FILTER (WHERE n_a > 0 AND n_b > 0) AS churn
    FROM per_user
), catalogue AS (
    SELECT count(movie_id) AS movies FROM movies
), per_batch AS (
    SELECT s.side, f.distinct_movies, f.novelty
    FROM (VALUES (1, $1), (2, $2)) s (side, batch_id)
    CROSS JOIN LATERAL (
        WITH cut AS (
            SELECT data_cutoff FROM recommendation_batches WHERE batch_id = s.batch_id
        ), popularity AS (
            SELECT r.movie_id, count(*) AS ratings
            FROM ratings r, cut WHERE cut.data_cutoff IS NULL OR r.rated_at <= cut.data_cutoff
            GROUP BY r.movie_id
        ), total AS (
            SELECT coalesce(sum(ratings), 0) AS ratings FROM popularity
        )
        SELECT count(DISTINCT h.movie_id) AS distinct_movies,
               avg(-ln((coalesce(p.ratings, 0) + 1)::float8 / (t.ratings + c.movies)::float8) / ln(2))
                   AS novelty
        FROM recommendation_history h
        LEFT JOIN popularity p ON p.movie_id = h.movie_id
        CROSS JOIN total t CROSS JOIN catalogue c
        WHERE h.batch_id = s.batch_id
    ) f
)
SELECT $1, $2, $3, sh.users_a, sh.users_b, sh.users_both, sh.overlap_at_k, sh.jaccard_at_k, sh.churn,
       (SELECT distinct_movies::float8 / NULLIF(c.movies, 0) FROM per_batch WHERE side = 1),
       (SELECT distinct_movies::float8 / NULLIF(c.movies, 0) FROM per_batch WHERE side = 2),
       (SELECT novelty FROM per_batch WHERE side = 1),
       (SELECT novelty FROM per_batch WHERE side = 2)
FROM shared sh CROSS JOIN catalogue c
$fn$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE recommendation_batches DROP CONSTRAINT recommendation_batches_status")
    op.execute(
        "ALTER TABLE recommendation_batches ADD CONSTRAINT recommendation_batches_status "
        "CHECK (status IN ('published', 'superseded', 'rolled_back'))"
    )
    op.execute(COMPARE_BATCHES)
    op.execute(f"REVOKE EXECUTE ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {READER_ROLE}")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
    # A rolled-back batch is an older one kept: superseded is what 0005 knows it as.
    op.execute("UPDATE recommendation_batches SET status = 'superseded' WHERE status = 'rolled_back'")
    op.execute("ALTER TABLE recommendation_batches DROP CONSTRAINT recommendation_batches_status")
    op.execute(
        "ALTER TABLE recommendation_batches ADD CONSTRAINT recommendation_batches_status "
        "CHECK (status IN ('published', 'superseded'))"
    )
