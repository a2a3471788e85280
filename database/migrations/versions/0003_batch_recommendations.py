"""Batch recommendations, their publication, the analyst views and the read-only role.

Revision ID: 0003
Revises: 0002
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"
_VIEWS = Path(__file__).resolve().parents[2] / "sql" / "views.sql"


def upgrade() -> None:
    op.create_table(
        "recommendation_batches",
        sa.Column("batch_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "model_version_id", sa.Integer(), nullable=False, comment="the champion that scored these lists"
        ),
        sa.Column(
            "data_cutoff",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="ratings after this instant were not seen",
        ),
        sa.Column("top_n", sa.Integer(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.Column(
            "fallback_users", sa.Integer(), nullable=False, comment="users given the labelled fallback list"
        ),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "timings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="seconds per stage",
        ),
        sa.Column(
            "generated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('published', 'superseded')", name="recommendation_batches_status"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.model_version_id"],
        ),
        sa.PrimaryKeyConstraint("batch_id"),
    )
    op.create_index(
        "ux_recommendation_batches_published",
        "recommendation_batches",
        ["status"],
        unique=True,
        postgresql_where="status = 'published'",
    )
    op.create_table(
        "batch_recommendations",
        sa.Column(
            "batch_id",
            sa.Integer(),
            nullable=False,
            comment="recommendation_batches.batch_id (no FK: a per-row check would slow the COPY; "
            "rows of pruned batches are deleted with them)",
        ),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False, comment="1 = best"),
        sa.Column(
            "movie_id",
            sa.Integer(),
            nullable=False,
            comment="no FK: a bulk write checks ids against the catalogue",
        ),
        sa.Column(
            "score",
            sa.REAL(),
            nullable=False,
            comment="blend score (per-user standardised), higher is better",
        ),
        sa.Column("source", sa.String(length=24), nullable=False, comment="model | fallback_popularity"),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("generated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('model', 'fallback_popularity')", name="batch_recommendations_source"),
        sa.PrimaryKeyConstraint("batch_id", "user_id", "rank"),
    )
    op.execute(_VIEWS.read_text())
    # A role that can read everything and write nothing: the API server connects as it. Roles are
    # cluster-wide (another database may have created it); its password, if any, is set outside migrations.
    op.execute(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
            CREATE ROLE {READER_ROLE} LOGIN;
        END IF; END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {READER_ROLE}")
    op.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}")
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READER_ROLE}")


def downgrade() -> None:
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM {READER_ROLE}")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {READER_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {READER_ROLE}")
    for view in (
        "recommendation_popularity",
        "recommendation_churn",
        "recommendation_batch_summary",
        "current_recommendations",
    ):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.drop_table("batch_recommendations")
    op.drop_index(
        "ux_recommendation_batches_published",
        table_name="recommendation_batches",
        postgresql_where="status = 'published'",
    )
    op.drop_table("recommendation_batches")
