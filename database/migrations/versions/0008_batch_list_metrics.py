"""Each batch's list-quality figures, kept with the batch.

* ``recommendation_batches.list_metrics``: what the published lists look like as a set — coverage,
  intra-list diversity, novelty, long-tail share, Gini of exposure — and the re-rank settings they were
  made with (``pipeline.batch``). The publication check compares a new batch's figures with the published
  batch's; the web UI and analysts read them, so ``movierec_reader`` may read the column.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"


def upgrade() -> None:
    op.add_column(
        "recommendation_batches",
        sa.Column(
            "list_metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="list-set figures (coverage, diversity, novelty, long tail, Gini) and re-rank settings",
        ),
    )
    op.execute(f"GRANT SELECT (list_metrics) ON recommendation_batches TO {READER_ROLE}")


def downgrade() -> None:
    op.drop_column("recommendation_batches", "list_metrics")  # its grant goes with it
