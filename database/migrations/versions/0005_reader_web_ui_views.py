"""Two views for the model server's web UI, readable by ``movierec_reader``, and nothing more.

* ``recommendation_history``: the rows of every kept batch (not only the published one) with the batch's
  status and the registered model version, so a user's page can show how the list changed across batches.
  It holds nothing ``current_recommendations`` does not already show for the published batch.
* ``model_version_decisions``: each trained version's promotion gate — protocol, metric, its figure and the
  champion's it was compared with, status and the decision's reason — for the runs page. Not the MLflow run
  id, the full ``metrics`` or the ``params``, which stay out of the reader's reach.

The reader still has no grant on ``batch_recommendations`` or on any other column of ``model_versions``.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"

VIEWS = {
    "recommendation_history": """
        SELECT r.batch_id, b.status AS batch_status, r.user_id, r.rank, r.movie_id, r.score, r.source,
               v.registered_version AS model_version, r.generated_at
        FROM batch_recommendations r
        JOIN recommendation_batches b ON b.batch_id = r.batch_id
        JOIN model_versions v ON v.model_version_id = r.model_version_id""",
    "model_version_decisions": """
        SELECT model_version_id, registered_model, registered_version, dataset, data_cutoff, protocol,
               primary_metric, metric_value, champion_metric_value, status, decision, trained_at
        FROM model_versions""",
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE OR REPLACE VIEW {name} AS {query}")
        op.execute(f"GRANT SELECT ON {name} TO {READER_ROLE}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
