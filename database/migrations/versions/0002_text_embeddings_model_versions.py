"""Text-embedding cache and model versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 19:54:56.675432
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("model_version_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("registered_model", sa.Text(), nullable=False, comment="MLflow registered model name"),
        sa.Column("registered_version", sa.Integer(), nullable=True, comment="MLflow model version"),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column(
            "data_cutoff",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="ratings after this instant were not seen",
        ),
        sa.Column(
            "protocol", sa.String(length=32), nullable=False, comment="evaluation protocol of the gate metric"
        ),
        sa.Column("primary_metric", sa.String(length=64), nullable=False),
        sa.Column("metric_value", sa.REAL(), nullable=True),
        sa.Column(
            "champion_metric_value",
            sa.REAL(),
            nullable=True,
            comment="the champion's figure it was compared with",
        ),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("trained_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('candidate', 'champion', 'rejected', 'retired')", name="model_versions_status"
        ),
        sa.PrimaryKeyConstraint("model_version_id"),
    )
    op.create_table(
        "text_embeddings",
        sa.Column("model_name", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.SmallInteger(), nullable=False),
        sa.Column(
            "embedding", postgresql.BYTEA(), nullable=False, comment="float32 little-endian, dim values"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("model_name", "text_sha256"),
    )


def downgrade() -> None:
    op.drop_table("text_embeddings")
    op.drop_table("model_versions")
