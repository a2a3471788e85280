"""Why each list entry was recommended, stored with it at publish time.

* ``batch_recommendations.because``: the movies the user rated (up to the batch's cut-off) that contributed
  most to the entry's score, best first (empty for fallback rows); ``shared``: what the entry has in common
  with them (``{"genres": [...], "directors": [...], "actors": [...]}``); ``reason``: one short sentence
  (``pipeline.batch.explain``). Rows written before this revision get an empty explanation.
* ``current_recommendations`` and ``recommendation_history`` gain the three columns (and the first also
  ``because_titles``, the titles of ``because`` in its order), appended so their earlier columns keep
  their positions. ``movierec_reader`` reads them through the views, as before.
* The reader may also read ``movie_persons (movie_id, person_id, role, ordering)`` and
  ``persons (person_id, name)``: the group route explains each member's share of a group list with the
  same shared directors and actors.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"
READER_COLUMNS = {
    "movie_persons": ("movie_id", "person_id", "role", "ordering"),
    "persons": ("person_id", "name"),
}

CURRENT = """
SELECT r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.source,
       v.registered_version AS model_version, r.model_version_id, r.batch_id, b.data_cutoff, r.generated_at,
       r.because,
       ARRAY(SELECT t.title FROM unnest(r.because) WITH ORDINALITY u(movie_id, k)
             JOIN movies t ON t.movie_id = u.movie_id ORDER BY u.k) AS because_titles,
       r.shared, r.reason
FROM recommendation_batches b
JOIN batch_recommendations r ON r.batch_id = b.batch_id
JOIN movies m ON m.movie_id = r.movie_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
WHERE b.status = 'published'"""

HISTORY = """
SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
       v.registered_version AS model_version, r.generated_at, r.because, r.shared, r.reason
FROM batch_recommendations r
JOIN recommendation_batches b ON b.batch_id = r.batch_id
JOIN model_versions v ON v.model_version_id = r.model_version_id"""

# What the two views were before (0003's views.sql, 0005), for the downgrade.
CURRENT_BEFORE = """
SELECT r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.source,
       v.registered_version AS model_version, r.model_version_id, r.batch_id, b.data_cutoff, r.generated_at
FROM recommendation_batches b
JOIN batch_recommendations r ON r.batch_id = b.batch_id
JOIN movies m ON m.movie_id = r.movie_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
WHERE b.status = 'published'"""
HISTORY_BEFORE = """
SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
       v.registered_version AS model_version, r.generated_at
FROM batch_recommendations r
JOIN recommendation_batches b ON b.batch_id = r.batch_id
JOIN model_versions v ON v.model_version_id = r.model_version_id"""
POPULARITY = """
SELECT c.movie_id, c.title, count(*) AS times_recommended,
       count(*) FILTER (WHERE c.rank <= 10) AS times_in_top10,
       round(avg(c.rank)::numeric, 2) AS mean_rank,
       (SELECT count(*) FROM ratings r WHERE r.movie_id = c.movie_id) AS ratings
FROM current_recommendations c
GROUP BY c.movie_id, c.title"""


def upgrade() -> None:
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "because",
            postgresql.ARRAY(sa.Integer()),
            server_default="{}",
            nullable=False,
            comment="movies the user rated that contributed most, best first (empty: fallback)",
        ),
    )
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "shared",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="genres, directors, actors the movie shares with the because movies",
        ),
    )
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "reason", sa.Text(), server_default="", nullable=False, comment="the explanation, one sentence"
        ),
    )
    op.execute(f"CREATE OR REPLACE VIEW current_recommendations AS {CURRENT}")
    op.execute(f"CREATE OR REPLACE VIEW recommendation_history AS {HISTORY}")
    for table, columns in READER_COLUMNS.items():
        op.execute(f"GRANT SELECT ({', '.join(columns)}) ON {table} TO {READER_ROLE}")


def downgrade() -> None:
    for table, columns in READER_COLUMNS.items():
        op.execute(f"REVOKE SELECT ({', '.join(columns)}) ON {table} FROM {READER_ROLE}")
    # A view cannot lose columns in place: drop and re-create (with its dependant) as they were.
    op.execute("DROP VIEW recommendation_popularity")
    op.execute("DROP VIEW current_recommendations")
    op.execute("DROP VIEW recommendation_history")
    for name, query in (
        ("current_recommendations", CURRENT_BEFORE),
        ("recommendation_popularity", POPULARITY),
        ("recommendation_history", HISTORY_BEFORE),
    ):
        op.execute(f"CREATE VIEW {name} AS {query}")
        op.execute(f"GRANT SELECT ON {name} TO {READER_ROLE}")
    for column in ("reason", "shared", "because"):
        op.drop_column("batch_recommendations", column)
