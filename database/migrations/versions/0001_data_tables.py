"""Data tables: catalogue, users, people, ratings, ingest bookkeeping.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 19:43:16.027571
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_runs",
        sa.Column("ingest_run_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "dataset",
            sa.String(length=64),
            nullable=False,
            comment="named dataset, or the detected layout of a directory",
        ),
        sa.Column("source", sa.Text(), nullable=False, comment="URL or directory the files came from"),
        sa.Column("layout", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="running | succeeded | failed"),
        sa.Column(
            "files",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="file -> sha256, bytes",
        ),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "timings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="seconds per stage",
        ),
        sa.Column("rows_accepted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_rejected", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("ingest_run_id"),
    )
    op.create_table(
        "movies",
        sa.Column(
            "movie_id", sa.Integer(), autoincrement=False, nullable=False, comment="MovieLens movie id"
        ),
        sa.Column("title", sa.Text(), nullable=False, comment="title without the trailing (year)"),
        sa.Column("year", sa.SmallInteger(), nullable=True),
        sa.Column("genres", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("runtime_minutes", sa.SmallInteger(), nullable=True),
        sa.Column("overview", sa.Text(), nullable=True),
        sa.Column("imdb_id", sa.String(length=16), nullable=True, comment="e.g. tt0114709"),
        sa.Column("tmdb_id", sa.Integer(), nullable=True),
        sa.Column("freebase_id", sa.String(length=32), nullable=True),
        sa.Column(
            "source", sa.String(length=64), nullable=False, comment="dataset the row came from, e.g. ml-100k"
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("movie_id"),
        comment="The catalogue: one row per MovieLens movie id, enriched from IMDb when given.",
    )
    op.create_index(op.f("ix_movies_imdb_id"), "movies", ["imdb_id"], unique=False)
    op.create_table(
        "persons",
        sa.Column("person_id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=False, comment="imdb:nm0000229 or freebase:m.06pj8"),
        sa.Column("name", sa.Text(), nullable=True, comment="NULL where the source has ids only"),
        sa.PrimaryKeyConstraint("person_id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("gender", sa.String(length=1), nullable=True),
        sa.Column(
            "age", sa.SmallInteger(), nullable=True, comment="years (ml-100k) or age-group floor (ml-1m)"
        ),
        sa.Column("occupation", sa.Text(), nullable=True),
        sa.Column("zip", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("user_id"),
        comment="Raters; demographics are NULL where the dataset has none.",
    )
    op.create_table(
        "movie_persons",
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "ordering", sa.SmallInteger(), nullable=False, comment="billing order within the role, from 1"
        ),
        sa.CheckConstraint("role IN ('director', 'actor', 'writer')", name="movie_persons_role"),
        sa.ForeignKeyConstraint(["movie_id"], ["movies.movie_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.person_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("movie_id", "person_id", "role"),
    )
    op.create_index("ix_movie_persons_person", "movie_persons", ["person_id"], unique=False)
    op.create_table(
        "ratings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("movie_id", sa.Integer(), nullable=False),
        sa.Column("rating", sa.REAL(), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["movie_id"],
            ["movies.movie_id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
        ),
        sa.PrimaryKeyConstraint("user_id", "movie_id"),
        comment="One row per user and movie; the latest rating wins.",
    )
    op.create_index("ix_ratings_movie", "ratings", ["movie_id"], unique=False)
    op.create_index("ix_ratings_rated_at", "ratings", ["rated_at"], unique=False)
    op.create_table(
        "rejected_rows",
        sa.Column("rejected_row_id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("source_file", sa.Text(), nullable=False),
        sa.Column("line_number", sa.BigInteger(), nullable=True, comment="1-based, header included"),
        sa.Column("raw_text", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["ingest_run_id"], ["ingest_runs.ingest_run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rejected_row_id"),
    )
    op.create_index("ix_rejected_rows_run", "rejected_rows", ["ingest_run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rejected_rows_run", table_name="rejected_rows")
    op.drop_table("rejected_rows")
    op.drop_index("ix_ratings_rated_at", table_name="ratings")
    op.drop_index("ix_ratings_movie", table_name="ratings")
    op.drop_table("ratings")
    op.drop_index("ix_movie_persons_person", table_name="movie_persons")
    op.drop_table("movie_persons")
    op.drop_table("users")
    op.drop_table("persons")
    op.drop_index(op.f("ix_movies_imdb_id"), table_name="movies")
    op.drop_table("movies")
    op.drop_table("ingest_runs")
