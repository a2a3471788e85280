"""The ingest corruption corpus: bad input of every kind through ``movierec ingest --source``.

Each case corrupts a small ML-100K-shaped dataset (``tests.support.movielens_files``) one way and says
what must happen: the command's exit code and one-line message, the ``ingest_runs`` row, the rejected
lines with their reasons, and what lands. A case that succeeds runs on an empty database and its good
rows must land; a case that fails runs on top of a good ingest, with a changed catalogue, and must leave
every table but ``ingest_runs`` and ``rejected_rows`` exactly as it was. The README's table of the corpus
is rendered from these cases (``test_readme_table_is_the_corpus``).

Messages and reasons are templates: ``{dir}`` stands for a temporary path, ``{n}`` for a number,
``{detail}`` for the rest of a library's message.
"""

from __future__ import annotations

import re
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from pipeline.core.defaults import MAX_REASON_CHARS, MAX_REJECT_RAW_CHARS
from pipeline.core.settings import Settings, get_settings
from pipeline.ingest.loader import ingest_directory
from tests.support.database import fetch_rows
from tests.support.movielens_files import T0, rewrite, write_ml100k, zip_directory

README = Path(__file__).resolve().parents[3] / "README.md"
TABLE_BEGIN = "<!-- ingest corruption corpus: generated from tests/pipeline/ingest/test_corruption.py -->"
TABLE_END = "<!-- end of the ingest corruption corpus -->"
BOM = b"\xef\xbb\xbf"
HUGE = 1_000_000  # characters in the huge cases' one field
GOOD = (4, 3, 5)  # movies, users, ratings of write_ml100k


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]  # writes the input under a temp dir; returns what --source gets
    exit_code: int
    message: str  # the error line after "error: " (failure) or ingest_runs.message (success; "" = none)
    accepted: int  # ingest_runs.rows_accepted
    rejects: tuple[tuple[str, int | None, str], ...] = ()  # (file, line, reason) in line order per file
    lands: tuple[int, int, int] | None = None  # movies, users, ratings in the database afterwards
    known_layout: bool = True  # False: the run failed before its layout was known

    @property
    def status(self) -> str:
        return "succeeded" if self.exit_code == 0 else "failed"


def template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(re.escape("{n}"), r"\d+")
    return re.compile(pattern.replace(re.escape("{dir}"), ".*").replace(re.escape("{detail}"), ".*"))


def shown(template: str) -> str:
    return template.replace("{dir}", "DIR").replace("{n}", "N").replace("{detail}", "…")


# --- the inputs ------------------------------------------------------------------------------------------


def ml100k(tmp: Path, ratings: list[str] | None = None) -> Path:
    return write_ml100k(tmp / "ml-100k", ratings)


def changed(tmp: Path, ratings: list[str] | None = None) -> Path:
    """A dataset whose catalogue and users differ from the good one: a failed run must not land them."""
    d = ml100k(tmp, ratings)
    rewrite(d / "u.item", lambda b: b.replace(b"Toy Story", b"Toy Story II"))
    rewrite(d / "u.user", lambda b: b.replace(b"technician", b"engineer"))
    return d


def item_line(movie_id: int, title: str, encoding: str = "latin-1") -> bytes:
    return f"{movie_id}|{title}|01-Jan-1995||http://us.imdb.com/x|{'0|' * 18}1\n".encode(encoding)


def truncated_lines(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.item", lambda b: b + b"5|Heat (1995)|01-Jan")  # the file ends mid-line
    rewrite(d / "u.data", lambda b: b + b"3\t1\t4")
    return d


def crlf(tmp: Path) -> Path:
    d = ml100k(tmp)
    for name in ("u.data", "u.item", "u.user"):
        rewrite(d / name, lambda b: b.replace(b"\n", b"\r\n"))
    return d


def byte_order_marks(tmp: Path) -> Path:
    d = ml100k(tmp)
    for name in ("u.data", "u.item", "u.user"):
        rewrite(d / name, lambda b: BOM + b)
    return d


def nul_in_rating(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.data", lambda b: b.replace(b"1\t2\t3", b"1\t2\t\x003"))
    return d


def nul_in_title(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.item", lambda b: b.replace(b"Usual Suspects", b"Usual\x00Suspects"))
    return d


def copy_syntax_in_ratings(tmp: Path) -> Path:
    d = ml100k(tmp)  # 0x01 is the careful path's delimiter; a line "\." ends COPY's data
    rewrite(d / "u.data", lambda b: b + f"2\t2\x01\t3\t{T0}\n\\.\n2\t2\t3\t{T0}\n".encode())
    return d


def utf8_catalogue(tmp: Path) -> Path:
    d = ml100k(tmp)
    utf8 = item_line(5, "Café Society (1995)", "utf-8")
    rewrite(d / "u.item", lambda b: b.decode("latin-1").encode("utf-8") + utf8)
    return d


def out_of_range_ratings(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(
        d / "u.data", lambda b: b + f"1\t3\t0\t{T0}\n1\t4\t6\t{T0}\n3\t1\t-1\t{T0}\n3\t2\t4\t1\n".encode()
    )
    return d


def duplicate_rows(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.data", lambda b: b + b.splitlines(keepends=True)[0])
    rewrite(d / "u.item", lambda b: b + item_line(1, "Toy Story Again (1995)"))
    rewrite(d / "u.user", lambda b: b + b"1|30|F|other|11111\n")
    return d


def ratings_column_missing(tmp: Path) -> Path:
    d = changed(tmp)
    rewrite(d / "u.data", lambda b: b"\n".join(ln.rsplit(b"\t", 1)[0] for ln in b.splitlines()) + b"\n")
    return d


def catalogue_column_missing(tmp: Path) -> Path:
    d = changed(tmp)
    rewrite(d / "u.item", lambda b: b"\n".join(ln.rsplit(b"|", 1)[0] for ln in b.splitlines()) + b"\n")
    return d


def emptied(name: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        d = changed(tmp)
        (d / name).write_bytes(b"")
        return d

    return make


def missing_catalogue(tmp: Path) -> Path:
    d = changed(tmp)
    (d / "u.item").unlink()
    return d


def unknown_layout(tmp: Path) -> Path:
    d = tmp / "not-a-dataset"
    d.mkdir(parents=True)
    (d / "README").write_text("MovieLens, but not its files\n")
    return d


def archive(tmp: Path) -> Path:
    return zip_directory(ml100k(tmp), tmp / "ml-100k.zip")


def truncated_archive(tmp: Path) -> Path:
    path = zip_directory(changed(tmp), tmp / "ml-100k.zip")
    rewrite(path, lambda b: b[: len(b) // 2])
    return path


def corrupt_archive(tmp: Path) -> Path:
    path = zip_directory(changed(tmp), tmp / "ml-100k.zip")
    with zipfile.ZipFile(path) as zf:
        member = zf.getinfo("ml-100k/u.data")
    start = member.header_offset + 30 + len(member.filename)  # local header, then the deflated bytes
    rewrite(path, lambda b: b[:start] + bytes(x ^ 0xFF for x in b[start : start + 8]) + b[start + 8 :])
    return path


def huge_rating_line(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.data", lambda b: b + b"1\t" + b"9" * HUGE + f"\t5\t{T0}\n".encode())
    return d


def huge_title(tmp: Path) -> Path:
    d = ml100k(tmp)
    rewrite(d / "u.item", lambda b: b + item_line(5, "A" * HUGE + " (1995)"))
    return d


NO_USABLE = "u.data: no usable ratings: all 5 lines rejected (see rejected_rows for ingest run {n})"

CASES = (
    Case(
        "truncated lines (file ends mid-line)",
        truncated_lines,
        0,
        "",
        12,
        (("u.data", 6, "expected 4 fields, found 3"), ("u.item", 5, "expected 24 fields, found 3")),
        GOOD,
    ),
    Case("CRLF line ends", crlf, 0, "", 12, (), GOOD),
    Case("UTF-8 byte-order mark at the start of each file", byte_order_marks, 0, "", 12, (), GOOD),
    Case(
        "NUL byte in a rating line",
        nul_in_rating,
        0,
        "",
        11,
        (("u.data", 2, r"NUL byte in the line (shown as \x00)"),),
        (4, 3, 4),
    ),
    Case(
        "NUL byte in a title",
        nul_in_title,
        0,
        "",
        10,
        (("u.data", 4, "unknown movie_id 3"), ("u.item", 3, "NUL byte in the line")),
        (3, 3, 4),
    ),
    Case(
        "COPY's own bytes in ratings (0x01, a line `\\.`)",
        copy_syntax_in_ratings,
        0,
        "",
        13,
        (("u.data", 6, r"control byte \x01 in the line"), ("u.data", 7, "expected 4 fields, found 1")),
        (4, 3, 6),
    ),
    Case(
        "UTF-8 u.item (the layout says latin-1)",
        utf8_catalogue,
        0,
        "u.item is UTF-8, not latin-1 as the layout has it: read as UTF-8",
        13,
        (),
        (5, 3, 5),
    ),
    Case(
        "out-of-range ratings and timestamps",
        out_of_range_ratings,
        0,
        "",
        12,
        (
            ("u.data", 6, "rating 0 is outside the scale 1 to 5 in steps of 1"),
            ("u.data", 7, "rating 6 is outside the scale 1 to 5 in steps of 1"),
            ("u.data", 8, "rating -1 is outside the scale 1 to 5 in steps of 1"),
            ("u.data", 9, "timestamp 1 is not between 1990-01-01 and tomorrow"),
        ),
        GOOD,
    ),
    Case(
        "duplicate rows (rating, movie id, user id)",
        duplicate_rows,
        0,
        "",
        13,
        (
            ("u.item", 5, "duplicate id 1 (first on line 1)"),
            ("u.user", 4, "duplicate id 1 (first on line 1)"),
        ),
        GOOD,
    ),
    Case(
        "a column missing from every rating",
        ratings_column_missing,
        1,
        NO_USABLE,
        0,
        tuple(("u.data", n, "expected 4 fields, found 3") for n in range(1, 6)),
    ),
    Case(
        "a column missing from every movie",
        catalogue_column_missing,
        1,
        "{dir}/u.item: no valid movies (4 lines rejected)",
        0,
        tuple(("u.item", n, "expected 24 fields, found 23") for n in range(1, 5)),
    ),
    Case("empty u.data", emptied("u.data"), 1, "{dir}/u.data is empty", 0, known_layout=False),
    Case("empty u.item", emptied("u.item"), 1, "{dir}/u.item is empty", 0, known_layout=False),
    Case("empty u.user", emptied("u.user"), 1, "{dir}/u.user is empty", 0, known_layout=False),
    Case("u.item missing", missing_catalogue, 1, "{dir}: missing u.item", 0, known_layout=False),
    Case(
        "not a MovieLens directory",
        unknown_layout,
        1,
        "{dir} is not a known MovieLens layout (expected u.data+u.item, ratings.dat+movies.dat, "
        "ratings.csv+movies.csv or ml-100k.inter+ml-100k.item); found README",
        0,
        known_layout=False,
    ),
    Case("zip archive", archive, 0, "", 12, (), GOOD),
    Case(
        "truncated zip archive",
        truncated_archive,
        1,
        "{dir}/ml-100k.zip is not a directory or a readable zip archive (truncated or corrupt?)",
        0,
        known_layout=False,
    ),
    Case(
        "corrupt zip archive (damaged member)",
        corrupt_archive,
        1,
        "{dir}/ml-100k.zip is not a readable zip archive: Error -3 while decompressing data: {detail}",
        0,
        known_layout=False,
    ),
    Case(
        "1 MB rating line",
        huge_rating_line,
        0,
        "",
        12,
        (("u.data", 6, "movie_id '{n}' is not a positive integer"),),
        GOOD,
    ),
    Case(
        "1 MB title",
        huge_title,
        0,
        "",
        12,
        (("u.item", 5, f"title is {HUGE} characters long (at most 500)"),),
        GOOD,
    ),
)


# --- running a case ----------------------------------------------------------------------------------------


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings, source: Path
):
    """``movierec ingest --source SOURCE`` through the command's own entry point; (exit code, stderr)."""
    from database.engine import get_engine
    from pipeline.cli import main

    monkeypatch.setenv("MOVIEREC_HOME", str(settings.home))
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setattr(sys, "argv", ["movierec", "ingest", "--source", str(source)])
    get_settings.cache_clear()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        get_engine().dispose()
        get_settings.cache_clear()
    return code, capsys.readouterr().err


def state(engine: Engine) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every row of each data table."""
    out = {}
    for table, key in (
        ("movies", "movie_id"),
        ("users", "user_id"),
        ("ratings", "user_id, movie_id"),
        ("persons", "person_id"),
        ("movie_persons", "movie_id, person_id, role"),
    ):
        with engine.connect() as conn:
            out[table] = tuple(
                conn.execute(
                    text(
                        f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY {key})), '') FROM {table} t"
                    )
                ).one()
            )
    return out


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.name).strip("-") for c in CASES])
def test_corruption_corpus(case: Case, engine, settings, tmp_path, monkeypatch, capsys):
    source = case.make(tmp_path / "input")
    if case.exit_code:  # a failure must leave the previous, good state exactly as it was
        ingest_directory(engine, ml100k(tmp_path / "good"), progress=False)
    before = state(engine)

    code, stderr = run_cli(monkeypatch, capsys, settings, source)

    assert code == case.exit_code, stderr[-2000:]
    assert all(len(line) < 1_000 for line in stderr.splitlines())  # bounded log and error lines
    with engine.connect() as conn:
        run = fetch_rows(
            conn,
            "SELECT status, rows_accepted, rows_rejected, message, layout, counts, finished_at "
            "FROM ingest_runs ORDER BY ingest_run_id DESC LIMIT 1",
        )[0]
        rejects = fetch_rows(
            conn,
            "SELECT source_file, line_number, raw_text, reason FROM rejected_rows "
            "WHERE ingest_run_id = (SELECT max(ingest_run_id) FROM ingest_runs) ORDER BY source_file, line_number",
        )
    status, accepted, rejected, message, layout, counts, finished = run
    assert (status, accepted, rejected) == (case.status, case.accepted, len(case.rejects))
    assert finished is not None
    assert layout == ("ml-100k" if case.known_layout else "unknown")
    if case.exit_code:
        error = stderr.strip().splitlines()[-1]
        assert template_regex(f"error: {case.message}").fullmatch(error), error
        assert template_regex(f"InputError: {case.message}").fullmatch(message), message
        assert state(engine) == before
        assert not any(k.endswith("_accepted") for k in counts)  # a failed run counts read and rejected only
    else:
        assert (message or "") == case.message
        assert tuple(n for n, _ in state(engine).values())[:3] == case.lands
    assert len(rejects) == len(case.rejects)
    for (file, line, raw, reason), (want_file, want_line, want_reason) in zip(
        rejects, case.rejects, strict=True
    ):
        assert (file, line) == (want_file, want_line)
        assert template_regex(want_reason).fullmatch(reason), reason
        assert len(reason) <= MAX_REASON_CHARS and "\x00" not in raw
        assert len(raw) <= MAX_REJECT_RAW_CHARS + 40


def test_rejected_raw_text_shows_the_nul_and_keeps_the_length_of_a_huge_line(engine, tmp_path):
    d = huge_rating_line(tmp_path / "a")
    rewrite(d / "u.data", lambda b: b.replace(b"1\t2\t3", b"1\t2\t\x003"))
    result = ingest_directory(engine, d, progress=False)
    with engine.connect() as conn:
        raws = [r for (r,) in fetch_rows(conn, "SELECT raw_text FROM rejected_rows ORDER BY line_number")]
    assert raws[0] == f"1\t2\t\\x003\t{T0 + 60}"
    total = len(f"1\t{'9' * HUGE}\t5\t{T0}")
    assert raws[1] == f"1\t{'9' * (MAX_REJECT_RAW_CHARS - 2)}… [{total} characters in all]"
    assert result.counts["ratings_rejected"] == 2


def test_utf8_catalogue_lands_its_titles_and_says_what_it_detected(engine, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="pipeline.ingest.loader"):
        result = ingest_directory(engine, utf8_catalogue(tmp_path / "a"), progress=False)
    with engine.connect() as conn:
        titles = dict(fetch_rows(conn, "SELECT movie_id, title FROM movies WHERE movie_id IN (2, 5)"))
    assert titles == {2: "Misérables, Les", 5: "Café Society"}
    assert result.counts["files_in_another_encoding"] == 1
    assert result.warnings == ["u.item is UTF-8, not latin-1 as the layout has it: read as UTF-8"]
    assert "u.item is UTF-8" in caplog.text


def test_a_failure_after_the_ratings_rolls_back_every_upsert_and_keeps_the_rejects(engine, tmp_path):
    ingest_directory(engine, ml100k(tmp_path / "good"), progress=False)
    before = state(engine)
    d = changed(tmp_path / "next", ratings=[f"1\t3\t1\t{T0 + 99_999}", f"9\t1\t5\t{T0}"])
    empty_imdb = tmp_path / "imdb"
    empty_imdb.mkdir()  # no title.basics: enrichment fails after movies, users and ratings were upserted
    with pytest.raises(Exception, match="title.basics"):
        ingest_directory(engine, d, imdb_dir=empty_imdb, progress=False)
    assert state(engine) == before
    with engine.connect() as conn:
        run = fetch_rows(
            conn,
            "SELECT status, rows_accepted, rows_rejected, counts FROM ingest_runs "
            "ORDER BY ingest_run_id DESC LIMIT 1",
        )[0]
        rejects = fetch_rows(conn, "SELECT source_file, line_number, reason FROM rejected_rows")
    assert run[:3] == ("failed", 0, 1)
    assert run[3]["ratings_read"] == 2 and run[3]["ratings_rejected"] == 1
    assert rejects == [("u.data", 2, "unknown user_id 9")]


# --- the README's table --------------------------------------------------------------------------------------


def _rejects_cell(case: Case) -> str:
    if not case.rejects:
        return "none"
    grouped = Counter((file, shown(reason)) for file, _, reason in case.rejects)
    return "; ".join(
        f"{'' if n == 1 else f'{n} × '}{file}: `{reason}`" for (file, reason), n in grouped.items()
    )


def _lands_cell(case: Case) -> str:
    if case.exit_code:
        return "nothing: the previous state is intact"
    movies, users, ratings = case.lands or GOOD
    return f"{movies} movies, {users} users, {ratings} ratings"


def corpus_table() -> str:
    rows = [
        "| case | exit | message | run: status, accepted, rejected | rejected lines | what lands |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        message = f"`{shown(case.message)}`" if case.message else "—"
        rows.append(
            f"| {case.name} | {case.exit_code} | {message} | {case.status}, {case.accepted}, "
            f"{len(case.rejects)} | {_rejects_cell(case)} | {_lands_cell(case)} |"
        )
    return "\n".join(rows)


def test_readme_table_is_the_corpus():
    readme = README.read_text()
    begin, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    assert readme[begin:end].strip() == corpus_table()


def test_a_failed_download_is_recorded_as_a_failed_ingest(engine):
    from pipeline.core.errors import SourceUnavailable
    from pipeline.ingest.loader import record_failed_ingest

    url = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    error = SourceUnavailable(f"{url}: timed out after 10 s")
    run_id = record_failed_ingest(engine, dataset="ml-1m", source=url, error=error)
    with engine.connect() as conn:
        row = fetch_rows(
            conn,
            "SELECT dataset, layout, status, rows_accepted, rows_rejected, message, finished_at IS NOT NULL "
            "FROM ingest_runs WHERE ingest_run_id = :r",
            r=run_id,
        )
    assert [tuple(r) for r in row] == [
        ("ml-1m", "unknown", "failed", 0, 0, f"SourceUnavailable: {error}", True)
    ]
