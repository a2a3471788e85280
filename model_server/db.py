"""The server's database access: reads through the ``movierec_reader`` role; its one write, a dismissal,
through ``movierec_feedback`` (a second, small ``Database`` on that role's URL, opened on first use).

Requests read through an asyncpg pool (prepared statements, no thread hop): the published list of one
user is one indexed query on ``current_recommendations``. The popularity fallback, computed by the same
function the batch uses (``pipeline.batch.fallback.most_rated``), is read once per published batch through a
SQLAlchemy engine on the same read-only URL and kept in memory.

Every failure to reach or use the database becomes ``DatabaseUnavailable`` (the API answers 503 with its
message). Connections are opened on demand, so the server starts while the database is down and recovers
on its own when it returns: a connection that died with the server is dropped and the query retried once.

What a stop or a crash of the server can raise, and where:

* connecting: ``OSError`` (refused, no socket file), ``TimeoutError``, ``CannotConnectNowError`` (57P03: the
  server is starting or shutting down), other class-08 errors;
* during a query: ``AdminShutdownError`` (57P01, a clean stop or a terminated backend),
  ``CrashShutdownError`` (57P02), ``ConnectionDoesNotExistError``, ``ConnectionResetError``;
* when the connection goes back to the pool (``Connection.reset()``): ``InternalClientError`` ("cannot switch
  to state 15; another operation (2) is in progress": the reset ran while the protocol was still consuming
  the shutdown message), ``InterfaceError``, ``OSError``. The pool has already terminated such a connection;
  its failure to reset is logged and never replaces the query's own outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from pipeline.core.errors import one_line

log = logging.getLogger(__name__)

POOL_SIZE = 8
FALLBACK_SIZE = 1000  # rows of the popularity list kept per batch (the API's largest limit)
CONNECT_TIMEOUT_S = 2.0
QUERY_TIMEOUT_S = 5.0

# Errors that mean "the connection is gone", worth one retry on a fresh connection.
_STALE = (
    asyncpg.exceptions.InterfaceError,  # ConnectionDoesNotExistError among them
    asyncpg.exceptions.InternalClientError,  # a protocol left mid-operation by a lost server
    asyncpg.exceptions.OperatorInterventionError,  # 57P01 admin shutdown, 57P02 crash, 57P03 starting
    asyncpg.exceptions.PostgresConnectionError,  # class 08
    ConnectionError,
)
# Errors that mean "the database cannot be reached now": no retry, a 503 at once.
_DOWN = (OSError, TimeoutError)


# The API's one write, as role movierec_feedback: the row, new (created) or as first recorded. Both halves
# read one snapshot, so the second sees only a row that was there before this statement.
_DISMISS = (
    "WITH added AS (INSERT INTO dismissals (user_id, movie_id) VALUES ($1, $2) ON CONFLICT DO NOTHING "
    "RETURNING user_id, movie_id, dismissed_at) "
    "SELECT user_id, movie_id, dismissed_at, true AS created FROM added "
    "UNION ALL SELECT user_id, movie_id, dismissed_at, false FROM dismissals "
    "WHERE user_id = $1 AND movie_id = $2 AND NOT EXISTS (SELECT FROM added)"
)


def movie_fields(movie: asyncpg.Record) -> dict[str, Any]:
    """A movie as every answer lists it: id, title, year and genres (a list, never null)."""
    return {
        "movie_id": int(movie["movie_id"]),
        "title": movie["title"],
        "year": movie["year"],
        "genres": list(movie["genres"] or []),
    }


class DatabaseUnavailable(Exception):
    """The database cannot answer now; the message says why (never a stack trace, never a password)."""


class MissingReference(Exception):
    """A write named a row that does not exist (a foreign key refused it); ``constraint`` says which."""

    def __init__(self, constraint: str) -> None:
        super().__init__(constraint)
        self.constraint = constraint


@dataclass(frozen=True)
class PublishedBatch:
    batch_id: int
    model_version: int
    data_cutoff: datetime | None
    generated_at: datetime
    top_n: int


@dataclass(frozen=True)
class FallbackList:
    batch_id: int
    rows: list[dict[str, Any]]  # movie_id, title, year, genres, score; best first


# The published list minus the movies asked to be left out ($3) and those the user dismissed (read at once,
# so a dismissal shows on the next request): the first $2 of what remains.
_USER_LIST = (
    "SELECT rank, movie_id, title, year, genres, score, source, model_version, batch_id, data_cutoff, "
    "generated_at, because, because_titles, shared::text AS shared, reason "
    "FROM current_recommendations c WHERE user_id = $1 AND movie_id <> ALL($3::integer[]) "
    "AND NOT EXISTS (SELECT FROM dismissals d WHERE d.user_id = $1 AND d.movie_id = c.movie_id) "
    "ORDER BY rank LIMIT $2"
)
_DISMISSED = "SELECT movie_id FROM dismissals WHERE user_id = $1"
_PUBLISHED = (
    "SELECT b.batch_id, v.registered_version AS model_version, b.data_cutoff, b.generated_at, b.top_n "
    "FROM recommendation_batches b JOIN model_versions v USING (model_version_id) "
    "WHERE b.status = 'published'"
)
_MOVIES = "SELECT movie_id, title, year, genres FROM movies WHERE movie_id = ANY($1::integer[])"
# Directors and leading actors of some movies, for a group member's explanation (pipeline.batch.explain).
_MOVIE_PEOPLE = (
    "SELECT mp.movie_id, mp.role, p.name FROM movie_persons mp JOIN persons p USING (person_id) "
    "WHERE mp.movie_id = ANY($1::integer[]) AND p.name IS NOT NULL "
    "AND (mp.role = 'director' OR (mp.role = 'actor' AND mp.ordering <= $2))"
)


async def _release(pool: asyncpg.Pool, conn: Any) -> None:
    """Give ``conn`` back to ``pool``. A connection the server dropped fails its reset there; asyncpg has then
    terminated it (a new one opens on the next acquire), so that failure is logged, never raised."""
    try:
        await pool.release(conn)
    except Exception as exc:  # InternalClientError, InterfaceError, OSError: the connection is gone
        log.info("database connection dropped on release (%s)", one_line(exc))


class Database:
    """The API's access through one role: ``dsn`` is the reader role's URL
    (``database.engine.reader_database_url``), or the feedback role's for ``dismiss``."""

    def __init__(self, dsn: str, pool_size: int = POOL_SIZE) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._fallback: FallbackList | None = None
        self._fallback_lock = asyncio.Lock()
        self._sync_engine: Any = None
        self.reachable = False  # did the last query get an answer? (read by PublishedLists)

    # --- connections -----------------------------------------------------------------------------------

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    # min_size=0: creating the pool connects nowhere; connections open on first use.
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self.pool_size,
                        timeout=CONNECT_TIMEOUT_S,
                        command_timeout=QUERY_TIMEOUT_S,
                        max_inactive_connection_lifetime=60.0,
                    )
        return self._pool

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Rows of ``query``; ``DatabaseUnavailable`` when the database cannot answer."""
        try:
            rows = await self._fetch(query, *args)
        except DatabaseUnavailable:
            self.reachable = False
            raise
        self.reachable = True
        return rows

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        pool = await self._get_pool()
        for attempt in (1, 2):
            try:
                conn = await pool.acquire(timeout=CONNECT_TIMEOUT_S + QUERY_TIMEOUT_S)
                try:
                    return await conn.fetch(query, *args)
                finally:
                    await _release(pool, conn)
            except _STALE as exc:
                if attempt == 2:
                    raise DatabaseUnavailable(f"database unavailable ({one_line(exc)})") from None
                await pool.expire_connections()  # every pooled connection predates the failure
            except _DOWN as exc:
                raise DatabaseUnavailable(f"database unavailable ({one_line(exc)})") from None
            except asyncpg.ForeignKeyViolationError as exc:
                raise MissingReference(exc.constraint_name or "") from None
            except asyncpg.PostgresError as exc:
                raise DatabaseUnavailable(f"database error ({one_line(exc)})") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except Exception as exc:  # connections the server dropped cannot say goodbye: just drop them
                log.info("database pool closed abruptly (%s)", one_line(exc))
                pool.terminate()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    # --- queries ---------------------------------------------------------------------------------------

    async def user_list(self, user_id: int, limit: int, exclude: Sequence[int] = ()) -> list[asyncpg.Record]:
        return await self.fetch(_USER_LIST, user_id, limit, list(exclude))

    async def dismissed(self, user_id: int) -> set[int]:
        return {r["movie_id"] for r in await self.fetch(_DISMISSED, user_id)}

    async def dismiss(self, user_id: int, movie_id: int) -> asyncpg.Record:
        """Record that ``user_id`` is not interested in ``movie_id`` (on a ``movierec_feedback`` URL): the
        row, ``created`` false when it was there already; ``MissingReference`` for an unknown user or
        movie."""
        for _ in range(2):  # empty only when a concurrent call inserted it after this statement's snapshot
            rows = await self.fetch(_DISMISS, user_id, movie_id)
            if rows:
                return rows[0]
        raise DatabaseUnavailable("database error (dismissal neither recorded nor found)")

    async def published_batch(self) -> PublishedBatch | None:
        rows = await self.fetch(_PUBLISHED)
        return PublishedBatch(**dict(rows[0])) if rows else None

    async def movies(self, movie_ids: Sequence[int]) -> dict[int, asyncpg.Record]:
        rows = await self.fetch(_MOVIES, list(movie_ids))
        return {r["movie_id"]: r for r in rows}

    async def movie_people(self, movie_ids: Sequence[int], max_actors: int) -> list[tuple[int, str, str]]:
        """(movie id, role, name) of the directors and first ``max_actors`` actors of ``movie_ids``, named."""
        rows = await self.fetch(_MOVIE_PEOPLE, list(movie_ids), max_actors)
        return [(r["movie_id"], r["role"], r["name"]) for r in rows]

    async def whoami(self) -> str:
        return (await self.fetch("SELECT current_user AS role"))[0]["role"]

    async def fallback(self, batch: PublishedBatch) -> FallbackList:
        """The popularity list at ``batch``'s cut-off (``pipeline.batch.fallback.most_rated``), read once per
        batch."""
        cached = self._fallback
        if cached is not None and cached.batch_id == batch.batch_id:
            return cached
        async with self._fallback_lock:
            cached = self._fallback
            if cached is None or cached.batch_id != batch.batch_id:
                movie_ids, share = await asyncio.to_thread(self._most_rated, batch.data_cutoff, FALLBACK_SIZE)
                movies = await self.movies(movie_ids.tolist())
                rows = [
                    {**movie_fields(movies[int(m)]), "score": float(s)}
                    for m, s in zip(movie_ids, share)
                    if int(m) in movies
                ]
                self._fallback = cached = FallbackList(batch.batch_id, rows)
        return cached

    def _most_rated(self, cutoff: datetime | None, limit: int) -> tuple[Any, Any]:
        import sqlalchemy.exc
        from sqlalchemy import create_engine

        from database.engine import sqlalchemy_url
        from pipeline.batch.fallback import most_rated

        if self._sync_engine is None:
            self._sync_engine = create_engine(
                sqlalchemy_url(self.dsn),
                pool_pre_ping=True,
                pool_size=1,
                connect_args={"connect_timeout": int(CONNECT_TIMEOUT_S)},
            )
        try:
            with self._sync_engine.connect() as conn:
                return most_rated(conn, cutoff, limit)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailable(
                f"database unavailable ({one_line(getattr(exc, 'orig', None) or exc)})"
            ) from None
