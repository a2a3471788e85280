"""The public schema (analysts query it). Changes go through Alembic migrations only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PERSON_ROLES = ("director", "actor", "writer")


class Base(DeclarativeBase):
    pass


class Movie(Base):
    __tablename__ = "movies"
    __table_args__ = {
        "comment": "The catalogue: one row per MovieLens movie id, enriched from IMDb when given."
    }

    movie_id: Mapped[int] = mapped_column(
        Integer, primary_key=True, autoincrement=False, comment="MovieLens movie id"
    )
    title: Mapped[str] = mapped_column(Text, comment="title without the trailing (year)")
    year: Mapped[int | None] = mapped_column(SmallInteger)
    genres: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    runtime_minutes: Mapped[int | None] = mapped_column(SmallInteger)
    overview: Mapped[str | None] = mapped_column(Text)
    imdb_id: Mapped[str | None] = mapped_column(String(16), index=True, comment="e.g. tt0114709")
    tmdb_id: Mapped[int | None] = mapped_column(Integer)
    freebase_id: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64), comment="dataset the row came from, e.g. ml-100k")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class User(Base):
    __tablename__ = "users"
    __table_args__ = {"comment": "Raters; demographics are NULL where the dataset has none."}

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    gender: Mapped[str | None] = mapped_column(String(1))
    age: Mapped[int | None] = mapped_column(
        SmallInteger, comment="years (ml-100k) or age-group floor (ml-1m)"
    )
    occupation: Mapped[str | None] = mapped_column(Text)
    zip: Mapped[str | None] = mapped_column(String(16))


class Person(Base):
    __tablename__ = "persons"

    person_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    external_id: Mapped[str] = mapped_column(Text, unique=True, comment="imdb:nm0000229 or freebase:m.06pj8")
    name: Mapped[str | None] = mapped_column(Text, comment="NULL where the source has ids only")


class MoviePerson(Base):
    __tablename__ = "movie_persons"
    __table_args__ = (
        CheckConstraint(f"role IN {PERSON_ROLES}", name="movie_persons_role"),
        Index("ix_movie_persons_person", "person_id"),
    )

    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.movie_id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("persons.person_id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    ordering: Mapped[int] = mapped_column(SmallInteger, comment="billing order within the role, from 1")


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (
        Index("ix_ratings_movie", "movie_id"),
        Index("ix_ratings_rated_at", "rated_at"),
        {"comment": "One row per user and movie; the latest rating wins."},
    )

    user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.movie_id"), primary_key=True)
    rating: Mapped[float] = mapped_column(REAL)
    rated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IngestRun(Base):
    __tablename__ = "ingest_runs"

    ingest_run_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    dataset: Mapped[str] = mapped_column(
        String(64), comment="named dataset, or the detected layout of a directory"
    )
    source: Mapped[str] = mapped_column(Text, comment="URL or directory the files came from")
    layout: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), comment="running | succeeded | failed")
    files: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", comment="file -> sha256, bytes")
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    timings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", comment="seconds per stage")
    rows_accepted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    rows_rejected: Mapped[int] = mapped_column(BigInteger, server_default="0")
    message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RejectedRow(Base):
    __tablename__ = "rejected_rows"
    __table_args__ = (Index("ix_rejected_rows_run", "ingest_run_id"),)

    rejected_row_id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    ingest_run_id: Mapped[int] = mapped_column(ForeignKey("ingest_runs.ingest_run_id", ondelete="CASCADE"))
    source_file: Mapped[str] = mapped_column(Text)
    line_number: Mapped[int | None] = mapped_column(BigInteger, comment="1-based, header included")
    raw_text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)


class TextEmbedding(Base):
    """Sentence-transformer vectors cached by text and model, so a retrain re-embeds only new text."""

    __tablename__ = "text_embeddings"

    model_name: Mapped[str] = mapped_column(Text, primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(SmallInteger)
    embedding: Mapped[bytes] = mapped_column(BYTEA, comment="float32 little-endian, dim values")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


MODEL_STATUSES = ("candidate", "champion", "rejected", "retired")


class ModelVersion(Base):
    """Every trained model, its figures and the promotion decision (mirrors the MLflow registry)."""

    __tablename__ = "model_versions"
    __table_args__ = (CheckConstraint(f"status IN {MODEL_STATUSES}", name="model_versions_status"),)

    model_version_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    registered_model: Mapped[str] = mapped_column(Text, comment="MLflow registered model name")
    registered_version: Mapped[int | None] = mapped_column(Integer, comment="MLflow model version")
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    data_cutoff: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="ratings after this instant were not seen"
    )
    protocol: Mapped[str] = mapped_column(String(32), comment="evaluation protocol of the gate metric")
    primary_metric: Mapped[str] = mapped_column(String(64))
    metric_value: Mapped[float | None] = mapped_column(REAL)
    champion_metric_value: Mapped[float | None] = mapped_column(
        REAL, comment="the champion's figure it was compared with"
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    status: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(Text)
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# rolled_back: taken off by `movierec publish --rollback` (migration 0006); refused: the publication check
# said no (0010); pending: its lists are being written, perhaps by several shards (0011)
BATCH_STATUSES = ("published", "superseded", "rolled_back", "refused", "pending")
LIST_SOURCES = ("model", "fallback_popularity")


class RecommendationBatch(Base):
    """One weekly set of top-N lists. Exactly one batch is ``published``: ``current_recommendations`` shows
    it."""

    __tablename__ = "recommendation_batches"
    __table_args__ = (
        CheckConstraint(f"status IN {BATCH_STATUSES}", name="recommendation_batches_status"),
        Index(
            "ux_recommendation_batches_published",
            "status",
            unique=True,
            postgresql_where="status = 'published'",
        ),
    )

    batch_id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.model_version_id"), comment="the champion that scored these lists"
    )
    data_cutoff: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="ratings after this instant were not seen"
    )
    top_n: Mapped[int] = mapped_column(Integer)
    users: Mapped[int] = mapped_column(Integer)
    fallback_users: Mapped[int] = mapped_column(Integer, comment="users given the labelled fallback list")
    rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    timings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", comment="seconds per stage")
    list_metrics: Mapped[dict[str, Any]] = mapped_column(
        JSONB,
        server_default="{}",
        comment="list-set figures (coverage, diversity, novelty, long tail, Gini) and re-rank settings",
    )
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BatchRecommendation(Base):
    """Rank-ordered lists, one row per (batch, user, rank)."""

    __tablename__ = "batch_recommendations"
    __table_args__ = (CheckConstraint(f"source IN {LIST_SOURCES}", name="batch_recommendations_source"),)

    batch_id: Mapped[int] = mapped_column(
        Integer,
        primary_key=True,
        autoincrement=False,
        comment="recommendation_batches.batch_id (no FK: a per-row check would slow the COPY; rows of pruned "
        "batches are deleted with them)",
    )
    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, comment="1 = best")
    movie_id: Mapped[int] = mapped_column(
        Integer, comment="no FK: a bulk write checks ids against the catalogue"
    )
    score: Mapped[float] = mapped_column(
        REAL, comment="blend score (per-user standardised), higher is better"
    )
    source: Mapped[str] = mapped_column(String(24), comment="model | fallback_popularity")
    model_version_id: Mapped[int] = mapped_column(Integer)
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # why (migration 0009, ``pipeline.batch.explain``)
    because: Mapped[list[int]] = mapped_column(
        ARRAY(Integer),
        server_default="{}",
        comment="movies the user rated that contributed most, best first (empty: fallback)",
    )
    shared: Mapped[dict[str, Any]] = mapped_column(
        JSONB,
        server_default="{}",
        comment="genres, directors, actors the movie shares with the because movies",
    )
    reason: Mapped[str] = mapped_column(Text, server_default="", comment="the explanation, one sentence")
    # the explanation's parts (migration 0012): the views assemble shared and reason from them
    shared_key: Mapped[int] = mapped_column(
        BigInteger,
        server_default="0",
        comment="batch_shared_attributes of this row (0: shared and reason are stored on the row)",
    )
    shard: Mapped[int] = mapped_column(
        SmallInteger,
        server_default="0",
        comment="the shard that wrote the row (0: a publication in one process)",
    )
    rated_highly: Mapped[bool] = mapped_column(
        Boolean,
        server_default=false(),
        comment="every movie in because was rated at least the relevance threshold",
    )


class BatchSharedAttributes(Base):
    """Each distinct set of attributes a batch's list entries share with the movies that explain them, once
    per writer (``shard``)."""

    __tablename__ = "batch_shared_attributes"
    __table_args__ = {"comment": "each distinct set of shared attributes of a batch's explanations, once"}

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("recommendation_batches.batch_id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    shard: Mapped[int] = mapped_column(
        SmallInteger, primary_key=True, autoincrement=False, comment="the writer (0: one process)"
    )
    shared_key: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, comment="64-bit hash of shared"
    )
    shared: Mapped[dict[str, Any]] = mapped_column(
        JSONB, comment="genres, directors, actors a list entry shares with the movies that explain it"
    )
    clause: Mapped[str] = mapped_column(Text, comment="the sentence's clause, e.g. '; same director: X'")


class PipelineLock(Base):
    """One row per pipeline lock (``publish``, ``promotion``): taking its row ``FOR UPDATE`` is taking the
    lock (``database.locks``). The read-only role has no rights on it, so it can never hold one."""

    __tablename__ = "pipeline_locks"
    __table_args__ = {"comment": "one row per pipeline lock, taken FOR UPDATE; no rights for movierec_reader"}

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    description: Mapped[str] = mapped_column(Text, server_default="")


class Dismissal(Base):
    """A user said "not interested" in a movie (``POST /users/{id}/dismissals``, the API's only write, as role
    ``movierec_feedback``). The API leaves it out of that user's answers at once; the next batch masks it as
    it masks rated movies."""

    __tablename__ = "dismissals"
    __table_args__ = {"comment": "not-interested marks: written by movierec_feedback, masked by the batch"}

    user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True)
    movie_id: Mapped[int] = mapped_column(ForeignKey("movies.movie_id", ondelete="CASCADE"), primary_key=True)
    dismissed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
