"""A batch the publication check refused is kept, not published.

* ``recommendation_batches.status`` may be ``refused``: the new lists fell below the published batch's
  coverage or long-tail share by more than a guardrail's margin (``pipeline.batch.release``). The batch
  keeps its rows and its ``list_metrics`` (the check's figures under ``release_check``) so the refusal can
  be looked at and compared (``compare_batches``); it is never published and a rollback never returns to it.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE recommendation_batches DROP CONSTRAINT recommendation_batches_status")
    op.execute(
        "ALTER TABLE recommendation_batches ADD CONSTRAINT recommendation_batches_status "
        "CHECK (status IN ('published', 'superseded', 'rolled_back', 'refused'))"
    )


def downgrade() -> None:
    # A refused batch was never published: 0009 has no name for it, so it goes.
    op.execute(
        "DELETE FROM batch_recommendations WHERE batch_id IN "
        "(SELECT batch_id FROM recommendation_batches WHERE status = 'refused')"
    )
    op.execute("DELETE FROM recommendation_batches WHERE status = 'refused'")
    op.execute("ALTER TABLE recommendation_batches DROP CONSTRAINT recommendation_batches_status")
    op.execute(
        "ALTER TABLE recommendation_batches ADD CONSTRAINT recommendation_batches_status "
        "CHECK (status IN ('published', 'superseded', 'rolled_back'))"
    )
