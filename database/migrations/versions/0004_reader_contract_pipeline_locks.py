"""The read-only role reads what the API reads and nothing else; the pipeline's locks become table rows.

* ``movierec_reader`` loses 0003's blanket ``SELECT`` on every table (and the default privilege that gave it
  every later table). It keeps ``SELECT`` on the four analyst views and on the columns the API reads
  (``READER_CONTRACT``); never ``rejected_rows``, ``ingest_runs``, ``users`` or ``text_embeddings``.
* ``pipeline_locks``: one row per pipeline lock (``publish``, ``promotion``), taken ``FOR UPDATE``
  (``database.locks``). No grant to the reader: it cannot take or hold them.
* No temporary tables on this database for roles without an explicit grant: ``TEMPORARY`` is revoked from
  ``PUBLIC`` and granted back to the role running the migration (the pipeline's role; the owner keeps it
  anyway).

Role-wide settings (the reader's statement and idle-in-transaction timeouts, ``CONNECT`` on the other
databases) are not a database's to change: the embedded server and the stack's init script set them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"

# What movierec_reader may read: whole views, and columns of tables. The API reads current_recommendations
# (a user's list), recommendation_batches joined to model_versions (the published batch), movies (titles of
# the fallback list) and ratings' (user, movie, time) for the fallback list itself
# (pipeline.batch.fallback.most_rated); analysts read the views.
READER_VIEWS = (
    "current_recommendations",
    "recommendation_batch_summary",
    "recommendation_churn",
    "recommendation_popularity",
)
READER_COLUMNS = {
    "movies": ("movie_id", "title", "year", "genres"),
    "recommendation_batches": (
        "batch_id",
        "model_version_id",
        "status",
        "data_cutoff",
        "generated_at",
        "top_n",
    ),
    "model_versions": ("model_version_id", "registered_version"),
    "ratings": ("user_id", "movie_id", "rated_at"),
}


def upgrade() -> None:
    op.create_table(
        "pipeline_locks",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("name"),
        comment="one row per pipeline lock, taken FOR UPDATE; no rights for movierec_reader",
    )
    op.execute(
        "INSERT INTO pipeline_locks (name, description) VALUES "
        "('publish', 'one publication of the weekly lists at a time'), "
        "('promotion', 'one promotion decision at a time')"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {READER_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {READER_ROLE}")
    for view in READER_VIEWS:
        op.execute(f"GRANT SELECT ON {view} TO {READER_ROLE}")
    for table, columns in READER_COLUMNS.items():
        op.execute(f"GRANT SELECT ({', '.join(columns)}) ON {table} TO {READER_ROLE}")
    op.execute("""DO $$ BEGIN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
        END $$""")


def downgrade() -> None:
    op.execute("""DO $$ BEGIN
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
        END $$""")
    for table, columns in READER_COLUMNS.items():
        op.execute(f"REVOKE SELECT ({', '.join(columns)}) ON {table} FROM {READER_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}")
    op.drop_table("pipeline_locks")
    # 0003's grants, as they were
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER_ROLE}")
