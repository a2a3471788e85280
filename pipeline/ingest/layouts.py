"""GroupLens' file layouts (and RecBole's copy of ML-100K): detection and parsing of the small files.

Ratings files are large and are parsed by PostgreSQL itself (see ``pipeline.ingest``); this module
describes them (``RatingsFile``) and parses the catalogue, users and people in Python, where every
line is validated and a bad one becomes a ``Reject`` instead of an exception.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pipeline.core.defaults import MAX_GENRES, MAX_LABEL_CHARS, MAX_TITLE_CHARS
from pipeline.core.errors import InputError
from pipeline.ingest.titles import split_title_year

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# ml-1m users.dat codes (its README)
ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
_NO_GENRE = {"unknown", "(no genres listed)", ""}
_GENRE_ALIASES = {"Children's": "Children"}  # ml-100k/ml-1m spelling -> ml-latest spelling
MIN_YEAR, MAX_YEAR = 1870, datetime.now().year + 5
MAX_ZIP_CHARS, MAX_FREEBASE_ID_CHARS = 16, 32  # the widths of users.zip and movies.freebase_id
UTF8_BOM = b"\xef\xbb\xbf"
KG_ROLES = {"film.film.directed_by": "director", "film.film.actor": "actor", "film.film.written_by": "writer"}


@dataclass(frozen=True)
class RatingScale:
    low: float
    high: float
    step: float


@dataclass(frozen=True)
class RatingsFile:
    """How to read one ratings file: PostgreSQL parses it, this says how."""

    path: Path
    delimiter: str  # "\t", ",", or "::" (multi-character: PostgreSQL's COPY cannot split it)
    header: bool
    scale: RatingScale


@dataclass(frozen=True)
class Reject:
    line: int
    raw: str
    reason: str


@dataclass(kw_only=True)
class SourceLine:
    """Where a parsed record came from, so a later rejection (a duplicate id) can quote it."""

    line: int = field(default=0, compare=False, repr=False)
    raw: str = field(default="", compare=False, repr=False)


@dataclass
class MovieRecord(SourceLine):
    movie_id: int
    title: str
    year: int | None
    genres: list[str]
    imdb_id: str | None = None
    tmdb_id: int | None = None
    freebase_id: str | None = None


@dataclass
class UserRecord(SourceLine):
    user_id: int
    gender: str | None
    age: int | None
    occupation: str | None
    zip: str | None


@dataclass
class CreditRecord:
    movie_id: int
    external_id: str
    role: str
    ordering: int
    name: str | None = None


@dataclass(frozen=True)
class Layout:
    """A dataset directory: which files, in whose format."""

    name: str
    directory: Path
    ratings: RatingsFile
    movies: Path
    users: Path | None = None
    links: Path | None = None
    kg: Path | None = None
    kg_links: Path | None = None
    encoding: str = "utf-8"
    extra: dict[str, str] = field(default_factory=dict)
    # files whose bytes say they are in another encoding than the layout's (see ``detect_layout``)
    encodings: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def files(self) -> list[Path]:
        return [
            p for p in (self.ratings.path, self.movies, self.users, self.links, self.kg, self.kg_links) if p
        ]

    def encoding_of(self, path: Path) -> str:
        return self.encodings.get(path.name, self.encoding)


FIVE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)


def detect_layout(directory: Path) -> Layout:
    """Recognise the layout of ``directory`` (or of its single sub-directory, as unzipped archives have).

    The catalogue and users files are checked against the layout's encoding (``check_encoding``): one
    whose bytes say otherwise is read in the encoding it is in, and the layout's ``notes`` say so.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"no such directory: {directory}")
    candidates = [directory] + sorted(p for p in directory.iterdir() if p.is_dir())
    for d in candidates:
        layout = _detect_in(d)
        if layout:
            _check_nonempty(layout)
            return _with_checked_encodings(layout)
    names = ", ".join(sorted(p.name for p in directory.iterdir())[:10]) or "nothing"
    raise InputError(
        f"{directory} is not a known MovieLens layout (expected u.data+u.item, ratings.dat+movies.dat, "
        f"ratings.csv+movies.csv or ml-100k.inter+ml-100k.item); found {names}"
    )


def _detect_in(d: Path) -> Layout | None:
    def has(name):
        return (d / name).is_file()

    if has("u.data") or has("u.item"):
        _require(d, "u.data", "u.item")
        return Layout(
            "ml-100k",
            d,
            RatingsFile(d / "u.data", "\t", False, FIVE_STARS),
            d / "u.item",
            users=d / "u.user" if has("u.user") else None,
            encoding="latin-1",
        )
    if has("ratings.dat") or has("movies.dat"):
        _require(d, "ratings.dat", "movies.dat")
        return Layout(
            "ml-1m",
            d,
            RatingsFile(d / "ratings.dat", "::", False, FIVE_STARS),
            d / "movies.dat",
            users=d / "users.dat" if has("users.dat") else None,
            encoding="latin-1",
        )
    if has("ratings.csv") or has("movies.csv"):
        _require(d, "ratings.csv", "movies.csv")
        return Layout(
            "ml-latest",
            d,
            RatingsFile(d / "ratings.csv", ",", True, HALF_STARS),
            d / "movies.csv",
            links=d / "links.csv" if has("links.csv") else None,
        )
    if has("ml-100k.inter") or has("ml-100k.item"):
        _require(d, "ml-100k.inter", "ml-100k.item")
        return Layout(
            "recbole-ml-100k",
            d,
            RatingsFile(d / "ml-100k.inter", "\t", True, FIVE_STARS),
            d / "ml-100k.item",
            users=d / "ml-100k.user" if has("ml-100k.user") else None,
            kg=d / "ml-100k.kg" if has("ml-100k.kg") else None,
            kg_links=d / "ml-100k.link" if has("ml-100k.link") else None,
        )
    return None


def _require(d: Path, *names: str) -> None:
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        raise InputError(f"{d}: missing {', '.join(missing)}")


def _check_nonempty(layout: Layout) -> None:
    for path in (layout.ratings.path, layout.movies, layout.users):
        if path is None:  # a users file is optional, but one that is there must hold users
            continue
        with path.open("rb") as fh:
            head = fh.read(4096)
        lines = [ln for ln in head.splitlines() if ln.strip()]
        if (
            len(lines) <= (1 if path == layout.ratings.path and layout.ratings.header else 0)
            and len(head) < 4096
        ):
            raise InputError(f"{path} is empty")


def check_encoding(path: Path, declared: str) -> tuple[str, str | None]:
    """The encoding to read ``path`` in, and a note when it is not ``declared``.

    A latin-1 file that decodes as UTF-8 and has multi-byte sequences is UTF-8: real latin-1 text almost
    never forms valid UTF-8 (an accented letter is one byte >= 0x80, and UTF-8 needs such bytes in strict
    lead/continuation runs), while reading UTF-8 as latin-1 silently turns "Café" into "CafÃ©". A UTF-8
    file that does not decode as UTF-8 is read as latin-1 (every byte is a latin-1 character), which is
    what such files are in practice. A leading byte-order mark is ignored (``_lines`` drops it).
    """
    raw = path.read_bytes()
    data = raw.removeprefix(UTF8_BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if declared == "utf-8":
            byte = f"byte 0x{data[exc.start]:02x} at offset {exc.start + len(raw) - len(data)}"
            return "latin-1", f"{path.name} is not UTF-8 ({byte}): read as latin-1"
        return declared, None
    if declared != "utf-8" and not data.isascii():
        return "utf-8", f"{path.name} is UTF-8, not {declared} as the layout has it: read as UTF-8"
    return declared, None


def _with_checked_encodings(layout: Layout) -> Layout:
    encodings, notes = {}, []
    for path in (layout.movies, layout.users):
        if path is None:
            continue
        encoding, note = check_encoding(path, layout.encoding)
        if encoding != layout.encoding:
            encodings[path.name] = encoding
        if note:
            notes.append(note)
    return replace(layout, encodings=encodings, notes=tuple(notes)) if encodings else layout


def _lines(path: Path, encoding: str, skip_header: bool) -> Iterator[tuple[int, str]]:
    """Numbered, decoded lines (1-based, header counted); undecodable bytes are shown as \\x.. escapes."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and skip_header:
                continue
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)
            text = raw.decode(encoding, errors="backslashreplace").rstrip("\r\n")
            if text.strip():
                yield number, text


def _positive_int(value: str, what: str) -> int:
    value = value.strip()
    if not value.isdigit() or int(value) <= 0 or int(value) >= 2**31:
        raise ValueError(f"{what} {value!r} is not a positive integer")
    return int(value)


_MISSING = {"", "unknown", "unkonwn"}  # RecBole spells ML-100K's missing year "unkonwn"


def _year(value: str | None) -> int | None:
    if value is None or value.strip().lower() in _MISSING:
        return None
    year = int(value.strip()) if value.strip().isdigit() else None
    if year is None or not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {value.strip()!r} is not between {MIN_YEAR} and {MAX_YEAR}")
    return year


def _genres(names: list[str]) -> list[str]:
    return [_GENRE_ALIASES.get(g, g) for g in (n.strip() for n in names) if g not in _NO_GENRE]


def _bounded(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long (at most {limit})")
    return value


def _movie(movie_id: str, raw_title: str, genres: list[str], year_hint: str | None = None) -> MovieRecord:
    mid = _positive_int(movie_id, "movie_id")
    title, year = split_title_year(raw_title)
    if not title:
        raise ValueError("empty title")
    _bounded(title, "title", MAX_TITLE_CHARS)
    if len(genres) > MAX_GENRES:
        raise ValueError(f"{len(genres)} genres (at most {MAX_GENRES})")
    for genre in genres:
        _bounded(genre.strip(), "a genre", MAX_LABEL_CHARS)
    if year is None:
        year = _year(year_hint)
    elif not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year {year} is not between {MIN_YEAR} and {MAX_YEAR}")
    return MovieRecord(mid, title, year, _genres(genres))


Parsed = Iterator["MovieRecord | UserRecord | CreditRecord | Reject"]
_R = TypeVar("_R")


def _guard(number: int, text: str, build: Callable[..., _R]) -> _R | Reject:
    # build is called without arguments (``...``: the lambdas bind their line's fields as a default)
    try:
        _no_nul(text)
        record = build()
    except (ValueError, IndexError) as exc:
        return Reject(number, text, str(exc))
    if isinstance(record, SourceLine):
        record.line, record.raw = number, text
    return record


def parse_movies(layout: Layout) -> Parsed:
    """Catalogue rows of any layout; ml-latest's links.csv ids are merged in by ``parse_links``."""
    path, enc = layout.movies, layout.encoding_of(layout.movies)
    if layout.name == "ml-100k":
        for n, text in _lines(path, enc, skip_header=False):
            f = text.split("|")
            yield _guard(n, text, lambda f=f: _ml100k_movie(f))
    elif layout.name == "ml-1m":
        for n, text in _lines(path, enc, skip_header=False):
            f = text.split("::")
            yield _guard(n, text, lambda f=f: _fields(f, 3) and _movie(f[0], f[1], f[2].split("|")))
    elif layout.name == "ml-latest":
        yield from _csv_records(path, enc, 3, lambda f: _movie(f[0], f[1], f[2].split("|")))
    else:  # recbole-ml-100k: item_id, movie_title, release_year, class (space-separated genres)
        for n, text in _lines(path, enc, skip_header=True):
            f = text.split("\t")
            yield _guard(n, text, lambda f=f: _fields(f, 4) and _movie(f[0], f[1], f[3].split(" "), f[2]))


def _no_nul(text: str) -> None:
    if "\x00" in text:  # PostgreSQL cannot store NUL in text
        raise ValueError("NUL byte in the line")


def _fields(f: list[str], expected: int) -> Literal[True]:
    if len(f) != expected:
        raise ValueError(f"expected {expected} fields, found {len(f)}")
    return True


def _ml100k_movie(f: list[str]) -> MovieRecord:
    _fields(f, 5 + len(ML100K_GENRES))
    flags = f[5:]
    if any(flag not in ("0", "1") for flag in flags):
        raise ValueError("genre flags must be 0 or 1")
    release = f[2].strip()  # "01-Jan-1995"
    return _movie(
        f[0],
        f[1],
        [g for g, flag in zip(ML100K_GENRES, flags) if flag == "1"],
        release[-4:] if release else None,
    )


def _csv_records(
    path: Path, encoding: str, expected: int, build: Callable[[list[str]], _R]
) -> Iterator[_R | Reject]:
    """CSV with quoted fields (titles contain commas); line numbers are physical lines."""
    encoding = "utf-8-sig" if encoding == "utf-8" else encoding  # a byte-order mark is not data
    with path.open("r", encoding=encoding, errors="backslashreplace", newline="") as fh:
        reader = csv.reader(fh)
        try:
            next(reader, None)
        except csv.Error:
            pass  # a header too long to read: the data lines are checked all the same
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over the csv module's size limit
                yield Reject(start, "", f"unreadable CSV line: {exc}")
                start = reader.line_num + 1
                continue
            raw = _csv_line(row)
            if not any(cell.strip() for cell in row):
                start = reader.line_num + 1
                continue
            yield _guard(start, raw, lambda row=row: _fields(row, expected) and build(row))
            start = reader.line_num + 1


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(row)
    return out.getvalue()


def parse_links(layout: Layout) -> Iterator[tuple[int, str | None, int | None] | Reject]:
    """ml-latest links.csv: movieId, imdbId (digits, zero-padded to 7), tmdbId (may be empty)."""
    if layout.links is None:
        return

    def build(f: list[str]) -> tuple[int, str | None, int | None]:
        mid = _positive_int(f[0], "movieId")
        imdb = f[1].strip()
        if imdb and not (imdb.isdigit() and len(imdb) <= 10):
            raise ValueError(f"imdbId {imdb!r} is not a number of at most 10 digits")
        tmdb = f[2].strip()
        return mid, f"tt{int(imdb):07d}" if imdb else None, _positive_int(tmdb, "tmdbId") if tmdb else None

    yield from _csv_records(layout.links, layout.encoding_of(layout.links), 3, build)


def parse_users(layout: Layout) -> Parsed:
    if layout.users is None:
        return
    encoding = layout.encoding_of(layout.users)
    if layout.name == "ml-100k":  # user id | age | gender | occupation | zip code
        for n, text in _lines(layout.users, encoding, skip_header=False):
            f = text.split("|")
            yield _guard(n, text, lambda f=f: _fields(f, 5) and _user(f[0], f[2], f[1], f[3], f[4]))
    elif layout.name == "ml-1m":  # UserID::Gender::Age::Occupation::Zip-code (coded)
        for n, text in _lines(layout.users, encoding, skip_header=False):
            f = text.split("::")
            yield _guard(
                n, text, lambda f=f: _fields(f, 5) and _user(f[0], f[1], f[2], _ml1m_occupation(f[3]), f[4])
            )
    else:  # recbole: user_id, age, gender, occupation, zip_code
        for n, text in _lines(layout.users, encoding, skip_header=True):
            f = text.split("\t")
            yield _guard(n, text, lambda f=f: _fields(f, 5) and _user(f[0], f[2], f[1], f[3], f[4]))


def _ml1m_occupation(code: str) -> str:
    if not code.strip().isdigit() or int(code) >= len(ML1M_OCCUPATIONS):
        raise ValueError(f"occupation code {code.strip()!r} is not one of 0-{len(ML1M_OCCUPATIONS) - 1}")
    return ML1M_OCCUPATIONS[int(code)]


def _user(user_id: str, gender: str, age: str, occupation: str, zip_code: str) -> UserRecord:
    uid = _positive_int(user_id, "user_id")
    gender = gender.strip().upper()
    if gender not in ("M", "F", ""):
        raise ValueError(f"gender {gender!r} is not M or F")
    age = age.strip()
    if age and (not age.isdigit() or not 0 < int(age) < 120):
        raise ValueError(f"age {age!r} is not between 1 and 119")
    occupation = _bounded(occupation.strip(), "occupation", MAX_LABEL_CHARS)
    zip_code = _bounded(zip_code.strip(), "zip code", MAX_ZIP_CHARS)
    return UserRecord(uid, gender or None, int(age) if age else None, occupation or None, zip_code or None)


def parse_credits(layout: Layout) -> Iterator[CreditRecord | Reject]:
    """Directors, actors and writers from RecBole's Freebase triples (entity ids, no names)."""
    if layout.kg is None or layout.kg_links is None:
        return
    film_to_movie: dict[str, int] = {}
    for n, text in _lines(layout.kg_links, layout.encoding, skip_header=True):
        f = text.split("\t")
        try:
            _fields(f, 2)
            _no_nul(text)
            film_to_movie[_bounded(f[1].strip(), "entity_id", MAX_FREEBASE_ID_CHARS)] = _positive_int(
                f[0], "item_id"
            )
        except ValueError as exc:
            yield Reject(n, text, str(exc))
    orderings: dict[tuple[int, str], int] = {}
    for n, text in _lines(layout.kg, layout.encoding, skip_header=True):
        f = text.split("\t")
        if len(f) != 3:
            yield Reject(n, text, f"expected 3 fields, found {len(f)}")
            continue
        role = KG_ROLES.get(f[1])
        movie_id = film_to_movie.get(f[0])
        if role is None or movie_id is None:
            continue  # other relations, or films outside the catalogue: not credits
        try:
            _no_nul(text)
            _bounded(f[2].strip(), "tail_id", MAX_LABEL_CHARS)
        except ValueError as exc:
            yield Reject(n, text, str(exc))
            continue
        key = (movie_id, role)
        orderings[key] = orderings.get(key, 0) + 1
        yield CreditRecord(movie_id, f"freebase:{f[2].strip()}", role, orderings[key])


def freebase_ids(layout: Layout) -> dict[int, str]:
    if layout.kg_links is None:
        return {}
    out: dict[int, str] = {}
    for _, text in _lines(layout.kg_links, layout.encoding, skip_header=True):
        f = text.split("\t")
        entity = f[1].strip() if len(f) == 2 else ""
        if (
            f[0].strip().isdigit()
            and entity
            and len(entity) <= MAX_FREEBASE_ID_CHARS
            and "\x00" not in entity
        ):
            out[int(f[0])] = entity  # a bad line is rejected by ``parse_credits``
    return out
