"""Explanations stored as their parts: what a row shares once per batch, the sentence assembled by the views.

0009 stored each list entry's ``shared`` JSON and ``reason`` sentence on the row itself: some 60 bytes of
JSON and 60 of text per row, written by every publication (at ML-1M shape 604,000 rows, two thirds of what
explanations added to a publication's time; at ML-25M shape 16M rows). Both are functions of a few parts:

* ``batch_shared_attributes (batch_id, shard, shared_key, shared, clause)``: each distinct set of
  attributes a batch's rows share with the movies that explain them, once per writer: the JSON
  (``{"genres": [...], "directors": [...], "actors": [...]}``) and the sentence's clause (``; same
  director: Joel Coen``); ``shared_key`` is a 64-bit hash of the JSON. Each shard of a sharded publication
  writes its own (``shard``; 0 for a publication in one process), so shards writing side by side never
  wait on each other's uncommitted keys, and a retried shard replaces its own. Deleted with its batch.
* ``batch_recommendations.shared_key`` (0: none, the row keeps its own ``shared`` and ``reason``: fallback
  rows, rows whose user rated nothing the model knows, rows written before this revision), ``shard`` (the
  writer whose attributes it points to) and ``rated_highly`` (every movie in ``because`` was rated at least
  the relevance threshold).
* ``current_recommendations`` and ``recommendation_history`` show the same columns as before: ``shared``
  from the batch's attributes, and ``reason`` assembled as ``Because you rated <titles of because>[ highly]
  <clause>`` (titles joined as ``A, B and C``), exactly the sentence ``pipeline.batch.explain`` says; a row
  with no key shows what it stores.

The downgrade writes each row's JSON and sentence back onto it before dropping the parts.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# "A", "A and B", "A, B and C": the titles of ``because`` in its order (pipeline.batch.explain._titles)
_TITLES = """ARRAY(SELECT t.title FROM unnest(r.because) WITH ORDINALITY u(movie_id, k)
                 JOIN movies t ON t.movie_id = u.movie_id ORDER BY u.k)"""
_LISTED = """CASE WHEN cardinality(e.titles) < 2 THEN coalesce(e.titles[1], '')
     ELSE array_to_string(e.titles[1:cardinality(e.titles) - 1], ', ') || ' and '
          || e.titles[cardinality(e.titles)] END"""
REASON = f"""CASE WHEN a.clause IS NULL THEN r.reason
     ELSE 'Because you rated ' || {_LISTED}
          || CASE WHEN r.rated_highly THEN ' highly' ELSE '' END || a.clause END"""
PARTS = f"""CROSS JOIN LATERAL (SELECT {_TITLES} AS titles) e
LEFT JOIN batch_shared_attributes a
       ON a.batch_id = r.batch_id AND a.shard = r.shard AND a.shared_key = r.shared_key"""

CURRENT = f"""
SELECT r.user_id, r.rank, r.movie_id, m.title, m.year, m.genres, r.score, r.source,
       v.registered_version AS model_version, r.model_version_id, r.batch_id, b.data_cutoff, r.generated_at,
       r.because, e.titles AS because_titles, coalesce(a.shared, r.shared) AS shared,
       {REASON} AS reason
FROM recommendation_batches b
JOIN batch_recommendations r ON r.batch_id = b.batch_id
JOIN movies m ON m.movie_id = r.movie_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
{PARTS}
WHERE b.status = 'published'"""

HISTORY = f"""
SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
       v.registered_version AS model_version, r.generated_at, r.because,
       coalesce(a.shared, r.shared) AS shared, {REASON} AS reason
FROM batch_recommendations r
JOIN recommendation_batches b ON b.batch_id = r.batch_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
{PARTS}
WHERE b.status <> 'pending'"""

# As 0009 and 0011 left them, for the downgrade.
CURRENT_BEFORE = """
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

HISTORY_BEFORE = """
SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
       v.registered_version AS model_version, r.generated_at, r.because, r.shared, r.reason
FROM batch_recommendations r
JOIN recommendation_batches b ON b.batch_id = r.batch_id
JOIN model_versions v ON v.model_version_id = r.model_version_id
WHERE b.status <> 'pending'"""


def upgrade() -> None:
    op.create_table(
        "batch_shared_attributes",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False, comment="the writer (0: one process)"),
        sa.Column("shared_key", sa.BigInteger(), nullable=False, comment="64-bit hash of shared"),
        sa.Column(
            "shared",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="genres, directors, actors a list entry shares with the movies that explain it",
        ),
        sa.Column(
            "clause", sa.Text(), nullable=False, comment="the sentence's clause, e.g. '; same director: X'"
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["recommendation_batches.batch_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("batch_id", "shard", "shared_key"),
        comment="each distinct set of shared attributes of a batch's explanations, once",
    )
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "shared_key",
            sa.BigInteger(),
            server_default="0",
            nullable=False,
            comment="batch_shared_attributes of this row (0: shared and reason are stored on the row)",
        ),
    )
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "shard",
            sa.SmallInteger(),
            server_default="0",
            nullable=False,
            comment="the shard that wrote the row (0: a publication in one process)",
        ),
    )
    op.add_column(
        "batch_recommendations",
        sa.Column(
            "rated_highly",
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment="every movie in because was rated at least the relevance threshold",
        ),
    )
    op.execute(f"CREATE OR REPLACE VIEW current_recommendations AS {CURRENT}")
    op.execute(f"CREATE OR REPLACE VIEW recommendation_history AS {HISTORY}")


def downgrade() -> None:
    op.execute(
        f"""UPDATE batch_recommendations o SET shared = x.shared, reason = x.reason
        FROM (SELECT r.batch_id, r.user_id, r.rank, a.shared, {REASON} AS reason
              FROM batch_recommendations r {PARTS.replace("LEFT JOIN", "JOIN")}) x
        WHERE (o.batch_id, o.user_id, o.rank) = (x.batch_id, x.user_id, x.rank)"""
    )
    op.execute(f"CREATE OR REPLACE VIEW current_recommendations AS {CURRENT_BEFORE}")
    op.execute(f"CREATE OR REPLACE VIEW recommendation_history AS {HISTORY_BEFORE}")
    op.drop_column("batch_recommendations", "rated_highly")
    op.drop_column("batch_recommendations", "shard")
    op.drop_column("batch_recommendations", "shared_key")
    op.drop_table("batch_shared_attributes")
