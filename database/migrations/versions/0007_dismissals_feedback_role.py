"""Dismissals ("not interested"), the API's only write, through a role that may write nothing else.

* ``dismissals``: one row per (user, movie) a user dismissed, with when. The batch masks them as it masks
  rated movies; the API leaves them out of the user's answers at once.
* ``movierec_feedback``: the role the API server writes dismissals as. ``INSERT`` into ``dismissals`` and
  ``SELECT`` on its columns (``ON CONFLICT`` on the key and the answer's ``RETURNING`` read them); nothing on
  any other table. The foreign keys are checked with the table owner's rights, so it needs no grant on
  ``users`` or ``movies``. Like the reader, its timeouts and ``CONNECT`` are set where roles are set up
  (the embedded server, the stack's init script), and it gets no temporary tables (0004 revoked them from
  ``PUBLIC``).
* ``movierec_reader`` may read ``dismissals(user_id, movie_id)``: the API filters a user's answer with it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

READER_ROLE = "movierec_reader"
FEEDBACK_ROLE = "movierec_feedback"


def upgrade() -> None:
    op.create_table(
        "dismissals",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("dismissed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["movie_id"], ["movies.movie_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "movie_id"),
        comment="not-interested marks: written by movierec_feedback, masked by the batch",
    )
    # Roles are cluster-wide (another database may have created it); its password is set outside migrations.
    op.execute(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{FEEDBACK_ROLE}') THEN
            CREATE ROLE {FEEDBACK_ROLE} LOGIN;
        END IF; END $$""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {FEEDBACK_ROLE}")
    op.execute(f"GRANT INSERT (user_id, movie_id) ON dismissals TO {FEEDBACK_ROLE}")
    op.execute(f"GRANT SELECT (user_id, movie_id, dismissed_at) ON dismissals TO {FEEDBACK_ROLE}")
    op.execute(f"GRANT SELECT (user_id, movie_id) ON dismissals TO {READER_ROLE}")


def downgrade() -> None:
    op.drop_table("dismissals")  # its grants go with it
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {FEEDBACK_ROLE}")
