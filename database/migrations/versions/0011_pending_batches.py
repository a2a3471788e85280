"""A batch whose lists are still being written is ``pending``.

* ``recommendation_batches.status`` may be ``pending``: the batch is open and its lists are being written,
  by one process (``movierec recommend``: inside the publication's own transaction, so nobody else sees it)
  or by the weekly DAG's ``score_shard`` tasks, each committing its users' rows on its own. Only the final
  ``publish`` makes it ``published`` (or ``refused``); one that never gets there (a run abandoned after a
  failed shard) stays ``pending`` until pruned like any other batch beyond the last ``keep``.
* The analyst views never show a pending batch, whose lists may be half written:
  ``recommendation_batch_summary``, ``recommendation_history`` and ``recommendation_churn`` leave it out
  (the churn view now names the three columns it reads instead of ``r.*``). ``current_recommendations``
  shows the published batch only, as before, and a rollback returns to a ``superseded`` batch only.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SUMMARY = """
SELECT b.batch_id, b.status, v.registered_version AS model_version, b.model_version_id, b.data_cutoff,
       b.top_n, b.users, b.fallback_users, b.rows, s.distinct_movies,
       round(s.distinct_movies::numeric / NULLIF((SELECT count(*) FROM movies), 0), 4) AS catalogue_coverage,
       round(s.mean_score::numeric, 4) AS mean_score, b.generated_at, b.published_at
FROM recommendation_batches b
JOIN model_versions v ON v.model_version_id = b.model_version_id
LEFT JOIN LATERAL (SELECT count(DISTINCT movie_id) AS distinct_movies, avg(score) AS mean_score
                   FROM batch_recommendations r WHERE r.batch_id = b.batch_id) s ON true{where}"""

HISTORY = """
SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
       v.registered_version AS model_version, r.generated_at, r.because, r.shared, r.reason
FROM batch_recommendations r
JOIN recommendation_batches b ON b.batch_id = r.batch_id
JOIN model_versions v ON v.model_version_id = r.model_version_id{where}"""

CHURN = """
WITH last_two AS (
    SELECT batch_id, row_number() OVER (ORDER BY batch_id DESC) AS age
    FROM recommendation_batches{where} ORDER BY batch_id DESC LIMIT 2
), newer AS (
    SELECT r.user_id, r.rank, r.movie_id
    FROM batch_recommendations r JOIN last_two t ON t.batch_id = r.batch_id AND t.age = 1
), older AS (
    SELECT r.user_id, r.rank, r.movie_id
    FROM batch_recommendations r JOIN last_two t ON t.batch_id = r.batch_id AND t.age = 2
)
SELECT n.user_id,
       (SELECT batch_id FROM last_two WHERE age = 1) AS batch_id,
       (SELECT batch_id FROM last_two WHERE age = 2) AS previous_batch_id,
       count(*) FILTER (WHERE n.rank <= 10 AND o.rank <= 10) AS overlap_top10,
       count(o.movie_id) AS overlap_all,
       count(*) AS list_length,
       round(1 - count(o.movie_id)::numeric / count(*), 4) AS churn
FROM newer n
LEFT JOIN older o ON o.user_id = n.user_id AND o.movie_id = n.movie_id
GROUP BY n.user_id"""

VIEWS = {
    "recommendation_batch_summary": (SUMMARY, "\nWHERE b.status <> 'pending'"),
    "recommendation_history": (HISTORY, "\nWHERE b.status <> 'pending'"),
    "recommendation_churn": (CHURN, " WHERE status <> 'pending'"),
}


def _status_check(statuses: tuple[str, ...]) -> None:
    op.execute("ALTER TABLE recommendation_batches DROP CONSTRAINT recommendation_batches_status")
    op.execute(
        "ALTER TABLE recommendation_batches ADD CONSTRAINT recommendation_batches_status "
        f"CHECK (status IN {statuses!r})"
    )


def upgrade() -> None:
    _status_check(("published", "superseded", "rolled_back", "refused", "pending"))
    for name, (query, where) in VIEWS.items():
        op.execute(f"CREATE OR REPLACE VIEW {name} AS {query.format(where=where)}")


def downgrade() -> None:
    # As they were, except that the churn view names the columns it reads (0003's ``r.*`` would now also bind
    # 0009's columns, which 0009's downgrade could then not drop): same rows, same columns.
    for name, (query, _) in VIEWS.items():
        op.execute(f"CREATE OR REPLACE VIEW {name} AS {query.format(where='')}")
    # A pending batch was never complete: 0010 has no name for it, so it goes with its rows.
    op.execute(
        "DELETE FROM batch_recommendations WHERE batch_id IN "
        "(SELECT batch_id FROM recommendation_batches WHERE status = 'pending')"
    )
    op.execute("DELETE FROM recommendation_batches WHERE status = 'pending'")
    _status_check(("published", "superseded", "rolled_back", "refused"))
