"""IMDb enrichment: runtimes, directors, writers and actors for movies already in the catalogue.

Reads IMDb's non-commercial TSV dumps (``title.basics``, ``title.crew``, ``title.principals``,
``name.basics``, each plain or ``.gz``). The real files are gigabytes, so every file is streamed in
blocks of bytes and only rows of matched titles (or needed people) are kept in memory.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text
from tqdm import tqdm

from database.bulk import copy_rows
from pipeline.core.defaults import MAX_NAME_CHARS
from pipeline.core.errors import InputError
from pipeline.ingest.rejects import RejectSpool, record_rejects
from pipeline.ingest.titles import normalise_title, title_keys

log = logging.getLogger(__name__)

BASICS, CREW = "title.basics.tsv", "title.crew.tsv"
PRINCIPALS, NAMES = "title.principals.tsv", "name.basics.tsv"
MATCH_TITLE_TYPES = ("movie", "tvMovie", "video")
ACTOR_CATEGORIES = ("actor", "actress")
# Decompressed bytes parsed at a time: big enough that pandas' per-call overhead vanishes,
# small enough that a block plus its parsed frame stays well under a gigabyte.
_BLOCK_BYTES = 32 << 20
_SMALLINT_MAX = 32767


def enrich_from_imdb(
    conn: Connection,
    imdb_dir: Path,
    ingest_run_id: int,
    *,
    progress: bool = True,
    spool: RejectSpool | None = None,
) -> dict[str, int]:
    """Match ``movies`` to IMDb titles and fill runtimes, persons and credits; returns counts.

    Runs inside the caller's transaction. Movies with ``imdb_id`` are matched by it; the others by
    normalised title and year (title matches get their ``imdb_id`` set). Idempotent: a second run with
    the same files writes nothing. Counts: ``movies_matched_by_id``, ``movies_matched_by_title``,
    ``ambiguous`` (several equally good candidates, left unmatched), ``unmatched``, ``runtime_set`` (rows
    changed), ``persons`` (persons inserted or renamed), ``directors``/``writers``/``actors`` (credits
    inserted), ``rejected`` (lines stored in ``rejected_rows``) and ``missing_<file>`` (1 when an
    optional file was absent and skipped). With ``spool`` (an ingest's), rejected lines go there, so
    they are kept even when the caller's transaction is rolled back.
    """
    imdb_dir = Path(imdb_dir)
    if not imdb_dir.is_dir():
        raise InputError(f"IMDb directory not found: {imdb_dir}")
    basics_path = _find(imdb_dir, BASICS)
    if basics_path is None:
        raise InputError(f"{BASICS} (or {BASICS}.gz) not found in {imdb_dir}")

    counts = dict.fromkeys(
        (
            "movies_matched_by_id",
            "movies_matched_by_title",
            "ambiguous",
            "unmatched",
            "runtime_set",
            "persons",
            "directors",
            "writers",
            "actors",
            "rejected",
        ),
        0,
    )
    rejects = _Rejects(conn, ingest_run_id, spool)
    matches = _match_titles(conn, basics_path, counts, progress=progress, rejects=rejects)
    counts["runtime_set"] = _write_matches(conn, matches)
    movies_of: dict[str, list[int]] = defaultdict(list)
    for m in matches:
        movies_of[m.tconst].append(m.movie_id)

    credits: list[tuple[str, str, str, int]] = []  # (tconst, role, nconst, ordering)
    for name, reader in ((CREW, _crew_credits), (PRINCIPALS, _actor_credits)):
        path = _find(imdb_dir, name)
        counts[_missing_key(name)] = int(path is None)
        if path is None:
            log.warning("%s not found in %s: skipped", name, imdb_dir)
        elif movies_of:
            credits.extend(reader(path, movies_of, progress=progress, rejects=rejects))

    names_path = _find(imdb_dir, NAMES)
    counts[_missing_key(NAMES)] = int(names_path is None)
    needed = {nconst for _, _, nconst, _ in credits}
    names: dict[str, str | None] = {}
    if names_path is None:
        log.warning("%s not found in %s: persons keep their current names", NAMES, imdb_dir)
    elif needed:
        names = _person_names(names_path, needed, progress=progress, rejects=rejects)

    counts["persons"] = _write_persons(conn, {f"imdb:{n}": names.get(n) for n in needed})
    counts.update(
        _write_credits(
            conn,
            (
                (movie_id, f"imdb:{nconst}", role, ordering)
                for tconst, role, nconst, ordering in credits
                for movie_id in movies_of[tconst]
            ),
        )
    )
    counts["rejected"] = rejects.count
    return counts


# --------------------------------------------------------------------------- matching (title.basics)


@dataclass(frozen=True)
class _Match:
    movie_id: int
    tconst: str
    runtime: int | None
    by_title: bool


def _match_titles(
    conn: Connection, path: Path, counts: dict[str, int], *, progress: bool, rejects: _Rejects
) -> list[_Match]:
    """One pass over title.basics: id matches, title+year candidates, runtimes."""
    movies_by_tconst: dict[str, list[int]] = defaultdict(list)
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)  # normalised title -> (movie_id, year)
    unlinked = 0
    for movie_id, title, year, imdb_id in conn.execute(
        text("SELECT movie_id, title, year, imdb_id FROM movies ORDER BY movie_id")
    ):
        if imdb_id:
            movies_by_tconst[_as_tconst(imdb_id)].append(movie_id)
            continue
        unlinked += 1
        if year is not None and title:
            for key in title_keys(title):
                by_key[key].append((movie_id, year))
    years = {y + d for entries in by_key.values() for _, y in entries for d in (-1, 0, 1)}

    id_runtime: dict[str, int | None] = {}
    # movie_id -> tconst -> (titleType, |year difference|, runtime)
    candidates: dict[int, dict[str, tuple[str, int, int | None]]] = defaultdict(dict)
    usecols = ["tconst", "titleType", "primaryTitle", "originalTitle", "startYear", "runtimeMinutes"]
    for chunk in _read_tsv(path, BASICS, usecols, progress=progress, rejects=rejects):
        frame = chunk.frame
        # Checking every row is cheap here (vectorised), so bad years/runtimes are caught file-wide.
        year, year_bad = _integers(frame["startYear"], 1, 9999)
        runtime, runtime_bad = _integers(frame["runtimeMinutes"], 0, _SMALLINT_MAX)
        bad = year_bad | runtime_bad
        if bad.any():
            column = np.where(year_bad.to_numpy(), "startYear", "runtimeMinutes")
            rejects.add(
                BASICS,
                (
                    (
                        int(chunk.line_numbers[i]),
                        chunk.raw(i),
                        f"{column[i]} is not a valid number: {frame[column[i]].iat[i]!r}",
                    )
                    for i in np.flatnonzero(bad.to_numpy()).tolist()
                ),
            )
        good = ~bad
        runtime_py = runtime.astype(object).where(runtime.notna(), None)

        by_id = good & frame["tconst"].isin(movies_by_tconst.keys())
        for tconst, minutes in zip(frame["tconst"][by_id], runtime_py[by_id]):
            id_runtime[tconst] = minutes

        if not by_key:
            continue
        by_title = good & frame["titleType"].isin(MATCH_TITLE_TYPES) & year.isin(years)
        rows = zip(
            frame["tconst"][by_title],
            frame["titleType"][by_title],
            frame["primaryTitle"][by_title],
            frame["originalTitle"][by_title],
            year[by_title],
            runtime_py[by_title],
        )
        for tconst, title_type, primary, original, start_year, minutes in rows:
            keys = {normalise_title(t) for t in (primary, original) if isinstance(t, str)}
            for key in keys:
                for movie_id, movie_year in by_key.get(key, ()):
                    diff = abs(int(start_year) - movie_year)
                    if diff <= 1:
                        candidates[movie_id][tconst] = (title_type, diff, minutes)

    matches = [
        _Match(movie_id, tconst, id_runtime[tconst], False)
        for tconst, movie_ids in movies_by_tconst.items()
        if tconst in id_runtime
        for movie_id in movie_ids
    ]
    counts["movies_matched_by_id"] = len(matches)
    for movie_id, found in candidates.items():
        tconst = _pick(found)
        if tconst is None:
            counts["ambiguous"] += 1
        else:
            matches.append(_Match(movie_id, tconst, found[tconst][2], True))
            counts["movies_matched_by_title"] += 1
    linked = sum(len(ids) for ids in movies_by_tconst.values())
    counts["unmatched"] = linked + unlinked - len(matches) - counts["ambiguous"]
    return matches


def _pick(found: dict[str, tuple[str, int, int | None]]) -> str | None:
    """The one best candidate: exact year over ±1, then titleType movie; ``None`` when still ambiguous."""
    exact = [t for t, (_, diff, _) in found.items() if diff == 0]
    pool = exact or list(found)
    if len(pool) > 1:
        pool = [t for t in pool if found[t][0] == "movie"] or pool
    return pool[0] if len(pool) == 1 else None


def _write_matches(conn: Connection, matches: Sequence[_Match]) -> int:
    """Set imdb_id of title matches and runtimes that differ; returns how many runtimes changed."""
    _temp_table(
        conn,
        "imdb_enrich_match",
        "movie_id integer PRIMARY KEY, tconst text NOT NULL, runtime_minutes smallint, by_title boolean",
    )
    copy_rows(
        conn,
        "imdb_enrich_match",
        ("movie_id", "tconst", "runtime_minutes", "by_title"),
        ((m.movie_id, m.tconst, m.runtime, "t" if m.by_title else "f") for m in matches),
    )
    conn.execute(
        text(
            "UPDATE movies m SET imdb_id = s.tconst, updated_at = now() FROM imdb_enrich_match s "
            "WHERE m.movie_id = s.movie_id AND s.by_title AND m.imdb_id IS NULL"
        )
    )
    changed = conn.execute(
        text(
            "UPDATE movies m SET runtime_minutes = s.runtime_minutes, updated_at = now() "
            "FROM imdb_enrich_match s WHERE m.movie_id = s.movie_id AND s.runtime_minutes IS NOT NULL "
            "AND m.runtime_minutes IS DISTINCT FROM s.runtime_minutes"
        )
    ).rowcount
    conn.execute(text("DROP TABLE imdb_enrich_match"))
    return changed


# --------------------------------------------------------------------------- credits and names


def _crew_credits(
    path: Path, movies_of: dict[str, list[int]], *, progress: bool, rejects: _Rejects
) -> Iterator[tuple[str, str, str, int]]:
    """(tconst, director|writer, nconst, position in the list from 1) for matched titles."""
    usecols = ["tconst", "directors", "writers"]
    for chunk in _read_tsv(path, CREW, usecols, progress=progress, rejects=rejects):
        frame = chunk.frame[chunk.frame["tconst"].isin(movies_of.keys())]
        for tconst, directors, writers in frame.itertuples(index=False, name=None):
            for role, listed in (("director", directors), ("writer", writers)):
                if not isinstance(listed, str):
                    continue
                seen: set[str] = set()
                for position, nconst in enumerate(listed.split(","), start=1):
                    nconst = nconst.strip()
                    if nconst and nconst != "\\N" and nconst not in seen and position <= _SMALLINT_MAX:
                        seen.add(nconst)
                        yield tconst, role, nconst, position


def _actor_credits(
    path: Path, movies_of: dict[str, list[int]], *, progress: bool, rejects: _Rejects
) -> list[tuple[str, str, str, int]]:
    """(tconst, 'actor', nconst, rank by principals ordering from 1) for matched titles."""
    kept: list[pd.DataFrame] = []
    usecols = ["tconst", "ordering", "nconst", "category"]
    for chunk in _read_tsv(path, PRINCIPALS, usecols, progress=progress, rejects=rejects):
        frame = chunk.frame
        wanted = (
            frame["tconst"].isin(movies_of.keys())
            & frame["category"].isin(ACTOR_CATEGORIES)
            & frame["nconst"].notna()
        ).to_numpy()
        if not wanted.any():
            continue
        # ~90M rows: only the rows we keep are value-checked.
        ordering, _ = _integers(frame["ordering"][wanted], 0, 1 << 31)
        bad = ordering.isna().to_numpy()  # a credit without its ordering cannot be ranked
        if bad.any():
            rows = np.flatnonzero(wanted)[bad]
            rejects.add(
                PRINCIPALS,
                (
                    (
                        int(chunk.line_numbers[i]),
                        chunk.raw(i),
                        f"ordering is missing or not a number: {frame['ordering'].iat[i]!r}",
                    )
                    for i in rows
                ),
            )
        part = frame.loc[wanted, ["tconst", "nconst"]].assign(ordering=ordering)
        kept.append(part[~bad])
    if not kept:
        return []
    actors = (
        pd.concat(kept, ignore_index=True)
        .sort_values(["tconst", "ordering"], kind="stable")
        .drop_duplicates(["tconst", "nconst"])
    )
    actors["rank"] = actors.groupby("tconst").cumcount() + 1
    actors = actors[actors["rank"] <= _SMALLINT_MAX]
    return [
        (tconst, "actor", nconst, int(rank))
        for tconst, nconst, rank in zip(actors["tconst"], actors["nconst"], actors["rank"])
    ]


def _person_names(
    path: Path, needed: set[str], *, progress: bool, rejects: _Rejects
) -> dict[str, str | None]:
    """primaryName of the needed nconsts (``None`` where IMDb has none)."""
    names: dict[str, str | None] = {}
    for chunk in _read_tsv(path, NAMES, ["nconst", "primaryName"], progress=progress, rejects=rejects):
        frame = chunk.frame[chunk.frame["nconst"].isin(needed)]
        bad: list[tuple[int, str, str]] = []
        for row, nconst, name in zip(frame.index, frame["nconst"], frame["primaryName"]):
            if isinstance(name, str) and (len(name) > MAX_NAME_CHARS or "\x00" in name):
                reason = (
                    "NUL byte in primaryName"
                    if "\x00" in name
                    else f"primaryName is {len(name)} characters long (at most {MAX_NAME_CHARS})"
                )
                bad.append((int(chunk.line_numbers[row]), chunk.raw(row), reason))
                continue
            names[nconst] = name if isinstance(name, str) and name.strip() else None
        if bad:
            rejects.add(NAMES, bad)
    return names


def _write_persons(conn: Connection, people: dict[str, str | None]) -> int:
    """Insert new persons, rename existing ones where IMDb has a different name; returns rows changed."""
    if not people:
        return 0
    _temp_table(conn, "imdb_enrich_person", "external_id text PRIMARY KEY, name text")
    copy_rows(conn, "imdb_enrich_person", ("external_id", "name"), people.items())
    # Insert-where-absent rather than ON CONFLICT: an upsert would burn identity values on every re-run.
    inserted = conn.execute(
        text(
            "INSERT INTO persons (external_id, name) SELECT s.external_id, s.name FROM imdb_enrich_person s "
            "WHERE NOT EXISTS (SELECT 1 FROM persons p WHERE p.external_id = s.external_id) "
            "ORDER BY s.external_id"
        )
    ).rowcount
    renamed = conn.execute(
        text(
            "UPDATE persons p SET name = s.name FROM imdb_enrich_person s "
            "WHERE p.external_id = s.external_id AND s.name IS NOT NULL "
            "AND p.name IS DISTINCT FROM s.name"
        )
    ).rowcount
    conn.execute(text("DROP TABLE imdb_enrich_person"))
    return inserted + renamed


def _write_credits(conn: Connection, rows: Iterable[tuple[int, str, str, int]]) -> dict[str, int]:
    """Insert movie_persons rows (existing ones are kept as they are); returns rows inserted per role."""
    _temp_table(
        conn, "imdb_enrich_credit", "movie_id integer, external_id text, role text, ordering smallint"
    )
    copy_rows(conn, "imdb_enrich_credit", ("movie_id", "external_id", "role", "ordering"), rows)
    inserted: dict[str, int] = dict(
        conn.execute(
            text(
                "WITH ins AS (INSERT INTO movie_persons (movie_id, person_id, role, ordering) "
                "SELECT c.movie_id, p.person_id, c.role, c.ordering FROM imdb_enrich_credit c "
                "JOIN persons p ON p.external_id = c.external_id "
                "ORDER BY c.movie_id, c.role, c.ordering ON CONFLICT DO NOTHING RETURNING role) "
                "SELECT role, count(*) FROM ins GROUP BY role"
            )
        ).all()
    )
    conn.execute(text("DROP TABLE imdb_enrich_credit"))
    return {
        "directors": inserted.get("director", 0),
        "writers": inserted.get("writer", 0),
        "actors": inserted.get("actor", 0),
    }


# --------------------------------------------------------------------------- streaming TSV reader


class _Rejects:
    """Stores rejected lines as they are found, so a broken file never piles up in memory."""

    def __init__(self, conn: Connection, ingest_run_id: int, spool: RejectSpool | None = None) -> None:
        self._conn = conn
        self._run = ingest_run_id
        self._spool = spool
        self.count = 0

    def add(self, source_file: str, rows: Iterable[tuple[int, str, str]]) -> None:
        if self._spool is not None:
            self.count += self._spool.add(source_file, rows)
        else:
            self.count += record_rejects(self._conn, self._run, source_file, rows)


@dataclass
class _Chunk:
    frame: pd.DataFrame  # requested columns, str with NaN for \N, default RangeIndex
    line_numbers: np.ndarray  # file line (1-based, header = 1) of each frame row
    _data: bytes
    _starts: np.ndarray
    _ends: np.ndarray

    def raw(self, row: int) -> str:
        """The original text of frame row ``row``."""
        return _decode(self._data[self._starts[row] : self._ends[row]])


def _read_tsv(
    path: Path, name: str, usecols: list[str], *, progress: bool, rejects: _Rejects
) -> Iterator[_Chunk]:
    """Stream an IMDb TSV as DataFrames of ``usecols``; lines with the wrong number of fields are rejected.

    Why not pandas' own chunking: its C parser silently pads short lines with NaN and cannot say which
    line it skipped, and engine='python' with an on_bad_lines callable is far too slow for gigabytes.
    So we cut the stream into blocks of whole lines ourselves, count tabs per line with numpy
    (vectorised, so validation covers every line of every file), reject bad lines with their line numbers,
    and give only the good lines to the C parser, which then maps one-to-one onto line numbers.
    """
    with (
        open(path, "rb") as raw,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=path.name,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
        header: list[str] | None = None
        last_line = 1  # the header
        pending = b""
        while True:
            block = stream.read(_BLOCK_BYTES)
            bar.update(raw.tell() - bar.n)
            data = pending + block
            if not block:  # end of file: a last line without its newline still counts
                pending = b""
                if data and not data.endswith(b"\n"):
                    data += b"\n"
            else:
                cut = data.rfind(b"\n") + 1
                data, pending = data[:cut], data[cut:]
            if header is None and data:
                end = data.index(b"\n")
                header = _decode(data[:end]).lstrip("\ufeff").split("\t")
                missing = [c for c in usecols if c not in header]
                if missing:
                    raise InputError(f"{path.name}: missing columns {', '.join(missing)}")
                data = data[end + 1 :]
            if data and header is not None:
                chunk = _parse_block(data, name, header, usecols, last_line, rejects)
                last_line += data.count(b"\n")
                if chunk is not None:
                    yield chunk
            if not block:
                break
        if header is None:
            raise InputError(f"{path.name} is empty")


def _parse_block(
    data: bytes, name: str, header: list[str], usecols: list[str], last_line: int, rejects: _Rejects
) -> _Chunk | None:
    """Parse a block of whole lines (each ending in ``\\n``) that follows file line ``last_line``."""
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1))
    tabs = np.flatnonzero(buf == ord("\t"))
    fields = np.diff(np.searchsorted(tabs, ends), prepend=0) + 1
    numbers = np.arange(last_line + 1, last_line + 1 + len(ends))
    good = fields == len(header)
    if not good.all():
        rejects.add(
            name,
            (
                (
                    int(numbers[i]),
                    _decode(data[starts[i] : ends[i]]),
                    f"expected {len(header)} tab-separated fields, found {int(fields[i])}",
                )
                for i in np.flatnonzero(~good)
            ),
        )
        buf = buf[np.repeat(good, ends - starts + 1)]
        starts, ends, numbers = starts[good], ends[good], numbers[good]
    if not len(numbers):
        return None
    frame = pd.read_csv(
        io.BytesIO(buf.tobytes()),
        sep="\t",
        header=None,
        names=header,
        usecols=usecols,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        na_values=["\\N"],
        keep_default_na=False,
        lineterminator="\n",
        skip_blank_lines=False,
        encoding="utf-8",
        encoding_errors="replace",
        engine="c",
    )
    if len(frame) != len(numbers):  # would silently shift every line number after it
        raise RuntimeError(f"{name}: parsed {len(frame)} rows from {len(numbers)} lines")
    return _Chunk(frame, numbers, data, starts, ends)


# --------------------------------------------------------------------------- small helpers


def _integers(values: pd.Series, low: int, high: int) -> tuple[pd.Series, pd.Series]:
    """Whole numbers in [low, high] as nullable Int64, and a mask of present values that are not."""
    number = pd.to_numeric(values, errors="coerce")
    ok = number.notna() & (number % 1 == 0) & number.between(low, high)
    bad = values.notna() & ~ok
    return number.where(ok).astype("Int64"), bad


def _decode(raw: bytes) -> str:
    # PostgreSQL text cannot hold NUL; a stray CR from a CRLF file is not part of the line.
    return raw.decode("utf-8", "replace").rstrip("\r").replace("\x00", "\ufffd")


def _as_tconst(imdb_id: str) -> str:
    """``'tt0114709'`` as is; a bare ``'0114709'`` (links.csv style) gets its ``tt`` prefix."""
    value = imdb_id.strip()
    return f"tt{int(value):07d}" if value.isdigit() else value


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing_key(name: str) -> str:
    return "missing_" + name.removesuffix(".tsv").replace(".", "_")


def _temp_table(conn: Connection, table: str, columns: str) -> None:
    # Identifiers are constants of this module, never input. ON COMMIT DROP covers an aborted run;
    # the explicit DROP after use lets the function run twice in one transaction.
    conn.execute(text(f"DROP TABLE IF EXISTS pg_temp.{table}"))
    conn.execute(text(f"CREATE TEMP TABLE {table} ({columns}) ON COMMIT DROP"))
