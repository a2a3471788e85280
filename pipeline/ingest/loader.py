"""Ingestion: a dataset directory (or its zip archive) into PostgreSQL, every row validated, nothing lost.

Small files (movies, users, credits) are parsed in Python and bulk-loaded with ``COPY``. Ratings files
are large, so PostgreSQL parses them: the bytes are streamed into a staging table and all checks are SQL
over that table.

* Fast path: ``COPY`` straight into typed staging columns. It only holds for a clean file; any COPY error
  (a short line, a non-numeric field) or any row failing a check sends the file down the careful path.
* Careful path: each line is staged as raw text with its line number, split and checked in SQL; bad
  lines go to ``rejected_rows`` with their raw text and reason, good ones carry on.

On the way to COPY a ratings file's bytes are escaped (``_EscapedBytes``): a leading byte-order mark is
dropped, CRLF becomes LF, and the bytes COPY cannot store or would take as its own syntax (NUL, the
careful path's delimiter and quote bytes 0x01 and 0x02, a lone CR, the backslash) become ``\\xNN`` text. So
a NUL byte rejects its line, with the NUL shown as ``\\x00``, and the rest of the file lands.

Encodings: ML-100K and ML-1M are latin-1, the CSV datasets UTF-8. A catalogue or users file whose bytes
say otherwise is read in the encoding it is in, and the run says so (a warning in its log and ``message``,
``counts["files_in_another_encoding"]``): a file declared latin-1 that decodes as UTF-8 with multi-byte
sequences is UTF-8, since real latin-1 text almost never is valid UTF-8 (see ``layouts.check_encoding``).
Decoding it as UTF-8 loses nothing and lands the titles as written ("Café", not "CafÃ©"); rejecting every
line of an otherwise good file would be worse, and reading it as latin-1 garbles titles silently.

Text has bounds (``pipeline.core.defaults``): a longer title, name or label rejects its line. A rejected
line's raw text and reason, and any log line about it, are cut to a few kilobytes and a few hundred
characters.

Staged ratings are upserted with "latest wins": a newer rating of the same user and movie replaces the
old one, an identical one changes nothing. All data of one ingest is loaded in one transaction, so a
failed run changes no table but ``ingest_runs`` and ``rejected_rows``: the ``ingest_runs`` row is opened
first (before the layout is known), rejected lines are spooled outside the data transaction
(``RejectSpool``), and the run is closed — ``succeeded`` with its rejects in the data transaction, or
``failed`` with them in a transaction of its own after the data was rolled back. A failed run records
``rows_accepted = 0`` and counts only what was read and rejected.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import psycopg2
from sqlalchemy import Connection, Engine, text

from database.bulk import copy_file, copy_rows
from pipeline.core.errors import InputError, one_line, shorten
from pipeline.ingest.layouts import (
    UTF8_BOM,
    Layout,
    Reject,
    detect_layout,
    freebase_ids,
    parse_credits,
    parse_links,
    parse_movies,
    parse_users,
)
from pipeline.ingest.rejects import RejectSpool

log = logging.getLogger(__name__)

EARLIEST_RATING = datetime(1990, 1, 1, tzinfo=UTC)  # MovieLens began in 1997; ml-latest has 1995
UNKNOWN = "unknown"  # dataset and layout of a run that failed before its layout was known
MAX_MESSAGE_CHARS = 500  # ingest_runs.message: one line


@dataclass
class IngestResult:
    ingest_run_id: int
    dataset: str
    layout: str
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_accepted(self) -> int:
        return sum(v for k, v in self.counts.items() if k.endswith("_accepted"))

    @property
    def rows_rejected(self) -> int:
        return sum(v for k, v in self.counts.items() if k.endswith("_rejected"))


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 3)


def ingest_directory(
    engine: Engine,
    directory: Path,
    *,
    dataset: str | None = None,
    source: str | None = None,
    imdb_dir: Path | None = None,
    progress: bool = True,
) -> IngestResult:
    """Ingest a MovieLens directory or zip archive (any supported layout) and, optionally, IMDb dumps.

    Raises ``InputError`` for unusable input (missing files, unknown layout, unreadable archive, empty,
    nothing valid). Whatever fails, the run is recorded in ``ingest_runs`` as ``failed`` with a one-line
    message, its rejected lines are kept, and no other table changes.
    """
    path = Path(directory)
    result = IngestResult(0, dataset or UNKNOWN, UNKNOWN, source=source or str(path))
    result.ingest_run_id = _open_run(engine, result)
    spool = RejectSpool(result.ingest_run_id)
    try:
        with ExitStack() as stack:
            if path.is_file():  # a zipped dataset, as GroupLens publishes them
                from pipeline.ingest.datasets import unpacked_archive

                path = stack.enter_context(unpacked_archive(path))
            layout = detect_layout(path)
            result.dataset, result.layout = dataset or layout.name, layout.name
            if source is None and path == Path(directory):
                result.source = str(layout.directory)
            if imdb_dir is not None and not Path(imdb_dir).is_dir():
                raise InputError(f"no such IMDb directory: {imdb_dir}")
            for note in layout.notes:
                log.warning("%s", shorten(note))
            result.warnings = list(layout.notes)
            if layout.notes:
                result.counts["files_in_another_encoding"] = len(layout.notes)
            with engine.begin() as conn:
                _load(conn, layout, result, spool, imdb_dir, progress)
                spool.write(conn)
                _close_run(conn, result, spool, "succeeded", "; ".join(result.warnings) or None)
    except Exception as exc:
        _close_failed_run(engine, result, spool, exc)
        raise
    finally:
        spool.close()
    return result


def _load(
    conn: Connection,
    layout: Layout,
    result: IngestResult,
    spool: RejectSpool,
    imdb_dir: Path | None,
    progress: bool,
) -> None:
    """Every file of the layout (and IMDb), in the caller's transaction; InputError if no rating is usable."""
    run_id = result.ingest_run_id
    with _timed(result.timings, "movies"):
        result.counts.update(_load_movies(conn, layout, spool, result.dataset))
    with _timed(result.timings, "users"):
        result.counts.update(_load_users(conn, layout, spool))
    with _timed(result.timings, "credits"):
        result.counts.update(_load_credits(conn, layout, spool))
    with _timed(result.timings, "ratings"):
        counts, sha = _load_ratings(conn, layout, spool, progress)
        result.counts.update(counts)
    if counts["ratings_accepted"] == 0:
        raise InputError(
            f"{layout.ratings.path.name}: no usable ratings: all {counts['ratings_rejected']} lines rejected "
            f"(see rejected_rows for ingest run {run_id})"
        )
    if imdb_dir is not None:
        from pipeline.ingest.imdb import enrich_from_imdb

        with _timed(result.timings, "imdb"):
            imdb_counts = enrich_from_imdb(conn, Path(imdb_dir), run_id, progress=progress, spool=spool)
        result.counts.update({f"imdb_{k}": v for k, v in imdb_counts.items()})
    result.files = _describe_files(layout, {layout.ratings.path: sha})


def record_failed_ingest(engine: Engine, *, dataset: str, source: str, error: Exception) -> int:
    """Record an ingest that failed before it could read anything (its download): a ``failed`` run with
    ``error`` as its message. Returns the run's id."""
    result = IngestResult(0, dataset, UNKNOWN, source=source)
    result.ingest_run_id = _open_run(engine, result)
    spool = RejectSpool(result.ingest_run_id)
    try:
        _close_failed_run(engine, result, spool, error)
    finally:
        spool.close()
    return result.ingest_run_id


def _open_run(engine: Engine, result: IngestResult) -> int:
    with engine.begin() as conn:
        return conn.execute(
            text(
                "INSERT INTO ingest_runs (dataset, source, layout, status) VALUES (:d, :s, :l, 'running') "
                "RETURNING ingest_run_id"
            ),
            {"d": result.dataset, "s": result.source, "l": result.layout},
        ).scalar_one()


def _close_run(
    conn: Connection, result: IngestResult, spool: RejectSpool, status: str, message: str | None
) -> None:
    failed = status == "failed"
    # a failed run landed nothing: it says what was read and rejected, not what would have been accepted
    counts = (
        {k: v for k, v in result.counts.items() if k.endswith(("_read", "_rejected", "_encoding"))}
        if failed
        else result.counts
    )
    conn.execute(
        text(
            "UPDATE ingest_runs SET dataset = :dataset, source = :source, layout = :layout, "
            "status = :status, message = :message, finished_at = now(), "
            "counts = CAST(:counts AS jsonb), timings = CAST(:timings AS jsonb), "
            "files = CAST(:files AS jsonb), "
            "rows_accepted = :accepted, rows_rejected = :rejected WHERE ingest_run_id = :id"
        ),
        {
            "dataset": result.dataset,
            "source": result.source,
            "layout": result.layout,
            "status": status,
            "message": shorten(message, MAX_MESSAGE_CHARS) if message else None,
            "counts": json.dumps(counts),
            "timings": json.dumps(result.timings),
            "files": json.dumps(result.files),
            "accepted": 0 if failed else result.rows_accepted,
            "rejected": sum(spool.counts.values()),
            "id": result.ingest_run_id,
        },
    )


def _close_failed_run(engine: Engine, result: IngestResult, spool: RejectSpool, exc: Exception) -> None:
    """Record the failure and keep the rejects, after the data transaction was rolled back."""
    try:
        with engine.begin() as conn:
            spool.write(conn)
            _close_run(conn, result, spool, "failed", one_line(exc))
    except Exception as close_exc:  # the database itself is gone: the original error is what matters
        log.error(
            "ingest run %s could not be recorded as failed: %s",
            result.ingest_run_id,
            shorten(one_line(close_exc)),
        )


def _describe_files(layout: Layout, known_sha: dict[Path, str | None]) -> dict[str, dict[str, Any]]:
    out = {}
    for path in layout.files:
        sha = known_sha.get(path) or hashlib.sha256(path.read_bytes()).hexdigest()
        out[path.name] = {"sha256": sha, "bytes": path.stat().st_size}
    return out


def _split(parsed: Iterable[Any]) -> tuple[list[Any], list[Reject]]:
    good: list[Any] = []
    bad: list[Reject] = []
    for item in parsed:
        (bad if isinstance(item, Reject) else good).append(item)
    return good, bad


def _first_wins(records: list[Any], key: Callable[[Any], int], rejects: list[Reject]) -> list[Any]:
    """Duplicate ids in a catalogue file: keep the first, reject the others (nothing silently merged)."""
    seen: dict[int, int] = {}
    out = []
    for rec in records:
        k = key(rec)
        if k in seen:
            rejects.append(Reject(rec.line, rec.raw, f"duplicate id {k} (first on line {seen[k]})"))
            continue
        seen[k] = rec.line
        out.append(rec)
    return out


def _upsert_counts(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> tuple[int, int]:
    """Run ``INSERT ... RETURNING (xmax = 0)`` and count (inserted, updated) server-side."""
    row = conn.execute(
        text(
            f"WITH up AS ({sql} RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up"
        ),
        params or {},
    ).one()
    return int(row[0]), int(row[1])


def _load_movies(conn: Connection, layout: Layout, spool: RejectSpool, dataset: str) -> dict[str, int]:
    movies, rejects = _split(parse_movies(layout))
    movies = _first_wins(movies, lambda m: m.movie_id, rejects)
    spool.add(layout.movies.name, ((r.line, r.raw, r.reason) for r in rejects))
    links, link_rejects = _split(parse_links(layout))
    if layout.links is not None:
        spool.add(layout.links.name, ((r.line, r.raw, r.reason) for r in link_rejects))
    by_id = {m.movie_id: m for m in movies}
    for movie_id, imdb_id, tmdb_id in links:
        if movie_id in by_id:
            by_id[movie_id].imdb_id, by_id[movie_id].tmdb_id = imdb_id, tmdb_id
    for movie_id, entity in freebase_ids(layout).items():
        if movie_id in by_id:
            by_id[movie_id].freebase_id = entity
    if not movies:
        raise InputError(f"{layout.movies}: no valid movies ({len(rejects)} lines rejected)")

    conn.execute(text("CREATE TEMP TABLE stage_movies (LIKE movies) ON COMMIT DROP"))
    cols = (
        "movie_id",
        "title",
        "year",
        "genres",
        "imdb_id",
        "tmdb_id",
        "freebase_id",
        "source",
        "updated_at",
    )
    now = datetime.now(UTC).isoformat()
    copy_rows(
        conn,
        "stage_movies",
        cols,
        (
            (m.movie_id, m.title, m.year, m.genres, m.imdb_id, m.tmdb_id, m.freebase_id, dataset, now)
            for m in movies
        ),
    )
    # Columns the catalogue files don't carry (runtime, overview; ids a layout lacks) are never blanked.
    inserted, updated = _upsert_counts(
        conn,
        """
        INSERT INTO movies (movie_id, title, year, genres, imdb_id, tmdb_id, freebase_id, source)
        SELECT movie_id, title, year, genres, imdb_id, tmdb_id, freebase_id, source FROM stage_movies
        ON CONFLICT (movie_id) DO UPDATE SET
            title = EXCLUDED.title, year = EXCLUDED.year, genres = EXCLUDED.genres,
            imdb_id = COALESCE(EXCLUDED.imdb_id, movies.imdb_id),
            tmdb_id = COALESCE(EXCLUDED.tmdb_id, movies.tmdb_id),
            freebase_id = COALESCE(EXCLUDED.freebase_id, movies.freebase_id),
            source = EXCLUDED.source, updated_at = now()
        WHERE (movies.title, movies.year, movies.genres, movies.source) IS DISTINCT FROM
              (EXCLUDED.title, EXCLUDED.year, EXCLUDED.genres, EXCLUDED.source)
           OR (EXCLUDED.imdb_id IS NOT NULL AND EXCLUDED.imdb_id IS DISTINCT FROM movies.imdb_id)
           OR (EXCLUDED.tmdb_id IS NOT NULL AND EXCLUDED.tmdb_id IS DISTINCT FROM movies.tmdb_id)
           OR (EXCLUDED.freebase_id IS NOT NULL
               AND EXCLUDED.freebase_id IS DISTINCT FROM movies.freebase_id)""",
    )
    return {
        "movies_read": len(movies) + len(rejects),
        "movies_accepted": len(movies),
        "movies_rejected": len(rejects) + len(link_rejects),
        "movies_inserted": inserted,
        "movies_updated": updated,
    }


def _load_users(conn: Connection, layout: Layout, spool: RejectSpool) -> dict[str, int]:
    if layout.users is None:
        return {}
    users, rejects = _split(parse_users(layout))
    users = _first_wins(users, lambda u: u.user_id, rejects)
    spool.add(layout.users.name, ((r.line, r.raw, r.reason) for r in rejects))
    conn.execute(text("CREATE TEMP TABLE stage_users (LIKE users) ON COMMIT DROP"))
    copy_rows(
        conn,
        "stage_users",
        ("user_id", "gender", "age", "occupation", "zip"),
        ((u.user_id, u.gender, u.age, u.occupation, u.zip) for u in users),
    )
    inserted, updated = _upsert_counts(
        conn,
        """
        INSERT INTO users SELECT * FROM stage_users
        ON CONFLICT (user_id) DO UPDATE SET gender = EXCLUDED.gender, age = EXCLUDED.age,
            occupation = EXCLUDED.occupation, zip = EXCLUDED.zip
        WHERE (users.gender, users.age, users.occupation, users.zip) IS DISTINCT FROM
              (EXCLUDED.gender, EXCLUDED.age, EXCLUDED.occupation, EXCLUDED.zip)""",
    )
    return {
        "users_read": len(users) + len(rejects),
        "users_accepted": len(users),
        "users_rejected": len(rejects),
        "users_inserted": inserted,
        "users_updated": updated,
    }


def _load_credits(conn: Connection, layout: Layout, spool: RejectSpool) -> dict[str, int]:
    if layout.kg is None:
        return {}
    credits, rejects = _split(parse_credits(layout))
    spool.add(layout.kg.name, ((r.line, r.raw, r.reason) for r in rejects))
    conn.execute(
        text(
            "CREATE TEMP TABLE stage_credits (movie_id int, external_id text, name text, role text, "
            "ordering int) ON COMMIT DROP"
        )
    )
    copy_rows(
        conn,
        "stage_credits",
        ("movie_id", "external_id", "name", "role", "ordering"),
        ((c.movie_id, c.external_id, c.name, c.role, c.ordering) for c in credits),
    )
    persons, _ = _upsert_counts(
        conn,
        """
        INSERT INTO persons (external_id, name)
        SELECT external_id, max(name) FROM stage_credits GROUP BY external_id
        ON CONFLICT (external_id) DO UPDATE SET name = EXCLUDED.name
        WHERE EXCLUDED.name IS NOT NULL AND EXCLUDED.name IS DISTINCT FROM persons.name""",
    )
    linked = conn.execute(
        text("""
        INSERT INTO movie_persons (movie_id, person_id, role, ordering)
        SELECT c.movie_id, p.person_id, c.role, min(c.ordering)
        FROM stage_credits c JOIN persons p USING (external_id) JOIN movies m USING (movie_id)
        GROUP BY c.movie_id, p.person_id, c.role
        ON CONFLICT DO NOTHING""")
    ).rowcount
    return {
        "credits_read": len(credits) + len(rejects),
        "credits_accepted": len(credits),
        "credits_rejected": len(rejects),
        "persons_inserted": persons,
        "credits_inserted": linked,
    }


# --- ratings -----------------------------------------------------------------------------------------


class _NeedsCarefulPath(Exception):
    pass


def _load_ratings(
    conn: Connection, layout: Layout, spool: RejectSpool, progress: bool
) -> tuple[dict[str, int], str]:
    rf = layout.ratings
    header_lines = 1 if rf.header else 0
    conn.execute(
        text("""CREATE TEMP TABLE stage_ratings (
        line_no bigint GENERATED ALWAYS AS IDENTITY, user_id integer, movie_id integer, rating real,
        ts double precision, raw text, parse_error text) ON COMMIT DROP""")
    )
    checks = _check_params(layout)
    checked = _checked_sql(has_users=layout.users is not None)
    sha: str | None = None
    path_taken = "careful"
    if len(rf.delimiter) == 1:  # COPY splits single-character delimiters only
        try:
            with conn.begin_nested():
                staged, sha = _stream(
                    conn,
                    rf.path,
                    progress,
                    "ratings",
                    (
                        "COPY stage_ratings (user_id, movie_id, rating, ts) FROM STDIN WITH (FORMAT csv, "
                        f"DELIMITER {_sql_char(rf.delimiter)}, HEADER {str(rf.header).lower()}, "
                        "ENCODING 'LATIN1')"
                    ),
                )
                bad = conn.execute(
                    text(f"SELECT count(*) FROM ({checked}) c WHERE reason IS NOT NULL"), checks
                ).scalar_one()
                if bad:
                    raise _NeedsCarefulPath(f"{bad} rows fail a check")
            path_taken = "fast"
        except (psycopg2.DataError, _NeedsCarefulPath) as exc:
            log.info("ratings: careful path (%s)", shorten((str(exc).strip().splitlines() or [""])[0]))
    rejected = 0
    if path_taken == "careful":
        staged, sha = _stage_lines(conn, rf.path, rf.delimiter, rf.header, progress)
        rejected = spool.add_query(
            conn,
            rf.path.name,
            f"SELECT line_no + :hdr AS line_number, coalesce(raw, '') AS raw_text, reason FROM ({checked}) c "
            "WHERE reason IS NOT NULL",
            {**checks, "hdr": header_lines},
        )
    if staged == 0:
        raise InputError(f"{rf.path}: no ratings in the file")
    if layout.users is None:  # ml-latest has no users file: a user is whoever rated
        conn.execute(
            text(
                f"INSERT INTO users (user_id) SELECT DISTINCT user_id FROM ({checked}) c "
                "WHERE reason IS NULL ON CONFLICT DO NOTHING"
            ),
            checks,
        )
    with _bulk_build_if_empty(conn):
        inserted, updated, superseded = _upsert_ratings(conn, checked, checks)
    accepted = staged - rejected
    return {
        "ratings_read": staged,
        "ratings_accepted": accepted,
        "ratings_rejected": rejected,
        "ratings_inserted": inserted,
        "ratings_updated": updated,
        "ratings_superseded_in_file": superseded,
        "ratings_unchanged": accepted - superseded - inserted - updated,
        "ratings_fast_path": int(path_taken == "fast"),
    }, sha or ""


@contextmanager
def _bulk_build_if_empty(conn: Connection) -> Iterator[None]:
    """First load into an empty ``ratings``: drop its foreign keys and secondary indexes, rebuild them after.

    Building an index once over sorted data beats maintaining it row by row, and the foreign-key triggers
    only repeat checks the staging SQL already made; re-adding the constraints validates them in one join.
    The definitions are read from the catalogue, so whatever the migrations made is restored exactly —
    inside the same transaction, so a failure restores them too.
    """
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM ratings)")).scalar_one():
        yield
        return
    constraints = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'ratings'::regclass AND contype = 'f' ORDER BY conname"
        )
    ).all()
    indexes = conn.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = 'ratings'::regclass AND NOT x.indisprimary ORDER BY i.relname"
        )
    ).all()
    for name, _ in constraints:
        conn.execute(text(f'ALTER TABLE ratings DROP CONSTRAINT "{name}"'))  # names from the catalogue
    for name, _ in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    yield
    for _, definition in indexes:
        conn.execute(text(definition))
    for name, definition in constraints:
        conn.execute(text(f'ALTER TABLE ratings ADD CONSTRAINT "{name}" {definition}'))


def _upsert_ratings(conn: Connection, checked: str, checks: dict[str, Any]) -> tuple[int, int, int]:
    """Latest wins; an unchanged row is not rewritten. Returns (inserted, updated, superseded in file)."""
    upsert = """
        INSERT INTO ratings (user_id, movie_id, rating, rated_at)
        SELECT user_id, movie_id, rating, to_timestamp(ts) FROM ({source}) v
        ON CONFLICT (user_id, movie_id) DO UPDATE SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at
        WHERE EXCLUDED.rated_at >= ratings.rated_at
          AND (ratings.rating, ratings.rated_at) IS DISTINCT FROM (EXCLUDED.rating, EXCLUDED.rated_at)"""
    # Rows that would change nothing (same rating and time, or older than the stored one) are left out
    # before the upsert: ON CONFLICT locks and rewrites every matching row even when its WHERE says no.
    valid = f"""SELECT * FROM ({checked}) c WHERE reason IS NULL AND NOT EXISTS (
        SELECT 1 FROM ratings r WHERE r.user_id = c.user_id AND r.movie_id = c.movie_id
          AND (r.rated_at > to_timestamp(c.ts)
               OR (r.rated_at = to_timestamp(c.ts) AND r.rating = c.rating)))"""
    try:
        with conn.begin_nested():  # a file rarely rates the same movie twice: try without de-duplicating
            inserted, updated = _upsert_counts(conn, upsert.format(source=valid), checks)
        return inserted, updated, 0
    except Exception as exc:  # CardinalityViolation: the same key twice in one statement
        if getattr(getattr(exc, "orig", exc), "pgcode", None) != "21000":
            raise
    latest = (
        f"SELECT DISTINCT ON (user_id, movie_id) * FROM ({valid}) d "
        "ORDER BY user_id, movie_id, ts DESC, line_no DESC"
    )
    # counted before the upsert: afterwards the anti-join hides every line that matches what was stored
    superseded = conn.execute(
        text(f"SELECT (SELECT count(*) FROM ({valid}) a) - (SELECT count(*) FROM ({latest}) b)"), checks
    ).scalar_one()
    inserted, updated = _upsert_counts(conn, upsert.format(source=latest), checks)
    return inserted, updated, int(superseded)


def _check_params(layout: Layout) -> dict[str, Any]:
    scale = layout.ratings.scale
    latest = datetime.now(UTC) + timedelta(days=1)
    return {
        "low": scale.low,
        "high": scale.high,
        "step": scale.step,
        "ts_min": EARLIEST_RATING.timestamp(),
        "ts_max": latest.timestamp(),
    }


def _checked_sql(has_users: bool) -> str:
    """Every staged rating with ``reason`` NULL when it passes every check, else why it fails."""
    user_join = "LEFT JOIN users u ON u.user_id = s.user_id" if has_users else ""
    user_check = "WHEN u.user_id IS NULL THEN format('unknown user_id %s', s.user_id)" if has_users else ""
    return f"""
        SELECT s.line_no, s.raw, s.user_id, s.movie_id, s.rating, s.ts, CASE
            WHEN s.parse_error IS NOT NULL THEN s.parse_error
            WHEN s.user_id IS NULL OR s.movie_id IS NULL OR s.rating IS NULL OR s.ts IS NULL
                THEN 'missing field'
            WHEN s.user_id <= 0 THEN format('user_id %s is not positive', s.user_id)
            WHEN s.movie_id <= 0 THEN format('movie_id %s is not positive', s.movie_id)
            WHEN NOT (s.rating BETWEEN CAST(:low AS real) AND CAST(:high AS real))
              OR s.rating / CAST(:step AS real) <> round(s.rating / CAST(:step AS real))
              THEN format('rating %s is outside the scale %s to %s in steps of %s',
                          s.rating, CAST(:low AS real), CAST(:high AS real), CAST(:step AS real))
            WHEN NOT (s.ts BETWEEN CAST(:ts_min AS float8) AND CAST(:ts_max AS float8))
              THEN format('timestamp %s is not between 1990-01-01 and tomorrow', s.ts)
            WHEN m.movie_id IS NULL THEN format('unknown movie_id %s', s.movie_id)
            {user_check}
        END AS reason
        FROM stage_ratings s LEFT JOIN movies m ON m.movie_id = s.movie_id {user_join}"""


def _sql_char(ch: str) -> str:
    return {"\t": "E'\\t'", ",": "','"}[ch]


class _EscapedBytes(io.RawIOBase):
    """A ratings file's bytes as COPY gets them: a leading UTF-8 byte-order mark dropped, CRLF as LF, and
    each byte COPY cannot store or would read as syntax written as ``\\xNN`` text (the backslash first, so
    the escapes are unambiguous). ``on_chunk`` sees the file's own bytes (checksum, progress)."""

    _ESCAPES = ((b"\\", b"\\x5c"), (b"\x00", b"\\x00"), (b"\x01", b"\\x01"), (b"\x02", b"\\x02"))

    def __init__(self, raw: IO[bytes], on_chunk: Callable[[bytes], None]) -> None:
        self._raw = raw
        self._on_chunk = on_chunk
        self._head = True  # the byte-order mark is only looked for at the start
        self._held_cr = False  # a chunk ending in CR: is it half of a CRLF?

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while True:
            chunk = self._raw.read(size if size and size > 0 else -1)
            if chunk:
                self._on_chunk(chunk)
            data = (b"\r" if self._held_cr else b"") + chunk
            if self._head and (len(data) >= len(UTF8_BOM) or not chunk):
                self._head = False
                data = data.removeprefix(UTF8_BOM)
            self._held_cr = bool(chunk) and data.endswith(b"\r")
            if self._held_cr:
                data = data[:-1]
            for byte, escaped in self._ESCAPES:
                data = data.replace(byte, escaped)
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\\x0d")
            if data or not chunk:  # b"" tells COPY the file ended: only at the end
                return data


def _stream(conn: Connection, path: Path, progress: bool, label: str, copy_sql: str) -> tuple[int, str]:
    """COPY a file's (escaped) bytes with a progress bar; returns (rows, sha256 of the file's bytes)."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    size = path.stat().st_size
    with (
        path.open("rb") as fh,
        tqdm(total=size, unit="B", unit_scale=True, desc=label, disable=not progress, leave=False) as bar,
    ):

        def tap(chunk: bytes) -> None:
            digest.update(chunk)
            bar.update(len(chunk))

        rows = copy_file(conn, copy_sql, cast(IO[bytes], _EscapedBytes(fh, tap)))
    return rows, digest.hexdigest()


def _stage_lines(
    conn: Connection, path: Path, delimiter: str, header: bool, progress: bool
) -> tuple[int, str]:
    """The careful path: every line as raw text with its number, then split and typed in SQL."""
    conn.execute(
        text(
            "CREATE TEMP TABLE stage_lines (line_no bigint GENERATED ALWAYS AS IDENTITY, raw text) "
            "ON COMMIT DROP"
        )
    )
    # CSV mode with quote and delimiter bytes that never occur in text: each line arrives verbatim.
    _, sha = _stream(
        conn,
        path,
        progress,
        "ratings (checking every line)",
        "COPY stage_lines (raw) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02', "
        f"HEADER {str(header).lower()}, ENCODING 'LATIN1')",
    )
    staged = conn.execute(
        text(r"""
        INSERT INTO stage_ratings (line_no, raw, user_id, movie_id, rating, ts, parse_error)
            OVERRIDING SYSTEM VALUE
        SELECT line_no, raw,
            CASE WHEN err IS NULL THEN CAST(btrim(f[1], E' \t\r') AS integer) END,
            CASE WHEN err IS NULL THEN CAST(btrim(f[2], E' \t\r') AS integer) END,
            CASE WHEN err IS NULL THEN CAST(btrim(f[3], E' \t\r') AS real) END,
            CASE WHEN err IS NULL THEN CAST(btrim(f[4], E' \t\r') AS float8) END,
            err
        FROM (
            SELECT line_no, raw, f, CASE
                WHEN strpos(raw, '\x00') > 0 THEN 'NUL byte in the line (shown as \x00)'
                WHEN raw ~ '\\x0[12]'
                    THEN format('control byte %s in the line', substring(raw from '\\x0[12]'))
                WHEN cardinality(f) <> 4 THEN format('expected 4 fields, found %s', cardinality(f))
                WHEN btrim(f[1], E' \t\r') !~ '^[0-9]{1,9}$'
                    THEN format('user_id %s is not a positive integer', quote_literal(left(f[1], 40)))
                WHEN btrim(f[2], E' \t\r') !~ '^[0-9]{1,9}$'
                    THEN format('movie_id %s is not a positive integer', quote_literal(left(f[2], 40)))
                WHEN btrim(f[3], E' \t\r') !~ '^[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)$'
                    THEN format('rating %s is not a number', quote_literal(left(f[3], 40)))
                WHEN btrim(f[4], E' \t\r') !~ '^[0-9]{1,12}([.][0-9]*)?$'
                    THEN format('timestamp %s is not a Unix time', quote_literal(left(f[4], 40)))
            END AS err
            FROM (SELECT line_no, raw, string_to_array(raw, :delim) AS f FROM stage_lines
                  WHERE raw IS NOT NULL AND btrim(raw, E' \t\r') <> '') lines
        ) parsed"""),
        {"delim": delimiter},
    ).rowcount
    return staged, sha
