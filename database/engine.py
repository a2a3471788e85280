"""The one engine factory. Every process resolves the app database the same way:
``DATABASE_URL`` when set, else the embedded server under ``MOVIEREC_HOME`` (started on demand)."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url

from database.roles import FEEDBACK_ROLE, READER_ROLE
from pipeline.core.settings import Settings, get_settings


def database_url(settings: Settings | None = None) -> str:
    """The app database URL, starting the embedded server when ``DATABASE_URL`` is unset."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    from database import embedded

    return embedded.start(settings)


def reader_database_url(settings: Settings | None = None) -> str:
    """The read-only URL the API server connects with: ``READER_DATABASE_URL`` when set, else the app
    database's URL as role ``movierec_reader`` without a password (the embedded server trusts its Unix
    socket; elsewhere set ``READER_DATABASE_URL`` with the role's password)."""
    settings = settings or get_settings()
    if settings.reader_database_url:
        return settings.reader_database_url
    return as_reader(database_url(settings))


def feedback_database_url(settings: Settings | None = None) -> str:
    """The URL the API server records dismissals with: ``FEEDBACK_DATABASE_URL`` when set, else the app
    database's URL as role ``movierec_feedback`` without a password (as ``reader_database_url``)."""
    settings = settings or get_settings()
    if settings.feedback_database_url:
        return settings.feedback_database_url
    return as_role(database_url(settings), FEEDBACK_ROLE)


def as_reader(url: str, drivername: str = "postgresql") -> str:
    """``url`` (same server, database and options) as role ``movierec_reader`` without a password."""
    return as_role(url, READER_ROLE, drivername)


def as_role(url: str, role: str, drivername: str = "postgresql") -> str:
    """``url`` (same server, database and options) as ``role`` without a password."""
    parsed = make_url(sqlalchemy_url(url))
    return URL.create(
        drivername, role, None, parsed.host, parsed.port, parsed.database, parsed.query
    ).render_as_string(hide_password=False)


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg2 driver (COPY support) whatever scheme the user wrote."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://')[0]}://…")


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, future=True)


def get_engine(settings: Settings | None = None, url: str | None = None) -> Engine:
    """A cached engine for ``url`` (default: the app database of ``settings``)."""
    return _engine_for(url or database_url(settings))
