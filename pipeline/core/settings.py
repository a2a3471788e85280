"""The one settings object every entry point reads (CLI, DAGs, API, tests, Alembic)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.core.defaults import (
    AUTOREC_MAX_CELLS,
    BLEND_MEMBER_MODELS,
    BLEND_MEMBERS,
    BLEND_MEMBERS_MAX_RATINGS,
    EVALUATION_MAX_USERS,
    EVALUATION_ONLY_MODELS,
    LOCK_TIMEOUT_S,
    WARM_START_EPOCH_RATINGS,
    WARM_START_EPOCHS,
    WARM_START_MAX_AGE_WEEKS,
    WEEKLY_EVALUATION_MODELS,
)


def _known_names(value: str, known: tuple[str, ...], what: str, variable: str) -> str:
    """A comma-separated list of names, stripped and without repeats; ``ValueError`` naming unknown ones."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}: {variable} takes {list(known)}")
    return ",".join(dict.fromkeys(names))


class Settings(BaseSettings):
    """Configuration from environment variables.

    With nothing set, everything lives in ``.movierec/`` under the working directory: an embedded
    PostgreSQL server, downloads and caches. Two different homes never share a server or files.
    """

    # No populate_by_name: field "home" must never be read from $HOME.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.cwd() / ".movierec", validation_alias="MOVIEREC_HOME")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    # The registry as the API server reads it; unset: the embedded mlflow database as role movierec_reader, or
    # MLFLOW_TRACKING_URI (a tracking server, a sqlite file) as it is.
    mlflow_reader_tracking_uri: str | None = Field(
        default=None, validation_alias="MLFLOW_READER_TRACKING_URI"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", validation_alias="MOVIEREC_DEVICE")
    # Data-parallel processes the train step trains the network in (torchrun's nproc_per_node: gloo on the
    # CPU, one GPU each with CUDA; pipeline.models.hybrid.distributed); 1: in the step's own process.
    train_processes: int = Field(default=1, ge=1, validation_alias="MOVIEREC_TRAIN_PROCESSES")
    # Warm start (pipeline.models.hybrid.warm_start): at most this many epochs from the champion's network;
    # a full retrain once the chain's last full training is this many weeks old.
    warm_start_epochs: int = Field(
        default=WARM_START_EPOCHS, ge=1, validation_alias="MOVIEREC_WARM_START_EPOCHS"
    )
    full_retrain_weeks: int = Field(
        default=WARM_START_MAX_AGE_WEEKS, ge=1, validation_alias="MOVIEREC_FULL_RETRAIN_WEEKS"
    )
    # A warm-start epoch trains on at most this many ratings: every one after the champion's cut-off and a
    # fresh sample of the older ones to fill it.
    warm_start_epoch_ratings: int = Field(
        default=WARM_START_EPOCH_RATINGS, ge=1, validation_alias="MOVIEREC_WARM_START_EPOCH_RATINGS"
    )
    # Where a person reaches the app database from, for the psql line the commands print (the Docker stack
    # sets the host's published port); unset: DATABASE_URL / the embedded server. Its password is never shown.
    public_database_url: str | None = Field(default=None, validation_alias="MOVIEREC_PUBLIC_DATABASE_URL")
    # The API server's read-only connection; unset: the app URL as role movierec_reader, no password.
    reader_database_url: str | None = Field(default=None, validation_alias="READER_DATABASE_URL")
    # The API server's one write (dismissals); unset: the app URL as role movierec_feedback, no password.
    feedback_database_url: str | None = Field(default=None, validation_alias="FEEDBACK_DATABASE_URL")
    # How long a publish or promotion waits for its pipeline lock (and later lock waits in its transaction).
    lock_timeout_s: float = Field(default=LOCK_TIMEOUT_S, gt=0, validation_alias="MOVIEREC_LOCK_TIMEOUT_S")
    # How often the API server asks the MLflow registry whether the champion changed.
    model_poll_seconds: float = Field(default=30.0, gt=0, validation_alias="MOVIEREC_MODEL_POLL_SECONDS")
    # Memory the API server keeps published-list answers in (per batch); 0: read the database every time.
    api_cache_mb: int = Field(default=64, ge=0, validation_alias="MOVIEREC_API_CACHE_MB")
    # The evaluation-only models the weekly run evaluates, comma-separated ("" for none).
    weekly_models_text: str = Field(
        default=",".join(WEEKLY_EVALUATION_MODELS), validation_alias="MOVIEREC_WEEKLY_MODELS"
    )
    # The models the blend's weight search may add to its ranking, comma-separated ("" for none).
    blend_members_text: str = Field(
        default=",".join(BLEND_MEMBERS), validation_alias="MOVIEREC_BLEND_MEMBERS"
    )
    blend_members_max_ratings: int = Field(
        default=BLEND_MEMBERS_MAX_RATINGS, ge=0, validation_alias="MOVIEREC_BLEND_MEMBERS_MAX_RATINGS"
    )
    # Above this many users with a rating the evaluation fits and scores a fixed sample of this many users'
    # ratings (pipeline.evaluation.protocol.evaluation_sample); 0: every user, whatever the size.
    evaluation_max_users: int = Field(
        default=EVALUATION_MAX_USERS, ge=0, validation_alias="MOVIEREC_EVALUATION_MAX_USERS"
    )
    # AutoRec joins the rating blend up to this many users x movies (0: never).
    autorec_max_cells: int = Field(
        default=AUTOREC_MAX_CELLS, ge=0, validation_alias="MOVIEREC_AUTOREC_MAX_CELLS"
    )

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("weekly_models_text")
    @classmethod
    def _known_models(cls, value: str) -> str:
        return _known_names(value, EVALUATION_ONLY_MODELS, "models", "MOVIEREC_WEEKLY_MODELS")

    @field_validator("blend_members_text")
    @classmethod
    def _known_members(cls, value: str) -> str:
        return _known_names(value, BLEND_MEMBER_MODELS, "blend members", "MOVIEREC_BLEND_MEMBERS")

    @property
    def blend_members(self) -> tuple[str, ...]:
        """The models the blend's weight search may add to its ranking (``MOVIEREC_BLEND_MEMBERS``)."""
        return tuple(name for name in self.blend_members_text.split(",") if name)

    def members_for(self, n_ratings: int) -> tuple[str, ...]:
        """The blend members a run on ``n_ratings`` ratings offers: ``blend_members``, or none above
        ``blend_members_max_ratings``."""
        return self.blend_members if n_ratings <= self.blend_members_max_ratings else ()

    @property
    def evaluation_user_cap(self) -> int | None:
        """The users above which the evaluation runs on a fixed sample of them (None: never)."""
        return self.evaluation_max_users or None

    @property
    def weekly_models(self) -> tuple[str, ...]:
        """The evaluation-only models the weekly run evaluates (``MOVIEREC_WEEKLY_MODELS``)."""
        return tuple(name for name in self.weekly_models_text.split(",") if name)

    @field_validator(
        "database_url",
        "mlflow_tracking_uri",
        "mlflow_reader_tracking_uri",
        "reader_database_url",
        "feedback_database_url",
        "public_database_url",
    )
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @property
    def embedded(self) -> bool:
        """True when the app database is the embedded server under ``home``."""
        return self.database_url is None

    @property
    def pg_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
